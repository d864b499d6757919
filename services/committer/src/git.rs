//! The Git object work, done with gix: one cached bare repository per
//! remote, fetched incrementally; trees walked and blobs read straight from
//! the object database; new blobs, trees and the commit written there. No
//! worktree is ever checked out, so a 10,000-file repository costs a walk of
//! its trees plus the few blobs that can hold a marker.
//!
//! Safety lives here too: the walk never leaves `update.path`, never enters
//! `.git`, and never follows a symlink (one that points outside the
//! repository is reported as such).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::ObjectId;
use sha2::{Digest, Sha256};
use tagrelay_proto::event::FailureReason;

use crate::credentials::{ssh_command, GitAccess, GitAuth, GitTls};
use crate::signing::{Signer, SigningError};
use tagrelay_rewrite::screen::{is_manifest_name, Unread};
pub use tagrelay_rewrite::screen::{Screen, MAX_MANIFEST_BYTES};

/// What went wrong on the Git side, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// The local cache could not be created or opened.
    #[error("git cache {path}: {reason}")]
    Cache {
        /// The cache directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// Fetching from the remote failed.
    #[error("fetch from {remote}: {reason}")]
    Fetch {
        /// The remote, without credentials.
        remote: String,
        /// The transport's words.
        reason: String,
    },
    /// The configured ref is not on the remote.
    #[error("{what} not found on {remote}")]
    MissingRef {
        /// The ref, as configured.
        what: String,
        /// The remote.
        remote: String,
    },
    /// `update.path` does not name a directory of the tree.
    #[error("update.path {path:?}: {reason}")]
    UpdatePath {
        /// The path.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Reading or writing an object failed.
    #[error("git objects: {0}")]
    Objects(String),
    /// The commit could not be signed, so it was not written.
    #[error(transparent)]
    Signing(#[from] SigningError),
}

impl GitError {
    /// The kind of failure a `CommitFailed` records for this error.
    pub fn reason(&self) -> FailureReason {
        match self {
            GitError::Fetch { .. } => FailureReason::GitUnavailable,
            GitError::MissingRef { .. } | GitError::UpdatePath { .. } => FailureReason::InvalidSpec,
            GitError::Cache { .. } | GitError::Objects(_) => FailureReason::Other,
            GitError::Signing(_) => FailureReason::SigningFailed,
        }
    }
}

/// gix errors chain their causes; `{:#}` shows the whole chain, which is
/// what an operator needs ("handshake failed" alone says little).
fn objects_err(e: impl std::fmt::Display) -> GitError {
    GitError::Objects(format!("{e:#}"))
}

/// Where the bare clone of `url` lives under `root`: one directory per
/// remote, named by a hash of the URL so that any URL maps to a safe name.
pub fn cache_path(root: &Path, url: &str) -> PathBuf {
    let digest = Sha256::digest(url.as_bytes());
    let name = hex::encode(&digest[..10]);
    root.join(format!("{name}.git"))
}

/// Exclusive use of one cache by this process, among processes: a `flock`
/// on `<cache>.flock` beside it, which the kernel releases when the file is
/// dropped or the process exits, however it dies.
#[derive(Debug)]
pub struct CacheLease {
    _file: std::fs::File,
}

/// Waits until no other process works on the cache at `path` (this
/// process's own tasks are already serialised per cache), then removes the
/// lock files a process killed mid-write left in it.
///
/// Git takes a `*.lock` file beside every ref, `packed-refs`, `HEAD` or
/// `config` it updates and renames it into place; a process SIGKILLed in
/// between leaves it, and from then on every fetch into that ref fails with
/// "the lock could not be obtained", for good. With the lease held no other
/// process can be writing, so any such file is stale.
pub fn lease_cache(path: &Path) -> Result<CacheLease, GitError> {
    let cache_err = |e: &dyn std::fmt::Display| GitError::Cache {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut lease_path = path.as_os_str().to_owned();
    lease_path.push(".flock");
    if let Some(root) = path.parent() {
        std::fs::create_dir_all(root).map_err(|e| cache_err(&e))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lease_path)
        .map_err(|e| cache_err(&e))?;
    file.lock().map_err(|e| cache_err(&e))?;
    for stale in stale_locks(path).map_err(|e| cache_err(&e))? {
        std::fs::remove_file(&stale).map_err(|e| cache_err(&e))?;
        tracing::warn!(lock = %stale.display(), "removed a lock file left by a process that died mid-write");
    }
    Ok(CacheLease { _file: file })
}

/// The `*.lock` files at the top of the bare clone at `path` and anywhere
/// under its `refs/`, where Git writes them; symlinks are not followed.
fn stale_locks(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![(path.to_path_buf(), false)];
    while let Some((dir, is_refs)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            let entry_path = entry.path();
            if kind.is_dir() && (is_refs || entry.file_name() == "refs") {
                dirs.push((entry_path, true));
            } else if kind.is_file() && entry.file_name().to_string_lossy().ends_with(".lock") {
                found.push(entry_path);
            }
        }
    }
    Ok(found)
}

/// Opens the bare clone at `path`, creating it empty the first time.
pub fn open_or_init(path: &Path) -> Result<gix::ThreadSafeRepository, GitError> {
    let cache_err = |e: &dyn std::fmt::Display| GitError::Cache {
        path: path.display().to_string(),
        reason: format!("{e:#}"),
    };
    let repo = if path.join("objects").is_dir() {
        gix::open(path).map_err(|e| cache_err(&e))?
    } else {
        std::fs::create_dir_all(path).map_err(|e| cache_err(&e))?;
        gix::init_bare(path).map_err(|e| cache_err(&e))?
    };
    Ok(repo.into_sync())
}

/// The refspecs fetched into every cache: all branches (as remote-tracking
/// refs, so the next fetch negotiates from them) and, when asked, tags.
fn refspecs(tags: bool) -> Vec<&'static str> {
    let mut specs = vec!["+refs/heads/*:refs/remotes/origin/*"];
    if tags {
        specs.push("+refs/tags/*:refs/tags/*");
    }
    specs
}

/// Fetches the remote's branches (and tags when `tags`) into the cache and
/// returns every ref the remote advertised, peeled to the object it names.
/// Only objects the cache lacks travel. `timeout`
/// (`GitRepository.spec.timeout`, which bounds the push too) bounds each
/// HTTP(S) request of the fetch, and an SSH connection's setup and silence,
/// so a remote that stops answering fails the reconcile instead of holding
/// it (and a large first fetch is not cut at the HTTP client's own default
/// of 30 s).
#[tracing::instrument(name = "git fetch", skip_all)]
pub fn fetch(
    repo: &gix::Repository,
    url: &str,
    display_url: &str,
    access: &GitAccess,
    tags: bool,
    timeout: Duration,
) -> Result<BTreeMap<String, ObjectId>, GitError> {
    let auth = &access.auth;
    let fetch_err = |e: &dyn std::fmt::Display| GitError::Fetch {
        remote: display_url.to_string(),
        reason: format!("{e:#}"),
    };
    let mut repo = repo.clone();
    // ssh takes `timeout` as its own bounds: on connecting (the banner
    // exchange included) and on a server that stops answering keepalives.
    let seconds = timeout.as_secs().max(1);
    let bounds = format!(
        " -o ConnectTimeout={seconds} -o ServerAliveInterval={} -o ServerAliveCountMax=3",
        (seconds / 3).max(1)
    );
    let command = match auth {
        GitAuth::Ssh {
            identity,
            known_hosts,
            passphrase_dir,
        } => {
            let passphrase = passphrase_dir
                .as_deref()
                .map(|dir| (access.askpass.as_path(), dir));
            ssh_command(identity, known_hosts.as_deref(), passphrase) + &bounds
        }
        _ => format!("ssh{bounds}"),
    };
    let mut config = repo.config_snapshot_mut();
    config
        .set_raw_value("core.sshCommand", command.as_str())
        .map_err(|e| fetch_err(&e))?;
    config.commit().map_err(|e| fetch_err(&e))?;
    let remote = repo
        .remote_at(url)
        .map_err(|e| fetch_err(&e))?
        .with_refspecs(refspecs(tags), gix::remote::Direction::Fetch)
        .map_err(|e| fetch_err(&e))?;
    let mut connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| fetch_err(&e))?;
    // Credentials go as a preemptive `Authorization` header: gix's own
    // credential flow refuses plain-HTTP remotes, which `git` (used for
    // the push) accepts, and both must see the same remote the same way.
    let header = match auth {
        GitAuth::Bearer { token } => Some(format!("Authorization: Bearer {token}")),
        GitAuth::Basic {
            username, password, ..
        } => Some(format!(
            "Authorization: Basic {}",
            crate::credentials::basic_credentials(username, password)
        )),
        _ => None,
    };
    let client = client_setup(access).map_err(|e| fetch_err(&e))?;
    let mut options = gix::protocol::transport::client::blocking_io::http::Options {
        extra_headers: header.into_iter().collect(),
        ..Default::default()
    };
    // gix's reqwest transport takes neither `http.proxy` nor `http.ssl*`
    // nor a timeout; the client it builds is given them instead.
    let backend = gix::protocol::transport::client::blocking_io::http::reqwest::Options {
        configure_client: Some(Box::new(move |mut builder| {
            builder = builder.timeout(timeout);
            if let Some(ClientSetup {
                proxy,
                roots,
                identity,
            }) = &client
            {
                if let Some(proxy) = proxy {
                    builder = builder.proxy(proxy.clone());
                }
                for root in roots {
                    builder = builder.add_root_certificate(root.clone());
                }
                if let Some(identity) = identity {
                    builder = builder.identity(identity.clone());
                }
            }
            Ok(builder)
        })),
        configure_request: None,
    };
    options.backend = Some(std::sync::Arc::new(Mutex::new(backend)));
    connection = connection.with_transport_options(Box::new(options));
    // A timeout is said in the operator's terms: which field to raise.
    let failed = |e: &(dyn std::error::Error + 'static)| {
        if timed_out(e) {
            fetch_err(&format!(
                "no answer within {timeout:?} (GitRepository spec.timeout)"
            ))
        } else {
            fetch_err(&e)
        }
    };
    let outcome = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| failed(&e))?
        .receive(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(|e| failed(&e))?;
    let mut refs = BTreeMap::new();
    for r in &outcome.ref_map.remote_refs {
        let (name, target, peeled) = r.unpack();
        if let Some(id) = peeled.or(target) {
            refs.insert(name.to_str_lossy().into_owned(), id.to_owned());
        }
    }
    Ok(refs)
}

