//! Git credentials from mounted Secret files.
//!
//! A GitRepository's `secretRef` names a directory
//! `<secrets-dir>/<namespace>/<name>/` holding the keys of Flux's Git Secret:
//! `identity` (+ `known_hosts`) for SSH, `username` + `password` for HTTPS
//! basic auth, or `bearerToken`. The values never leave the files except
//! into the Git transport itself: fetches hand them to gix in memory, and
//! pushes reach `git` through `GIT_ASKPASS` (a script that reads the files),
//! `GIT_SSH_COMMAND` (paths only) or `GIT_CONFIG_*` variables; never a URL,
//! an argument or a log line. `Debug` of a credential shows no secret.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a Secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The directory is missing or holds none of the known keys.
    #[error("secret {namespace}/{name}: {reason}")]
    Unusable {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is wrong, without any value.
        reason: String,
    },
}

/// How to authenticate to a Git remote.
#[derive(Clone, PartialEq, Eq)]
pub enum GitAuth {
    /// No credentials (public remote, `file://`).
    Anonymous,
    /// HTTPS basic auth; `dir` holds the `username` and `password` files.
    Basic {
        /// The Secret's directory.
        dir: PathBuf,
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An HTTP `Authorization: Bearer` token.
    Bearer {
        /// The token.
        token: String,
    },
    /// SSH with a private key file and, when given, a known_hosts file.
    Ssh {
        /// Path of the private key.
        identity: PathBuf,
        /// Path of the known_hosts file.
        known_hosts: Option<PathBuf>,
    },
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitAuth::Anonymous => f.write_str("Anonymous"),
            GitAuth::Basic { dir, .. } => write!(f, "Basic({})", dir.display()),
            GitAuth::Bearer { .. } => f.write_str("Bearer(…)"),
            GitAuth::Ssh { identity, .. } => write!(f, "Ssh({})", identity.display()),
        }
    }
}

fn read_value(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    Some(value.to_string())
}

/// Loads the Secret `namespace/name` from `secrets_dir`.
pub fn load(secrets_dir: &Path, namespace: &str, name: &str) -> Result<GitAuth, CredentialError> {
    let unusable = |reason: String| CredentialError::Unusable {
        namespace: namespace.to_string(),
        name: name.to_string(),
        reason,
    };
    if [namespace, name]
        .iter()
        .any(|part| part.is_empty() || part.contains(['/', '\\']) || *part == "..")
    {
        return Err(unusable("not a valid Secret name".into()));
    }
    let dir = secrets_dir.join(namespace).join(name);
    if !dir.is_dir() {
        return Err(unusable(format!(
            "no directory {} (mount the Secret there)",
            dir.display()
        )));
    }
    let identity = dir.join("identity");
    if identity.is_file() {
        let known_hosts = dir.join("known_hosts");
        return Ok(GitAuth::Ssh {
            identity,
            known_hosts: known_hosts.is_file().then_some(known_hosts),
        });
    }
    if let Some(token) = read_value(&dir.join("bearerToken")) {
        return Ok(GitAuth::Bearer { token });
    }
    match (
        read_value(&dir.join("username")),
        read_value(&dir.join("password")),
    ) {
        (Some(username), Some(password)) => Ok(GitAuth::Basic {
            dir,
            username,
            password,
        }),
        _ => Err(unusable(
            "holds none of identity, bearerToken, or username and password".into(),
        )),
    }
}

/// Standard base64 (RFC 4648), for the basic-auth header.
pub fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let at = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (at(0) << 16) | (at(1) << 8) | at(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Removes credentials from a URL, for events and logs: all user info of an
/// HTTP(S) URL (a token may be the user name), the password of any other
/// (`ssh://git@host` keeps its user, which is not a secret).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let host = &rest[at + 1..];
    if scheme.starts_with("http") {
        return format!("{scheme}://{host}");
    }
    let user = rest[..at].split(':').next().unwrap_or("");
    format!("{scheme}://{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_by_flux_key_names_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let basic = dir.path().join("ns/basic");
        std::fs::create_dir_all(&basic).unwrap();
        std::fs::write(basic.join("username"), "bot\n").unwrap();
        std::fs::write(basic.join("password"), "s3cret\n").unwrap();
        let auth = load(dir.path(), "ns", "basic").unwrap();
        assert!(
            matches!(&auth, GitAuth::Basic { username, password, .. } if username == "bot" && password == "s3cret")
        );
        assert!(!format!("{auth:?}").contains("s3cret"));

        let bearer = dir.path().join("ns/token");
        std::fs::create_dir_all(&bearer).unwrap();
        std::fs::write(bearer.join("bearerToken"), "tok").unwrap();
        let auth = load(dir.path(), "ns", "token").unwrap();
        assert_eq!(
            auth,
            GitAuth::Bearer {
                token: "tok".into()
            }
        );
        assert!(!format!("{auth:?}").contains("tok)"));

        let ssh = dir.path().join("ns/ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(ssh.join("identity"), "KEY").unwrap();
        std::fs::write(ssh.join("known_hosts"), "host key").unwrap();
        assert!(matches!(
            load(dir.path(), "ns", "ssh").unwrap(),
            GitAuth::Ssh {
                known_hosts: Some(_),
                ..
            }
        ));

        let err = load(dir.path(), "ns", "missing").unwrap_err();
        assert!(err.to_string().contains("mount the Secret"), "{err}");
        assert!(load(dir.path(), "..", "ns").is_err());
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(
            redact_url("https://bot:pw@git.example/org/repo.git"),
            "https://git.example/org/repo.git"
        );
        assert_eq!(
            redact_url("file:///tmp/a@b/repo.git"),
            "file:///tmp/a@b/repo.git"
        );
        assert_eq!(redact_url("ssh://git:pw@host/x"), "ssh://git@host/x");
        assert_eq!(redact_url("https://token@host/x"), "https://host/x");
    }
}
