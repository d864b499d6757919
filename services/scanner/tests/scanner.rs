//! The scanner against a real registry (Debian's `docker-registry`) and a
//! real nats-server, with the fault-injecting proxy in front of the
//! registry for what the registry cannot do by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tagrelay_proto::bus::{Bus, BusSettings, ConfigStore};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey};
use tagrelay_proto::event::{
    Event, Failure, FailureReason, ObjectRef, ScanTrigger, TagsDiscovered,
};
use tagrelay_proto::names;
use tagrelay_proto::scan::{interval_slot, slot_offset, ScanRequest};
use tagrelay_proto::status::ObjectStatus;
use tagrelay_scanner::registry::RegistrySettings;
use tagrelay_scanner::service::Outcome;
use tagrelay_scanner::webhook::WebhookSecret;
use tagrelay_scanner::{Scanner, ScannerSettings};
use tagrelay_testkit::fault_proxy::{Fault, FaultProxy, Paging};
use tagrelay_testkit::registry::{Notifications, Registry, RegistryOptions};
use tagrelay_testkit::{events, NatsServer};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// The namespace every test object lives in.
pub const NS: &str = "apps";

/// An ImageRepository YAML for `image`, scanned every `interval`.
pub fn repository(name: &str, image: &str, interval: &str, extra: &str) -> String {
    format!(
        "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  image: {image}\n  interval: {interval}\n  insecure: true\n{extra}"
    )
}

/// Stores every document of `yaml`.
pub async fn apply(store: &ConfigStore, yaml: &str) {
    for doc in load_documents(yaml).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
}

/// A nats-server and a bus connected to it.
pub async fn bus() -> (NatsServer, Bus, ConfigStore) {
    tagrelay_proto::runtime::install_crypto_provider();
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    (server, bus, store)
}

/// Settings for tests: fast ticks and quick retries.
pub fn settings(secrets: &Path) -> ScannerSettings {
    ScannerSettings {
        secrets_dir: secrets.to_path_buf(),
        tick: Duration::from_millis(100),
        registry: RegistrySettings {
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            request_timeout: Duration::from_secs(5),
            ..RegistrySettings::default()
        },
        ..ScannerSettings::default()
    }
}

