//! The forge client against GitHub's own OpenAPI description, served by
//! Prism, which refuses (422) any request the description does not allow:
//! every call the review stage makes to GitHub, and the installation token
//! exchange of a GitHub App.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use tagrelay_committer::forge::{github_installation_token, Forge, RequestText};
use tagrelay_proto::config::ForgeProvider;
use tagrelay_testkit::prism::Prism;

#[tokio::test]
async fn every_github_call_is_one_githubs_openapi_description_allows() {
    let prism = tokio::task::spawn_blocking(Prism::github).await.unwrap();
    let forge = Forge::new(
        ForgeProvider::Github,
        &prism.url(),
        "org/fleet",
        "t0ken".into(),
    )
    .unwrap();
    let text = RequestText {
        title: "Update images from flux-system/fleet",
        body: "- `app:1.0.0` -> `app:1.1.0`",
    };
    forge.find_open("image-updates", "main").await.unwrap();
    let opened = forge.open("image-updates", "main", &text).await.unwrap();
    assert!(
        opened.number > 0 && opened.url.starts_with("http"),
        "{opened:?}"
    );
    forge.get(opened.number).await.unwrap();
    forge.retitle(opened.number, &text).await.unwrap();
    forge
        .label(opened.number, &["image-update".to_string()])
        .await
        .unwrap();
    forge
        .request_reviews(opened.number, &["alice".to_string()])
        .await
        .unwrap();
    let (token, expires) = github_installation_token(&prism.url(), "77", "header.claims.signature")
        .await
        .unwrap();
    assert!(!token.is_empty() && !expires.is_empty());

    // The description is enforced: a request it does not allow fails.
    let refused = reqwest::Client::new()
        .post(format!("{}/repos/org/fleet/pulls", prism.url()))
        .header("Accept", "application/json")
        .header("Content-Type", "application/json")
        .body(r#"{"title": "no head, no base"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
}
