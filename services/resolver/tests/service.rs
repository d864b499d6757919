//! The resolver service against a real nats-server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings, ConfigStore};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey};
use tagrelay_proto::event::{
    tag_set_digest, Envelope, Event, Failure, FailureReason, ObjectRef, PolicyResolved,
    ScanTrigger, TagsDiscovered,
};
use tagrelay_proto::names;
use tagrelay_testkit::{events, NatsServer};
use tokio::sync::oneshot;

const REPO: &str = "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  image: registry.example/app\n  interval: 1m\n";

fn policy(name: &str, range: &str) -> String {
    format!("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: {name}\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    semver:\n      range: '{range}'\n")
}

async fn apply(store: &ConfigStore, yaml: &str) {
    for doc in load_documents(yaml).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
}

fn discovered(tags: &[&str], previous: Option<&[&str]>) -> Event {
    Event::TagsDiscovered(TagsDiscovered {
        repository: ObjectRef::new("apps", "app"),
        image: "registry.example/app".into(),
        tags: Some(tags.iter().map(|t| t.to_string()).collect()),
        tags_ref: None,
        tag_count: tags.len(),
        tag_set_digest: tag_set_digest(tags.iter().copied()),
        previous_tag_set_digest: previous.map(|p| tag_set_digest(p.iter().copied())),
        scanned_at: chrono::Utc::now(),
        trigger: ScanTrigger::Schedule,
        images: BTreeMap::new(),
    })
}