/// Whether `error` was caused by an HTTP request or socket timing out.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// What gix's HTTP client is given beyond defaults: the proxy, the CA
/// certificates to trust, the client certificate.
struct ClientSetup {
    proxy: Option<reqwest::Proxy>,
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
}

/// The client setup `access` asks for; `None` when it asks for nothing.
fn client_setup(access: &GitAccess) -> Result<Option<ClientSetup>, String> {
    if access.proxy.is_none() && access.tls == GitTls::default() {
        return Ok(None);
    }
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let proxy = match &access.proxy {
        Some(proxy) => Some(reqwest::Proxy::all(proxy.url()).map_err(|e| format!("proxy: {e}"))?),
        None => None,
    };
    let roots = match &access.tls.ca {
        Some(ca) => {
            reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| format!("ca.crt: {e}"))?
        }
        None => Vec::new(),
    };
    let identity =
        match &access.tls.client {
            Some((cert, key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                Some(reqwest::Identity::from_pem(&pem).map_err(|_| {
                    "tls.crt / tls.key are not a PEM certificate and key".to_string()
                })?)
            }
            None => None,
        };
    Ok(Some(ClientSetup {
        proxy,
        roots,
        identity,
    }))
}

/// A file found under `update.path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path from the repository root, `/`-separated.
    pub path: String,
    /// Its blob.
    pub blob: ObjectId,
    /// Whether it is executable (kept when rewritten).
    pub executable: bool,
}

