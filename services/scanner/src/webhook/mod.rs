//! The scanner's HTTP server: registry push notifications and health.
//!
//! - `POST /hooks/{provider}` (`distribution`, `dockerhub`, `harbor`,
//!   `quay`, `ghcr`): authenticated by the shared secret (see
//!   [`payload::authenticate`]); each repository the notification names
//!   gets an immediate scan request on the work queue (trigger `webhook`,
//!   de-duplicated on the notification's id, so a re-sent notification
//!   queues nothing new). `202` with the repositories queued, `200` when
//!   none is configured, `401` without the secret, `400` for a payload that
//!   is not the provider's shape, `404` for an unknown provider, `403` when
//!   no secret is configured (webhooks are then off). A refused request
//!   changes nothing.
//! - `GET /healthz`: the process serves (`200`).
//! - `GET /readyz`: `200` once the scanner consumes scan requests and its
//!   NATS connection is up, else `503`.

pub mod payload;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use tagrelay_proto::event::ScanTrigger;
use tagrelay_proto::runtime::health_router;
use tagrelay_proto::scan::ScanRequest;

use crate::service::Scanner;
use payload::{authenticate, parse, Proof, Provider};

/// The shared secret webhooks must prove. Its `Debug` never shows it.
#[derive(Clone, Default)]
pub struct WebhookSecret(Option<Vec<u8>>);

impl WebhookSecret {
    /// A secret; an empty one disables webhooks.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        let secret = secret.into();
        Self((!secret.is_empty()).then_some(secret))
    }

    /// No secret: webhooks refused.
    pub fn none() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "WebhookSecret(<redacted>)"
        } else {
            "WebhookSecret(none)"
        })
    }
}

#[derive(Clone)]
struct AppState {
    scanner: Arc<Scanner>,
    secret: WebhookSecret,
}

/// The router: webhooks and health endpoints of `scanner`.
pub fn router(scanner: Arc<Scanner>, secret: WebhookSecret) -> Router {
    let health = health_router(scanner.readiness());
    Router::new()
        .route("/hooks/{provider}", post(hook))
        .with_state(AppState { scanner, secret })
        .merge(health)
}

#[derive(Deserialize)]
struct HookQuery {
    token: Option<String>,
}

async fn hook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = Provider::from_path(&provider) else {
        return (StatusCode::NOT_FOUND, "unknown webhook provider").into_response();
    };
    let Some(secret) = &state.secret.0 else {
        return (
            StatusCode::FORBIDDEN,
            "webhooks are disabled: no webhook secret is configured",
        )
            .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let proof = Proof {
        authorization: header("authorization"),
        signature: header("x-hub-signature-256"),
        token: query.token.as_deref(),
    };
    if !authenticate(secret, &proof, &body) {
        tracing::warn!(?provider, "webhook refused: bad or missing secret");
        return (StatusCode::UNAUTHORIZED, "bad or missing webhook secret").into_response();
    }
    let pushes = match parse(provider, &body) {
        Ok(pushes) => pushes,
        Err(e) => {
            tracing::warn!(?provider, error = %e, "webhook refused: bad payload");
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let mut queued = Vec::new();
    for push in pushes {
        for repository in state
            .scanner
            .repositories_for(push.registry.as_deref(), &push.repository)
            .await
        {
            let request = ScanRequest::new(repository.clone(), ScanTrigger::Webhook, &push.id);
            match state.scanner.bus().request_scan(&request).await {
                Ok(_) => {
                    tracing::info!(repository = %repository, tag = ?push.tag, "scan requested by a push notification");
                    queued.push(repository.to_string());
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot queue a webhook scan");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cannot queue the scan; retry",
                    )
                        .into_response();
                }
            }
        }
    }
    queued.sort();
    queued.dedup();
    let status = if queued.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(serde_json::json!({ "queued": queued }))).into_response()
}