/// Scanner instances running as tasks.
pub struct Running {
    /// The scanners, for their counters and the webhook router.
    pub scanners: Vec<Arc<Scanner>>,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops every instance and waits for it.
    pub async fn stop(self) {
        for stop in self.stop {
            let _ = stop.send(());
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts `count` scanner instances with `settings`.
pub async fn start(server: &NatsServer, count: usize, settings: ScannerSettings) -> Running {
    let mut running = Running {
        scanners: Vec::new(),
        stop: Vec::new(),
        tasks: Vec::new(),
    };
    for i in 0..count {
        let bus = Bus::connect(
            &server.url(),
            format!("scanner/{i}"),
            BusSettings::default(),
        )
        .await
        .unwrap();
        let scanner = Arc::new(Scanner::new(&bus, settings.clone()).await.unwrap());
        let (tx, rx) = oneshot::channel();
        running.scanners.push(scanner.clone());
        running.stop.push(tx);
        running.tasks.push(tokio::spawn(async move {
            tagrelay_scanner::run_scanner(scanner, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }));
    }
    running
}

/// The `TagsDiscovered` payloads so far.
pub async fn discovered(bus: &Bus) -> Vec<TagsDiscovered> {
    events(bus, names::TAGS_FILTER)
        .await
        .into_iter()
        .filter_map(|e| match e.payload {
            Event::TagsDiscovered(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// The `ScanFailed` payloads so far.
pub async fn failures(bus: &Bus) -> Vec<Failure> {
    events(bus, names::FAILED_FILTER)
        .await
        .into_iter()
        .filter_map(|e| match e.payload {
            Event::ScanFailed(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// Polls `check` until it holds (15 s at most, then fails with `what`).
pub async fn wait_until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the `n`-th `TagsDiscovered` and returns them all.
pub async fn wait_for_discovered(bus: &Bus, n: usize) -> Vec<TagsDiscovered> {
    wait_until(&format!("{n} TagsDiscovered"), || async {
        let got = discovered(bus).await;
        (got.len() >= n).then_some(got)
    })
    .await
}

/// The status of repository `name`.
pub async fn status(store: &ConfigStore, name: &str) -> Option<ObjectStatus> {
    store
        .status(&ObjectKey::new(Kind::ImageRepository, NS, name))
        .await
        .unwrap()
}

/// Asks for a scan of `name` now, as `tagrelay reconcile` does, and waits
/// until the repository's status shows a scan that started after the ask.
pub async fn reconcile(bus: &Bus, store: &ConfigStore, name: &str) -> ObjectStatus {
    let asked = chrono::Utc::now();
    let request = ScanRequest::new(
        ObjectRef::new(NS, name),
        ScanTrigger::Reconcile,
        ulid::Ulid::new().to_string(),
    );
    bus.request_scan(&request).await.unwrap();
    wait_until("a scan after the reconcile request", || async {
        status(store, name)
            .await
            .filter(|s| s.last_scan_time.is_some_and(|t| t >= asked))
    })
    .await
}

/// Tags as owned strings.
pub fn strings(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

/// A registry with `tags` pushed to `demo/app`, a bus, and secrets dir.
async fn registry_with(tags: &[&str]) -> (Registry, NatsServer, Bus, ConfigStore, TempDir) {
    let registry = Registry::start();
    registry.push_tags("demo/app", tags).await;
    let (server, bus, store) = bus().await;
    (registry, server, bus, store, tempfile::tempdir().unwrap())
}

#[tokio::test]
async fn a_scan_publishes_the_sorted_filtered_set_once_and_nothing_when_unchanged() {
    let (registry, server, bus, store, secrets) =
        registry_with(&["2.0.0", "1.0.0", "sha256-abc.sig", "1.10.0"]).await;
    let image = format!("{}/demo/app", registry.host());
    apply(&store, &repository("app", &image, "1h", "")).await;
    let scanners = start(&server, 1, settings(secrets.path())).await;

    let got = wait_for_discovered(&bus, 1).await;
    let first = &got[0];
    assert_eq!(first.repository, ObjectRef::new(NS, "app"));
    assert_eq!(first.image, image);
    assert_eq!(
        first.tags.as_deref(),
        Some(&strings(&["1.0.0", "1.10.0", "2.0.0"])[..]),
        "sorted, the cosign signature excluded by Flux's default exclusionList"
    );
    assert_eq!(first.tag_count, 3);
    assert_eq!(first.previous_tag_set_digest, None);
    assert_eq!(
        first.trigger,
        ScanTrigger::Config,
        "first scan of a new spec"
    );
    assert!(first.images.is_empty(), "no policy needs metadata");
    let status = status(&store, "app").await.unwrap();
    assert!(status.ready, "{status:?}");
    assert_eq!(status.tag_count, Some(3));
    assert_eq!(status.latest_tags, strings(&["2.0.0", "1.10.0", "1.0.0"]));

    let again = reconcile(&bus, &store, "app").await;
    assert!(again.ready);
    assert_eq!(discovered(&bus).await.len(), 1, "nothing changed: no event");

    let key = ObjectKey::new(Kind::ImageRepository, NS, "app");
    let records = bus.bucket(names::TAG_SETS_BUCKET).await.unwrap();
    assert!(records.get(key.bucket_key()).await.unwrap().is_some());
    store.delete(&key).await.unwrap();
    wait_until("the scan record to be forgotten", || async {
        records
            .get(key.bucket_key())
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    scanners.stop().await;
}

#[tokio::test]
async fn a_new_tag_is_one_event_and_a_deleted_tag_disappears() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0", "1.1.0"]).await;
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", registry.host()), "1h", ""),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    wait_for_discovered(&bus, 1).await;

    registry.push_tags("demo/app", &["1.2.0"]).await;
    reconcile(&bus, &store, "app").await;
    let got = wait_for_discovered(&bus, 2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[1].tags.as_deref(),
        Some(&strings(&["1.0.0", "1.1.0", "1.2.0"])[..])
    );
    assert_eq!(
        got[1].previous_tag_set_digest.as_deref(),
        Some(got[0].tag_set_digest.as_str())
    );
    assert_eq!(got[1].trigger, ScanTrigger::Reconcile);

    registry.delete_tag("demo/app", "1.1.0").await;
    reconcile(&bus, &store, "app").await;
    let got = wait_for_discovered(&bus, 3).await;
    assert_eq!(
        got[2].tags.as_deref(),
        Some(&strings(&["1.0.0", "1.2.0"])[..])
    );
    assert_eq!(status(&store, "app").await.unwrap().tag_count, Some(2));
    scanners.stop().await;
}

#[tokio::test]
async fn htpasswd_basic_auth_with_a_mounted_docker_config_and_never_leaking_it() {
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("ci".into(), "pw-7f3a9".into())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0", "1.1.0"]).await;
    let (server, bus, store) = bus().await;
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().join(NS).join("regcred");
    std::fs::create_dir_all(&dir).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:pw-7f3a9");
    std::fs::write(
        dir.join(".dockerconfigjson"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    let image = format!("{}/demo/app", registry.host());
    apply(
        &store,
        &repository("app", &image, "1h", "  secretRef:\n    name: regcred\n"),
    )
    .await;
    apply(&store, &repository("anonymous", &image, "1h", "")).await;
    let scanners = start(&server, 1, settings(secrets.path())).await;

    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].repository.name, "app");
    assert_eq!(
        got[0].tags.as_deref(),
        Some(&strings(&["1.0.0", "1.1.0"])[..])
    );

    let failure = wait_until("the anonymous scan to fail", || async {
        failures(&bus).await.into_iter().next()
    })
    .await;
    assert_eq!(failure.object, ObjectRef::new(NS, "anonymous"));
    assert_eq!(failure.reason, FailureReason::AuthenticationFailed);
    assert!(
        failure.error.contains("requires credentials"),
        "{}",
        failure.error
    );
    assert!(
        !failure.will_retry,
        "credentials will not appear by themselves"
    );
    let refused = status(&store, "anonymous").await.unwrap();
    assert!(!refused.ready);
    assert_eq!(refused.last_error.as_deref(), Some(failure.error.as_str()));
    assert!(discovered(&bus)
        .await
        .iter()
        .all(|d| d.repository.name == "app"));

    let mut published = String::new();
    for event in events(&bus, ">").await {
        published.push_str(&String::from_utf8(event.to_json().unwrap()).unwrap());
    }
    for name in ["app", "anonymous"] {
        published.push_str(&serde_json::to_string(&status(&store, name).await).unwrap());
    }
    assert!(!published.contains("pw-7f3a9") && !published.contains(&auth));
    scanners.stop().await;
}

#[tokio::test]
async fn a_registry_push_notification_triggers_a_scan() {
    let (server, bus, store) = bus().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!(
        "http://{}/hooks/distribution",
        listener.local_addr().unwrap()
    );
    let registry = Registry::start_with(RegistryOptions {
        notifications: Some(Notifications {
            url: hook.clone(),
            headers: vec![("Authorization".into(), "Bearer hook-secret".into())],
        }),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0"]).await;
    let secrets = tempfile::tempdir().unwrap();
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", registry.host()), "1h", ""),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let app = tagrelay_scanner::webhook::router(
        scanners.scanners[0].clone(),
        WebhookSecret::new("hook-secret"),
    );
    let http = tokio::spawn(async move { axum::serve(listener, app).await });
    wait_for_discovered(&bus, 1).await;

    let client = reqwest::Client::new();
    let queue_before = queued_requests(&bus).await;
    let body = r#"{"events":[{"id":"x1","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"demo/app","tag":"9.9.9"}}]}"#;
    let unauthenticated = client.post(&hook).body(body).send().await.unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let wrong = client
        .post(&hook)
        .bearer_auth("guess")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let garbage = client
        .post(&hook)
        .bearer_auth("hook-secret")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status().as_u16(), 400);
    assert_eq!(
        queued_requests(&bus).await,
        queue_before,
        "refused: nothing queued"
    );

    let pushed = Instant::now();
    registry.push_tags("demo/app", &["1.1.0"]).await;
    let got = wait_for_discovered(&bus, 2).await;
    println!(
        "push notification to TagsDiscovered: {:?}",
        pushed.elapsed()
    );
    assert_eq!(got[1].trigger, ScanTrigger::Webhook);
    assert_eq!(
        got[1].tags.as_deref(),
        Some(&strings(&["1.0.0", "1.1.0"])[..])
    );

    let health = client
        .get(hook.replace("/hooks/distribution", "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = client
        .get(hook.replace("/hooks/distribution", "/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    http.abort();
    scanners.stop().await;
}

/// How many scan requests the work queue has received so far.
async fn queued_requests(bus: &Bus) -> u64 {
    let mut stream = bus
        .jetstream()
        .get_stream(names::SCAN_REQUESTS_STREAM)
        .await
        .unwrap();
    stream.info().await.unwrap().state.last_sequence
}

#[tokio::test]
async fn two_instances_scan_each_repository_once_per_interval() {
    let registry = Registry::start();
    let names = ["r0", "r1", "r2"];
    for name in names {
        registry
            .push_tags(&format!("demo/{name}"), &["1.0.0"])
            .await;
    }
    let proxy = FaultProxy::start(&registry.url()).await;
    let (server, _bus, store) = bus().await;
    let secrets = tempfile::tempdir().unwrap();
    for name in names {
        let image = format!("{}/demo/{name}", proxy.host());
        apply(&store, &repository(name, &image, "2s", "")).await;
    }
    let started = chrono::Utc::now().timestamp() as u64;
    let scanners = start(&server, 2, settings(secrets.path())).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    scanners.stop().await;
    let ended = chrono::Utc::now().timestamp() as u64;
    let requests = proxy.requests();
    for name in names {
        let scans = requests
            .iter()
            .filter(|r| r.contains(&format!("/v2/demo/{name}/tags/list")) && !r.contains("last="))
            .count() as u64;
        let object = ObjectRef::new(NS, name);
        let offset = slot_offset(&object, 2);
        let slots = interval_slot(ended, 2, offset) - interval_slot(started, 2, offset) + 1;
        assert!(
            scans <= slots,
            "{name}: {scans} scans in {slots} interval slots: scanned twice in one interval"
        );
        assert!(
            scans * 2 >= slots,
            "{name}: {scans} scans in {slots} interval slots: not scanned every interval"
        );
    }
}

#[tokio::test]
async fn rate_limiting_is_honoured_and_5xx_and_broken_bodies_are_retried() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    proxy.inject(Fault::TooManyRequests { retry_after: 1 });
    proxy.inject(Fault::Status(500));
    proxy.inject(Fault::Status(503));
    proxy.inject(Fault::Dropped);
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", proxy.host()), "1h", ""),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].tags.as_deref(), Some(&strings(&["1.0.0"])[..]));
    assert!(failures(&bus).await.is_empty(), "retried within the scan");
    let lists: Vec<Instant> = proxy
        .timed_requests()
        .into_iter()
        .filter(|(_, r)| r.contains("/tags/list"))
        .map(|(at, _)| at)
        .collect();
    assert!(
        lists.len() >= 5,
        "429, 500, 503, an answer broken off mid-body, then the answer: {lists:?}"
    );
    assert!(
        lists[1] - lists[0] >= Duration::from_secs(1),
        "Retry-After: 1 was not waited for"
    );
    scanners.stop().await;
}

#[tokio::test]
async fn a_failing_registry_keeps_the_last_good_set_and_the_scan_is_retried() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0", "1.1.0"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", proxy.host()), "1h", ""),
    )
    .await;
    let mut settings = settings(secrets.path());
    settings.registry.attempts = 2;
    let scanners = start(&server, 1, settings).await;
    wait_for_discovered(&bus, 1).await;

    proxy.inject(Fault::Status(500));
    proxy.inject(Fault::Status(502));
    reconcile(&bus, &store, "app").await;
    let failure = wait_until("ScanFailed", || async {
        failures(&bus).await.into_iter().next()
    })
    .await;
    assert!(failure.will_retry);
    assert_eq!(failure.attempt, 1);
    assert_eq!(failure.reason, FailureReason::RegistryUnavailable);
    assert!(failure.error.contains("502"), "{}", failure.error);
    let failed = status(&store, "app").await.unwrap();
    assert!(!failed.ready);
    assert_eq!(failed.tag_count, Some(2), "the last good count is kept");

    proxy.inject(Fault::Garbage);
    let recovered = wait_until("a successful retry", || async {
        status(&store, "app").await.filter(|s| s.ready)
    })
    .await;
    assert_eq!(recovered.tag_count, Some(2));
    assert_eq!(recovered.last_error, None);
    let failures = failures(&bus).await;
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(
        failures[1].error.contains("unreadable"),
        "{}",
        failures[1].error
    );
    assert_eq!(failures[1].reason, FailureReason::InvalidResponse);
    assert_eq!(failures[1].attempt, 2);
    let got = discovered(&bus).await;
    assert_eq!(
        got.len(),
        1,
        "never an empty or changed set from failures: {got:#?}"
    );
    scanners.stop().await;
}

#[tokio::test]
async fn a_listing_older_than_the_published_set_never_replaces_it() {
    // Two instances scan one repository at once (a scheduled scan and a
    // webhook, say); the first one's listing comes back late, after a tag
    // was pushed and the second one published the newer set. The late,
    // older listing must not be published over it: the policy would move
    // back to the older tag and the committer would commit a downgrade.
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", proxy.host()), "1h", ""),
    )
    .await;
    let scanner = |name: &'static str| {
        let (url, settings) = (server.url(), settings(secrets.path()));
        async move {
            let bus = Bus::connect(&url, name, BusSettings::default())
                .await
                .unwrap();
            Arc::new(Scanner::new(&bus, settings).await.unwrap())
        }
    };
    let (late, quick) = (
        scanner("scanner/late").await,
        scanner("scanner/quick").await,
    );
    let request = |id: &str| {
        ScanRequest::new(
            ObjectRef::new(NS, "app"),
            ScanTrigger::Reconcile,
            id.to_string(),
        )
    };
    // Both learn that the registry ignores `last` (one call per listing).
    quick.handle_request(&request("warm-1"), 1).await.unwrap();
    late.handle_request(&request("warm-2"), 1).await.unwrap();
    assert_eq!(discovered(&bus).await.len(), 1);

    registry.push_tags("demo/app", &["1.0.1"]).await;
    proxy.clear_requests();
    proxy.inject(Fault::Late(Duration::from_millis(1500)));
    let stale = tokio::spawn({
        let late = late.clone();
        let request = request("late");
        async move { late.handle_request(&request, 1).await }
    });
    wait_until("the late listing", || async {
        (proxy.tag_list_requests() > 0).then_some(())
    })
    .await;
    registry.push_tags("demo/app", &["1.0.2"]).await;
    let fresh = quick.handle_request(&request("fresh"), 1).await.unwrap();
    assert_eq!(fresh, Outcome::Changed { tags: 3 });
    let stale = stale.await.unwrap().unwrap();
    assert_eq!(
        stale,
        Outcome::Unchanged { tags: 3 },
        "listed again after the newer publication"
    );
    let got = discovered(&bus).await;
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(
        got[1].tags.as_deref(),
        Some(&strings(&["1.0.0", "1.0.1", "1.0.2"])[..])
    );
    assert_eq!(proxy.tag_list_requests(), 3, "late, fresh, listed again");
}

#[tokio::test]
async fn link_pagination_capped_pages_and_slow_answers() {
    let (registry, server, bus, store, secrets) = registry_with(&["t000"]).await;
    let many: Vec<String> = (1..250).map(|i| format!("t{i:03}")).collect();
    registry.add_tags_in_storage("demo/app", "t000", &many);
    let proxy = FaultProxy::start(&registry.url()).await;
    proxy.set_paging(Paging::Link { page_size: 100 });
    proxy.inject(Fault::Slow(Duration::from_millis(1500)));
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", proxy.host()), "1h", ""),
    )
    .await;
    let mut settings = settings(secrets.path());
    settings.registry.request_timeout = Duration::from_millis(700);
    let scanners = start(&server, 1, settings).await;
    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].tag_count, 250);
    let lists: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains("/tags/list"))
        .collect();
    assert_eq!(
        lists.len(),
        4,
        "a timed-out first page retried, then three Link pages, the last without a Link: {lists:#?}"
    );
    assert!(lists[3].contains("last=t199"), "{lists:#?}");

    proxy.set_paging(Paging::CappedWithoutLink { page_size: 100 });
    proxy.clear_requests();
    registry.add_tags_in_storage("demo/app", "t000", &["t250".to_string()]);
    reconcile(&bus, &store, "app").await;
    let got = wait_for_discovered(&bus, 2).await;
    assert_eq!(got[1].tag_count, 251, "short pages are not the end");
    let lists = proxy.tag_list_requests();
    assert_eq!(lists, 4, "three capped pages, then one that adds nothing");
    scanners.stop().await;
}

#[tokio::test]
async fn an_unchanged_scan_costs_one_registry_call() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0", "2.0.0"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", proxy.host()), "1h", ""),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    wait_for_discovered(&bus, 1).await;
    let first = proxy.tag_list_requests();
    assert_eq!(
        first, 2,
        "the first listing checks whether `last` is honoured"
    );
    proxy.clear_requests();
    reconcile(&bus, &store, "app").await;
    assert_eq!(
        proxy.requests().len(),
        1,
        "one tag-list call once the registry is known: {:?}",
        proxy.requests()
    );
    scanners.stop().await;
}

#[tokio::test]
async fn digests_and_creation_times_only_for_policies_that_need_them_and_only_new_tags() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0", "1.1.0"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    let image = format!("{}/demo/app", proxy.host());
    apply(&store, &repository("app", &image, "1h", "")).await;
    apply(
        &store,
        &format!("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: newest\n  namespace: {NS}\n  annotations:\n    tagrelay.io/flux-v1-filter: ''\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    alphabetical: {{}}\n"),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let got = wait_for_discovered(&bus, 1).await;
    let images = &got[0].images;
    assert_eq!(images.len(), 2, "{images:#?}");
    let created = |tag: &str| images[tag].created.unwrap().to_rfc3339();
    assert_eq!(created("1.0.0"), "2026-01-01T00:00:00+00:00");
    assert_eq!(created("1.1.0"), "2026-01-01T00:00:01+00:00");
    assert!(images["1.0.0"]
        .digest
        .as_deref()
        .unwrap()
        .starts_with("sha256:"));

    proxy.clear_requests();
    registry.push_tags("demo/app", &["1.2.0"]).await;
    reconcile(&bus, &store, "app").await;
    let got = wait_for_discovered(&bus, 2).await;
    assert_eq!(got[1].images.len(), 3);
    let manifests: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.contains("/manifests/") || r.contains("/blobs/"))
        .collect();
    assert!(
        manifests
            .iter()
            .all(|r| !r.contains("1.0.0") && !r.contains("1.1.0")),
        "known tags are not looked up again: {manifests:#?}"
    );
    assert_eq!(
        manifests.iter().filter(|r| r.starts_with("HEAD")).count(),
        1,
        "one HEAD for the new tag: {manifests:#?}"
    );

    let plain = format!("{}/demo/plain", proxy.host());
    registry.push_tags("demo/plain", &["1.0.0"]).await;
    apply(&store, &repository("plain", &plain, "1h", "")).await;
    let got = wait_until("the plain repository's scan", || async {
        discovered(&bus)
            .await
            .into_iter()
            .find(|d| d.repository.name == "plain")
    })
    .await;
    assert!(got.images.is_empty());
    assert!(
        !proxy
            .requests()
            .iter()
            .any(|r| r.contains("/demo/plain/manifests/")),
        "no metadata without a policy needing it"
    );
    scanners.stop().await;
}

#[tokio::test]
async fn a_set_too_large_for_a_message_travels_by_reference() {
    let (registry, server, bus, store, secrets) = registry_with(&["v0"]).await;
    let many: Vec<String> = (1..25_000).map(|i| format!("build-{i:06}")).collect();
    registry.add_tags_in_storage("demo/app", "v0", &many);
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", registry.host()), "1h", ""),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let got = wait_for_discovered(&bus, 1).await;
    let event = &got[0];
    assert_eq!(event.tag_count, 25_000);
    assert!(event.tags.is_none());
    let reference = event.tags_ref.as_ref().unwrap();
    assert_eq!(reference.bucket, names::TAG_LISTS_BUCKET);
    assert_eq!(reference.key, event.tag_set_digest);
    let tags = bus.tag_list(event).await.unwrap().unwrap();
    assert_eq!(tags.len(), 25_000);
    assert_eq!(tags[0], "build-000001");
    assert_eq!(tags[24_999], "v0");
    scanners.stop().await;
}

#[tokio::test]
async fn tags_outside_the_oci_grammar_are_dropped_and_reported() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0"]).await;
    registry.add_tags_in_storage(
        "demo/app",
        "1.0.0",
        &["-bad".to_string(), ".hidden".to_string()],
    );
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", registry.host()), "1h", ""),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].tags.as_deref(), Some(&strings(&["1.0.0"])[..]));
    let status = status(&store, "app").await.unwrap();
    assert!(
        status.message.contains("2 tag(s) dropped"),
        "{}",
        status.message
    );
    assert!(status.message.contains("\"-bad\""), "{}", status.message);
    scanners.stop().await;
}

#[tokio::test]
async fn a_registry_requiring_a_client_certificate_is_scanned_with_cert_secret_ref() {
    let mut registry = Registry::start();
    registry.push_tags("demo/app", &["1.0.0", "1.1.0"]).await;
    let files = registry.restart_with_mutual_tls();
    let (server, bus, store) = bus().await;
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().join(NS).join("registry-tls");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&files.ca, dir.join("ca.crt")).unwrap();
    std::fs::copy(&files.client_cert, dir.join("tls.crt")).unwrap();
    std::fs::copy(&files.client_key, dir.join("tls.key")).unwrap();
    let ca_only = secrets.path().join(NS).join("ca-only");
    std::fs::create_dir_all(&ca_only).unwrap();
    std::fs::copy(&files.ca, ca_only.join("ca.crt")).unwrap();
    let image = format!("{}/demo/app", registry.host());
    let https = |name: &str, secret: &str| {
        format!(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  image: {image}\n  interval: 1h\n  certSecretRef:\n    name: {secret}\n"
        )
    };
    apply(&store, &https("app", "registry-tls")).await;
    apply(&store, &https("nocert", "ca-only")).await;
    let mut settings = settings(secrets.path());
    settings.max_attempts = 1;
    let scanners = start(&server, 1, settings).await;

    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].repository.name, "app");
    assert_eq!(
        got[0].tags.as_deref(),
        Some(&strings(&["1.0.0", "1.1.0"])[..])
    );
    let failure = wait_until("the scan without a client certificate to fail", || async {
        failures(&bus).await.into_iter().next()
    })
    .await;
    assert_eq!(failure.object.name, "nocert");
    assert!(failure.error.contains("cannot reach"), "{}", failure.error);
    assert_eq!(failure.reason, FailureReason::RegistryUnavailable);
    assert!(!failure.will_retry);
    scanners.stop().await;
}