/// A path the walk did not process, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path from the repository root.
    pub path: String,
    /// Why it was not read.
    pub reason: Unread,
}

/// The manifests a rewrite may touch, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    /// Candidate files (by name), in tree order.
    pub files: Vec<FileEntry>,
    /// Symlinks and other entries that were not followed.
    pub skipped: Vec<Skipped>,
}

/// Walks the tree of `commit` under `base` (a normalized relative path, ""
/// for the root), listing candidate manifests. `base` must be a directory
/// reached without crossing a symlink.
pub fn walk(repo: &gix::Repository, commit: ObjectId, base: &str) -> Result<Walk, GitError> {
    let commit = repo.find_commit(commit).map_err(objects_err)?;
    let mut tree = commit.tree_id().map_err(objects_err)?.detach();
    let mut prefix = String::new();
    for part in base.split('/').filter(|p| !p.is_empty()) {
        let data = repo.find_tree(tree).map_err(objects_err)?;
        let decoded = data.decode().map_err(objects_err)?;
        let entry = decoded
            .entries
            .iter()
            .find(|e| e.filename == part.as_bytes())
            .ok_or_else(|| GitError::UpdatePath {
                path: base.to_string(),
                reason: format!("{prefix}{part} does not exist"),
            })?;
        match entry.mode.kind() {
            EntryKind::Tree => tree = entry.oid.to_owned(),
            EntryKind::Link => {
                return Err(GitError::UpdatePath {
                    path: base.to_string(),
                    reason: format!("{prefix}{part} is a symlink, which is never followed"),
                })
            }
            _ => {
                return Err(GitError::UpdatePath {
                    path: base.to_string(),
                    reason: format!("{prefix}{part} is not a directory"),
                })
            }
        }
        prefix.push_str(part);
        prefix.push('/');
    }
    let mut walk = Walk::default();
    walk_tree(repo, tree, &prefix, &mut walk)?;
    Ok(walk)
}

