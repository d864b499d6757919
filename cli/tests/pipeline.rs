//! The whole pipeline end to end, with real parts: a registry push becomes
//! exactly one commit with the right bytes; `why` walks from that commit to
//! the webhook-triggered scan; `replay` reproduces every decision; an
//! OTLP/HTTP receiver sees one trace id across the three services' spans.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::{free_port, NatsServer};

const SECRET: &str = "webhook-secret-for-tests";

fn manifest(host: &str, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo # the app\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfo\n          image: {host}/demo/podinfo:{tag} # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n"
    )
}

fn config(host: &str, git_url: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: fleet\nspec:\n  url: {git_url}\n  interval: 1m\n  ref:\n    branch: main\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: podinfo\nspec:\n  image: {host}/demo/podinfo\n  interval: 1h\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: podinfo\nspec:\n  imageRepositoryRef:\n    name: podinfo\n  policy:\n    semver:\n      range: '>=1.0.0 <2.0.0'\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata:\n  name: fleet\nspec:\n  interval: 1h\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n  git:\n    commit:\n      author:\n        name: tagrelay\n        email: tagrelay@example.com\n      messageTemplate: 'Update images'\n    push:\n      branch: main\n  update:\n    path: ./apps\n    strategy: Setters\n"
    )
}

/// Collects the trace ids and span names exported to it by OTLP/HTTP JSON.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    async fn start(&self) -> u16 {
        let spans = self.spans.clone();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let spans = spans.clone();
                    async move {
                        let json: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let mut found = Vec::new();
                        for resource in json["resourceSpans"].as_array().into_iter().flatten() {
                            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                                for span in scope["spans"].as_array().into_iter().flatten() {
                                    found.push((
                                        span["traceId"].as_str().unwrap_or_default().to_string(),
                                        span["name"].as_str().unwrap_or_default().to_string(),
                                    ));
                                }
                            }
                        }
                        spans.lock().unwrap().extend(found);
                        "{}"
                    }
                }),
            )
            .route("/v1/metrics", axum::routing::post(|| async { "{}" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    fn by_trace(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut traces: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (trace, name) in self.spans.lock().unwrap().iter() {
            traces
                .entry(trace.clone())
                .or_default()
                .insert(name.clone());
        }
        traces
    }
}

fn tagrelay(nats: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(args)
        .env("NATS_URL", nats)
        .output()
        .unwrap()
}

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        tagrelay_testkit::stop_gracefully(&mut self.0);
    }
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_tag_becomes_one_commit_explained_replayed_and_traced() {
    let nats = NatsServer::start();
    let receiver = Receiver::default();
    let otlp_port = receiver.start().await;
    let scanner_port = free_port();
    let registry = Registry::notifying_scanner(scanner_port, SECRET);
    let host = registry.host();
    registry.push_tags("demo/podinfo", &["1.0.0"]).await;
    let repo = BareRepo::seeded(
        "main",
        &[Seed::file("apps/podinfo.yaml", &manifest(&host, "1.0.0"))],
    );
    let initial_tip = repo.tip("main").unwrap();

    let dirs = tempfile::tempdir().unwrap();
    let secret_file = dirs.path().join("webhook-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let bus = Bus::connect(&nats.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    for doc in load_documents(&config(&host, &repo.url())).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }

    let services = Stop(
        Command::new(env!("CARGO_BIN_EXE_tagrelay"))
            .args(["run", "--all"])
            .env("NATS_URL", nats.url())
            .env("TAGRELAY_LISTEN", format!("127.0.0.1:{scanner_port}"))
            .env("TAGRELAY_WEBHOOK_SECRET_FILE", &secret_file)
            .env("TAGRELAY_CACHE_DIR", dirs.path().join("cache"))
            .env("TAGRELAY_SECRETS_DIR", dirs.path().join("secrets"))
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{otlp_port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_BSP_SCHEDULE_DELAY", "200")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The policy settles on 1.0.0, which the file already holds: no commit.
    wait_until("the first resolution", Duration::from_secs(30), || {
        String::from_utf8_lossy(&tagrelay(&nats.url(), &["audit", "--kind", "policy"]).stdout)
            .contains("-> 1.0.0")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        repo.tip("main").unwrap(),
        initial_tip,
        "nothing to commit yet"
    );

    // A push: the registry's webhook triggers the scan; one commit lands.
    registry
        .push_tags("demo/podinfo", &["1.1.0", "2.0.0"])
        .await;
    wait_until("the commit", Duration::from_secs(30), || {
        repo.tip("main").unwrap() != initial_tip
    });
    std::thread::sleep(Duration::from_secs(3));
    let log = repo.log("main");
    assert_eq!(
        log.len(),
        2,
        "exactly one commit on top of the seed: {log:?}"
    );
    let commit = repo.tip("main").unwrap();
    assert_eq!(
        repo.read_text("main", "apps/podinfo.yaml").unwrap(),
        manifest(&host, "1.1.0"),
        "only the tag's bytes changed"
    );

    let why = tagrelay(&nats.url(), &["why", &commit]);
    let text = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&why.stderr)
    );
    assert!(
        text.contains("CommitPushed")
            && text.contains("PolicyResolved")
            && text.contains("TagsDiscovered"),
        "{text}"
    );
    assert!(text.contains("1.0.0 -> 1.1.0"), "{text}");
    assert!(
        text.contains("a registry webhook"),
        "the scan was triggered by the push: {text}"
    );

    let replay = tagrelay(&nats.url(), &["replay"]);
    let text = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{text}");
    assert!(text.contains("0 determinism failures"), "{text}");
    assert!(!text.contains(" 0 reproduced"), "{text}");

    drop(services);
    let traces = receiver.by_trace();
    let wanted = [
        "scan",
        "registry list tags",
        "resolve",
        "evaluate policy",
        "commit",
        "git fetch",
        "git commit",
        "git push",
    ];
    let joined = traces
        .values()
        .any(|names| wanted.iter().all(|w| names.contains(*w)));
    assert!(joined, "no trace holds all of {wanted:?}: {traces:#?}");
}
