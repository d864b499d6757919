//! A 3-node JetStream cluster on loopback, configured by the template users
//! deploy (`deploy/nats/cluster.conf.template`), so the tests exercise the
//! very configuration that ships: if the template stops forming a cluster,
//! the tests that use this fail.
//!
//! Each node is a real `nats-server -c node-N.conf` process with its own
//! store directory in one temporary directory. A node can be SIGKILLed and
//! started again on the same ports and store, as a crash and a supervisor's
//! restart would do it; everything is killed on drop.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{
    bucket_configs, consumer_config, object_store_configs, stream_configs, Bus, BusSettings,
};
use tagrelay_proto::names::Stage;
use tempfile::TempDir;

use crate::{find_executable, free_port, wait_for_port, NATS_INSTALL_HINT};

/// The configuration template shipped in `deploy/nats/`, read at build time
/// from the repository so the tests and the users run the same file.
pub const CLUSTER_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/nats/cluster.conf.template"
));

/// How many nodes the cluster has: three, the smallest cluster in which R3
/// streams keep a quorum with one node down.
pub const NODES: usize = 3;

/// How long [`NatsCluster::start`] waits for the cluster to elect its meta
/// leader and for every node to report itself healthy before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One node's ports and process.
struct Node {
    client_port: u16,
    cluster_port: u16,
    http_port: u16,
    child: Option<Child>,
}

/// A running 3-node JetStream cluster, every node killed when dropped.
pub struct NatsCluster {
    dir: TempDir,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Renders the template for [`NODES`] nodes on free loopback ports,
    /// starts them and waits until the cluster has a JetStream meta leader
    /// and every node reports itself healthy: only then can R3 streams and
    /// buckets be created.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tagrelay-nats-cluster-")
            .tempdir()
            .expect("temp dir");
        let nodes: Vec<Node> = (0..NODES)
            .map(|_| Node {
                client_port: free_port(),
                cluster_port: free_port(),
                http_port: free_port(),
                child: None,
            })
            .collect();
        let routes = nodes
            .iter()
            .map(|n| format!("nats-route://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        for (i, node) in nodes.iter().enumerate() {
            let store = dir.path().join(format!("store-{}", i + 1));
            let config = render(
                CLUSTER_TEMPLATE,
                &[
                    ("@NODE@", (i + 1).to_string()),
                    ("@CLIENT_PORT@", node.client_port.to_string()),
                    ("@CLUSTER_PORT@", node.cluster_port.to_string()),
                    ("@HTTP_PORT@", node.http_port.to_string()),
                    ("@STORE_DIR@", store.display().to_string()),
                    ("@ROUTES@", routes.clone()),
                ],
            );
            std::fs::write(dir.path().join(format!("node-{}.conf", i + 1)), config)
                .expect("node config");
        }
        let mut cluster = Self { dir, nodes };
        for node in 0..NODES {
            cluster.start_node(node);
        }
        assert!(
            cluster.wait_for(READY_TIMEOUT, |c| c.meta_leader().is_some()
                && (0..NODES).all(|n| c.is_healthy(n))),
            "the NATS cluster elected no JetStream meta leader within {READY_TIMEOUT:?}\n{}",
            cluster.logs()
        );
        cluster
    }

