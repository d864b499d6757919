//! The bus against a real nats-server: topology, deduplication, durable
//! consumers shared by instances, the configuration store; and on a 3-node
//! JetStream cluster (the shipped cluster template), what differs from a
//! single server and once broke tagrelay there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config as PullConfig;
use futures::StreamExt;
use tagrelay_proto::bus::{
    ensure_topology, Bus, BusSettings, CasBucket, ConfigChange, ConfigMirror, PublishFailure,
    RecordMirror, MSG_ID_HEADER,
};
use tagrelay_proto::config::{load_documents, Kind, Object, ObjectKey};
use tagrelay_proto::consume::Delivery;
use tagrelay_proto::event::{
    tag_set_digest, Envelope, Event, ObjectRef, ScanTrigger, TagsDiscovered,
};
use tagrelay_proto::names;
use tagrelay_proto::trace::{parse_traceparent, TRACEPARENT};
use tagrelay_testkit::nats_cluster::{replication, NODES};
use tagrelay_testkit::{NatsCluster, NatsServer};

fn discovered(repo: &str, tags: &[&str]) -> Event {
    Event::TagsDiscovered(TagsDiscovered {
        repository: ObjectRef::new("flux-system", repo),
        image: format!("registry.example/{repo}"),
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

async fn connect(server: &NatsServer, source: &str) -> Bus {
    Bus::connect(&server.url(), source, BusSettings::default())
        .await
        .expect("connect")
}

#[tokio::test]
async fn an_event_published_twice_is_stored_once_with_its_headers() {
    let server = NatsServer::start();
    let bus = connect(&server, "scanner/a").await;
    let other = connect(&server, "scanner/b").await;
    let event = discovered("app", &["1.0.0", "1.1.0"]);
    let first = Envelope::new("scanner/a", event.clone());
    let retry = Envelope::new("scanner/b", event);
    let a = bus.publish(&first).await.unwrap();
    let b = other.publish(&retry).await.unwrap();
    assert!(!a.duplicate);
    assert!(
        b.duplicate,
        "the second publication of the same fact must be dropped"
    );
    assert_eq!(a.sequence, b.sequence);

    let mut stream = bus
        .jetstream()
        .get_stream(names::EVENTS_STREAM)
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);

    let consumer = bus.consumer(names::Stage::Resolve).await.unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let message = messages.next().await.unwrap().unwrap();
    let delivery = Delivery::of(&message);
    assert_eq!(Envelope::from_json(&message.payload).unwrap(), first);
    assert_eq!(delivery.msg_id.as_deref(), Some(first.msg_id().as_str()));
    assert_eq!(
        delivery.traceparent.as_deref(),
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(TRACEPARENT))
            .map(|v| v.as_str())
    );
    let headers = message.headers.as_ref().unwrap();
    assert!(headers.get(MSG_ID_HEADER).is_some());
    let context = parse_traceparent(headers.get(TRACEPARENT).unwrap().as_str()).unwrap();
    assert!(context.is_valid());
    assert_eq!(delivery.stream_sequence, a.sequence);
    assert_eq!(delivery.attempt, 1);
    message.ack().await.unwrap();
}

#[tokio::test]
async fn three_instances_on_one_durable_split_the_messages_without_loss_or_doubles() {
    let server = NatsServer::start();
    let bus = connect(&server, "scanner/a").await;
    const COUNT: usize = 300;
    for i in 0..COUNT {
        let envelope = Envelope::new("scanner/a", discovered(&format!("repo-{i}"), &["1.0.0"]));
        bus.publish(&envelope).await.unwrap();
    }
    let mut workers = Vec::new();
    for instance in 0..3 {
        let bus = connect(&server, &format!("resolver/{instance}")).await;
        workers.push(tokio::spawn(async move {
            let consumer = bus.consumer(names::Stage::Resolve).await.unwrap();
            let mut seen = Vec::new();
            loop {
                let mut batch = consumer
                    .fetch()
                    .max_messages(7)
                    .expires(Duration::from_millis(500))
                    .messages()
                    .await
                    .unwrap();
                let mut got = 0;
                while let Some(message) = batch.next().await {
                    let message = message.unwrap();
                    let envelope = Envelope::from_json(&message.payload).unwrap();
                    let Event::TagsDiscovered(e) = envelope.payload else {
                        panic!("unexpected event")
                    };
                    seen.push(e.repository.name);
                    message.ack().await.unwrap();
                    got += 1;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if got == 0 {
                    return seen;
                }
            }
        }));
    }
    let mut all = Vec::new();
    let mut per_instance = Vec::new();
    for worker in workers {
        let seen = worker.await.unwrap();
        per_instance.push(seen.len());
        all.extend(seen);
    }
    all.sort();
    let total = all.len();
    all.dedup();
    assert_eq!(
        total, COUNT,
        "every message delivered exactly once in total"
    );
    assert_eq!(all.len(), COUNT, "no message delivered twice");
    assert!(
        per_instance.iter().filter(|n| **n > 0).count() >= 2,
        "work was shared: {per_instance:?}"
    );
}

#[tokio::test]
async fn declaring_the_topology_twice_changes_nothing() {
    let server = NatsServer::start();
    let bus = connect(&server, "resolver/a").await;
    bus.publish(&Envelope::new("scanner/a", discovered("app", &["1"])))
        .await
        .unwrap();
    let before = bus
        .jetstream()
        .get_stream(names::EVENTS_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let consumer_before = bus
        .jetstream()
        .get_consumer_from_stream::<PullConfig, _, _>(
            names::RESOLVER_CONSUMER,
            names::EVENTS_STREAM,
        )
        .await
        .unwrap()
        .cached_info()
        .clone();

    ensure_topology(bus.jetstream(), &BusSettings::default())
        .await
        .unwrap();
    let second = connect(&server, "committer/a").await;

    let after = second
        .jetstream()
        .get_stream(names::EVENTS_STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(after.config, before.config);
    assert_eq!(
        after.created, before.created,
        "the stream was not recreated"
    );
    assert_eq!(after.state.messages, 1, "no message lost");
    let consumer_after = second
        .jetstream()
        .get_consumer_from_stream::<PullConfig, _, _>(
            names::RESOLVER_CONSUMER,
            names::EVENTS_STREAM,
        )
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(consumer_after.created, consumer_before.created);
    assert_eq!(consumer_after.config.filter_subject, names::TAGS_FILTER);
    assert_eq!(
        after.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(after.config.duplicate_window, Duration::from_secs(120));
}

#[tokio::test]
async fn a_late_watcher_sees_applied_objects_and_deletions() {
    let server = NatsServer::start();
    let bus = connect(&server, "cli").await;
    let store = bus.config_store().await.unwrap();
    let docs = load_documents("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app\nspec:\n  image: ghcr.io/org/app\n  interval: 1m\n").unwrap();
    let object = Object::decode(&docs[0].value).unwrap();
    store.put(&object).await.unwrap();

    let watcher = connect(&server, "scanner/a")
        .await
        .config_store()
        .await
        .unwrap();
    let mut changes = Box::pin(watcher.watch().await.unwrap());
    let first = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, ConfigChange::Applied(Box::new(object.clone())));

    let key = ObjectKey::new(Kind::ImageRepository, "flux-system", "app");
    assert!(store.delete(&key).await.unwrap());
    let second = tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second, ConfigChange::Deleted(key.clone()));
    assert!(
        !store.delete(&key).await.unwrap(),
        "deleting twice reports absence"
    );
}

#[tokio::test]
async fn the_configuration_mirror_reads_what_was_written_before_it_was_asked() {
    let server = NatsServer::start();
    let cli = connect(&server, "cli").await.config_store().await.unwrap();
    let mirror = ConfigMirror::new(
        connect(&server, "committer/a")
            .await
            .config_store()
            .await
            .unwrap(),
    );
    let follower = tokio::spawn(mirror.clone().follow(|_| std::future::ready(())));
    let repository = |i: usize| {
        let yaml = format!("apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata: {{name: app-{i}, namespace: team}}\nspec: {{image: ghcr.io/org/app-{i}, interval: 1m}}\n");
        Object::decode(&load_documents(&yaml).unwrap()[0].value).unwrap()
    };
    let namespace = Object::decode(
        &load_documents("apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n").unwrap()[0]
            .value,
    )
    .unwrap();
    cli.put(&namespace).await.unwrap();
    // Each write is seen by the very next read: no sleep, no retry.
    let mut generations = Vec::new();
    for i in 0..30 {
        let object = repository(i);
        cli.put(&object).await.unwrap();
        let config = mirror.current().await.unwrap();
        assert_eq!(config.get(&object.key()), Some(&object));
        generations.push(config.generation());
    }
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]),
        "{generations:?}"
    );
    let gone = repository(7).key();
    assert!(cli.delete(&gone).await.unwrap());
    let config = mirror.current().await.unwrap();
    assert_eq!(config.get(&gone), None);
    let repositories: Vec<&ObjectKey> = config
        .of_kind(Kind::ImageRepository)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(repositories.len(), 29);
    assert!(repositories.iter().all(|k| k.kind == Kind::ImageRepository));
    assert_eq!(
        config.objects().count(),
        30,
        "29 repositories and the namespace"
    );
    drop(config);
    follower.abort();
}

