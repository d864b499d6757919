//! Sending one request to its receiver: HTTP (every provider but `nats`)
//! or a NATS publication, under the Provider's time limit, with quick
//! retries inside one attempt. Errors never carry the URL (a Slack or
//! Teams webhook URL is itself a secret) or a token.

use std::path::Path;
use std::time::Duration;

use tagrelay_proto::bus::redact_urls;
use tagrelay_proto::config::{load_documents, Provider};

use crate::payload::{Request, Settings, EVENT_ID_HEADER};

/// Why a delivery failed, in words without secrets, and whether trying
/// again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// What went wrong.
    pub message: String,
    /// A receiver down, timing out, answering 5xx or 429: yes. A 4xx or a
    /// bad configuration: no.
    pub transient: bool,
}

impl DeliveryError {
    fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }

    fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }
}

/// Pauses between the tries of one attempt; the consumer's redelivery
/// backs off further.
const QUICK_RETRIES: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

/// Sends requests; one HTTP client for the process.
#[derive(Clone)]
pub struct Deliverer {
    http: reqwest::Client,
}

impl Deliverer {
    /// A deliverer with the system's roots and `HTTPS_PROXY` honoured.
    pub fn new() -> Result<Self, DeliveryError> {
        let http = reqwest::Client::builder()
            .user_agent("tagrelay-notifier")
            .build()
            .map_err(|e| DeliveryError::permanent(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// Sends `request` for event `event_id`, trying again quickly on a
    /// transient failure.
    pub async fn send(
        &self,
        request: &Request,
        event_id: &str,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let mut pauses = QUICK_RETRIES.iter();
        loop {
            let result = match request {
                Request::Http { url, headers, body } => {
                    self.post(url, headers, body, event_id, timeout).await
                }
                Request::Nats {
                    server,
                    subject,
                    body,
                    credentials,
                } => {
                    publish(
                        server,
                        subject,
                        body,
                        credentials.as_ref(),
                        event_id,
                        timeout,
                    )
                    .await
                }
            };
            match (result, pauses.next()) {
                (Err(e), Some(pause)) if e.transient => {
                    tracing::debug!(error = %e, "delivery failed; trying again");
                    tokio::time::sleep(*pause).await;
                }
                (result, _) => return result,
            }
        }
    }

    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        event_id: &str,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let mut builder = self
            .http
            .post(url)
            .timeout(timeout)
            .header(EVENT_ID_HEADER, event_id)
            .body(body.to_vec());
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder.send().await.map_err(|e| {
            let e = e.without_url();
            DeliveryError::transient(format!("the receiver could not be reached: {e}"))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("the receiver answered {status}");
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(DeliveryError::transient(message))
        } else {
            Err(DeliveryError::permanent(message))
        }
    }
}

/// Publishes to another NATS server, as Flux's `nats` provider does, with
/// the tagrelay event id as `Nats-Msg-Id` (a JetStream stream behind the
/// subject then drops a duplicate delivery).
async fn publish(
    server: &str,
    subject: &str,
    body: &[u8],
    credentials: Option<&(String, String)>,
    event_id: &str,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let work = async {
        let options = match credentials {
            Some((user, password)) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            None => async_nats::ConnectOptions::new(),
        };
        let client = options
            .connection_timeout(timeout)
            .retry_on_initial_connect()
            .max_reconnects(Some(1))
            .connect(server)
            .await
            .map_err(|e| {
                DeliveryError::transient(format!(
                    "cannot connect to NATS at {}: {}",
                    redact_urls(server),
                    e.kind()
                ))
            })?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event_id);
        client
            .publish_with_headers(subject.to_string(), headers, body.to_vec().into())
            .await
            .map_err(|e| DeliveryError::transient(format!("cannot publish: {}", e.kind())))?;
        client
            .flush()
            .await
            .map_err(|e| DeliveryError::transient(format!("cannot flush: {}", e.kind())))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| DeliveryError::transient(format!("no answer from NATS within {timeout:?}")))?
}

/// A Provider's settings with its Secret's files read from
/// `<secrets_dir>/<namespace>/<secretRef.name>/`.
pub fn settings(
    provider: &Provider,
    secrets_dir: &Path,
    commit_status: String,
) -> Result<Settings, DeliveryError> {
    let spec = &provider.spec;
    let namespace = provider.metadata.namespace.as_deref().unwrap_or_default();
    let secret = |key: &'static str| -> Result<Option<String>, DeliveryError> {
        let Some(reference) = &spec.secret_ref else {
            return Ok(None);
        };
        let path = secrets_dir.join(namespace).join(&reference.name).join(key);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim_end_matches(['\n', '\r']).to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DeliveryError::permanent(format!(
                "cannot read key '{key}' of Secret {namespace}/{}: {}",
                reference.name,
                e.kind()
            ))),
        }
    };
    let address = secret("address")?
        .or_else(|| spec.address.clone())
        .ok_or_else(|| {
            DeliveryError::permanent(
                "no address: neither spec.address nor the Secret's 'address' is set",
            )
        })?;
    let mut headers = std::collections::BTreeMap::new();
    if let Some(text) = secret("headers")? {
        let documents = load_documents(&text).map_err(|e| {
            DeliveryError::permanent(format!("the Secret's 'headers' is not YAML: {e}"))
        })?;
        if let Some(map) = documents.first().and_then(|d| d.value.as_object()) {
            for (name, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                headers.insert(name.clone(), value);
            }
        }
    }
    Ok(Settings {
        provider_type: spec.provider_type.clone(),
        address,
        channel: spec.channel.clone(),
        username: spec.username.clone(),
        token: secret("token")?,
        basic_username: secret("username")?,
        basic_password: secret("password")?,
        headers,
        commit_status,
    })
}
