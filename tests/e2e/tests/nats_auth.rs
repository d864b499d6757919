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

#[tokio::test]
async fn the_notifier_user_delivers_and_announces_but_cannot_publish_commits() {
    use tagrelay_notifier::service::{run, Settings};
    use tagrelay_proto::event::{CommitPushed, StallReason, Stalled};
    use tagrelay_testkit::receiver::Receiver;

    let server = NatsServer::start_with_config(PERMISSIONS);
    let receiver = Receiver::start();
    let operator = connect(&server, "operator").await.unwrap();
    let store = operator.config_store().await.unwrap();
    let config = format!("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: hook}}\nspec: {{type: generic, address: '{}'}}\n---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: all}}\nspec: {{providerRef: {{name: hook}}, eventSources: [{{kind: ImageUpdateAutomation, name: '*'}}]}}\n", receiver.url("/hook"));
    for doc in load_documents(&config).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
    let notifier = connect(&server, "notifier")
        .await
        .expect("the notifier user may declare the topology");
    let pushed = Event::CommitPushed(CommitPushed {
        automation: ObjectRef::new("flux-system", "fleet"),
        remote: "https://example.invalid/fleet.git".into(),
        branch: "main".into(),
        commit: "a".repeat(40),
        parent: None,
        changes: Vec::new(),
        causes: Vec::new(),
        signed_with: None,
    });
    let forbidden = Envelope::new("notifier/t", pushed.clone());
    let refused = tokio::time::timeout(Duration::from_secs(10), notifier.publish(&forbidden)).await;
    assert!(
        matches!(refused, Ok(Err(_)) | Err(_)),
        "the notifier must not publish CommitPushed"
    );
    let stale = Envelope::new(
        "notifier/t",
        Event::AutomationStalled(Stalled {
            object: ObjectRef::new("flux-system", "fleet"),
            reason: StallReason::CommitsFailing,
            message: "failing".into(),
            since: chrono::Utc::now(),
        }),
    );
    notifier
        .publish(&stale)
        .await
        .expect("the notifier announces stalls");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = notifier.clone();
    let task = tokio::spawn(async move {
        let settings = Settings {
            secrets_dir: std::env::temp_dir(),
            limits: Default::default(),
            sweep_every: Duration::from_secs(60),
        };
        run(&running, Default::default(), settings, async {
            let _ = stopped.await;
        })
        .await
        .expect("notifier");
    });
    let commit = Envelope::new("committer/t", pushed);
    operator.publish(&commit).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !receiver
        .received()
        .iter()
        .any(|r| r.header("x-tagrelay-event-id") == Some(commit.id.as_str()))
    {
        assert!(
            Instant::now() < deadline,
            "the notifier user could not deliver"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = operator.bucket(names::NOTIFICATIONS_BUCKET).await.unwrap();
    let key = format!("sent.flux-system.hook.{}", commit.id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent.get(&key).await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the notifier user could not record"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    task.await.unwrap();
}
