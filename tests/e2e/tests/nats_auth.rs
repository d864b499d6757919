//! NATS access control: services authenticate, and the least-privilege
//! users in `deploy/nats/permissions.conf` let each service do its own work
//! and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings, NatsAuth};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_proto::event::{
    tag_set_digest, Envelope, Event, ObjectRef, ScanTrigger, TagsDiscovered,
};
use tagrelay_proto::names;
use tagrelay_testkit::NatsServer;

const PERMISSIONS: &str = include_str!("../../../deploy/nats/permissions.conf");

fn user(name: &str) -> NatsAuth {
    NatsAuth {
        user: Some(name.to_string()),
        password: Some(format!("change-me-{name}")),
        ..Default::default()
    }
}

async fn connect(server: &NatsServer, name: &str) -> Result<Bus, String> {
    Bus::connect_with(
        &server.url(),
        &user(name),
        format!("{name}/t"),
        BusSettings::default(),
    )
    .await
    .map_err(|e| e.to_string())
}

fn discovered(tags: &[&str]) -> Event {
    Event::TagsDiscovered(TagsDiscovered {
        repository: ObjectRef::new("flux-system", "app"),
        image: "registry.example/app".into(),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        tags_ref: None,
        tag_count: tags.len(),
        tag_set_digest: tag_set_digest(tags.iter().copied()),
        previous_tag_set_digest: None,
        scanned_at: chrono::Utc::now(),
        trigger: ScanTrigger::Schedule,
        images: BTreeMap::new(),
    })
}

#[tokio::test]
async fn without_credentials_the_server_refuses_with_a_clear_error() {
    let server = NatsServer::start_with_config(PERMISSIONS);
    let error = Bus::connect(&server.url(), "anonymous", BusSettings::default())
        .await
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        error.contains("cannot reach NATS") && error.to_lowercase().contains("authori"),
        "{error}"
    );
    let mut wrong = user("resolver");
    wrong.password = Some("wrong".into());
    assert!(
        Bus::connect_with(&server.url(), &wrong, "x", BusSettings::default())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_resolver_user_resolves_but_cannot_publish_scans() {
    let server = NatsServer::start_with_config(PERMISSIONS);
    let operator = connect(&server, "operator").await.unwrap();
    let store = operator.config_store().await.unwrap();
    for doc in load_documents("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: registry.example/app\n  interval: 1m\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: 1.x\n").unwrap() {
        store.put(&Object::decode(&doc.value).unwrap()).await.unwrap();
    }

    let resolver = connect(&server, "resolver")
        .await
        .expect("the resolver user may declare the topology");
    let forbidden = Envelope::new("resolver/t", discovered(&["9.9.9"]));
    let refused = tokio::time::timeout(Duration::from_secs(10), resolver.publish(&forbidden)).await;
    assert!(
        matches!(refused, Ok(Err(_)) | Err(_)),
        "the resolver must not publish TagsDiscovered"
    );

    let running = resolver.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        tagrelay_resolver_probe(running, stopped).await;
    });
    operator
        .publish(&Envelope::new("scanner/t", discovered(&["1.0.0", "1.4.0"])))
        .await
        .unwrap();
    let state = operator.bucket(names::POLICY_STATE_BUCKET).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while state
        .get("imagepolicy.flux-system.app")
        .await
        .unwrap()
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the resolver user could not do its work"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    task.await.unwrap();
}

/// Runs the real resolver until told to stop.
async fn tagrelay_resolver_probe(bus: Bus, stopped: tokio::sync::oneshot::Receiver<()>) {
    tagrelay_resolver::run(&bus, Default::default(), async {
        let _ = stopped.await;
    })
    .await
    .expect("resolver");
}
