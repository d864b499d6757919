//! Pushing with the `git` CLI (gix has no push).
//!
//! `git push --porcelain` runs against the cached bare repository, which
//! already holds the new commit, so only the push travels. Credentials reach
//! `git` without ever being written into its arguments or a URL:
//! - HTTPS basic: `GIT_ASKPASS` names a script that `cat`s the Secret's
//!   `username` / `password` files, whose directory comes in an environment
//!   variable (a path, not a secret);
//! - bearer token: `GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_0` /
//!   `GIT_CONFIG_VALUE_0` set `http.extraHeader` in the child's environment;
//! - SSH: `GIT_SSH_COMMAND` with the key's and known_hosts' paths.
//!
//! Refspecs never start with `+`: nothing is ever force-pushed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tagrelay_proto::event::FailureReason;

use tagrelay_proto::credentials::{git_cli_environment, GitAccess};

/// Why a push did not land.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The server refused the update; `reason` is its words (the porcelain
    /// status and any `remote:` lines).
    #[error("push to {target} rejected: {reason}")]
    Rejected {
        /// The ref pushed to.
        target: String,
        /// The server's words.
        reason: String,
    },
    /// `git push` could not run or failed before any ref status (network,
    /// authentication, unknown remote).
    #[error("git push failed: {0}")]
    Failed(String),
    /// It took longer than the GitRepository's timeout (and was stopped).
    #[error("git push: no answer within {0:?} (GitRepository spec.timeout)")]
    Timeout(Duration),
}

impl PushError {
    /// The kind of failure a `CommitFailed` records for this error.
    pub fn reason(&self) -> FailureReason {
        match self {
            PushError::Rejected { .. } => FailureReason::PushRejected,
            PushError::Failed(_) | PushError::Timeout(_) => FailureReason::GitUnavailable,
        }
    }
}

/// What the server did with a ref that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefOutcome {
    /// Fast-forwarded (or created).
    Updated,
    /// The ref already pointed at the commit.
    UpToDate,
}

/// One push.
#[derive(Debug, Clone)]
pub struct Push<'a> {
    /// The bare repository holding the commit.
    pub repository: &'a Path,
    /// The remote URL, as configured (no credentials).
    pub url: &'a str,
    /// Credentials, proxy and TLS for the remote.
    pub access: &'a GitAccess,
    /// `<commit>:<ref>` refspecs, never forced.
    pub refspecs: Vec<String>,
    /// `git push -o` options.
    pub options: &'a BTreeMap<String, String>,
    /// Give up after this long.
    pub timeout: Duration,
}

/// Runs the push; `Ok` lists each refspec's outcome in order.
#[tracing::instrument(name = "git push", skip_all)]
pub async fn push(request: &Push<'_>, askpass: &Path) -> Result<Vec<RefOutcome>, PushError> {
    if let Some(forced) = request.refspecs.iter().find(|r| r.starts_with('+')) {
        return Err(PushError::Failed(format!(
            "refusing to force-push {forced}"
        )));
    }
    let mut command = tokio::process::Command::new("git");
    command.arg("--git-dir").arg(request.repository).args([
        "-c",
        "credential.helper=",
        "push",
        "--porcelain",
    ]);
    for (key, value) in request.options {
        if value.is_empty() {
            command.arg(format!("--push-option={key}"));
        } else {
            command.arg(format!("--push-option={key}={value}"));
        }
    }
    command
        .arg(request.url)
        .args(&request.refspecs)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A push given up on at the timeout is stopped, not left running
        // beside the next reconcile's fetch in the same cache.
        .kill_on_drop(true);
    command.envs(git_cli_environment(request.access, askpass));
    let child = command
        .spawn()
        .map_err(|e| PushError::Failed(format!("cannot run git: {e}")))?;
    let output = tokio::time::timeout(request.timeout, child.wait_with_output())
        .await
        .map_err(|_| PushError::Timeout(request.timeout))?
        .map_err(|e| PushError::Failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    interpret(&request.refspecs, &stdout, &stderr)
}

/// Reads `git push --porcelain` output: one `<flag>\t<from>:<to>\t<summary>`
/// line per refspec.
fn interpret(
    refspecs: &[String],
    stdout: &str,
    stderr: &str,
) -> Result<Vec<RefOutcome>, PushError> {
    let remote_words: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("remote:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut outcomes = Vec::new();
    for spec in refspecs {
        let line = stdout
            .lines()
            .find(|l| l.split('\t').nth(1) == Some(spec.as_str()));
        let Some(line) = line else {
            let detail: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Err(PushError::Failed(detail.join("; ")));
        };
        let mut fields = line.split('\t');
        let flag = fields.next().unwrap_or("");
        let summary = fields.nth(1).unwrap_or("").trim();
        match flag {
            " " | "*" => outcomes.push(RefOutcome::Updated),
            "=" => outcomes.push(RefOutcome::UpToDate),
            _ => {
                let target = spec.split(':').nth(1).unwrap_or(spec).to_string();
                let mut reason = summary.to_string();
                if !remote_words.is_empty() {
                    reason.push_str("; remote: ");
                    reason.push_str(&remote_words.join(" / "));
                }
                return Err(PushError::Rejected { target, reason });
            }
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_statuses_map_to_outcomes_with_the_servers_words() {
        let specs = vec!["abc:refs/heads/main".to_string()];
        let ok = "To file:///r.git\n \tabc:refs/heads/main\t1111..2222\nDone\n";
        assert_eq!(interpret(&specs, ok, ""), Ok(vec![RefOutcome::Updated]));
        let same = "To file:///r.git\n=\tabc:refs/heads/main\t[up to date]\nDone\n";
        assert_eq!(interpret(&specs, same, ""), Ok(vec![RefOutcome::UpToDate]));
        let rejected = "To file:///r.git\n!\tabc:refs/heads/main\t[remote rejected] (pre-receive hook declined)\nDone\n";
        let err = interpret(
            &specs,
            rejected,
            "remote: main is protected\nerror: failed to push some refs\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            PushError::Rejected {
                target: "refs/heads/main".into(),
                reason: "[remote rejected] (pre-receive hook declined); remote: main is protected"
                    .into()
            }
        );
        let failed = interpret(
            &specs,
            "",
            "fatal: Authentication failed for 'http://h/r'\n",
        )
        .unwrap_err();
        assert!(matches!(failed, PushError::Failed(m) if m.contains("Authentication failed")));
    }
}