#[tokio::test]
async fn a_repository_missing_from_the_registry_fails_for_good_as_not_found() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0"]).await;
    apply(
        &store,
        &repository("gone", &format!("{}/demo/gone", registry.host()), "1h", ""),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let failure = wait_until("the scan of a missing repository to fail", || async {
        failures(&bus).await.into_iter().next()
    })
    .await;
    assert_eq!(failure.object.name, "gone");
    assert_eq!(failure.reason, FailureReason::RepositoryNotFound);
    assert!(failure.error.contains("not found"), "{}", failure.error);
    assert!(!failure.will_retry, "a missing repository is not retried");
    assert!(discovered(&bus).await.is_empty());
    scanners.stop().await;
}

#[tokio::test]
async fn plain_http_is_used_only_with_insecure() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0"]).await;
    let yaml = repository("app", &format!("{}/demo/app", registry.host()), "1h", "")
        .replace("  insecure: true\n", "");
    apply(&store, &yaml).await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let failure = wait_until(
        "the HTTPS scan of a plain HTTP registry to fail",
        || async { failures(&bus).await.into_iter().next() },
    )
    .await;
    assert!(failure.error.contains("cannot reach"), "{}", failure.error);
    assert!(discovered(&bus).await.is_empty());
    scanners.stop().await;
}