fn walk_tree(
    repo: &gix::Repository,
    tree: ObjectId,
    prefix: &str,
    walk: &mut Walk,
) -> Result<(), GitError> {
    let data = repo.find_tree(tree).map_err(objects_err)?;
    let decoded = data.decode().map_err(objects_err)?;
    for entry in &decoded.entries {
        let name = entry.filename.to_str_lossy();
        if name == ".git" {
            continue;
        }
        let path = format!("{prefix}{name}");
        match entry.mode.kind() {
            EntryKind::Tree => walk_tree(repo, entry.oid.to_owned(), &format!("{path}/"), walk)?,
            EntryKind::Blob | EntryKind::BlobExecutable if is_manifest_name(&path) => {
                let size = repo
                    .find_header(entry.oid.to_owned())
                    .map_err(objects_err)?
                    .size();
                if let Some(unread) = Unread::by_size(size) {
                    walk.skipped.push(Skipped {
                        path,
                        reason: unread,
                    });
                    continue;
                }
                walk.files.push(FileEntry {
                    path,
                    blob: entry.oid.to_owned(),
                    executable: entry.mode.kind() == EntryKind::BlobExecutable,
                })
            }
            EntryKind::Link if is_manifest_name(&path) => {
                let target = repo
                    .find_blob(entry.oid.to_owned())
                    .map_err(objects_err)?
                    .data
                    .to_str_lossy()
                    .into_owned();
                let reason = Unread::symlink(&path, &target);
                walk.skipped.push(Skipped { path, reason });
            }
            _ => {}
        }
    }
    Ok(())
}

/// The screening verdict of every blob seen, shared by all automations of a
/// process: a blob id names its content, so a verdict never goes stale and
/// a blob without a marker is never read twice.
#[derive(Debug, Default)]
pub struct BlobScreens {
    verdicts: Mutex<HashMap<ObjectId, Screen>>,
}

impl BlobScreens {
    /// The blob's verdict and, when it had to be read and is worth reading
    /// (interesting, or mentioning a marker for the lint checks), its bytes.
    pub fn screen(
        &self,
        repo: &gix::Repository,
        blob: ObjectId,
    ) -> Result<(Screen, Option<Vec<u8>>), GitError> {
        if let Some(screen) = self
            .verdicts
            .lock()
            .ok()
            .and_then(|v| v.get(&blob).copied())
        {
            if !screen.readable() {
                return Ok((screen, None));
            }
        }
        let data = read_blob(repo, blob)?;
        let screen = Screen::of(&data);
        if let Ok(mut verdicts) = self.verdicts.lock() {
            verdicts.insert(blob, screen);
        }
        Ok((screen, screen.readable().then_some(data)))
    }

