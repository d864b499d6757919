//! The one consume loop (`tagrelay_proto::consume`) against a real
//! nats-server: a long handler is kept alive by heartbeats past `ack_wait`,
//! shutdown finishes the message in hand, an unreadable message is
//! terminated, and a retry is delivered again.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::consume::{consume, ConsumeSettings, Delivery, Disposition, Handler};
use tagrelay_proto::event::{
    tag_set_digest, Envelope, Event, ObjectRef, ScanTrigger, TagsDiscovered,
};
use tagrelay_proto::names::{self, Stage};
use tagrelay_proto::runtime::Readiness;
use tagrelay_testkit::NatsServer;

/// Shorter than the handler's work: without heartbeats JetStream would
/// hand the message to the other instance while the first still works.
const ACK_WAIT: Duration = Duration::from_secs(1);

fn discovered(repo: &str) -> Envelope {
    Envelope::new(
        "scanner/test",
        Event::TagsDiscovered(TagsDiscovered {
            repository: ObjectRef::new("flux-system", repo),
            image: format!("registry.example/{repo}"),
            tags: Some(vec!["1.0.0".into()]),
            tags_ref: None,
            tag_count: 1,
            tag_set_digest: tag_set_digest(["1.0.0"]),
            previous_tag_set_digest: None,
            scanned_at: chrono::Utc::now(),
            trigger: ScanTrigger::Schedule,
            images: BTreeMap::new(),
        }),
    )
}

async fn connect(server: &NatsServer, source: &str) -> Bus {
    let settings = BusSettings {
        ack_wait: ACK_WAIT,
        ..BusSettings::default()
    };
    Bus::connect(&server.url(), source, settings).await.unwrap()
}

/// A handler that takes `work` per message and remembers what it saw.
struct Slow {
    work: Duration,
    started: AtomicUsize,
    finished: AtomicUsize,
    attempts: Mutex<Vec<u32>>,
    first_disposition: Disposition,
}

impl Slow {
    fn new(work: Duration, first_disposition: Disposition) -> Arc<Self> {
        Arc::new(Self {
            work,
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            attempts: Mutex::new(Vec::new()),
            first_disposition,
        })
    }
}

impl Handler for Slow {
    type Item = Envelope;

    fn span(&self, _: &Envelope, _: &Delivery) -> tracing::Span {
        tracing::info_span!("test")
    }

    async fn handle(&self, _: Envelope, delivery: Delivery) -> Disposition {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.attempts.lock().unwrap().push(delivery.attempt);
        tokio::time::sleep(self.work).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        if delivery.attempt == 1 {
            self.first_disposition
        } else {
            Disposition::Done
        }
    }
}

fn settings() -> ConsumeSettings {
    ConsumeSettings {
        progress_every: Duration::from_millis(200),
        ..ConsumeSettings::new(Stage::Resolve)
    }
}

async fn consumer_counts(bus: &Bus) -> (usize, u64, usize) {
    let mut consumer = bus.consumer(Stage::Resolve).await.unwrap();
    let info = consumer.info().await.unwrap();
    (
        info.num_ack_pending,
        info.ack_floor.stream_sequence,
        info.num_redelivered,
    )
}

#[tokio::test]
async fn a_long_handler_is_heartbeaten_past_ack_wait_and_finished_on_shutdown() {
    let server = NatsServer::start();
    let publisher = connect(&server, "scanner/test").await;
    let first_bus = connect(&server, "resolver/a").await;
    let second_bus = connect(&server, "resolver/b").await;
    let published = publisher.publish(&discovered("app")).await.unwrap();

    let first = Slow::new(ACK_WAIT * 4, Disposition::Done);
    let (stop_first, first_stopped) = tokio::sync::oneshot::channel::<()>();
    let first_readiness = Readiness::default();
    let first_loop = tokio::spawn({
        let handler = first.clone();
        let readiness = first_readiness.clone();
        async move {
            consume(&first_bus, handler, settings(), readiness, async {
                let _ = first_stopped.await;
            })
            .await
        }
    });
    while first.started.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(first_readiness.is_ready());

    // A second instance on the same durable would get the message if the
    // first let `ack_wait` pass without a heartbeat.
    let second = Slow::new(Duration::ZERO, Disposition::Done);
    let (stop_second, second_stopped) = tokio::sync::oneshot::channel::<()>();
    let second_loop = tokio::spawn({
        let handler = second.clone();
        async move {
            consume(
                &second_bus,
                handler,
                settings(),
                Readiness::default(),
                async {
                    let _ = second_stopped.await;
                },
            )
            .await
        }
    });

    tokio::time::sleep(ACK_WAIT * 2).await;
    assert_eq!(first.finished.load(Ordering::SeqCst), 0, "still working");
    stop_first.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !first_readiness.is_ready(),
        "not ready as soon as shutdown begins"
    );
    first_loop.await.unwrap().unwrap();
    assert_eq!(
        first.finished.load(Ordering::SeqCst),
        1,
        "consume returned before the message in hand was finished"
    );

    let (ack_pending, ack_floor, redelivered) = consumer_counts(&publisher).await;
    assert_eq!(ack_pending, 0, "the finished message was acked");
    assert_eq!(ack_floor, published.sequence);
    assert_eq!(redelivered, 0, "heartbeats kept it from being redelivered");
    assert_eq!(
        second.started.load(Ordering::SeqCst),
        0,
        "the other instance never got the message in hand"
    );
    stop_second.send(()).unwrap();
    second_loop.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_unreadable_message_is_terminated_and_a_retry_comes_back() {
    let server = NatsServer::start();
    let bus = connect(&server, "resolver/a").await;
    bus.jetstream()
        .publish(
            names::tags_subject("flux-system", "garbage"),
            "not an event".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    bus.publish(&discovered("app")).await.unwrap();

    let handler = Slow::new(
        Duration::ZERO,
        Disposition::Retry(Duration::from_millis(100)),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let handler = handler.clone();
        let bus = bus.clone();
        async move {
            consume(&bus, handler, settings(), Readiness::default(), async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handler.finished.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    assert_eq!(
        *handler.attempts.lock().unwrap(),
        vec![1, 2],
        "the event is handled, retried once, and the garbage never reaches the handler"
    );
    let (ack_pending, ack_floor, _) = consumer_counts(&bus).await;
    assert_eq!(
        ack_pending, 0,
        "the garbage was terminated, the event acked"
    );
    assert_eq!(ack_floor, 2);
}