#[tokio::test]
async fn a_long_retry_after_fails_the_scan_and_the_retry_waits_for_it() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    proxy.inject(Fault::TooManyRequests { retry_after: 3 });
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", proxy.host()), "1h", ""),
    )
    .await;
    let mut settings = settings(secrets.path());
    settings.registry.max_retry_after = Duration::from_secs(1);
    let scanners = start(&server, 1, settings).await;
    let failure = wait_until("ScanFailed", || async {
        failures(&bus).await.into_iter().next()
    })
    .await;
    assert!(failure.will_retry);
    assert!(
        failure.error.contains("retry after 3s"),
        "{}",
        failure.error
    );
    assert_eq!(failure.reason, FailureReason::RateLimited);
    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].tags.as_deref(), Some(&strings(&["1.0.0"])[..]));
    let lists: Vec<Instant> = proxy
        .timed_requests()
        .into_iter()
        .filter(|(_, r)| r.contains("/tags/list"))
        .map(|(at, _)| at)
        .collect();
    assert!(
        lists[1] - lists[0] >= Duration::from_secs(3),
        "the retry did not wait for Retry-After"
    );
    scanners.stop().await;
}

/// Serves `/v2/` and, for `demo/app`'s tag list, a JSON body that never
/// ends: what a hostile or broken registry can send. Returns its host and
/// how many bytes it managed to send.
async fn endless_registry() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let app = axum::Router::new()
        .route("/v2/", axum::routing::get(|| async { "{}" }))
        .route(
            "/v2/demo/app/tags/list",
            axum::routing::get(move || {
                let counter = counter.clone();
                async move {
                    let head = futures::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                            b"{\"name\":\"demo/app\",\"tags\":[\"1.0.0\"",
                        ))
                    });
                    let chunk = bytes::Bytes::from(",\"9.9.9\"".repeat(8192));
                    let tail = futures::stream::repeat_with(move || {
                        counter.fetch_add(chunk.len(), Ordering::Relaxed);
                        Ok(chunk.clone())
                    });
                    axum::body::Body::from_stream(futures::StreamExt::chain(head, tail))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (host, sent)
}

