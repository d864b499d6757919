//! The soak on a 3-node JetStream cluster (issue 7): the nodes run the
//! shipped `deploy/nats/cluster.conf.template`, every stream and bucket is
//! R3, and a chaos driver SIGKILLs one NATS node at a time while tags are
//! pushed, restarting it a few seconds later. R3 tolerates one node down, so
//! the pipeline must keep going: every update lands exactly once, nothing
//! goes backwards, every commit is announced once (the soak's own checks).
//!
//! - `a_nats_node_killed_during_the_soak_loses_nothing`: 30 pushes over 3
//!   repositories, at least two node kills and restarts (runs in CI).
//! - `..._long` (`#[ignore]`d): 1,000 pushes over 6 repositories:
//!   `cargo build --bins && cargo test -p tagrelay --test reliability -- --ignored --nocapture a_nats_node_killed_during_the_soak_loses_nothing_long`.

use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_testkit::nats_cluster::{replication, NODES};
use tagrelay_testkit::NatsCluster;

use super::harness::{Rng, Service, Setup, Stack};
use super::{soak, Chaos};

/// How long a restarted node may take to catch up before the test fails.
const CATCH_UP: Duration = Duration::from_secs(60);

/// How often a catching-up node's `/healthz` is polled (ticks come every
/// ~20 ms; the full health check walks every stream and consumer).
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// Where the chaos driver is in its cycle.
enum Phase {
    /// Every node up and current; the next kill is due at this instant.
    Up { next_kill: Instant },
    /// A node is down; it is started again at this instant.
    Down { node: usize, restart_at: Instant },
    /// A node was started again and is catching up; not before it reports
    /// itself healthy is another node killed (it is not a full replica yet,
    /// so a second kill could leave a stream without a quorum).
    CatchingUp {
        node: usize,
        since: Instant,
        polled: Instant,
    },
}

/// SIGKILLs a random NATS node 2–4 s after the cluster is whole again and
/// starts it 1.5–3 s later on the same ports and store: one node down at a
/// time, never while another is still catching up.
struct KillNatsNodes {
    cluster: NatsCluster,
    phase: Option<Phase>,
    kills: usize,
    restarts: usize,
    kills_by_node: [usize; NODES],
    slowest_catch_up: Duration,
}

impl KillNatsNodes {
    fn new(cluster: NatsCluster) -> Self {
        Self {
            cluster,
            phase: None,
            kills: 0,
            restarts: 0,
            kills_by_node: [0; NODES],
            slowest_catch_up: Duration::ZERO,
        }
    }

    fn restart(&mut self, node: usize) {
        self.cluster.start_node(node);
        self.restarts += 1;
    }

    fn caught_up(&mut self, since: Instant) {
        self.slowest_catch_up = self.slowest_catch_up.max(since.elapsed());
    }
}

impl Chaos for KillNatsNodes {
    fn tick(&mut self, _: &Stack, _: &mut [Service], rng: &mut Rng) {
        let now = Instant::now();
        let phase = self.phase.take().unwrap_or(Phase::Up {
            next_kill: now + Duration::from_millis(1000 + rng.below(1000)),
        });
        self.phase = Some(match phase {
            Phase::Up { next_kill } if now >= next_kill => {
                let node = rng.below(NODES as u64) as usize;
                self.cluster.kill(node);
                self.kills += 1;
                self.kills_by_node[node] += 1;
                Phase::Down {
                    node,
                    restart_at: now + Duration::from_millis(1500 + rng.below(1500)),
                }
            }
            Phase::Down { node, restart_at } if now >= restart_at => {
                self.restart(node);
                Phase::CatchingUp {
                    node,
                    since: now,
                    polled: now,
                }
            }
            Phase::CatchingUp {
                node,
                since,
                polled,
            } if now >= polled + HEALTH_POLL => {
                if self.cluster.is_healthy(node) {
                    self.caught_up(since);
                    Phase::Up {
                        next_kill: now + Duration::from_millis(2000 + rng.below(2000)),
                    }
                } else {
                    assert!(
                        since.elapsed() < CATCH_UP,
                        "NATS node {} did not catch up within {CATCH_UP:?} of its restart\n{}",
                        node + 1,
                        self.cluster.logs()
                    );
                    Phase::CatchingUp {
                        node,
                        since,
                        polled: now,
                    }
                }
            }
            phase => phase,
        });
    }

    fn heal(&mut self, _: &Stack, _: &mut [Service]) {
        let (node, since) = match self.phase.take() {
            Some(Phase::Down { node, .. }) => {
                self.restart(node);
                (node, Instant::now())
            }
            Some(Phase::CatchingUp { node, since, .. }) => (node, since),
            _ => return,
        };
        assert!(
            self.cluster.wait_healthy(node, CATCH_UP),
            "NATS node {} did not catch up within {CATCH_UP:?} of its restart\n{}",
            node + 1,
            self.cluster.logs()
        );
        self.caught_up(since);
    }

    fn report(&self) -> String {
        assert!(self.kills > 0, "the chaos driver killed no NATS node");
        format!(
            "node_kills={} node_restarts={} kills_by_node={:?} slowest_catch_up={:?}",
            self.kills, self.restarts, self.kills_by_node, self.slowest_catch_up
        )
    }
}

/// Asserts that every stream, bucket and durable consumer of the topology
/// has three copies, after the soak, through a client that asks for one (the
/// default settings, as `tagrelay audit` without `TAGRELAY_REPLICAS`):
/// connecting must never scale a cluster's streams down.
async fn assert_replicated(url: &str) {
    let bus = Bus::connect(url, "test-replicas", BusSettings::default())
        .await
        .unwrap();
    for replication in replication(&bus).await {
        assert_eq!(replication.copies, 3, "{replication:?}");
    }
}

/// The soak over a fresh cluster with R3 everywhere and node kills.
async fn soak_on_a_cluster(repos: usize, pushes: usize, budget: Duration) -> KillNatsNodes {
    let cluster = NatsCluster::start();
    let url = cluster.url();
    let stack = Stack::start(Setup {
        replicas: 3,
        ..Setup::new(&url, repos)
    })
    .await;
    let mut chaos = KillNatsNodes::new(cluster);
    soak(stack, pushes, budget, &mut chaos).await;
    assert_replicated(&url).await;
    chaos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_killed_during_the_soak_loses_nothing() {
    let chaos = soak_on_a_cluster(3, 30, Duration::from_secs(30)).await;
    assert!(
        chaos.kills >= 2 && chaos.restarts == chaos.kills,
        "{} node kills, {} restarts: the soak must kill and restart at least two",
        chaos.kills,
        chaos.restarts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 1,000 pushes while NATS nodes are killed (run with --ignored)"]
async fn a_nats_node_killed_during_the_soak_loses_nothing_long() {
    let chaos = soak_on_a_cluster(6, 1000, Duration::from_secs(600)).await;
    assert!(chaos.kills >= 10, "only {} node kills", chaos.kills);
}
