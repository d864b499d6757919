//! Docker credential helpers (`credHelpers` / `credsStore`): runs
//! `docker-credential-<name> get` with the registry host on stdin, as the
//! Docker CLI does, under a time limit, and reads `{"Username", "Secret"}`
//! from its stdout.
//!
//! The helper's stderr is read and dropped, never logged or put in an
//! error: helpers print what they like there, secrets included. Its exit
//! status and the length of what it wrote are all that is reported.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::credentials::Credentials;

/// The username a helper answers with when its secret is an identity
/// (refresh) token rather than a password.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// Why a credential helper gave no credentials. Never carries its output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    /// There is no such executable.
    #[error("credential helper docker-credential-{name} not found in {searched}")]
    NotFound {
        /// The helper's name.
        name: String,
        /// Where it was looked for.
        searched: String,
    },
    /// It could not be started, or talked to.
    #[error("credential helper docker-credential-{name} could not run: {reason}")]
    Failed {
        /// The helper's name.
        name: String,
        /// The I/O error.
        reason: String,
    },
    /// It ran longer than the limit and was killed.
    #[error("credential helper docker-credential-{name} did not answer within {}s", limit.as_secs())]
    TimedOut {
        /// The helper's name.
        name: String,
        /// The limit.
        limit: Duration,
    },
    /// It exited unsuccessfully (its stderr is not shown: it may hold secrets).
    #[error("credential helper docker-credential-{name} exited with {status} ({stderr_bytes} bytes on stderr, not shown)")]
    Exited {
        /// The helper's name.
        name: String,
        /// The exit status.
        status: String,
        /// How much it wrote to stderr.
        stderr_bytes: usize,
    },
    /// Its stdout is not the credentials JSON.
    #[error(
        "credential helper docker-credential-{name} printed something other than credentials JSON"
    )]
    Malformed {
        /// The helper's name.
        name: String,
    },
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// The credential helpers of one scanner: where their executables are and
/// how long one may take.
#[derive(Debug, Clone)]
pub struct CredentialHelpers {
    /// Directories searched for `docker-credential-<name>`.
    pub path: Vec<PathBuf>,
    /// The time limit of one run.
    pub timeout: Duration,
}

impl Default for CredentialHelpers {
    fn default() -> Self {
        Self {
            path: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl CredentialHelpers {
    /// The credentials helper `name` holds for `registry` (`host[:port]`);
    /// anonymous when it has none (it says "credentials not found").
    pub async fn get(&self, name: &str, registry: &str) -> Result<Credentials, HelperError> {
        let executable = self.find(name)?;
        let mut child = tokio::process::Command::new(&executable)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HelperError::Failed {
                name: name.to_string(),
                reason: e.kind().to_string(),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input is judged by
            // its answer, not by the broken pipe.
            let _ = stdin.write_all(registry.as_bytes()).await;
        }
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(HelperError::Failed {
                    name: name.to_string(),
                    reason: e.kind().to_string(),
                })
            }
            Err(_) => {
                return Err(HelperError::TimedOut {
                    name: name.to_string(),
                    limit: self.timeout,
                })
            }
        };
        if !output.status.success() {
            if String::from_utf8_lossy(&output.stdout).contains("credentials not found") {
                return Ok(Credentials::Anonymous);
            }
            return Err(HelperError::Exited {
                name: name.to_string(),
                status: output.status.to_string(),
                stderr_bytes: output.stderr.len(),
            });
        }
        let answer: HelperAnswer =
            serde_json::from_slice(&output.stdout).map_err(|_| HelperError::Malformed {
                name: name.to_string(),
            })?;
        Ok(match (answer.username.as_str(), answer.secret) {
            (_, secret) if secret.is_empty() => Credentials::Anonymous,
            (IDENTITY_TOKEN_USER, secret) => Credentials::IdentityToken(secret),
            (username, password) => Credentials::Basic {
                username: username.to_string(),
                password,
            },
        })
    }

    fn find(&self, name: &str) -> Result<PathBuf, HelperError> {
        let file = format!("docker-credential-{name}");
        self.path
            .iter()
            .map(|dir| dir.join(&file))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| HelperError::NotFound {
                name: name.to_string(),
                searched: self
                    .path
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
