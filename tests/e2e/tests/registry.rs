//! The registry harness and the fault proxy against the real registry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::time::Duration;

use tagrelay_testkit::fault_proxy::{Fault, FaultProxy, Paging, Scope, Storm};
use tagrelay_testkit::registry::{Registry, RegistryOptions};

async fn tags(url: &str, auth: Option<(&str, &str)>) -> (u16, Vec<String>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let mut tags: Vec<String> = body["tags"]
        .as_array()
        .map(|t| t.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    tags.sort();
    (status, tags)
}

#[tokio::test]
async fn pushed_tags_are_listed_and_a_deleted_tag_disappears() {
    let registry = Registry::start();
    registry
        .push_tags("demo/app", &["1.0.0", "1.1.0", "2.0.0"])
        .await;
    let url = format!("{}/v2/demo/app/tags/list", registry.url());
    assert_eq!(tags(&url, None).await.1, ["1.0.0", "1.1.0", "2.0.0"]);
    registry.delete_tag("demo/app", "1.1.0").await;
    assert_eq!(tags(&url, None).await.1, ["1.0.0", "2.0.0"]);
    registry.add_tags_in_storage("demo/app", "1.0.0", &["x1".into(), "x2".into()]);
    assert_eq!(tags(&url, None).await.1, ["1.0.0", "2.0.0", "x1", "x2"]);
}

#[tokio::test]
async fn basic_auth_is_required_when_configured() {
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("ci".into(), "s3cret".into())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0"]).await;
    let url = format!("{}/v2/demo/app/tags/list", registry.url());
    assert_eq!(tags(&url, None).await.0, 401);
    assert_eq!(tags(&url, Some(("ci", "wrong"))).await.0, 401);
    assert_eq!(
        tags(&url, Some(("ci", "s3cret"))).await,
        (200, vec!["1.0.0".to_string()])
    );
}

#[tokio::test]
async fn the_proxy_injects_faults_then_paginates() {
    let registry = Registry::start();
    registry.push_tags("demo/app", &["a", "b", "c"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    let url = format!("http://{}/v2/demo/app/tags/list", proxy.host());
    proxy.inject(Fault::TooManyRequests { retry_after: 3 });
    proxy.inject(Fault::Status(503));
    proxy.inject(Fault::Garbage);
    proxy.inject(Fault::Slow(Duration::from_millis(50)));
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 503);
    assert!(reqwest::get(&url)
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .is_err());
    assert_eq!(tags(&url, None).await.1, ["a", "b", "c"]);

    proxy.set_paging(Paging::Link { page_size: 2 });
    let response = reqwest::get(&url).await.unwrap();
    let link = response.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(link, "</v2/demo/app/tags/list?n=2&last=b>; rel=\"next\"");
    proxy.set_paging(Paging::CappedWithoutLink { page_size: 2 });
    let response = reqwest::get(format!("{url}?n=1000&last=b")).await.unwrap();
    assert!(response.headers().get("link").is_none());
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["c"]));
    assert_eq!(proxy.tag_list_requests(), 6);
}

#[tokio::test]
async fn the_proxy_cuts_bodies_and_storms_within_a_scope() {
    let registry = Registry::start();
    registry.push_tags("demo/app", &["a", "b", "c"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    let url = format!("http://{}/v2/demo/app/tags/list", proxy.host());
    let manifest = format!("http://{}/v2/demo/app/manifests/a", proxy.host());

    proxy.inject(Fault::Truncated);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body = response.bytes().await.unwrap();
    assert!(
        serde_json::from_slice::<serde_json::Value>(&body).is_err(),
        "cut mid-JSON: {body:?}"
    );
    assert!(body.starts_with(b"{\"name\""), "{body:?}");

    proxy.inject(Fault::Dropped);
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.bytes().await.is_err(),
        "the connection closes before the announced length"
    );
    assert_eq!(tags(&url, None).await.1, ["a", "b", "c"]);

    proxy.storm(Storm {
        faults: vec![Fault::Status(502), Fault::Dropped],
        scope: Scope::Images,
        percent: 50,
    });
    assert_eq!(tags(&url, None).await.1, ["a", "b", "c"], "out of scope");
    let get_manifest = || {
        reqwest::Client::new()
            .get(&manifest)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = get_manifest().await.unwrap();
        let status = response.status().as_u16();
        statuses.push((status, response.bytes().await.is_ok()));
    }
    assert_eq!(
        statuses,
        [(200, true), (502, true), (200, true), (200, false)],
        "every other request, the faults in turn"
    );
    proxy.storm(Storm {
        faults: vec![Fault::Truncated],
        scope: Scope::All,
        percent: 100,
    });
    let head = reqwest::Client::new()
        .head(&manifest)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(
        head.send().await.unwrap().status().as_u16(),
        200,
        "a body fault leaves a HEAD alone"
    );
    proxy.calm();
    assert_eq!(get_manifest().await.unwrap().status().as_u16(), 200);
    let kinds: Vec<&str> = proxy.served().iter().map(|s| s.fault.kind()).collect();
    assert_eq!(kinds, ["truncated", "dropped", "5xx", "dropped"]);
}
