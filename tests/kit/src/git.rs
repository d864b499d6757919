//! Real Git remotes for tests: bare repositories over `file://`, smart HTTP
//! through `git http-backend`, created in temporary directories.
//!
//! Everything goes through Debian's `git` (no library): seeding, reading a
//! file at a branch tip, a "human" commit racing the bot (plumbing commands
//! with a compare-and-swap ref update, exactly what a `git push` from a
//! laptop does to the remote), and server-side hooks. The HTTP server is a
//! small CGI bridge: one thread, one request per connection, `git
//! http-backend` per request, optional HTTP basic auth.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use base64::Engine;
use tempfile::TempDir;

/// One entry of a seeded tree.
#[derive(Debug, Clone)]
pub enum Seed {
    /// A regular file.
    File(String, String),
    /// A symlink and its target.
    Symlink(String, String),
}

impl Seed {
    /// A regular file.
    pub fn file(path: &str, content: &str) -> Self {
        Seed::File(path.to_string(), content.to_string())
    }

    /// A symlink.
    pub fn symlink(path: &str, target: &str) -> Self {
        Seed::Symlink(path.to_string(), target.to_string())
    }
}

/// Runs git with `args` in `dir`, panicking with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .env("GIT_AUTHOR_NAME", "Human")
        .env("GIT_AUTHOR_EMAIL", "human@example.com")
        .env("GIT_COMMITTER_NAME", "Human")
        .env("GIT_COMMITTER_EMAIL", "human@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git is installed (apt-get install git)");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A bare repository in a temporary directory, removed on drop.
pub struct BareRepo {
    dir: TempDir,
}

impl BareRepo {
    /// A bare repository whose `branch` holds `seed` in one commit.
    pub fn seeded(branch: &str, seed: &[Seed]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tagrelay-git-")
            .tempdir()
            .expect("temp dir");
        let repo = Self { dir };
        git(
            repo.dir.path(),
            &["init", "-q", "--bare", "-b", branch, "remote.git"],
        );
        let work = repo.dir.path().join("seed");
        git(repo.dir.path(), &["init", "-q", "-b", branch, "seed"]);
        for entry in seed {
            match entry {
                Seed::File(path, content) => {
                    let file = work.join(path);
                    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                    std::fs::write(file, content).expect("write seed file");
                }
                Seed::Symlink(path, target) => {
                    let link = work.join(path);
                    std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
                    std::os::unix::fs::symlink(target, link).expect("symlink");
                }
            }
        }
        git(&work, &["add", "-A"]);
        // No background gc racing the removal below.
        git(
            &work,
            &[
                "-c",
                "gc.auto=0",
                "-c",
                "maintenance.auto=false",
                "commit",
                "-q",
                "-m",
                "seed",
            ],
        );
        git(
            &work,
            &["push", "-q", repo.path().to_str().expect("utf-8"), branch],
        );
        // Removed with the temporary directory at the latest.
        let _ = std::fs::remove_dir_all(&work);
        repo
    }

