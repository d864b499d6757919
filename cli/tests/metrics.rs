//! Prometheus scrapes every service: Debian's `prometheus` reads `/metrics`
//! of the scanner, the resolver and the committer (three processes), and a
//! registry push must move the counters it is queried for. The shipped
//! alert rules pass `promtool check rules`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::{free_port, NatsServer};

const SECRET: &str = "webhook-secret-for-tests";

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        tagrelay_testkit::stop_gracefully(&mut self.0);
    }
}

fn sibling(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_tagrelay")).with_file_name(name);
    assert!(
        path.is_file(),
        "{name} is not built (cargo test --workspace builds it)"
    );
    path
}

/// One PromQL query's value summed over its series; `None` when it has none.
async fn query(prometheus: &str, expr: &str) -> Option<f64> {
    let expr: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let url = format!("{prometheus}/api/v1/query?query={expr}");
    let body = reqwest::get(url).await.ok()?.bytes().await.ok()?;
    let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let results = answer["data"]["result"].as_array()?;
    if results.is_empty() {
        return None;
    }
    Some(
        results
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_service_and_a_push_moves_the_counters() {
    let nats = NatsServer::start();
    let scanner_port = free_port();
    let registry = Registry::notifying_scanner(scanner_port, SECRET);
    let host = registry.host();
    registry.push_tags("demo/podinfo", &["1.0.0"]).await;
    let manifest = |tag: &str| {
        format!("kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfo\n          image: {host}/demo/podinfo:{tag} # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n")
    };
    let repo = BareRepo::seeded(
        "main",
        &[Seed::file("apps/podinfo.yaml", &manifest("1.0.0"))],
    );
    let config = format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: fleet}}\nspec: {{url: {}, interval: 1m, ref: {{branch: main}}}}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {{name: podinfo}}\nspec: {{image: {host}/demo/podinfo, interval: 1h, insecure: true}}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {{name: podinfo}}\nspec: {{imageRepositoryRef: {{name: podinfo}}, policy: {{semver: {{range: '>=1.0.0'}}}}}}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata: {{name: fleet}}\nspec:\n  interval: 1h\n  sourceRef: {{kind: GitRepository, name: fleet}}\n  git: {{commit: {{author: {{name: tagrelay, email: bot@example.com}}}}, push: {{branch: main}}}}\n  update: {{path: ./apps}}\n",
        repo.url()
    );
    let bus = Bus::connect(&nats.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    for doc in load_documents(&config).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }

    let dirs = tempfile::tempdir().unwrap();
    let secret_file = dirs.path().join("webhook-secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let ports = [
        ("scanner", scanner_port),
        ("resolver", free_port()),
        ("committer", free_port()),
    ];
    let _services: Vec<Stop> = ports
        .iter()
        .map(|(name, port)| {
            Stop(
                Command::new(sibling(&format!("tagrelay-{name}")))
                    .env("NATS_URL", nats.url())
                    .env("TAGRELAY_LISTEN", format!("127.0.0.1:{port}"))
                    .env("TAGRELAY_HTTP_ADDR", format!("127.0.0.1:{port}"))
                    .env("TAGRELAY_WEBHOOK_SECRET_FILE", &secret_file)
                    .env("TAGRELAY_CACHE_DIR", dirs.path().join("cache"))
                    .env("TAGRELAY_SECRETS_DIR", dirs.path().join("secrets"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    let prometheus_port = free_port();
    let scrape = ports
        .iter()
        .map(|(name, port)| {
            format!("  - job_name: {name}\n    scrape_interval: 1s\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
        })
        .collect::<String>();
    let prometheus_config = dirs.path().join("prometheus.yml");
    std::fs::write(&prometheus_config, format!("scrape_configs:\n{scrape}")).unwrap();
    let _prometheus = Stop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prometheus_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dirs.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (apt-get install prometheus; scripts/install-deps does)"),
    );
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");

    // Every service is up for Prometheus, and the first resolution counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(&prometheus, "sum(up)").await.unwrap_or(0.0);
        let resolved = query(&prometheus, "tagrelay_resolutions_total").await;
        if up == 3.0 && resolved.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets up: {up}, resolutions: {resolved:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let commits_before = query(&prometheus, "tagrelay_commits_total")
        .await
        .unwrap_or(0.0);
    let scans_before = query(&prometheus, "tagrelay_scans_total")
        .await
        .unwrap_or(0.0);

    registry.push_tags("demo/podinfo", &["1.1.0"]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let commits = query(&prometheus, "tagrelay_commits_total")
            .await
            .unwrap_or(0.0);
        let scans = query(&prometheus, "tagrelay_scans_total")
            .await
            .unwrap_or(0.0);
        if commits >= commits_before + 1.0 && scans > scans_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commits {commits_before} -> {commits}, scans {scans_before} -> {scans}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        repo.read_text("main", "apps/podinfo.yaml").unwrap(),
        manifest("1.1.0")
    );
    for expr in [
        "tagrelay_push_to_commit_latency_seconds_count",
        "tagrelay_consumer_lag{consumer=\"committer\"}",
        "tagrelay_scan_duration_seconds_count",
    ] {
        assert!(
            query(&prometheus, expr).await.is_some(),
            "{expr} is not scraped"
        );
    }
}

#[test]
fn the_alert_rules_pass_promtool() {
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/rules.yaml"
    );
    let out = Command::new("promtool")
        .args(["check", "rules", rules])
        .output()
        .expect("promtool (apt-get install prometheus; scripts/install-deps does)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 8 rules found"));
}
