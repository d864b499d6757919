//! Event → notification latency and throughput: a real nats-server, the
//! notifier in-process, a loopback generic-hmac webhook. Prints p50 / p99 /
//! max latency from publication to the webhook's receipt, and deliveries
//! per second, for a burst and for a steady trickle.
//!
//! `cargo bench -p tagrelay-notifier --bench delivery`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a failure is a failed run

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tagrelay_notifier::service::{run, Settings};
use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_proto::event::{CommitPushed, Envelope, Event, ObjectRef};
use tagrelay_testkit::receiver::Receiver;
use tagrelay_testkit::NatsServer;

fn commit(i: usize) -> Event {
    Event::CommitPushed(CommitPushed {
        automation: ObjectRef::new("apps", "fleet"),
        remote: "https://example.invalid/fleet.git".into(),
        branch: "main".into(),
        commit: format!("{i:040x}"),
        parent: None,
        changes: Vec::new(),
        causes: Vec::new(),
        signed_with: None,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

async fn round(
    bus: &Bus,
    receiver: &Receiver,
    label: &str,
    count: usize,
    gap: Duration,
    offset: usize,
) {
    let already = receiver.received().len();
    let mut sent = HashMap::new();
    let started = Instant::now();
    for i in 0..count {
        let envelope = Envelope::new("committer/bench", commit(offset + i));
        sent.insert(envelope.id.clone(), Instant::now());
        bus.publish(&envelope).await.unwrap();
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.received().len() < already + count {
        assert!(Instant::now() < deadline, "deliveries missing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = receiver.received()[already..]
        .iter()
        .filter_map(|r| {
            let id = r.header("x-tagrelay-event-id")?;
            Some(r.at.duration_since(*sent.get(id)?))
        })
        .collect();
    latencies.sort();
    println!(
        "{label:<28} {count:>5} events  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  {:>7.0} deliveries/s",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        count as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let nats = NatsServer::start();
    let receiver = Receiver::start();
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("apps/hmac");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("token"), "bench-key").unwrap();
    let bus = Bus::connect(&nats.url(), "bench/notify", BusSettings::default())
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    let config = format!("apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: hook, namespace: apps}}\nspec: {{type: generic-hmac, address: '{}', secretRef: {{name: hmac}}}}\n---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: all, namespace: apps}}\nspec: {{providerRef: {{name: hook}}, eventSources: [{{kind: ImageUpdateAutomation, name: '*'}}]}}\n", receiver.url("/hook"));
    for doc in load_documents(&config).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let notifier_bus = bus.clone();
    let settings = Settings {
        secrets_dir: secrets.path().to_path_buf(),
        limits: Default::default(),
        sweep_every: Duration::from_secs(3600),
    };
    let task = tokio::spawn(async move {
        run(&notifier_bus, Default::default(), settings, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "notifier: event published → generic-hmac webhook received (real NATS, loopback HTTP)"
    );
    round(&bus, &receiver, "warm-up", 50, Duration::ZERO, 0).await;
    round(
        &bus,
        &receiver,
        "steady (one every 20 ms)",
        200,
        Duration::from_millis(20),
        1_000,
    )
    .await;
    round(&bus, &receiver, "burst", 1_000, Duration::ZERO, 10_000).await;
    let _ = stop.send(());
    task.await.unwrap();
}
