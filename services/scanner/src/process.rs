//! The scanner as a process: its flags and how it serves (the scan loop and
//! the webhook + health server), shared by the `tagrelay-scanner` binary and
//! `tagrelay run --all`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tagrelay_proto::bus::Bus;
use tagrelay_proto::runtime::{SecretsArgs, ServeError};

use crate::cloud::CloudEnvironment;
use crate::credentials::read_secret_file;
use crate::registry::RegistrySettings;
use crate::webhook::{self, WebhookSecret};
use crate::{run_scanner, Scanner, ScannerSettings};

/// The scanner's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ScannerArgs {
    /// Mounted registry Secrets: `.dockerconfigjson` (or `config.json`),
    /// `ca.crt`, `tls.crt`, `tls.key`; `address`, `username`, `password`
    /// for a proxy.
    #[command(flatten)]
    pub secrets: SecretsArgs,
    /// Address of the webhook and health server.
    #[arg(long, env = "TAGRELAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// File holding the shared secret registry webhooks must present
    /// (token or HMAC key); webhooks are refused without one.
    #[arg(long, env = "TAGRELAY_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Scans run at once by this instance.
    #[arg(long, env = "TAGRELAY_SCAN_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Requests per second to one registry host, shared by every repository
    /// this instance scans on it.
    #[arg(long, env = "TAGRELAY_REGISTRY_RPS", default_value_t = 20.0)]
    pub registry_rps: f64,
    /// Requests to one registry host allowed in a burst.
    #[arg(long, env = "TAGRELAY_REGISTRY_BURST", default_value_t = 40)]
    pub registry_burst: u32,
    /// Time limit of one registry request (Go duration: `30s`, `1m`); a
    /// request that takes longer is retried with back-off, within the
    /// repository's scan timeout.
    #[arg(long, env = "TAGRELAY_REGISTRY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub registry_timeout: Duration,
    /// `HOST=IP`: reach registry HOST at IP without asking DNS (curl's
    /// `--resolve`; the image's port is kept). Repeatable.
    #[arg(long = "registry-resolve", env = "TAGRELAY_REGISTRY_RESOLVE", value_delimiter = ',', value_parser = parse_resolve)]
    pub registry_resolve: Vec<(String, std::net::IpAddr)>,
}

fn parse_resolve(text: &str) -> Result<(String, std::net::IpAddr), String> {
    let (host, ip) = text
        .split_once('=')
        .ok_or_else(|| "expected HOST=IP".to_string())?;
    let ip = ip.trim().parse().map_err(|e| format!("{ip}: {e}"))?;
    Ok((host.trim().to_string(), ip))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match tagrelay_proto::config::parse_go_duration(text) {
        Ok(duration) if duration > Duration::ZERO => Ok(duration),
        Ok(_) => Err("must be more than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The webhook secret in `path` (none without a path): a file that is not
/// there and one that is there but cannot be read (a directory, no
/// permission, not UTF-8 text) are different errors; neither shows the
/// content.
fn webhook_secret(path: Option<&Path>) -> Result<WebhookSecret, ServeError> {
    let Some(path) = path else {
        return Ok(WebhookSecret::none());
    };
    let unreadable = |source| ServeError::Io {
        what: format!(
            "the webhook secret file {} is there but cannot be read",
            path.display()
        ),
        source,
    };
    let bytes = match read_secret_file(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(ServeError::Io {
                what: format!(
                    "there is no webhook secret file {} (mount the secret there, or leave --webhook-secret-file unset)",
                    path.display()
                ),
                source: std::io::ErrorKind::NotFound.into(),
            })
        }
        Err(source) => return Err(unreadable(source)),
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8 text",
        ))
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        tracing::warn!(file = %path.display(), "the webhook secret file is empty: webhooks are refused");
    }
    Ok(WebhookSecret::new(secret.as_bytes()))
}

/// Runs the scanner and its webhook + health server until `shutdown`
/// resolves.
pub async fn serve(
    bus: &Bus,
    args: &ScannerArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let secret = webhook_secret(args.webhook_secret_file.as_deref())?;
    let settings = ScannerSettings {
        secrets_dir: args.secrets.secrets_dir.clone(),
        concurrency: args.concurrency.max(1),
        registry: RegistrySettings {
            rate: args.registry_rps,
            burst: args.registry_burst,
            request_timeout: args.registry_timeout,
            cloud: CloudEnvironment::from_process(),
            resolve: args.registry_resolve.clone(),
            ..RegistrySettings::default()
        },
        ..ScannerSettings::default()
    };
    let scanner = Arc::new(Scanner::new(bus, settings).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| ServeError::Io {
            what: format!("listening on {}", args.listen),
            source,
        })?;
    tracing::info!(address = %args.listen, "webhook and health server listening");
    let app = webhook::router(scanner.clone(), secret);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let result = run_scanner(scanner, shutdown).await;
    server.abort();
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_resolve_takes_host_equals_ip() {
        assert_eq!(
            parse_resolve("123456789012.dkr.ecr.eu-west-1.amazonaws.com=10.0.0.7").unwrap(),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com".to_string(),
                std::net::IpAddr::from([10, 0, 0, 7])
            )
        );
        assert!(parse_resolve("host").is_err());
        assert!(parse_resolve("host=not-an-ip").is_err());
    }

    #[test]
    fn a_missing_and_an_unreadable_webhook_secret_file_are_different_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(webhook_secret(None).is_ok());
        let good = dir.path().join("good");
        std::fs::write(&good, "s3cret\n").unwrap();
        assert!(format!("{:?}", webhook_secret(Some(&good)).unwrap()).contains("redacted"));

        let missing = webhook_secret(Some(&dir.path().join("absent"))).unwrap_err();
        assert!(
            matches!(&missing, ServeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{missing}"
        );
        assert!(
            missing
                .to_string()
                .contains("there is no webhook secret file"),
            "{missing}"
        );

        let directory = dir.path().join("directory");
        std::fs::create_dir(&directory).unwrap();
        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"s3cret\xff").unwrap();
        for (path, reason) in [(&directory, "directory"), (&binary, "not utf-8")] {
            let err = webhook_secret(Some(path)).unwrap_err();
            let text = err.to_string();
            assert!(
                matches!(&err, ServeError::Io { source, .. } if source.kind() != std::io::ErrorKind::NotFound),
                "{text}"
            );
            assert!(text.contains("is there but cannot be read"), "{text}");
            assert!(text.to_lowercase().contains(reason), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }
}