#[tokio::test]
async fn an_endless_tag_list_is_cut_at_the_response_limit_and_reported() {
    use tagrelay_scanner::registry::MAX_RESPONSE_BYTES;
    let (host, sent) = endless_registry().await;
    let (server, bus, store) = bus().await;
    let secrets = tempfile::tempdir().unwrap();
    apply(
        &store,
        &repository("app", &format!("{host}/demo/app"), "1h", ""),
    )
    .await;
    let mut settings = settings(secrets.path());
    settings.registry.attempts = 1;
    let scanners = start(&server, 1, settings).await;
    let failure = wait_until("ScanFailed", || async {
        failures(&bus).await.into_iter().next()
    })
    .await;
    assert!(
        failure
            .error
            .contains("unreadable answer to the tag list: larger than 64 MiB"),
        "{}",
        failure.error
    );
    assert_eq!(failure.reason, FailureReason::InvalidResponse);
    let status = status(&store, "app").await.unwrap();
    assert!(!status.ready);
    assert_eq!(status.tag_count, None, "nothing was taken from the body");
    scanners.stop().await;
    let read = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        read < 2 * MAX_RESPONSE_BYTES,
        "the scanner read {read} bytes of an endless body"
    );
}

#[tokio::test]
async fn sigterm_during_a_scan_finishes_the_scan_publishes_it_and_exits_cleanly() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0", "1.1.0"]).await;
    let proxy = FaultProxy::start(&registry.url()).await;
    proxy.inject(Fault::Slow(Duration::from_secs(3)));
    apply(
        &store,
        &repository("app", &format!("{}/demo/app", proxy.host()), "1h", ""),
    )
    .await;
    let mut scanner = std::process::Command::new(env!("CARGO_BIN_EXE_tagrelay-scanner"))
        .args(["--nats-url", &server.url(), "--instance", "one"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--secrets-dir")
        .arg(secrets.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the slow tag list to be asked for", || async {
        (proxy.tag_list_requests() > 0).then_some(())
    })
    .await;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &scanner.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        scanner.try_wait().unwrap().is_none(),
        "exited with a scan in hand"
    );
    // Polled, not waited on: the proxy answering the scan runs on this
    // test's runtime.
    let status = wait_until("the scanner to exit", || {
        let exited = scanner.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(status.success(), "{status:?}");
    let got = discovered(&bus).await;
    assert_eq!(
        got.len(),
        1,
        "the scan in hand was published before exiting"
    );
    assert_eq!(got[0].tags, Some(strings(&["1.0.0", "1.1.0"])));
    let mut queue = bus
        .jetstream()
        .get_stream(names::SCAN_REQUESTS_STREAM)
        .await
        .unwrap();
    assert_eq!(
        queue.info().await.unwrap().state.messages,
        0,
        "the request in hand was acknowledged (a work queue keeps it until then)"
    );
}

#[tokio::test]
async fn a_policy_without_a_rule_gets_creation_times_for_the_newest_image() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0", "0.9.0"]).await;
    let image = format!("{}/demo/app", registry.host());
    apply(&store, &repository("app", &image, "1h", "")).await;
    apply(
        &store,
        &format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: newest\n  namespace: {NS}\nspec:\n  imageRepositoryRef:\n    name: app\n"),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let got = wait_for_discovered(&bus, 1).await;
    let created = |tag: &str| got[0].images[tag].created.unwrap();
    assert!(
        created("0.9.0") > created("1.0.0"),
        "0.9.0 was pushed last: {:#?}",
        got[0].images
    );
    scanners.stop().await;
}

#[tokio::test]
async fn a_tag_pushed_again_is_seen_when_its_policy_reflects_digests_always() {
    let (registry, server, bus, store, secrets) = registry_with(&["latest", "1.0.0"]).await;
    let image = format!("{}/demo/app", registry.host());
    apply(&store, &repository("app", &image, "1h", "")).await;
    apply(
        &store,
        &format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: latest\n  namespace: {NS}\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    alphabetical: {{}}\n  filterTags:\n    pattern: '^latest$'\n  digestReflectionPolicy: Always\n  interval: 1m\n"),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let first = wait_for_discovered(&bus, 1).await;
    let first_digest = first[0].images["latest"].digest.clone().unwrap();
    // What the resolver records for the policy: `latest`, at that digest.
    let selection = tagrelay_proto::state::PolicySelection {
        image: image.clone(),
        selected: tagrelay_proto::event::SelectedImage {
            tag: "latest".into(),
            digest: Some(first_digest.clone()),
        },
        source_sequence: 1,
        rules_hash: "test".into(),
        resolved_sequence: 0,
        updated_at: chrono::Utc::now(),
        held_back: None,
        recheck_at: None,
    };
    let state = bus.bucket(names::POLICY_STATE_BUCKET).await.unwrap();
    state
        .put(
            tagrelay_proto::config::ObjectKey::new(
                tagrelay_proto::config::Kind::ImagePolicy,
                NS,
                "latest",
            )
            .bucket_key(),
            serde_json::to_vec(&selection).unwrap().into(),
        )
        .await
        .unwrap();

    reconcile(&bus, &store, "app").await;
    assert_eq!(
        discovered(&bus).await.len(),
        1,
        "nothing new, nothing published"
    );

    registry
        .push_image(
            "demo/app",
            "latest",
            chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
        )
        .await;
    reconcile(&bus, &store, "app").await;
    let got = wait_for_discovered(&bus, 2).await;
    assert_eq!(
        got[1].tag_set_digest, got[0].tag_set_digest,
        "the same tags"
    );
    let second_digest = got[1].images["latest"].digest.clone().unwrap();
    assert_ne!(second_digest, first_digest, "the re-pushed image's digest");
    assert_eq!(
        got[1].images["1.0.0"], got[0].images["1.0.0"],
        "tags no policy selects are not looked up again"
    );
    scanners.stop().await;
}

#[tokio::test]
async fn a_proxy_secret_sends_every_registry_call_through_the_proxy() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0", "1.1.0"]).await;
    let proxy = tagrelay_testkit::proxy::Tinyproxy::start("scanner", "proxy-pass");
    let write_secret = |name: &str, password: &str| {
        let dir = secrets.path().join(NS).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("address"), proxy.address()).unwrap();
        std::fs::write(dir.join("username"), "scanner").unwrap();
        std::fs::write(dir.join("password"), password).unwrap();
    };
    write_secret("http-proxy", "proxy-pass");
    write_secret("wrong-proxy", "not-the-password");
    let image = format!("{}/demo/app", registry.host());
    apply(
        &store,
        &repository(
            "app",
            &image,
            "1h",
            "  proxySecretRef:\n    name: http-proxy\n",
        ),
    )
    .await;
    let scanners = start(&server, 1, settings(secrets.path())).await;
    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].tags, Some(strings(&["1.0.0", "1.1.0"])));
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "GET http://{}/v2/demo/app/tags/list",
            registry.host()
        )),
        "the tag list went through the proxy:\n{log}"
    );

    apply(
        &store,
        &repository(
            "refused",
            &image,
            "1h",
            "  proxySecretRef:\n    name: wrong-proxy\n",
        ),
    )
    .await;
    let failure = wait_until("the scan through a proxy that refuses us", || async {
        failures(&bus)
            .await
            .into_iter()
            .find(|f| f.object.name == "refused")
    })
    .await;
    assert!(
        failure
            .error
            .contains("the proxy of spec.proxySecretRef refused its credentials"),
        "{}",
        failure.error
    );
    assert!(
        !failure.error.contains("not-the-password") && !log.contains("proxy-pass"),
        "no proxy password in errors or logs"
    );
    scanners.stop().await;
}

