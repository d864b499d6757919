//! Debian's `prometheus-alertmanager`, started on loopback with one route to
//! a webhook receiver: what the notifier's `alertmanager` provider is tested
//! against.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{find_executable, free_port, stop_gracefully, wait_for_port};

/// A running Alertmanager, stopped when dropped.
pub struct Alertmanager {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        stop_gracefully(&mut self.child);
    }
}

impl Alertmanager {
    /// Starts Alertmanager forwarding every alert to `webhook_url` at once
    /// (no grouping wait), clustering off.
    pub fn start(webhook_url: &str) -> Self {
        let binary: PathBuf = find_executable("prometheus-alertmanager", "ALERTMANAGER_BIN")
            .or_else(|| find_executable("alertmanager", "ALERTMANAGER_BIN"))
            .expect("prometheus-alertmanager not found: scripts/install-deps installs it");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: test\n  group_by: ['alertname']\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: false\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("alertmanager.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(20), &log);
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// The v2 alerts endpoint, as a Provider's `address`.
    pub fn alerts_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v2/alerts", self.port)
    }
}