    /// How many verdicts are cached (for the benchmark's report).
    pub fn len(&self) -> usize {
        self.verdicts.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Whether no verdict is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a blob's bytes.
pub fn read_blob(repo: &gix::Repository, blob: ObjectId) -> Result<Vec<u8>, GitError> {
    Ok(repo.find_blob(blob).map_err(objects_err)?.take_data())
}

/// A file's new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// Path from the repository root.
    pub path: String,
    /// Whether it is executable.
    pub executable: bool,
    /// The bytes.
    pub content: Vec<u8>,
}

/// Everything that makes a commit, fixed so that the same inputs always
/// give the same commit id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSpec {
    /// The parent, whose tree the files are written over.
    pub parent: ObjectId,
    /// When the commit also brings `parent` (the checkout branch) into a
    /// separate push branch: that branch's tip, the commit's first parent,
    /// so the push stays a fast-forward.
    pub merged_into: Option<ObjectId>,
    /// Author (and committer) name.
    pub name: String,
    /// Author (and committer) email.
    pub email: String,
    /// Author and commit time, seconds since the epoch, UTC.
    pub time: i64,
    /// The full message.
    pub message: String,
}

/// Writes `files` over the parent's tree and a commit on top of it, in the
/// object database only (no ref moves), signed by `signer` when given (a
/// `gpgsig` header over the commit's bytes, as `git commit -S` writes it).
/// Returns the commit and its tree.
#[tracing::instrument(name = "git commit", skip_all)]
pub fn write_commit(
    repo: &gix::Repository,
    spec: &CommitSpec,
    files: &[NewFile],
    signer: Option<&Signer>,
) -> Result<(ObjectId, ObjectId), GitError> {
    let parent = repo.find_commit(spec.parent).map_err(objects_err)?;
    let base_tree = parent.tree_id().map_err(objects_err)?.detach();
    let mut editor = repo.edit_tree(base_tree).map_err(objects_err)?;
    for file in files {
        let blob = repo
            .write_blob(&file.content)
            .map_err(objects_err)?
            .detach();
        let kind = if file.executable {
            EntryKind::BlobExecutable
        } else {
            EntryKind::Blob
        };
        editor
            .upsert(file.path.as_str(), kind, blob)
            .map_err(objects_err)?;
    }
    let tree = editor.write().map_err(objects_err)?.detach();
    let signature = gix::actor::Signature {
        name: spec.name.as_str().into(),
        email: spec.email.as_str().into(),
        time: gix::date::Time {
            seconds: spec.time,
            offset: 0,
        },
    };
    let mut commit = gix::objs::Commit {
        tree,
        parents: spec
            .merged_into
            .into_iter()
            .chain(std::iter::once(spec.parent))
            .collect(),
        author: signature.clone(),
        committer: signature,
        encoding: None,
        message: spec.message.as_str().into(),
        extra_headers: Vec::new(),
    };
    if let Some(signer) = signer {
        let mut payload = Vec::new();
        gix::objs::WriteTo::write_to(&commit, &mut payload).map_err(objects_err)?;
        let signature = signer.sign(&payload, spec.time)?;
        commit
            .extra_headers
            .push(("gpgsig".into(), signature.into()));
    }
    let id = repo.write_object(&commit).map_err(objects_err)?.detach();
    Ok((id, tree))
}

/// A commit's tree, first parent, commit time and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Its tree.
    pub tree: ObjectId,
    /// Its first parent.
    pub parent: Option<ObjectId>,
    /// Committer time, seconds since the epoch.
    pub time: i64,
    /// The message.
    pub message: String,
    /// Its `gpgsig` header (the armored signature), when it is signed.
    pub signature: Option<String>,
}

/// Where a run of an automation with a separate push branch builds, given
/// the checkout's commit and the push branch's tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushBase {
    /// The commit whose tree the change is written over.
    pub tree_from: ObjectId,
    /// The push branch's tip when the new commit must also descend from it
    /// (bringing the checkout branch in with a merge), else `None`.
    pub merged_into: Option<ObjectId>,
    /// The push branch holds commits that are not the automation's own:
    /// the change goes on top of them and the checkout branch's new
    /// commits are not brought in.
    pub foreign_commits: bool,
}

/// How many commits of a push branch are looked at to tell whether they
/// are all the automation's own.
const MAX_OWN_COMMITS: usize = 200;

