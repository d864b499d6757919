//! The `tagrelay-notifier` binary against a real nats-server, loopback
//! receivers that record every request, and Debian's Alertmanager.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tagrelay_proto::bus::{Bus, BusSettings, ConfigStore};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey};
use tagrelay_proto::event::{
    CommitPushed, Envelope, Event, Failure, FailureReason, FileChange, ObjectRef, PolicyResolved,
    ResolveCause, SelectedImage, StallReason, Stalled,
};
use tagrelay_proto::names;
use tagrelay_proto::status::ObjectStatus;
use tagrelay_testkit::alertmanager::Alertmanager;
use tagrelay_testkit::receiver::{Answer, Receiver};
use tagrelay_testkit::{events, free_port, NatsServer};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct Notifier {
    child: Child,
}

impl Notifier {
    fn start(nats: &NatsServer, secrets: &Path, extra: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tagrelay-notifier"));
        command
            .env("NATS_URL", nats.url())
            .env("TAGRELAY_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("TAGRELAY_SECRETS_DIR", secrets)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            command.env(k, v);
        }
        Self {
            child: command.spawn().unwrap(),
        }
    }

    fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(Instant::now() < deadline, "the notifier did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(nats: &NatsServer) -> (Bus, ConfigStore) {
    let bus = Bus::connect(&nats.url(), "test/notify", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    (bus, store)
}

async fn apply(store: &ConfigStore, yaml: &str) {
    for doc in load_documents(yaml).unwrap() {
        let object = Object::decode(&doc.value).unwrap();
        let errors = tagrelay_proto::config::validate(&object);
        assert!(errors.is_empty(), "{errors:?}");
        store.put(&object).await.unwrap();
    }
}

fn secret(dir: &Path, name: &str, key: &str, value: &str) {
    let path = dir.join("apps").join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join(key), value).unwrap();
}

fn provider(name: &str, spec: &str) -> String {
    format!("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: {name}, namespace: apps}}\nspec: {spec}\n---\n")
}

fn alert(name: &str, spec: &str) -> String {
    format!("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: {name}, namespace: apps}}\nspec: {spec}\n---\n")
}

/// A generic Provider posting to the receiver's `/hook`, and an Alert
/// sending it every automation event.
fn hook(receiver: &Receiver) -> String {
    let config = provider(
        "generic",
        &format!("{{type: generic, address: '{}'}}", receiver.url("/hook")),
    ) + &alert(
        "all",
        "{providerRef: {name: generic}, eventSources: [{kind: ImageUpdateAutomation, name: '*'}]}",
    );
    config.trim_end_matches("---\n").to_string()
}

fn pushed() -> Event {
    Event::CommitPushed(CommitPushed {
        automation: ObjectRef::new("apps", "fleet"),
        remote: "https://example.invalid/fleet.git".into(),
        branch: "main".into(),
        commit: COMMIT.into(),
        parent: None,
        changes: vec![FileChange {
            file: "apps/app.yaml".into(),
            old: "ghcr.io/org/app:1.0.0".into(),
            new: "ghcr.io/org/app:1.0.1".into(),
            setter: "apps:app".into(),
        }],
        causes: Vec::new(),
        signed_with: None,
    })
}

fn resolved() -> Event {
    Event::PolicyResolved(PolicyResolved {
        policy: ObjectRef::new("apps", "app"),
        repository: ObjectRef::new("apps", "app"),
        image: "ghcr.io/org/app".into(),
        previous: Some(SelectedImage {
            tag: "1.0.0".into(),
            digest: None,
        }),
        current: SelectedImage {
            tag: "1.0.1".into(),
            digest: None,
        },
        cause: ResolveCause::TagsChanged,
        tag_set_digest: "sha256:00".into(),
    })
}

fn scan_failed() -> Event {
    Event::ScanFailed(Failure {
        object: ObjectRef::new("apps", "app"),
        error: "registry unreachable".into(),
        will_retry: true,
        attempt: 1,
        reason: FailureReason::RegistryUnavailable,
    })
}

async fn publish(bus: &Bus, event: Event) -> Envelope {
    let envelope = Envelope::new("committer/host-1", event);
    bus.publish(&envelope).await.unwrap();
    envelope
}

fn seconds(envelope: &Envelope) -> String {
    envelope
        .occurred_at
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_gets_flux_payloads_signed_and_shaped_as_flux_sends_them() {
    let nats = NatsServer::start();
    let receiver = Receiver::start();
    let secrets = tempfile::tempdir().unwrap();
    secret(secrets.path(), "hmac", "token", "hmac-key\n");
    secret(secrets.path(), "hmac", "headers", "X-Team: web\n");
    secret(secrets.path(), "github", "token", "gh-token");
    let (bus, store) = connect(&nats).await;
    let mut config = String::new();
    config += &provider(
        "generic",
        &format!("{{type: generic, address: '{}'}}", receiver.url("/generic")),
    );
    config += &provider(
        "hmac",
        &format!(
            "{{type: generic-hmac, address: '{}', secretRef: {{name: hmac}}}}",
            receiver.url("/hmac")
        ),
    );
    config += &provider(
        "slack",
        &format!(
            "{{type: slack, channel: '#deploys', address: '{}'}}",
            receiver.url("/slack")
        ),
    );
    config += &provider(
        "github",
        &format!(
            "{{type: github, address: '{}', secretRef: {{name: github}}}}",
            receiver.url("/org/fleet.git")
        ),
    );
    config += &provider(
        "bus",
        &format!(
            "{{type: nats, address: '{}', channel: flux.alerts}}",
            nats.url()
        ),
    );
    config += &alert("all", "{providerRef: {name: generic}, eventSources: [{kind: ImageUpdateAutomation, name: '*'}, {kind: ImagePolicy, name: '*'}]}");
    config += &alert("errors", "{providerRef: {name: hmac}, eventSeverity: error, eventSources: [{kind: ImageRepository, name: '*'}, {kind: ImagePolicy, name: '*'}]}");
    config += &alert("chat", "{providerRef: {name: slack}, eventSources: [{kind: ImagePolicy, name: app}], eventMetadata: {env: prod}}");
    config += &alert(
        "status",
        "{providerRef: {name: github}, eventSources: [{kind: ImageUpdateAutomation, name: '*'}]}",
    );
    config += &alert(
        "forward",
        "{providerRef: {name: bus}, eventSources: [{kind: ImageUpdateAutomation, name: fleet}]}",
    );
    apply(&store, config.trim_end_matches("---\n")).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut forwarded = client.subscribe("flux.alerts").await.unwrap();
    client.flush().await.unwrap();

    let _notifier = Notifier::start(&nats, secrets.path(), &[]);
    let commit = publish(&bus, pushed()).await;
    let policy = publish(&bus, resolved()).await;
    let failure = publish(&bus, scan_failed()).await;

    // generic: the event JSON exactly as Flux's Forwarder posts it.
    let generic = receiver.wait_for("/generic", 2, Duration::from_secs(30));
    let on_commit = generic
        .iter()
        .find(|r| r.header("x-tagrelay-event-id") == Some(commit.id.as_str()))
        .expect("the commit's notification");
    let expected = format!(
        r#"{{"involvedObject":{{"kind":"ImageUpdateAutomation","namespace":"apps","name":"fleet","apiVersion":"image.toolkit.fluxcd.io/v1"}},"severity":"info","timestamp":"{}","message":"pushed commit '0123456' to branch 'main'\n- apps/app.yaml: ghcr.io/org/app:1.0.0 -\u003e ghcr.io/org/app:1.0.1","reason":"Succeeded","metadata":{{"revision":"main@sha1:{COMMIT}"}},"reportingController":"tagrelay-committer","reportingInstance":"committer/host-1"}}"#,
        seconds(&commit)
    );
    assert_eq!(String::from_utf8(on_commit.body.clone()).unwrap(), expected);
    assert_eq!(on_commit.method, "POST");
    assert_eq!(
        on_commit.header("gotk-component"),
        Some("tagrelay-committer")
    );
    assert_eq!(on_commit.header("content-type"), Some("application/json"));
    assert!(generic
        .iter()
        .any(|r| r.header("x-tagrelay-event-id") == Some(policy.id.as_str())));

    // generic-hmac: errors only, signed over the exact body with the Secret's key.
    let signed = receiver.wait_for("/hmac", 1, Duration::from_secs(30));
    assert_eq!(
        signed.len(),
        1,
        "only the error reaches the errors-only alert"
    );
    let signed = &signed[0];
    assert_eq!(
        signed.header("x-tagrelay-event-id"),
        Some(failure.id.as_str())
    );
    assert_eq!(signed.header("x-team"), Some("web"));
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hmac-key").unwrap();
    mac.update(&signed.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(signed.header("x-signature"), Some(want.as_str()));
    let body = signed.json();
    assert_eq!(body["severity"], "error");
    assert_eq!(body["reason"], "RegistryUnavailable");
    assert_eq!(body["involvedObject"]["kind"], "ImageRepository");

    // slack: Flux's attachment, with the Alert's metadata as fields.
    let slack = receiver.wait_for("/slack", 1, Duration::from_secs(30));
    let expected_slack = r##"{"channel":"#deploys","username":"tagrelay-committer","icon_url":"","icon_emoji":"","attachments":[{"fallback":"imagepolicy/app.apps: Latest image tag for 'ghcr.io/org/app' updated from 1.0.0 to 1.0.1","color":"good","author_name":"imagepolicy/app.apps","text":"Latest image tag for 'ghcr.io/org/app' updated from 1.0.0 to 1.0.1","mrkdwn_in":["text"],"fields":[{"title":"env","value":"prod","short":false}]}]}"##;
    assert_eq!(
        String::from_utf8(slack[0].body.clone()).unwrap(),
        expected_slack
    );

    // github: a commit status on the pushed commit, Enterprise API path on a
    // host other than github.com.
    let status = receiver.wait_for("/api/v3/", 1, Duration::from_secs(30));
    assert_eq!(
        status[0].path,
        format!("/api/v3/repos/org/fleet/statuses/{COMMIT}")
    );
    assert_eq!(status[0].header("authorization"), Some("Bearer gh-token"));
    let body = status[0].json();
    assert_eq!(body["state"], "success");
    assert_eq!(body["context"], "imageupdateautomation/fleet/github");
    assert_eq!(body["description"], "succeeded");

    // nats: the event JSON on the subject, with the event id as Nats-Msg-Id.
    let message = tokio::time::timeout(Duration::from_secs(30), forwarded.next())
        .await
        .unwrap()
        .unwrap();
    let msg_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .unwrap();
    assert_eq!(msg_id.as_str(), commit.id);
    let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event["involvedObject"]["name"], "fleet");

    // Once per Provider: nothing more arrives, and each delivery is recorded.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received_at("/generic").len(), 2);
    assert_eq!(receiver.received_at("/slack").len(), 1);
    let kv = bus.bucket(names::NOTIFICATIONS_BUCKET).await.unwrap();
    let key = format!("sent.apps.slack.{}", policy.id);
    assert!(kv.get(&key).await.unwrap().is_some(), "{key} recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifier_killed_mid_delivery_delivers_again_after_restart_and_then_never() {
    let nats = NatsServer::start();
    let receiver = Receiver::start();
    let secrets = tempfile::tempdir().unwrap();
    let (bus, store) = connect(&nats).await;
    apply(&store, &hook(&receiver)).await;
    // The first request is answered only after the notifier is gone.
    receiver.script(&[Answer {
        status: 200,
        delay: Duration::from_secs(120),
    }]);
    let mut first = Notifier::start(&nats, secrets.path(), &[]);
    let commit = publish(&bus, pushed()).await;
    receiver.wait_for("/hook", 1, Duration::from_secs(30));
    first.signal("-KILL");
    first.wait();
    let _second = Notifier::start(&nats, secrets.path(), &[]);
    // Redelivered once the dead instance's ack wait (30 s) runs out.
    let got = receiver.wait_for("/hook", 2, Duration::from_secs(90));
    assert!(got
        .iter()
        .all(|r| r.header("x-tagrelay-event-id") == Some(commit.id.as_str())));
    let kv = bus.bucket(names::NOTIFICATIONS_BUCKET).await.unwrap();
    let key = format!("sent.apps.generic.{}", commit.id);
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.get(&key).await.unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the delivery after restart is recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.received_at("/hook").len(),
        2,
        "delivered again once, then never"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_delivery_in_hand_so_a_restart_sends_nothing_twice() {
    let nats = NatsServer::start();
    let receiver = Receiver::start();
    let secrets = tempfile::tempdir().unwrap();
    let (bus, store) = connect(&nats).await;
    apply(&store, &hook(&receiver)).await;
    receiver.script(&[Answer {
        status: 200,
        delay: Duration::from_secs(2),
    }]);
    let mut first = Notifier::start(&nats, secrets.path(), &[]);
    let commit = publish(&bus, pushed()).await;
    receiver.wait_for("/hook", 1, Duration::from_secs(30));
    first.signal("-TERM");
    assert!(first.wait().success());
    let _second = Notifier::start(&nats, secrets.path(), &[]);
    let later = publish(&bus, resolved_automation_commit()).await;
    let got = receiver.wait_for("/hook", 2, Duration::from_secs(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<Option<&str>> = got
        .iter()
        .map(|r| r.header("x-tagrelay-event-id"))
        .collect();
    assert_eq!(ids, [Some(commit.id.as_str()), Some(later.id.as_str())]);
    assert_eq!(receiver.received_at("/hook").len(), 2);
}

/// A second, different commit of the same automation.
fn resolved_automation_commit() -> Event {
    let Event::CommitPushed(mut e) = pushed() else {
        unreachable!()
    };
    e.commit = "f".repeat(40);
    Event::CommitPushed(e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_with_back_off_and_each_failure_recorded() {
    let nats = NatsServer::start();
    let receiver = Receiver::start();
    let secrets = tempfile::tempdir().unwrap();
    let (bus, store) = connect(&nats).await;
    apply(&store, &hook(&receiver)).await;
    let fail = Answer {
        status: 503,
        delay: Duration::ZERO,
    };
    receiver.script(&[fail, fail, fail]);
    let _notifier = Notifier::start(&nats, secrets.path(), &[]);
    let commit = publish(&bus, pushed()).await;
    let got = receiver.wait_for("/hook", 4, Duration::from_secs(30));
    assert_eq!(got.len(), 4, "three refusals, then the delivery");
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let failed: Vec<Envelope> = events(&bus, "tagrelay.failed.notify.>").await;
        if !failed.is_empty() {
            break failed;
        }
        assert!(Instant::now() < deadline, "no NotificationFailed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        failed.len(),
        1,
        "one failed attempt (three tries) before the success"
    );
    let Event::NotificationFailed(f) = &failed[0].payload else {
        panic!("{:?}", failed[0].payload)
    };
    assert_eq!(f.object, ObjectRef::new("apps", "generic"));
    assert_eq!(f.reason, FailureReason::ReceiverUnavailable);
    assert!(f.will_retry);
    assert!(f.error.contains("503"), "{}", f.error);
    assert!(
        !f.error.contains("127.0.0.1"),
        "no URL in errors: {}",
        f.error
    );
    assert_eq!(failed[0].causation_id.as_deref(), Some(commit.id.as_str()));
    let status = store
        .status(&ObjectKey::new(Kind::Provider, "apps", "generic"))
        .await
        .unwrap()
        .unwrap();
    assert!(status.ready, "ready again after the delivery: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_receives_stalls_as_flux_alerts_and_forwards_them() {
    let nats = NatsServer::start();
    let receiver = Receiver::start();
    let alertmanager = Alertmanager::start(&receiver.url("/am"));
    let secrets = tempfile::tempdir().unwrap();
    let (bus, store) = connect(&nats).await;
    let config = provider("am", &format!("{{type: alertmanager, address: '{}'}}", alertmanager.alerts_url()))
        + &alert("stuck", "{providerRef: {name: am}, eventSeverity: error, summary: 'image automation', eventSources: [{kind: ImagePolicy, name: '*'}]}");
    apply(&store, config.trim_end_matches("---\n")).await;
    let _notifier = Notifier::start(&nats, secrets.path(), &[]);
    publish(
        &bus,
        Event::PolicyStale(Stalled {
            object: ObjectRef::new("apps", "app"),
            reason: StallReason::ScansFailing,
            message: "the last 3 scans of apps/app failed".into(),
            since: Utc::now(),
        }),
    )
    .await;
    let forwarded = receiver.wait_for("/am", 1, Duration::from_secs(60));
    let body = forwarded[0].json();
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "FluxImagePolicyScansfailing");
    assert_eq!(alert["labels"]["namespace"], "apps");
    assert_eq!(alert["labels"]["name"], "app");
    assert_eq!(alert["labels"]["severity"], "error");
    assert_eq!(alert["annotations"]["summary"], "image automation");
    assert_eq!(
        alert["annotations"]["message"],
        "the last 3 scans of apps/app failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_policy_is_announced_once_per_episode_and_routed() {
    let nats = NatsServer::start();
    let receiver = Receiver::start();
    let secrets = tempfile::tempdir().unwrap();
    let (bus, store) = connect(&nats).await;
    let config = "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {name: app, namespace: apps}\nspec: {image: ghcr.io/org/app, interval: 1m}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {name: app, namespace: apps}\nspec: {imageRepositoryRef: {name: app}, policy: {semver: {range: 1.x}}}\n---\n".to_string()
        + &provider("generic", &format!("{{type: generic, address: '{}'}}", receiver.url("/hook")))
        + &alert("stuck", "{providerRef: {name: generic}, eventSeverity: error, eventSources: [{kind: ImagePolicy, name: '*'}]}");
    apply(&store, config.trim_end_matches("---\n")).await;
    let repository = ObjectKey::new(Kind::ImageRepository, "apps", "app");
    let failing = |since: chrono::DateTime<Utc>| ObjectStatus {
        ready: false,
        message: "registry unreachable".into(),
        failures: 2,
        failing_since: Some(since),
        last_error: Some("registry unreachable".into()),
        ..Default::default()
    };
    let first_since = Utc::now() - chrono::Duration::seconds(30);
    store
        .put_status(&repository, &failing(first_since))
        .await
        .unwrap();
    let _notifier = Notifier::start(
        &nats,
        secrets.path(),
        &[
            ("TAGRELAY_STALE_CHECK_EVERY", "300ms"),
            ("TAGRELAY_STALE_FAILURES", "2"),
        ],
    );
    let got = receiver.wait_for("/hook", 1, Duration::from_secs(30));
    let body = got[0].json();
    assert_eq!(body["reason"], "ScansFailing");
    assert_eq!(body["involvedObject"]["kind"], "ImagePolicy");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("registry unreachable"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stale = events(&bus, "tagrelay.stale.>").await;
    assert_eq!(
        stale.len(),
        1,
        "one announcement per episode, however many sweeps"
    );

    // Healthy, then failing again: a new episode, announced again.
    let healthy = ObjectStatus {
        ready: true,
        last_success_time: Some(Utc::now()),
        ..Default::default()
    };
    store.put_status(&repository, &healthy).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(events(&bus, "tagrelay.stale.>").await.len(), 1);
    store
        .put_status(&repository, &failing(Utc::now()))
        .await
        .unwrap();
    receiver.wait_for("/hook", 2, Duration::from_secs(30));
    let stale = events(&bus, "tagrelay.stale.>").await;
    assert_eq!(stale.len(), 2);
    let Event::PolicyStale(second) = &stale[1].payload else {
        panic!("{:?}", stale[1].payload)
    };
    assert!(second.since > first_since);
}