#[tokio::test]
async fn a_longer_interval_starts_the_slots_anew_and_scans_go_on() {
    let (registry, server, bus, store, secrets) = registry_with(&["1.0.0"]).await;
    let image = format!("{}/demo/app", registry.host());
    apply(&store, &repository("app", &image, "1m", "")).await;
    let scanner_bus = Bus::connect(&server.url(), "scanner/direct", BusSettings::default())
        .await
        .unwrap();
    let scanner = Scanner::new(&scanner_bus, settings(secrets.path()))
        .await
        .unwrap();
    let request = |slot: u64| {
        tagrelay_proto::scan::ScanRequest::scheduled(
            tagrelay_proto::event::ObjectRef::new(NS, "app"),
            slot,
        )
    };
    // Minute slots are large numbers; an hour's are 60 times smaller.
    let outcome = scanner
        .handle_request(&request(29_000_000), 1)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Changed { .. }), "{outcome:?}");
    apply(&store, &repository("app", &image, "1h", "")).await;
    // A scanner (re)started after the change sees the new spec.
    let scanner = Scanner::new(&scanner_bus, settings(secrets.path()))
        .await
        .unwrap();
    let changed = scanner.handle_request(&request(480_000), 1).await.unwrap();
    assert!(
        !matches!(changed, Outcome::AlreadyScanned),
        "a changed spec is scanned: {changed:?}"
    );
    let next = scanner.handle_request(&request(480_001), 1).await.unwrap();
    assert!(
        matches!(next, Outcome::Unchanged { .. }),
        "the next hour's slot is scanned, not skipped as older than the minute slots: {next:?}"
    );
    let again = scanner.handle_request(&request(480_001), 1).await.unwrap();
    assert_eq!(again, Outcome::AlreadyScanned, "and only once");
    drop(bus);
}