    /// The bare repository's directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    /// `file://` URL of the repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// The commit id `branch` points at, if it exists.
    pub fn tip(&self, branch: &str) -> Option<String> {
        let output = Command::new("git")
            .arg("--git-dir")
            .arg(self.path())
            .args(["rev-parse", "--verify", "-q"])
            .arg(format!("refs/heads/{branch}"))
            .output()
            .expect("git");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// A file's bytes at `branch`'s tip.
    pub fn read(&self, branch: &str, path: &str) -> Option<Vec<u8>> {
        let output = Command::new("git")
            .arg("--git-dir")
            .arg(self.path())
            .args(["cat-file", "blob"])
            .arg(format!("refs/heads/{branch}:{path}"))
            .output()
            .expect("git");
        output.status.success().then_some(output.stdout)
    }

    /// A file at `branch`'s tip as text.
    pub fn read_text(&self, branch: &str, path: &str) -> Option<String> {
        self.read(branch, path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Commit ids on `branch`, newest first (first parents only).
    pub fn log(&self, branch: &str) -> Vec<String> {
        git(
            &self.path(),
            &[
                "rev-list",
                "--first-parent",
                &format!("refs/heads/{branch}"),
            ],
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// The full message of a commit.
    pub fn message(&self, commit: &str) -> String {
        git(&self.path(), &["log", "-1", "--format=%B", commit])
    }

    /// A raw git command run in the bare repository.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.path(), args)
    }

    /// A "human" commit on `branch` writing `content` to `path`, landed the
    /// way a push lands: the ref moves only if it still points where it did.
    /// Returns the new commit id.
    pub fn human_commit(&self, branch: &str, path: &str, content: &str, message: &str) -> String {
        let repo = self.path();
        let index = self
            .dir
            .path()
            .join(format!("human-index-{}", std::process::id()));
        let index_str = index.to_str().expect("utf-8").to_string();
        let env = [("GIT_INDEX_FILE", index_str.as_str())];
        let parent = self.tip(branch).expect("branch exists");
        git_env(&repo, &["read-tree", &parent], &env);
        let blob = {
            let mut child = Command::new("git")
                .arg("--git-dir")
                .arg(&repo)
                .args(["hash-object", "-w", "--stdin"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("git");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(content.as_bytes())
                .expect("write blob");
            let out = child.wait_with_output().expect("git hash-object");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git_env(
            &repo,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ],
            &env,
        );
        let tree = git_env(&repo, &["write-tree"], &env).trim().to_string();
        let commit = git(&repo, &["commit-tree", &tree, "-p", &parent, "-m", message])
            .trim()
            .to_string();
        git(
            &repo,
            &[
                "update-ref",
                &format!("refs/heads/{branch}"),
                &commit,
                &parent,
            ],
        );
        let _ = std::fs::remove_file(index);
        commit
    }

    /// Installs an executable server-side hook (`pre-receive`, `update`, …).
    pub fn install_hook(&self, name: &str, script: &str) {
        let hooks = self.path().join("hooks");
        std::fs::create_dir_all(&hooks).expect("hooks dir");
        let path = hooks.join(name);
        std::fs::write(&path, script).expect("write hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A scratch directory beside the repository, removed with it.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

/// Smart HTTP in front of a directory of bare repositories, through
/// `git http-backend`, on a free loopback port. It can be stopped (the port
/// then refuses connections, as a remote that is down does) and started
/// again on the same port. Stopped on drop.
pub struct HttpRemote {
    port: u16,
    root: PathBuf,
    expected: Option<String>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// The `git http-backend` executable (Debian ships it in git-core).
pub fn http_backend() -> PathBuf {
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git");
    PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-http-backend")
}

impl HttpRemote {
    /// Serves the repositories under `root` (`http://127.0.0.1:PORT/<name>`),
    /// requiring HTTP basic auth when `credentials` is given.
    pub fn serve(root: &Path, credentials: Option<(&str, &str)>) -> Self {
        let expected =
            credentials.map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        Self::serve_authorized(root, expected)
    }

    /// Serves the repositories under `root`, requiring `Authorization:
    /// Bearer <token>`.
    pub fn serve_bearer(root: &Path, token: &str) -> Self {
        Self::serve_authorized(root, Some(format!("Bearer {token}")))
    }

    fn serve_authorized(root: &Path, expected: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let mut remote = Self {
            port,
            root: root.to_path_buf(),
            expected,
            stop: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(AtomicUsize::new(0)),
            thread: None,
        };
        remote.accept_on(listener);
        remote
    }

    fn accept_on(&mut self, listener: TcpListener) {
        listener.set_nonblocking(true).expect("nonblocking");
        self.stop = Arc::new(AtomicBool::new(false));
        let (stop, requests) = (self.stop.clone(), self.requests.clone());
        let (root, expected) = (self.root.clone(), self.expected.clone());
        let backend = http_backend();
        self.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        let _ = serve_one(stream, &root, &backend, expected.as_deref());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        }));
    }

    /// Stops serving after the request in hand: connections to the port
    /// are refused until [`start`](HttpRemote::start).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Serves again on the same port (after [`stop`](HttpRemote::stop)).
    pub fn start(&mut self) {
        if self.thread.is_some() {
            return;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("port {} cannot be bound again: {e}", self.port),
            }
        };
        self.accept_on(listener);
    }

    /// Whether it is serving (not stopped).
    pub fn is_serving(&self) -> bool {
        self.thread.is_some()
    }

    /// URL of the repository `name` (a directory under the root).
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The loopback port it serves on (for a TLS front).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many HTTP requests were served.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for HttpRemote {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_one(
    stream: TcpStream,
    root: &Path,
    backend: &Path,
    expected_auth: Option<&str>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    let mut out = stream;
    let authorized = match expected_auth {
        None => true,
        Some(expected) => header("authorization").as_deref() == Some(expected),
    };
    if !authorized {
        return out.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut command = Command::new(backend);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = header("content-type") {
        command.env("CONTENT_TYPE", t);
    }
    if let Some(e) = header("content-encoding") {
        command.env("HTTP_CONTENT_ENCODING", e);
    }
    if let Some(p) = header("git-protocol") {
        command.env("GIT_PROTOCOL", p);
    }
    if expected_auth.is_some() {
        command.env("REMOTE_USER", "tester");
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let output = child.wait_with_output()?;
    let _ = writer.join();
    let raw = output.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, payload) = match split {
        Some((i, n)) => (
            String::from_utf8_lossy(&raw[..i]).into_owned(),
            &raw[i + n..],
        ),
        None => (String::new(), &raw[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for h in head.lines() {
        if let Some(s) = h.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !h.trim().is_empty() {
            response.push_str(h.trim_end());
            response.push_str("\r\n");
        }
    }
    let start = format!(
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    );
    out.write_all(start.as_bytes())?;
    out.write_all(payload)?;
    out.flush()
}

/// How to get `sshd` when it is missing: printed by [`SshRemote::serve`].
pub const SSHD_INSTALL_HINT: &str =
    "sshd not found: install it with `apt-get install openssh-server` (or set SSHD_BIN)";

/// An `sshd` on a free loopback port that lets one generated key in as the
/// current user, so `ssh://` remotes are real: host key checking against a
/// generated known_hosts, public-key auth, `git-upload-pack` /
/// `git-receive-pack` run by sshd. Stopped on drop.
pub struct SshRemote {
    dir: TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

impl SshRemote {
    /// Starts sshd; panics with [`SSHD_INSTALL_HINT`] when it is missing.
    pub fn serve() -> Self {
        let sshd = crate::find_executable("sshd", "SSHD_BIN")
            .or_else(|| Some(PathBuf::from("/usr/sbin/sshd")).filter(|p| p.is_file()))
            .expect(SSHD_INSTALL_HINT);
        let dir = tempfile::Builder::new()
            .prefix("tagrelay-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(d.join(key))
                .status()
                .expect("ssh-keygen (apt-get install openssh-client)");
            assert!(status.success());
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let port = crate::free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .arg("-E")
            .arg(d.join("sshd.log"))
            .spawn()
            .expect(SSHD_INSTALL_HINT);
        let host_key = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")),
        )
        .expect("known_hosts");
        crate::wait_for_port(
            port,
            std::time::Duration::from_secs(10),
            &d.join("sshd.log"),
        );
        Self {
            dir,
            port,
            child: Some(child),
        }
    }

    /// `ssh://` URL of the bare repository at `path`, as the current user.
    pub fn url(&self, path: &Path) -> String {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id").stdout)
                    .trim()
                    .to_string()
            });
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, path.display())
    }

    /// The private key sshd accepts (Flux's `identity`).
    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A known_hosts line for this server (Flux's `known_hosts`).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }
}

impl Drop for SshRemote {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Standard base64 (the `base64` crate), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_repo_serves_files_and_takes_human_commits() {
        let repo = BareRepo::seeded("main", &[Seed::file("a/x.yaml", "x: 1\n")]);
        assert_eq!(
            repo.read_text("main", "a/x.yaml").as_deref(),
            Some("x: 1\n")
        );
        let before = repo.tip("main").unwrap();
        let after = repo.human_commit("main", "b.yaml", "b: 2\n", "human");
        assert_eq!(repo.log("main"), vec![after.clone(), before]);
        assert_eq!(repo.read_text("main", "b.yaml").as_deref(), Some("b: 2\n"));
        assert_eq!(
            repo.read_text("main", "a/x.yaml").as_deref(),
            Some("x: 1\n")
        );
    }

    #[test]
    fn smart_http_clones_and_pushes_with_basic_auth() {
        let repo = BareRepo::seeded("main", &[Seed::file("x.yaml", "x: 1\n")]);
        let server = HttpRemote::serve(&repo.scratch(), Some(("bot", "pw")));
        let url = server.url("remote.git");
        let scratch = repo.scratch();
        let denied = Command::new("git")
            .current_dir(&scratch)
            .args(["ls-remote", &url])
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap();
        assert!(!denied.status.success());
        let authed = url.replace("http://", "http://bot:pw@");
        git(&scratch, &["clone", "-q", &authed, "clone"]);
        let clone = scratch.join("clone");
        std::fs::write(clone.join("y.yaml"), "y: 2\n").unwrap();
        git(&clone, &["add", "y.yaml"]);
        git(&clone, &["commit", "-q", "-m", "y"]);
        git(&clone, &["push", "-q", "origin", "main"]);
        assert_eq!(repo.read_text("main", "y.yaml").as_deref(), Some("y: 2\n"));
        assert!(server.requests() >= 4);
    }

    #[test]
    fn a_stopped_http_remote_refuses_connections_until_started_again() {
        let repo = BareRepo::seeded("main", &[Seed::file("x.yaml", "x: 1\n")]);
        let mut server = HttpRemote::serve(&repo.scratch(), None);
        let url = server.url("remote.git");
        let ls_remote = || {
            Command::new("git")
                .args(["ls-remote", &url, "main"])
                .env("GIT_TERMINAL_PROMPT", "0")
                .output()
                .unwrap()
        };
        assert!(ls_remote().status.success());
        server.stop();
        assert!(!server.is_serving());
        let down = ls_remote();
        assert!(!down.status.success());
        assert!(
            String::from_utf8_lossy(&down.stderr).contains("onnect"),
            "{}",
            String::from_utf8_lossy(&down.stderr)
        );
        server.start();
        assert!(server.is_serving());
        let up = ls_remote();
        assert!(up.status.success());
        assert!(String::from_utf8_lossy(&up.stdout).contains(&repo.tip("main").unwrap()));
    }
}