struct Running {
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(self) {
        for stop in self.stop {
            let _ = stop.send(());
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn start_resolvers(server: &NatsServer, count: usize) -> Running {
    let mut running = Running {
        stop: Vec::new(),
        tasks: Vec::new(),
    };
    for i in 0..count {
        let bus = Bus::connect(
            &server.url(),
            format!("resolver/{i}"),
            BusSettings::default(),
        )
        .await
        .unwrap();
        let (tx, rx) = oneshot::channel();
        running.stop.push(tx);
        running.tasks.push(tokio::spawn(async move {
            tagrelay_resolver::run(&bus, Default::default(), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }));
    }
    running
}

fn resolved(events: &[Envelope]) -> Vec<PolicyResolved> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Event::PolicyResolved(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

async fn wait_for<F: Fn(&[PolicyResolved]) -> bool>(
    bus: &Bus,
    what: &str,
    check: F,
) -> Vec<PolicyResolved> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = resolved(&events(bus, names::POLICY_FILTER).await);
        if check(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; have {got:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first `ResolveFailed` in the log, waiting for it.
async fn first_resolve_failure(bus: &Bus) -> Failure {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = events(bus, names::FAILED_FILTER)
            .await
            .into_iter()
            .find_map(|e| match e.payload {
                Event::ResolveFailed(f) => Some(f),
                _ => None,
            });
        if let Some(f) = found {
            return f;
        }
        assert!(Instant::now() < deadline, "no ResolveFailed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn setup() -> (NatsServer, Bus, ConfigStore) {
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    (server, bus, store)
}

#[tokio::test]
async fn tags_in_policy_resolved_out_with_previous_and_cause() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", ">=1.0.0 <2.0.0")).await;
    let resolvers = start_resolvers(&server, 1).await;

    let first = Envelope::new(
        "scanner/t",
        discovered(&["1.0.0", "1.1.0", "2.0.0", "latest"], None),
    );
    bus.publish(&first).await.unwrap();
    let got = wait_for(&bus, "first resolution", |r| r.len() == 1).await;
    assert_eq!(got[0].current.tag, "1.1.0");
    assert_eq!(got[0].previous, None);
    assert_eq!(got[0].policy, ObjectRef::new("apps", "app"));

    let second = Envelope::new(
        "scanner/t",
        discovered(
            &["1.0.0", "1.1.0", "1.2.0", "2.0.0"],
            Some(&["1.0.0", "1.1.0", "2.0.0", "latest"]),
        ),
    );
    bus.publish(&second).await.unwrap();
    let got = wait_for(&bus, "second resolution", |r| r.len() == 2).await;
    assert_eq!(got[1].previous.as_ref().unwrap().tag, "1.1.0");
    assert_eq!(got[1].current.tag, "1.2.0");
    let all = events(&bus, names::POLICY_FILTER).await;
    assert_eq!(all[1].causation_id.as_deref(), Some(second.id.as_str()));
    assert_eq!(all[1].correlation_id, second.correlation_id);

    let status = store
        .status(&ObjectKey::new(Kind::ImagePolicy, "apps", "app"))
        .await
        .unwrap()
        .unwrap();
    assert!(status.ready);
    assert_eq!(
        status.latest_image.as_deref(),
        Some("registry.example/app:1.2.0")
    );
    resolvers.stop().await;
}

#[tokio::test]
async fn the_same_event_delivered_twice_resolves_once() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", "1.x")).await;
    let resolvers = start_resolvers(&server, 1).await;
    let event = Envelope::new("scanner/t", discovered(&["1.0.0", "1.3.0"], None));
    // Published twice without a message id: the stream keeps both copies, as
    // it would after a publisher's retry outside the duplicate window.
    for _ in 0..2 {
        bus.jetstream()
            .publish(event.payload.subject(), event.to_json().unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_for(&bus, "a resolution", |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = resolved(&events(&bus, names::POLICY_FILTER).await);
    assert_eq!(got.len(), 1, "{got:#?}");
    resolvers.stop().await;
}

#[tokio::test]
async fn two_instances_publish_one_resolution_per_change_and_never_go_back() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", ">=1.0.0")).await;
    let resolvers = start_resolvers(&server, 2).await;
    let mut tags: Vec<String> = vec!["1.0.0".into()];
    for minor in 1..=30 {
        let previous: Vec<String> = tags.clone();
        tags.push(format!("1.{minor}.0"));
        let t: Vec<&str> = tags.iter().map(String::as_str).collect();
        let p: Vec<&str> = previous.iter().map(String::as_str).collect();
        bus.publish(&Envelope::new("scanner/t", discovered(&t, Some(&p))))
            .await
            .unwrap();
    }
    let got = wait_for(&bus, "the last version", |r| {
        r.last().is_some_and(|p| p.current.tag == "1.30.0")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got_after = resolved(&events(&bus, names::POLICY_FILTER).await);
    assert_eq!(
        got.len(),
        got_after.len(),
        "nothing published after reaching the end"
    );
    let mut previous: Option<String> = None;
    let mut minors = Vec::new();
    for event in &got_after {
        assert_eq!(
            event.previous.as_ref().map(|p| p.tag.clone()),
            previous,
            "chain broken: {got_after:#?}"
        );
        previous = Some(event.current.tag.clone());
        let minor: u32 = event
            .current
            .tag
            .split('.')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        minors.push(minor);
    }
    assert!(
        minors.windows(2).all(|w| w[0] < w[1]),
        "moved backwards or repeated: {minors:?}"
    );
    resolvers.stop().await;
}

#[tokio::test]
async fn an_empty_scan_never_changes_a_policy() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", "1.x")).await;
    let resolvers = start_resolvers(&server, 1).await;
    bus.publish(&Envelope::new("scanner/t", discovered(&["1.0.0"], None)))
        .await
        .unwrap();
    wait_for(&bus, "the first resolution", |r| r.len() == 1).await;
    bus.publish(&Envelope::new(
        "scanner/t",
        discovered(&[], Some(&["1.0.0"])),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = events(&bus, ">").await;
    assert_eq!(resolved(&all).len(), 1);
    assert!(
        !all.iter()
            .any(|e| matches!(e.payload, Event::ResolveFailed(_))),
        "an empty scan is not a failure of the policy"
    );
    let status = store
        .status(&ObjectKey::new(Kind::ImagePolicy, "apps", "app"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.latest_image.as_deref(),
        Some("registry.example/app:1.0.0")
    );
    resolvers.stop().await;
}

#[tokio::test]
async fn a_policy_applied_after_the_tags_resolves_at_once_and_follows_changes() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    let resolvers = start_resolvers(&server, 1).await;
    bus.publish(&Envelope::new(
        "scanner/t",
        discovered(&["1.0.0", "1.5.0", "2.1.0"], None),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    apply(&store, &policy("app", "1.x")).await;
    let got = wait_for(&bus, "resolution on apply", |r| r.len() == 1).await;
    assert_eq!(got[0].current.tag, "1.5.0");

    apply(&store, &policy("app", ">=2.0.0")).await;
    let got = wait_for(&bus, "resolution on change", |r| r.len() == 2).await;
    assert_eq!(got[1].current.tag, "2.1.0");
    assert_eq!(got[1].previous.as_ref().unwrap().tag, "1.5.0");
    // The status is written right after the event is published.
    let expected = "Latest image tag for 'registry.example/app' updated from 1.5.0 to 2.1.0";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = store
            .status(&ObjectKey::new(Kind::ImagePolicy, "apps", "app"))
            .await
            .unwrap()
            .unwrap();
        if status.message == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Flux's words: {:?}",
            status.message
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let key = ObjectKey::new(Kind::ImagePolicy, "apps", "app");
    store.delete(&key).await.unwrap();
    let state = bus.bucket(names::POLICY_STATE_BUCKET).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.get(key.bucket_key()).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "state not cleared after delete");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    resolvers.stop().await;
}

#[tokio::test]
async fn nothing_qualifying_is_a_resolve_failure_with_the_reason() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", ">=5.0.0")).await;
    let resolvers = start_resolvers(&server, 1).await;
    bus.publish(&Envelope::new(
        "scanner/t",
        discovered(&["1.0.0", "2.0.0"], None),
    ))
    .await
    .unwrap();
    let failure = first_resolve_failure(&bus).await;
    assert_eq!(failure.object, ObjectRef::new("apps", "app"));
    assert!(failure.error.contains(">=5.0.0"), "{}", failure.error);
    assert_eq!(failure.reason, FailureReason::NoTagSelected);
    assert!(resolved(&events(&bus, names::POLICY_FILTER).await).is_empty());
    let status = store
        .status(&ObjectKey::new(Kind::ImagePolicy, "apps", "app"))
        .await
        .unwrap()
        .unwrap();
    assert!(!status.ready);
    resolvers.stop().await;
}

#[tokio::test]
async fn a_redelivered_older_event_never_moves_a_policy_back() {
    let (_server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", "1.x")).await;
    let older = Envelope::new("scanner/t", discovered(&["1.0.0", "1.3.0"], None));
    let newer = Envelope::new(
        "scanner/t",
        discovered(&["1.0.0", "1.3.0", "1.4.0"], Some(&["1.0.0", "1.3.0"])),
    );
    let older_seq = bus.publish(&older).await.unwrap().sequence;
    let newer_seq = bus.publish(&newer).await.unwrap().sequence;
    let resolver = tagrelay_resolver::service::Resolver::new(&bus)
        .await
        .unwrap();
    let moved = resolver.handle_tags(&newer, newer_seq).await.unwrap();
    assert!(
        matches!(&moved[0].1, tagrelay_resolver::service::Outcome::Moved(s) if s.tag == "1.4.0"),
        "{moved:?}"
    );
    let late = resolver.handle_tags(&older, older_seq).await.unwrap();
    assert_eq!(
        late[0].1,
        tagrelay_resolver::service::Outcome::AlreadyCurrent
    );
    let again = resolver.handle_tags(&newer, newer_seq).await.unwrap();
    assert_eq!(
        again[0].1,
        tagrelay_resolver::service::Outcome::AlreadyCurrent
    );
    let got = resolved(&events(&bus, names::POLICY_FILTER).await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].current.tag, "1.4.0");
}

#[tokio::test]
async fn a_tag_list_kept_in_the_object_store_is_read_and_a_missing_one_ignored() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", ">=1.0.0")).await;
    let resolvers = start_resolvers(&server, 1).await;
    let tags: Vec<String> = (0..30_000).map(|i| format!("1.{i}.0")).collect();
    let reference = bus.put_tag_list(&tags).await.unwrap();
    let Event::TagsDiscovered(mut large) = discovered(&[], None) else {
        unreachable!()
    };
    large.tags = None;
    large.tags_ref = Some(reference.clone());
    large.tag_count = tags.len();
    large.tag_set_digest = reference.key.clone();
    bus.publish(&Envelope::new(
        "scanner/t",
        Event::TagsDiscovered(large.clone()),
    ))
    .await
    .unwrap();
    let got = wait_for(&bus, "a resolution from the stored list", |r| r.len() == 1).await;
    assert_eq!(got[0].current.tag, "1.29999.0");

    let mut dangling = large;
    dangling.tags_ref = Some(tagrelay_proto::event::TagsRef {
        bucket: names::TAG_LISTS_BUCKET.into(),
        key: "sha256:missing".into(),
    });
    dangling.tag_set_digest = "sha256:missing".into();
    dangling.previous_tag_set_digest = Some(reference.key);
    bus.publish(&Envelope::new("scanner/t", Event::TagsDiscovered(dangling)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = events(&bus, ">").await;
    assert_eq!(resolved(&all).len(), 1, "a missing list changes nothing");
    resolvers.stop().await;
}

#[tokio::test]
async fn sigterm_during_an_evaluation_finishes_it_publishes_it_and_exits_cleanly() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(&store, &policy("app", ">=1.0.0")).await;
    // Enough tags that reading and ranking them keeps the message in hand
    // for a while, so SIGTERM arrives mid-evaluation.
    let tags: Vec<String> = (0..1_000_000).map(|i| format!("1.{i}.0")).collect();
    let reference = bus.put_tag_list(&tags).await.unwrap();
    let Event::TagsDiscovered(mut large) = discovered(&[], None) else {
        unreachable!()
    };
    large.tags = None;
    large.tags_ref = Some(reference.clone());
    large.tag_count = tags.len();
    large.tag_set_digest = reference.key.clone();
    bus.publish(&Envelope::new("scanner/t", Event::TagsDiscovered(large)))
        .await
        .unwrap();

    let mut resolver = std::process::Command::new(env!("CARGO_BIN_EXE_tagrelay-resolver"))
        .args(["--nats-url", &server.url(), "--instance", "one"])
        .args(["--http-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("TAGRELAY_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut consumer = bus.consumer(names::Stage::Resolve).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while consumer.info().await.unwrap().num_ack_pending == 0 {
        assert!(
            Instant::now() < deadline,
            "the resolver never took the event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        resolved(&events(&bus, names::POLICY_FILTER).await).is_empty(),
        "already resolved: the event was not in hand at SIGTERM"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &resolver.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = resolver.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "never exited after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut resolver.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("finishing the messages in hand") && l.contains(r#""in_hand":1"#)),
        "SIGTERM did not find the event in hand:\n{log}"
    );
    let got = resolved(&events(&bus, names::POLICY_FILTER).await);
    assert_eq!(got.len(), 1, "the evaluation in hand was published");
    assert_eq!(got[0].current.tag, "1.999999.0");
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "acknowledged before exiting");
    assert_eq!(info.num_redelivered, 0);
}

#[tokio::test]
async fn a_suspended_policy_does_not_move_until_it_is_resumed() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(
        &store,
        &format!("{}  suspend: true\n", policy("app", ">=1.0.0")),
    )
    .await;
    let resolvers = start_resolvers(&server, 1).await;
    bus.publish(&Envelope::new(
        "scanner/t",
        discovered(&["1.0.0", "1.5.0"], None),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        resolved(&events(&bus, names::POLICY_FILTER).await).is_empty(),
        "a suspended policy moved"
    );
    apply(&store, &policy("app", ">=1.0.0")).await;
    let got = wait_for(&bus, "the resolution on resume", |r| r.len() == 1).await;
    assert_eq!(got[0].current.tag, "1.5.0");
    resolvers.stop().await;
}

#[tokio::test]
async fn a_policy_without_a_rule_resolves_to_the_newest_image() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(
        &store,
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: newest\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: app\n",
    )
    .await;
    let resolvers = start_resolvers(&server, 1).await;
    let Event::TagsDiscovered(mut scan) = discovered(&["2.0.0", "1.0.0", "main-abc"], None) else {
        unreachable!()
    };
    for (tag, hour) in [("2.0.0", 1), ("1.0.0", 3), ("main-abc", 2)] {
        scan.images.insert(
            tag.to_string(),
            tagrelay_proto::event::ImageMetadata {
                digest: None,
                created: chrono::DateTime::parse_from_rfc3339(&format!(
                    "2026-12-01T{hour:02}:00:00Z"
                ))
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc)),
            },
        );
    }
    bus.publish(&Envelope::new("scanner/t", Event::TagsDiscovered(scan)))
        .await
        .unwrap();
    let got = wait_for(&bus, "the newest image", |r| r.len() == 1).await;
    assert_eq!(
        got[0].current.tag, "1.0.0",
        "built last, whatever its version"
    );
    resolvers.stop().await;
}

#[tokio::test]
async fn a_tag_pushed_again_moves_an_always_policy_to_the_new_digest() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    apply(
        &store,
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: latest\n  namespace: apps\nspec:\n  imageRepositoryRef:\n    name: app\n  policy:\n    alphabetical: {}\n  filterTags:\n    pattern: '^latest$'\n  digestReflectionPolicy: Always\n  interval: 1m\n",
    )
    .await;
    let resolvers = start_resolvers(&server, 1).await;
    let scan = |digest: &str, previous: Option<&[&str]>| {
        let Event::TagsDiscovered(mut scan) = discovered(&["latest", "1.0.0"], previous) else {
            unreachable!()
        };
        scan.images.insert(
            "latest".into(),
            tagrelay_proto::event::ImageMetadata {
                digest: Some(digest.into()),
                created: None,
            },
        );
        Envelope::new("scanner/t", Event::TagsDiscovered(scan))
    };
    bus.publish(&scan("sha256:aaaa", None)).await.unwrap();
    let got = wait_for(&bus, "the first digest", |r| r.len() == 1).await;
    assert_eq!(got[0].current.digest.as_deref(), Some("sha256:aaaa"));
    let again = scan("sha256:bbbb", Some(&["latest", "1.0.0"]));
    let published = bus.publish(&again).await.unwrap();
    assert!(!published.duplicate, "a re-push is a new fact");
    let got = wait_for(&bus, "the new digest", |r| r.len() == 2).await;
    assert_eq!(got[1].current.tag, "latest");
    assert_eq!(got[1].current.digest.as_deref(), Some("sha256:bbbb"));
    assert_eq!(
        got[1].previous.as_ref().and_then(|p| p.digest.as_deref()),
        Some("sha256:aaaa")
    );
    resolvers.stop().await;
}

#[tokio::test]
async fn a_policy_of_another_namespace_without_access_is_refused_as_flux_refuses_it() {
    let (server, bus, store) = setup().await;
    apply(&store, REPO).await;
    // Stored around `apply`, which would refuse it.
    apply(
        &store,
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: team-b\nspec:\n  imageRepositoryRef:\n    name: app\n    namespace: apps\n  policy:\n    semver:\n      range: 1.x\n",
    )
    .await;
    let resolvers = start_resolvers(&server, 1).await;
    bus.publish(&Envelope::new("scanner/t", discovered(&["1.0.0"], None)))
        .await
        .unwrap();
    let failure = first_resolve_failure(&bus).await;
    assert_eq!(failure.object, ObjectRef::new("team-b", "app"));
    assert!(
        failure
            .error
            .contains("'apps/app' can't be accessed due to missing ACL labels on 'accessFrom'"),
        "{}",
        failure.error
    );
    assert!(resolved(&events(&bus, names::POLICY_FILTER).await).is_empty());
    resolvers.stop().await;
}

#[tokio::test]
async fn a_namespace_labelled_later_is_admitted_and_its_policy_resolves() {
    let (server, bus, store) = setup().await;
    apply(
        &store,
        &format!("{REPO}  accessFrom:\n    namespaceSelectors:\n      - matchLabels:\n          team: platform\n"),
    )
    .await;
    apply(
        &store,
        "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: app\n  namespace: team-b\nspec:\n  imageRepositoryRef:\n    name: app\n    namespace: apps\n  policy:\n    semver:\n      range: 1.x\n",
    )
    .await;
    let resolvers = start_resolvers(&server, 1).await;
    bus.publish(&Envelope::new(
        "scanner/t",
        discovered(&["1.0.0", "1.2.0"], None),
    ))
    .await
    .unwrap();
    let failure = first_resolve_failure(&bus).await;
    assert!(
        failure
            .error
            .contains("ACL labels mismatch on namespace 'team-b'"),
        "{}",
        failure.error
    );
    apply(
        &store,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n  labels:\n    team: platform\n",
    )
    .await;
    let got = wait_for(&bus, "the resolution once admitted", |r| r.len() == 1).await;
    assert_eq!(got[0].policy, ObjectRef::new("team-b", "app"));
    assert_eq!(got[0].current.tag, "1.2.0");
    resolvers.stop().await;
}
