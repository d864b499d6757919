//! A real HTTP proxy, Debian's `tinyproxy`, on a free loopback port in a
//! temporary directory, with basic auth, stopped on drop: what
//! `proxySecretRef` points at in tests.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// A running tinyproxy.
pub struct Tinyproxy {
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Tinyproxy {
    /// Starts tinyproxy requiring `username`/`password` (basic auth).
    pub fn start(username: &str, password: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tagrelay-proxy-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let config = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\nMaxClients 50\nAllow 127.0.0.1\nBasicAuth {username} {password}\nDisableViaHeader Yes\n",
            log.display()
        );
        let config_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&config_path, config).expect("write tinyproxy.conf");
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy (apt-get install tinyproxy; scripts/install-deps does)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, dir, child }
    }

    /// `http://127.0.0.1:PORT`, the Secret's `address`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What tinyproxy logged: one `Request … GET http://…` line per proxied
    /// request.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