/// A `tracing` writer into a shared buffer, to read what the scanner logged.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn cloud_credentials_scan_end_to_end_tell_the_cloud_from_the_registry_and_never_leak() {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let moto = tagrelay_testkit::cloud::Moto::start(true);
    let (key_id, secret) = moto.access_key();
    let ecr_token = "123456789012-auth-token";
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("AWS".into(), ecr_token.into())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0", "1.1.0"]).await;
    let other = Registry::start_with(RegistryOptions {
        basic_auth: Some(("AWS".into(), "a-token-aws-never-gives".into())),
        ..Default::default()
    });
    other.push_tags("demo/app", &["9.0.0"]).await;
    let ecr = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let gar = "europe-docker.pkg.dev";
    let (server, bus, store) = bus().await;
    let secrets = tempfile::tempdir().unwrap();
    let mut settings = settings(secrets.path());
    let closed = format!("127.0.0.1:{}", tagrelay_testkit::free_port());
    settings.registry.cloud = tagrelay_scanner::cloud::CloudEnvironment::from_vars([
        ("AWS_ACCESS_KEY_ID", key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ("AWS_ENDPOINT_URL", moto.endpoint().as_str()),
        ("GCE_METADATA_HOST", closed.as_str()),
    ]);
    let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    settings.registry.resolve = vec![(ecr.into(), loopback), (gar.into(), loopback)];
    let aws = "  provider: aws\n";
    let port = registry.port();
    apply(
        &store,
        &repository("ecr", &format!("{ecr}:{port}/demo/app"), "1h", aws),
    )
    .await;
    let refused = format!("{ecr}:{}/demo/app", other.port());
    apply(&store, &repository("ecr-refused", &refused, "1h", aws)).await;
    let gcp = "  provider: gcp\n";
    apply(
        &store,
        &repository("gar", &format!("{gar}:{port}/demo/app"), "1h", gcp),
    )
    .await;
    let scanners = start(&server, 1, settings).await;

    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].repository.name, "ecr");
    assert_eq!(
        got[0].tags.as_deref(),
        Some(&strings(&["1.0.0", "1.1.0"])[..])
    );
    let failed = wait_until("both failures", || async {
        let failed = failures(&bus).await;
        (failed.len() >= 2).then_some(failed)
    })
    .await;
    let reason_of = |name: &str| {
        failed
            .iter()
            .find(|f| f.object.name == name)
            .map(|f| (f.reason, f.error.clone(), f.will_retry))
            .unwrap()
    };
    let (reason, error, will_retry) = reason_of("ecr-refused");
    assert_eq!(reason, FailureReason::AuthenticationFailed, "{error}");
    assert!(error.contains("provider aws gave"), "{error}");
    assert!(!will_retry);
    let (reason, error, will_retry) = reason_of("gar");
    assert_eq!(
        reason,
        FailureReason::CloudCredentialsUnavailable,
        "{error}"
    );
    assert!(error.contains("provider gcp"), "{error}");
    assert!(!will_retry, "nothing configured will not configure itself");

    let mut published = String::new();
    for event in events(&bus, ">").await {
        published.push_str(&String::from_utf8(event.to_json().unwrap()).unwrap());
    }
    for name in ["ecr", "ecr-refused", "gar"] {
        published.push_str(&serde_json::to_string(&status(&store, name).await).unwrap());
    }
    scanners.stop().await;
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("cloud registry credential obtained"),
        "the logs were captured"
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{ecr_token}"));
    for secret in [secret.as_str(), ecr_token, encoded.as_str()] {
        assert!(!published.contains(secret), "{secret} on the bus");
        assert!(!logged.contains(secret), "{secret} in the logs");
    }
}

