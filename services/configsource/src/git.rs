//! The configuration repository, read with the `git` CLI (as the committer
//! pushes with it): a bare cache fetched at each poll, and the YAML/JSON
//! blobs under the configured paths at the fetched commit. Nothing is
//! checked out, so no file of the repository is ever written to disk.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tagrelay_proto::credentials::{
    ensure_askpass, git_cli_environment, load, load_tls, CredentialsError, GitAccess,
};

/// Files larger than this are not read: a configuration file is a few
/// kilobytes, and the committer holds manifests to the same bound.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why the repository could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be started.
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    /// A git command failed; `stderr` is git's own words (the URL in them
    /// is the redacted one the caller passed).
    #[error("git {what} failed: {stderr}")]
    Failed {
        /// The command.
        what: String,
        /// What git said.
        stderr: String,
    },
    /// A git command did not finish in time.
    #[error("git {what} did not finish within {after:?}")]
    Timeout {
        /// The command.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The Secret opening the remote is missing or unusable (its name and
    /// key, never a value).
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The cache directory could not be made.
    #[error("cache {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One branch of one remote, cached in a bare repository.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The URL git fetches from (credentials, if any, stay out of it).
    pub url: String,
    /// The branch.
    pub branch: String,
    /// The bare cache repository.
    pub cache: PathBuf,
    /// Limit of each git command.
    pub timeout: Duration,
    /// The Secret that opens the remote, if it needs one.
    pub secret: Option<SecretRef>,
}

/// A Secret mounted as files, as the committer reads a GitRepository's
/// `secretRef`: `<secrets_dir>/<namespace>/<name>/` with Flux's keys
/// (`identity` + `known_hosts`, `username` + `password`, `bearerToken`,
/// `ca.crt`, `tls.crt` + `tls.key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Where Secrets are mounted.
    pub secrets_dir: PathBuf,
    /// The Secret's namespace directory.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
}

/// The configuration files of one commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Files {
    /// `(path, text)` of every `*.yaml`, `*.yml` and `*.json` blob under the
    /// paths, in path order.
    pub read: Vec<(String, String)>,
    /// Files not read because they exceed [`MAX_FILE_BYTES`] or are not
    /// UTF-8: a commit with any is refused, since part of it is unknown.
    pub unreadable: Vec<(String, String)>,
}

impl Remote {
    /// Fetches the branch into the cache and returns its commit id.
    pub async fn fetch(&self) -> Result<String, GitError> {
        if !self.cache.join("HEAD").exists() {
            std::fs::create_dir_all(&self.cache).map_err(|source| GitError::Cache {
                path: self.cache.clone(),
                source,
            })?;
            self.git("init", &["init", "--bare", "--quiet"], &[])
                .await?;
        }
        let env = self.access()?;
        let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
        self.git(
            "fetch",
            &["fetch", "--quiet", "--no-tags", "--", &self.url, &refspec],
            &env,
        )
        .await?;
        let commit = self
            .git(
                "rev-parse",
                &[
                    "rev-parse",
                    "--verify",
                    "--end-of-options",
                    &format!("refs/heads/{}^{{commit}}", self.branch),
                ],
                &[],
            )
            .await?;
        Ok(String::from_utf8_lossy(&commit).trim().to_string())
    }

    /// The configuration files under `paths` ("" for the whole tree) at
    /// `commit`. Symbolic links and submodules are not followed.
    pub async fn files(&self, commit: &str, paths: &[String]) -> Result<Files, GitError> {
        let mut args = vec!["ls-tree", "-r", "-z", "--long", "--full-tree", commit, "--"];
        let pathspecs: Vec<&str> = paths
            .iter()
            .filter(|p| !p.is_empty())
            .map(String::as_str)
            .collect();
        if pathspecs.len() == paths.len() {
            args.extend(pathspecs);
        }
        let listing = self.git("ls-tree", &args, &[]).await?;
        let mut files = Files::default();
        for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, path)) = entry.split_once('\t') else {
                continue;
            };
            let fields: Vec<&str> = meta.split_whitespace().collect();
            let [mode, kind, oid, size] = fields[..] else {
                continue;
            };
            let configuration = [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| path.ends_with(ext));
            if kind != "blob" || mode == "120000" || !configuration {
                continue;
            }
            if size.parse::<u64>().map_or(true, |s| s > MAX_FILE_BYTES) {
                files.unreadable.push((
                    path.to_string(),
                    format!("larger than {MAX_FILE_BYTES} bytes"),
                ));
                continue;
            }
            let bytes = self
                .git("cat-file", &["cat-file", "blob", oid], &[])
                .await?;
            match String::from_utf8(bytes) {
                Ok(text) => files.read.push((path.to_string(), text)),
                Err(_) => files
                    .unreadable
                    .push((path.to_string(), "not UTF-8 text".to_string())),
            }
        }
        Ok(files)
    }

    /// The environment that opens the remote, read from the Secret at each
    /// fetch (a rotated Secret is used at the next poll), as the committer
    /// hands it to `git push`.
    fn access(&self) -> Result<Vec<(String, OsString)>, GitError> {
        let Some(secret) = &self.secret else {
            return Ok(Vec::new());
        };
        let (dir, namespace, name) = (&secret.secrets_dir, &secret.namespace, &secret.name);
        let auth = load(dir, namespace, name)?;
        let tls = load_tls(dir, namespace, name)?;
        let scripts = self.cache.parent().unwrap_or(&self.cache);
        let askpass = ensure_askpass(scripts).map_err(|source| GitError::Cache {
            path: scripts.to_path_buf(),
            source,
        })?;
        let access = GitAccess {
            auth,
            proxy: None,
            tls,
            askpass: askpass.clone(),
        };
        Ok(git_cli_environment(&access, &askpass))
    }

    /// Runs git on the cache with `env` added; its standard output.
    async fn git(
        &self,
        what: &str,
        args: &[&str],
        env: &[(String, OsString)],
    ) -> Result<Vec<u8>, GitError> {
        let child = tokio::process::Command::new("git")
            .arg("--git-dir")
            .arg(&self.cache)
            .args(["--literal-pathspecs", "-c", "credential.helper="])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(GitError::Spawn)?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| GitError::Timeout {
                what: what.to_string(),
                after: self.timeout,
            })?
            .map_err(GitError::Spawn)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(GitError::Failed {
                what: what.to_string(),
                stderr: tagrelay_proto::bus::redact_urls(stderr.trim()),
            });
        }
        Ok(output.stdout)
    }
}