    /// Every node's client URL, comma-separated
    /// (`nats://127.0.0.1:P1,nats://127.0.0.1:P2,…`): the form `NATS_URL`
    /// takes for a cluster, so a client can start while any node is down.
    pub fn url(&self) -> String {
        (0..NODES)
            .map(|node| self.node_url(node))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `node`'s client URL alone.
    pub fn node_url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[node].client_port)
    }

    /// SIGKILLs node `node`, as a crash would: no lame-duck mode, no flush.
    /// Does nothing when it is not running.
    pub fn kill(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `node` (again) on its ports and store and waits until it
    /// accepts clients; it may still be catching up with the others then
    /// (see [`NatsCluster::is_healthy`]). Does nothing when it is running.
    pub fn start_node(&mut self, node: usize) {
        if self.is_running(node) {
            return;
        }
        let binary = find_executable("nats-server", "NATS_SERVER_BIN").expect(NATS_INSTALL_HINT);
        let log_path = self.log_path(node);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let child = Command::new(binary)
            .arg("-c")
            .arg(self.dir.path().join(format!("node-{}.conf", node + 1)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(NATS_INSTALL_HINT);
        self.nodes[node].child = Some(child);
        wait_for_port(
            self.nodes[node].client_port,
            Duration::from_secs(20),
            &log_path,
        );
    }

    /// Whether node `node`'s process is alive (a node that exited by itself
    /// counts as not running).
    pub fn is_running(&mut self, node: usize) -> bool {
        self.nodes[node]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Whether node `node` answers its monitoring `/healthz` with 200: the
    /// server's own check that JetStream is up, in contact with the meta
    /// leader and that every stream and consumer it holds is current. A node
    /// just restarted is not healthy until it has caught up, and killing
    /// another node before then could leave a stream without a quorum.
    pub fn is_healthy(&self, node: usize) -> bool {
        http_get(self.nodes[node].http_port, "/healthz").is_some_and(|(status, _)| status == 200)
    }

    /// Waits until node `node` is healthy; `false` after `timeout`.
    pub fn wait_healthy(&self, node: usize, timeout: Duration) -> bool {
        self.wait_for(timeout, |c| c.is_healthy(node))
    }

    /// The JetStream meta leader's server name as the running nodes see it,
    /// `None` while there is none or they disagree (an election going on).
    pub fn meta_leader(&self) -> Option<String> {
        let mut leaders = self.nodes.iter().filter_map(|node| {
            let (status, body) = http_get(node.http_port, "/jsz")?;
            let jsz: serde_json::Value = serde_json::from_str(&body).ok()?;
            let leader = jsz["meta_cluster"]["leader"].as_str()?;
            (status == 200 && !leader.is_empty()).then(|| leader.to_string())
        });
        let first = leaders.next()?;
        leaders.all(|l| l == first).then_some(first)
    }

    /// The node that is the JetStream meta leader, when the running nodes
    /// agree on one: a test that wants to kill a node without causing a
    /// meta-leader election picks another.
    pub fn meta_leader_node(&self) -> Option<usize> {
        let leader = self.meta_leader()?;
        self.nodes.iter().position(|node| {
            http_get(node.http_port, "/varz")
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .is_some_and(|varz| varz["server_name"] == leader.as_str())
        })
    }

    /// The last lines of every node's log, for a failure message.
    pub fn logs(&self) -> String {
        (0..NODES)
            .map(|node| {
                let text = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!(
                    "--- nats node {} ({}):\n{}",
                    node + 1,
                    self.log_path(node).display(),
                    lines[lines.len().saturating_sub(15)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}.log", node + 1))
    }

    fn wait_for(&self, timeout: Duration, ready: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if ready(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in 0..NODES {
            self.kill(node);
        }
    }
}

/// How one stream or durable consumer of the topology is replicated, as the
/// cluster reports it: what tests assert on to know that R3 is real.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// The stream (`KV_…` for a bucket, `OBJ_…` for the object store), or
    /// `stream/consumer`.
    pub name: String,
    /// The replicas its configuration asks for (0 for a consumer: as many
    /// as its stream).
    pub configured: usize,
    /// The servers holding a copy: the leader and its followers.
    pub copies: usize,
}

/// The replication of every stream, bucket, object store and durable
/// consumer the topology declares (taken from the topology's own
/// configurations, so a new bucket is covered without touching the tests).
pub async fn replication(bus: &Bus) -> Vec<Replication> {
    let settings = BusSettings::default();
    let streams = stream_configs(&settings)
        .into_iter()
        .map(|c| c.name)
        .chain(
            bucket_configs(&settings)
                .into_iter()
                .map(|c| format!("KV_{}", c.bucket)),
        )
        .chain(
            object_store_configs(&settings)
                .into_iter()
                .map(|c| format!("OBJ_{}", c.bucket)),
        );
    let copies = |cluster: Option<usize>| cluster.map_or(1, |followers| followers + 1);
    let js = bus.jetstream();
    let mut replication = Vec::new();
    for name in streams {
        let stream = js.get_stream(&name).await.expect("stream info");
        let info = stream.cached_info();
        replication.push(Replication {
            configured: info.config.num_replicas,
            copies: copies(info.cluster.as_ref().map(|c| c.replicas.len())),
            name,
        });
    }
    for stage in [Stage::Scan, Stage::Resolve, Stage::Commit] {
        let (stream, config) = consumer_config(stage, &settings);
        let durable = config.durable_name.unwrap_or_default();
        let info = js
            .get_stream(stream)
            .await
            .expect("stream info")
            .consumer_info(&durable)
            .await
            .expect("consumer info");
        replication.push(Replication {
            name: format!("{stream}/{durable}"),
            configured: info.config.num_replicas,
            copies: copies(info.cluster.as_ref().map(|c| c.replicas.len())),
        });
    }
    replication
}

/// Substitutes every `@NAME@` of the template, panicking when one is left:
/// a placeholder added to the template must be added here too.
fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut text = template.to_string();
    for (placeholder, value) in values {
        assert!(
            text.contains(placeholder),
            "{placeholder} is not in the cluster template"
        );
        text = text.replace(placeholder, value);
    }
    let unknown: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| l.matches('@').count() >= 2)
        .collect();
    assert!(
        unknown.is_empty(),
        "placeholders left in the cluster template: {unknown:?}"
    );
    text
}

/// A plain HTTP/1.0 GET on loopback: the status and the body, `None` when
/// nothing answers. Blocking and dependency-free, so a chaos driver can poll
/// a node's monitoring port from synchronous code within a test's runtime.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