#[tokio::test]
async fn a_docker_config_naming_a_credential_helper_scans_with_what_the_helper_gives() {
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("ci".into(), "from-the-helper-6a1".into())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0"]).await;
    let (server, bus, store) = bus().await;
    let secrets = tempfile::tempdir().unwrap();
    let helpers = tempfile::tempdir().unwrap();
    for (name, password) in [("vault", "from-the-helper-6a1"), ("stale", "expired")] {
        let path = helpers.path().join(format!("docker-credential-{name}"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nread host\necho '{{\"Username\":\"ci\",\"Secret\":\"{password}\"}}'\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (secret, config) in [
        (
            "helper",
            format!(r#"{{"credHelpers":{{"{}":"vault"}}}}"#, registry.host()),
        ),
        ("store", r#"{"credsStore":"stale"}"#.to_string()),
    ] {
        let dir = secrets.path().join(NS).join(secret);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
    }
    let image = format!("{}/demo/app", registry.host());
    let secret_ref = |name: &str| format!("  secretRef:\n    name: {name}\n");
    apply(
        &store,
        &repository("app", &image, "1h", &secret_ref("helper")),
    )
    .await;
    apply(
        &store,
        &repository("stale", &image, "1h", &secret_ref("store")),
    )
    .await;
    let mut settings = settings(secrets.path());
    settings.credential_helpers.path = vec![helpers.path().to_path_buf()];
    let scanners = start(&server, 1, settings).await;

    let got = wait_for_discovered(&bus, 1).await;
    assert_eq!(got[0].repository.name, "app");
    let failure = wait_until("the stale helper's scan to fail", || async {
        failures(&bus).await.into_iter().next()
    })
    .await;
    assert_eq!(failure.object, ObjectRef::new(NS, "stale"));
    assert_eq!(failure.reason, FailureReason::AuthenticationFailed);
    scanners.stop().await;
}
