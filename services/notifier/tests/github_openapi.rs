//! The `github` provider's commit status against GitHub's own OpenAPI
//! description, served by Prism, which answers 422 to any request the
//! description does not allow: the method, path, headers and body the
//! notifier builds are sent as built, only the host (and GitHub
//! Enterprise's `/api/v3` prefix) replaced by Prism's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;

use tagrelay_notifier::flux_event::{FluxEvent, InvolvedObject, ERROR, INFO};
use tagrelay_notifier::payload::{request, Request, Settings};
use tagrelay_testkit::prism::Prism;

fn event(severity: &str, reason: &str) -> FluxEvent {
    FluxEvent {
        involved_object: InvolvedObject {
            kind: "ImageUpdateAutomation".into(),
            namespace: "flux-system".into(),
            name: "fleet".into(),
            api_version: "image.toolkit.fluxcd.io/v1".into(),
        },
        severity: severity.into(),
        timestamp: "2026-12-05T10:00:00Z".into(),
        message: "pushed commit '0123456' to branch 'main'".into(),
        reason: reason.into(),
        metadata: BTreeMap::from([(
            "revision".to_string(),
            format!("main@sha1:{}", "0123456789abcdef".repeat(2) + "01234567"),
        )]),
        reporting_controller: "tagrelay-committer".into(),
        reporting_instance: "committer/a".into(),
    }
}

#[tokio::test]
async fn the_commit_status_is_a_request_githubs_description_allows() {
    let prism = tokio::task::spawn_blocking(Prism::github).await.unwrap();
    let settings = Settings {
        provider_type: "github".into(),
        address: "https://ghe.example/org/fleet.git".into(),
        token: Some("t0ken".into()),
        commit_status: "imageupdateautomation/fleet/github".into(),
        ..Default::default()
    };
    let client = reqwest::Client::new();
    for (severity, reason) in [(INFO, "Succeeded"), (ERROR, "PushRejected")] {
        let Request::Http { url, headers, body } =
            request(&settings, &event(severity, reason)).unwrap()
        else {
            panic!("github is HTTP")
        };
        let path = url
            .strip_prefix("https://ghe.example/api/v3")
            .unwrap_or_else(|| panic!("{url}"));
        let mut call = client.post(format!("{}{path}", prism.url())).body(body);
        for (name, value) in &headers {
            call = call.header(name.as_str(), value.as_str());
        }
        let answer = call.send().await.unwrap();
        let status = answer.status();
        let violations = answer
            .headers()
            .get("sl-violations")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        assert!(
            status.is_success(),
            "{severity}: {status} {violations:?} {}",
            answer.text().await.unwrap_or_default()
        );
    }
    // The same client, a field the description does not know: refused, so
    // the check above can fail.
    let refused = client
        .post(format!(
            "{}/repos/org/fleet/statuses/{}",
            prism.url(),
            "a".repeat(40)
        ))
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer t0ken")
        .body(r#"{"state":"succeeded","context":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
}