#[tokio::test]
async fn a_record_mirror_reads_every_write_made_before_it_was_asked_and_forgets_deletions() {
    use serde_json::{json, Value};
    let server = NatsServer::start();
    let bucket = |bus: Bus| async move { bus.bucket(names::POLICY_STATE_BUCKET).await.unwrap() };
    let writer = CasBucket::new(
        bucket(connect(&server, "resolver/a").await).await,
        names::POLICY_STATE_BUCKET,
    );
    let raw = bucket(connect(&server, "resolver/b").await).await;
    let mirror: RecordMirror<Value> = RecordMirror::new(
        bucket(connect(&server, "committer/a").await).await,
        names::POLICY_STATE_BUCKET,
    );
    // Written before the mirror started: replayed.
    assert!(writer
        .write("team.before", &json!({"n": 0}), 0)
        .await
        .unwrap());
    let follower = tokio::spawn(mirror.clone().follow());
    assert_eq!(
        mirror.current().await.unwrap().get("team.before"),
        Some(&json!({"n": 0}))
    );
    // Each write is seen by the very next read: no sleep, no retry.
    for n in 1..=30 {
        let (_, revision) = writer.read::<Value>("team.app").await.unwrap();
        assert!(writer
            .write("team.app", &json!({"n": n}), revision)
            .await
            .unwrap());
        assert_eq!(
            mirror.current().await.unwrap().get("team.app"),
            Some(&json!({"n": n}))
        );
    }
    assert!(mirror.quiet_for() < Duration::from_secs(5));
    // A record that does not decode, and a purged one, are absent.
    raw.put("team.app", "not json".into()).await.unwrap();
    writer.purge("team.before").await.unwrap();
    {
        let records = mirror.current().await.unwrap();
        assert_eq!(records.get("team.app"), None);
        assert_eq!(records.get("team.before"), None);
        assert!(records.is_empty(), "{}", records.len());
    }
    // The quiet time grows while nothing is written, and a write resets it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet = mirror.quiet_for();
    assert!(quiet >= Duration::from_millis(300), "{quiet:?}");
    assert!(writer
        .write("team.after", &json!({"n": 1}), 0)
        .await
        .unwrap());
    assert!(mirror.current().await.unwrap().get("team.after").is_some());
    assert!(
        mirror.quiet_for() < quiet,
        "a write must reset the quiet time"
    );
    follower.abort();
}