/// Where to build on a push branch that exists (`push_tip`) while the
/// checkout is `checkout`, so that the branch shows "checkout + this
/// update" as Flux's review branches do, without ever rewriting it: when
/// the checkout is already in the branch, on its tip; when the branch has
/// only the automation's own commits (`own_trailer` in their message) since
/// the checkout, on the checkout's tree with a merge into the branch;
/// otherwise (a person's commit is there) on the branch's tip, reported.
pub fn push_base(
    repo: &gix::Repository,
    checkout: ObjectId,
    push_tip: ObjectId,
    own_trailer: &str,
) -> Result<PushBase, GitError> {
    let contains = |descendant: ObjectId, ancestor: ObjectId| -> Result<bool, GitError> {
        Ok(repo
            .merge_base(descendant, ancestor)
            .map_err(|e| GitError::Objects(e.to_string()))?
            .is_some_and(|base| base.detach() == ancestor))
    };
    let on_tip = PushBase {
        tree_from: push_tip,
        merged_into: None,
        foreign_commits: false,
    };
    if push_tip == checkout || contains(push_tip, checkout)? {
        return Ok(on_tip);
    }
    let mut commit = push_tip;
    for _ in 0..MAX_OWN_COMMITS {
        if contains(checkout, commit)? {
            return Ok(PushBase {
                tree_from: checkout,
                merged_into: Some(push_tip),
                foreign_commits: false,
            });
        }
        let info = commit_info(repo, commit)?;
        if !info
            .message
            .lines()
            .any(|line| line.trim_end() == own_trailer)
        {
            break;
        }
        match info.parent {
            Some(parent) => commit = parent,
            None => break,
        }
    }
    Ok(PushBase {
        foreign_commits: true,
        ..on_tip
    })
}

/// Reads a commit.
pub fn commit_info(repo: &gix::Repository, id: ObjectId) -> Result<CommitInfo, GitError> {
    let commit = repo.find_commit(id).map_err(objects_err)?;
    let decoded = commit.decode().map_err(objects_err)?;
    let time = decoded
        .committer()
        .map_err(objects_err)?
        .time()
        .map_err(objects_err)?
        .seconds;
    let parent = decoded.parents().next();
    let info = CommitInfo {
        tree: decoded.tree(),
        parent,
        time,
        message: decoded.message.to_str_lossy().into_owned(),
        signature: decoded
            .extra_headers()
            .pgp_signature()
            .map(|s| s.to_str_lossy().into_owned()),
    };
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_exclusive_and_clears_lock_files_only_where_git_leaves_them() {
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("remote.git");
        let outside = root.path().join("elsewhere");
        for dir in ["refs/remotes/origin/team", "objects/pack"] {
            std::fs::create_dir_all(cache.join(dir)).unwrap();
        }
        std::fs::create_dir_all(outside.join("refs")).unwrap();
        std::os::unix::fs::symlink(&outside, cache.join("refs/linked")).unwrap();
        let stale = [
            "HEAD.lock",
            "packed-refs.lock",
            "refs/remotes/origin/main.lock",
            "refs/remotes/origin/team/a.lock",
        ];
        let kept = ["objects/pack/tmp.lock", "refs/remotes/origin/main"];
        for file in stale.iter().chain(&kept) {
            std::fs::write(cache.join(file), "x").unwrap();
        }
        std::fs::write(outside.join("refs/other.lock"), "x").unwrap();

        let lease = lease_cache(&cache).unwrap();
        for file in stale {
            assert!(!cache.join(file).exists(), "{file} was left");
        }
        for file in kept {
            assert!(cache.join(file).exists(), "{file} was removed");
        }
        assert!(
            outside.join("refs/other.lock").exists(),
            "a symlink was followed"
        );

        let flock = root.path().join("remote.git.flock");
        let other = std::fs::File::open(&flock).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "another holder got the cache while it was leased"
        );
        drop(lease);
        other.try_lock().unwrap();
    }

    #[test]
    fn screening_finds_markers_and_v1_annotations_only() {
        assert!(Screen::of(b"image: a:1 # {\"$imagepolicy\": \"ns:a\"}").setters);
        assert!(Screen::of(b"  fluxcd.io/automated: \"true\"").v1);
        assert!(Screen::of(b"  flux.weave.works/automated: \"true\"").v1);
        assert!(!Screen::of(b"image: a:1 # $imagepolicy without quotes").interesting());
    }

    #[test]
    fn cache_paths_are_stable_and_distinct_per_remote() {
        let root = Path::new("/cache");
        assert_eq!(cache_path(root, "file:///a"), cache_path(root, "file:///a"));
        assert_ne!(cache_path(root, "file:///a"), cache_path(root, "file:///b"));
    }
}
