//! The configuration source as a process: its flags and how it serves,
//! shared by the `tagrelay-configsource` binary and `tagrelay run --all`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tagrelay_proto::bus::Bus;
use tagrelay_proto::config::parse_go_duration;
use tagrelay_proto::runtime::{serve_with_health, Readiness, SecretsArgs, ServeError};

use crate::git::{Remote, SecretRef};
use crate::service::Settings;

/// The configuration source's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigSourceArgs {
    /// The Git repository holding the Flux objects (`file://`, `https://`,
    /// `ssh://`, or a path). Never put credentials in it.
    #[arg(long = "git-url", env = "TAGRELAY_CONFIG_GIT_URL")]
    pub git_url: Option<String>,
    /// The branch to read.
    #[arg(
        long = "git-branch",
        env = "TAGRELAY_CONFIG_GIT_BRANCH",
        default_value = "main"
    )]
    pub git_branch: String,
    /// A directory of the repository whose YAML/JSON files hold the
    /// objects, recursively; may be repeated (default: the whole repository).
    #[arg(
        long = "git-path",
        env = "TAGRELAY_CONFIG_GIT_PATHS",
        value_delimiter = ','
    )]
    pub git_paths: Vec<String>,
    /// Time between polls, as a Go duration (`30s`, `1m`).
    #[arg(long = "git-interval", env = "TAGRELAY_CONFIG_GIT_INTERVAL", default_value = "1m", value_parser = parse_interval)]
    pub git_interval: Duration,
    /// Time limit of each git command.
    #[arg(long = "git-timeout", env = "TAGRELAY_CONFIG_GIT_TIMEOUT", default_value = "60s", value_parser = parse_interval)]
    pub git_timeout: Duration,
    /// The source's name: its events' subjects end with it, and it is what
    /// remembers which objects the source owns. Two sources need two names.
    #[arg(
        long = "source-name",
        env = "TAGRELAY_CONFIG_SOURCE_NAME",
        default_value = "git"
    )]
    pub source_name: String,
    /// The Secret that opens the repository, `NAMESPACE/NAME`, mounted
    /// under the secrets directory with Flux's Git keys, as the committer
    /// reads a GitRepository's `secretRef`.
    #[arg(long = "git-secret", env = "TAGRELAY_CONFIG_GIT_SECRET")]
    pub git_secret: Option<String>,
    /// Where the bare cache of the repository is kept.
    #[arg(
        long = "config-cache-dir",
        env = "TAGRELAY_CONFIG_CACHE_DIR",
        default_value = "/var/cache/tagrelay/config"
    )]
    pub config_cache_dir: PathBuf,
    /// Address of the `/healthz` and `/readyz` endpoints.
    #[arg(
        long = "config-http-addr",
        env = "TAGRELAY_HTTP_ADDR",
        default_value = "127.0.0.1:8085"
    )]
    pub config_http_addr: Option<SocketAddr>,
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_go_duration(text)
        .map_err(|e| e.to_string())
        .and_then(|d| {
            if d.is_zero() {
                Err("must be more than zero".to_string())
            } else {
                Ok(d)
            }
        })
}

/// Why the flags cannot make a source.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// No repository was given.
    #[error("--git-url (TAGRELAY_CONFIG_GIT_URL) is required")]
    NoUrl,
    /// `--git-secret` is not `NAMESPACE/NAME`.
    #[error("--git-secret {0:?} must be NAMESPACE/NAME")]
    Secret(String),
    /// A path leaves the repository.
    #[error("--git-path {0:?} must be relative to the repository root, without '..' or .git")]
    Path(String),
}

impl ConfigSourceArgs {
    /// Whether a repository was given (`tagrelay run --all` starts the
    /// source only then).
    pub fn is_configured(&self) -> bool {
        self.git_url.is_some()
    }

    /// The settings the flags describe; Secrets are read under
    /// `secrets_dir`.
    pub fn settings(&self, secrets_dir: &Path) -> Result<Settings, ArgsError> {
        let url = self.git_url.clone().ok_or(ArgsError::NoUrl)?;
        let mut paths = self
            .git_paths
            .iter()
            .map(|path| normalize(path).ok_or_else(|| ArgsError::Path(path.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            paths.push(String::new());
        }
        paths.sort();
        paths.dedup();
        let cache = self
            .config_cache_dir
            .join(tagrelay_proto::names::subject_token(&self.source_name));
        Ok(Settings {
            name: self.source_name.clone(),
            remote: Remote {
                url,
                branch: self.git_branch.clone(),
                cache,
                timeout: self.git_timeout,
                secret: self
                    .git_secret
                    .as_deref()
                    .map(|text| secret_ref(text, secrets_dir))
                    .transpose()?,
            },
            paths,
            interval: self.git_interval,
        })
    }
}

fn secret_ref(text: &str, secrets_dir: &Path) -> Result<SecretRef, ArgsError> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => Ok(SecretRef {
            secrets_dir: secrets_dir.to_path_buf(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }),
        _ => Err(ArgsError::Secret(text.to_string())),
    }
}

/// `path` as `/`-separated components under the root ("" for the root);
/// `None` when it would leave the repository or enter `.git`.
fn normalize(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." | ".git" => return None,
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// Runs the source (and its health endpoints, when an address is given)
/// until `shutdown` resolves.
pub async fn serve(
    bus: &Bus,
    args: &ConfigSourceArgs,
    secrets: &SecretsArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let settings = args
        .settings(&secrets.secrets_dir)
        .map_err(|e| ServeError::Io {
            what: "configuration source flags".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
    let readiness = Readiness::watching(bus);
    serve_with_health(
        args.config_http_addr,
        readiness.clone(),
        crate::service::run(bus, &settings, readiness, shutdown),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_kept_inside_the_repository() {
        assert_eq!(
            normalize("./clusters/prod/").as_deref(),
            Some("clusters/prod")
        );
        assert_eq!(normalize(".").as_deref(), Some(""));
        assert_eq!(normalize("../x"), None);
        assert_eq!(normalize("a/.git/hooks"), None);
        assert_eq!(normalize("/etc"), None);
    }
}