#[tokio::test]
async fn a_record_mirror_under_a_prefix_reads_its_own_records_only_and_is_not_held_by_others() {
    use serde_json::{json, Value};
    let server = NatsServer::start();
    let bus = connect(&server, "notifier/a").await;
    let bucket = bus.bucket(names::NOTIFICATIONS_BUCKET).await.unwrap();
    let mirror: RecordMirror<Value> =
        RecordMirror::under(bucket.clone(), names::NOTIFICATIONS_BUCKET, "stalled.");
    let follower = tokio::spawn(mirror.clone().follow());
    // Nothing under the prefix yet: an empty mirror, at once.
    assert!(mirror.current().await.unwrap().is_empty());
    bucket.put("stalled.a", r#"{"n": 1}"#.into()).await.unwrap();
    // Writes of another kind after it: neither mirrored nor waited for (a
    // read waiting for them would fail after 10 s).
    for n in 0..20 {
        bucket
            .put(format!("sent.p.{n}"), "not a record".into())
            .await
            .unwrap();
    }
    {
        let records = mirror.current().await.unwrap();
        assert_eq!(records.get("stalled.a"), Some(&json!({"n": 1})));
        assert_eq!(records.len(), 1, "only the records under the prefix");
    }
    bucket.delete("stalled.a").await.unwrap();
    bucket.put("sent.p.last", "x".into()).await.unwrap();
    assert!(mirror.current().await.unwrap().is_empty());
    follower.abort();
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_not_a_hang() {
    let port = tagrelay_testkit::free_port();
    let started = std::time::Instant::now();
    let result = Bus::connect(
        &format!("nats://127.0.0.1:{port}"),
        "cli",
        BusSettings::default(),
    )
    .await;
    let message = result.err().expect("must fail").to_string();
    assert!(message.contains("cannot reach NATS"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_conditional_publication_loses_to_a_racing_one_and_last_event_reads_it() {
    use tagrelay_proto::bus::PublishFailure;
    let server = NatsServer::start();
    let bus = connect(&server, "resolver/a").await;
    let subject = tagrelay_proto::names::tags_subject("flux-system", "app");
    assert!(bus.last_event(&subject).await.unwrap().is_none());

    let first = Envelope::new("scanner/a", discovered("app", &["1"]));
    let winner = bus.publish_after(&first, 0).await.unwrap();
    let late = Envelope::new("scanner/b", discovered("app", &["1", "2"]));
    assert!(matches!(
        bus.publish_after(&late, 0).await,
        Err(PublishFailure::Conflict)
    ));
    let (last, sequence) = bus.last_event(&subject).await.unwrap().unwrap();
    assert_eq!((last, sequence), (first, winner.sequence));
    let next = bus.publish_after(&late, winner.sequence).await.unwrap();
    assert!(next.sequence > winner.sequence);
}

fn r3() -> BusSettings {
    BusSettings {
        replicas: 3,
        ..BusSettings::default()
    }
}

/// `count` instances of `role` connected to the cluster with R3 settings:
/// each its own connection, as separate processes would have.
async fn instances(cluster: &NatsCluster, role: &str, count: usize) -> Vec<Bus> {
    let url = cluster.url();
    let mut buses = Vec::new();
    for i in 0..count {
        let bus = Bus::connect(&url, format!("{role}/{i}"), r3());
        buses.push(bus.await.unwrap());
    }
    buses
}

#[tokio::test]
async fn a_cluster_url_list_connects_while_its_first_node_is_down() {
    let mut cluster = NatsCluster::start();
    // Not the meta leader: its loss would hold every declaration up until
    // an election, which is not what this test is about.
    let leader = cluster.meta_leader_node().expect("a meta leader");
    let down = (leader + 1) % NODES;
    cluster.kill(down);
    let others = (0..NODES)
        .filter(|n| *n != down)
        .map(|n| cluster.node_url(n));
    let url = std::iter::once(cluster.node_url(down))
        .chain(others)
        .collect::<Vec<_>>()
        .join(",");
    let bus = Bus::connect(&url, "scanner/a", r3())
        .await
        .expect("the other nodes of the list answer");
    let published = bus
        .publish(&Envelope::new("scanner/a", discovered("app", &["1.0.0"])))
        .await
        .unwrap();
    assert!(!published.duplicate);
}

#[tokio::test]
async fn a_client_asking_for_one_replica_never_scales_the_cluster_down() {
    let cluster = NatsCluster::start();
    Bus::connect(&cluster.url(), "scanner/a", r3())
        .await
        .unwrap();
    // `tagrelay audit` on an operator's laptop, without TAGRELAY_REPLICAS.
    let cli = Bus::connect(&cluster.url(), "cli", BusSettings::default())
        .await
        .expect("a client with the default settings connects to an R3 topology");
    for replication in replication(&cli).await {
        assert_eq!(replication.copies, 3, "{replication:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_published_at_once_by_many_is_stored_once_on_a_cluster() {
    let cluster = NatsCluster::start();
    let buses = instances(&cluster, "scanner", 6).await;
    for round in 0..5 {
        let event = discovered("app", &[&format!("2.0.{round}")]);
        let publications = buses.iter().map(|bus| {
            let envelope = Envelope::new(bus.source(), event.clone());
            async move { bus.publish(&envelope).await }
        });
        let results = futures::future::join_all(publications).await;
        let published: Vec<_> = results
            .into_iter()
            .map(|r| r.expect("a concurrent duplicate is acknowledged, not refused"))
            .collect();
        assert_eq!(
            published.iter().filter(|p| !p.duplicate).count(),
            1,
            "round {round}: {published:?}"
        );
        assert!(
            published
                .iter()
                .all(|p| p.sequence == published[0].sequence),
            "round {round}: {published:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_conditional_writes_on_a_cluster_lose_as_conflicts_not_errors() {
    let cluster = NatsCluster::start();
    let buses = instances(&cluster, "resolver", 6).await;
    let mut buckets = Vec::new();
    for bus in &buses {
        let store = bus.bucket(names::POLICY_STATE_BUCKET).await.unwrap();
        buckets.push(CasBucket::new(store, names::POLICY_STATE_BUCKET));
    }
    let subject = names::tags_subject("flux-system", "app");
    let mut last_sequence = 0;
    for round in 0..5 {
        // Every writer creates the key, then updates it from one revision.
        let key = format!("race-{round}");
        let creations = buckets.iter().map(|b| b.write(&key, &round, 0));
        let won = futures::future::join_all(creations).await;
        let won: Vec<bool> = won.into_iter().map(|r| r.expect("a lost race")).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        let (_, revision) = buckets[0].read::<u32>(&key).await.unwrap();
        let next = round + 1;
        let updates = buckets.iter().map(|b| b.write(&key, &next, revision));
        let won = futures::future::join_all(updates).await;
        let won: Vec<bool> = won.into_iter().map(|r| r.expect("a lost race")).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");

        // Every publisher publishes its own event after the same one.
        let publications = buses.iter().enumerate().map(|(i, bus)| {
            let tag = format!("3.{round}.{i}");
            let envelope = Envelope::new(bus.source(), discovered("app", &[&tag]));
            async move { bus.publish_after(&envelope, last_sequence).await }
        });
        let mut winners = Vec::new();
        for result in futures::future::join_all(publications).await {
            match result {
                Ok(published) => winners.push(published.sequence),
                Err(PublishFailure::Conflict) => {}
                Err(PublishFailure::Bus(e)) => panic!("a lost race is a conflict: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        last_sequence = winners[0];
        let (_, sequence) = buses[0].last_event(&subject).await.unwrap().unwrap();
        assert_eq!(sequence, last_sequence);
    }
}
