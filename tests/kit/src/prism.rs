//! GitHub's own OpenAPI description, served on loopback by Prism
//! (`@stoplight/prism-cli`), which validates every request against it and
//! answers with the description's examples.
//!
//! No GitHub can run here; this is the next best thing for the forge
//! client: a wrong path, method, header or body field gets Prism's 422 (or
//! 404/405) and fails the test. Prism keeps no state, so the request life
//! cycle is tested against [`crate::forge`] instead. Prism and the
//! description (`@octokit/openapi`) come from npm, installed by
//! `scripts/install-deps` under `$TAGRELAY_NPM_DIR` (default
//! `~/.cache/tagrelay/npm`); the description is cut to the paths tagrelay
//! uses, which Prism loads in seconds rather than minutes.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The GitHub paths tagrelay calls: the review stage's, and the
/// notifier's commit status.
pub const GITHUB_PATHS: [&str; 6] = [
    "/repos/{owner}/{repo}/pulls",
    "/repos/{owner}/{repo}/pulls/{pull_number}",
    "/repos/{owner}/{repo}/issues/{issue_number}/labels",
    "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
    "/app/installations/{installation_id}/access_tokens",
    "/repos/{owner}/{repo}/statuses/{sha}",
];

/// A running Prism mock, stopped on drop.
pub struct Prism {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn npm_dir() -> PathBuf {
    std::env::var_os("TAGRELAY_NPM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tagrelay/npm")
        })
}

impl Prism {
    /// Serves GitHub's REST description (api.github.com), cut to
    /// [`GITHUB_PATHS`].
    pub fn github() -> Self {
        let npm = npm_dir();
        let prism = npm.join("node_modules/.bin/prism");
        let full = npm.join("node_modules/@octokit/openapi/generated/api.github.com.deref.json");
        assert!(
            prism.exists() && full.exists(),
            "Prism and @octokit/openapi are not installed under {} (scripts/install-deps installs them)",
            npm.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let cut = dir.path().join("github.json");
        let script = "import json,sys\n\
            d=json.load(open(sys.argv[1]))\n\
            keep=set(sys.argv[3:])\n\
            d['paths']={k:v for k,v in d['paths'].items() if k in keep}\n\
            d.pop('components',None)\n\
            json.dump(d,open(sys.argv[2],'w'))\n";
        let status = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&full)
            .arg(&cut)
            .args(GITHUB_PATHS)
            .status()
            .expect("python3");
        assert!(
            status.success(),
            "cutting GitHub's OpenAPI description failed"
        );
        let port = free_port();
        let child = Command::new(&prism)
            .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
            .arg(&cut)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prism");
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "prism did not listen");
            std::thread::sleep(Duration::from_millis(200));
        }
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`, GitHub's API base.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
