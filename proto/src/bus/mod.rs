//! The bus: connecting, declaring streams / consumers / buckets, publishing
//! and consuming events, and the configuration and status buckets.
//!
//! Every service calls [`Bus::connect`] at start-up, which declares the whole
//! topology idempotently: whichever service starts first creates it, the
//! others find it unchanged, so start-up order never matters.
//!
//! The parts, one job each, are reached through [`Bus`] and the items
//! re-exported here, so every path stays `tagrelay_proto::bus::X`:
//!
//! - `topology`: what the bus must hold, declared by every process at
//!   start-up; apart because it must never undo an operator's choice (an
//!   existing stream or bucket is never scaled down).
//! - `publish`: the one way onto the log, so that every event carries the id
//!   the stream deduplicates on and its trace context, and a conditional
//!   publication can lose a race without being an error.
//! - `log`: the log read back, for stages that take the current fact from it
//!   instead of keeping a copy, and for audit, why and replay.
//! - `tag_lists`: tag lists too large for an event, stored under their digest
//!   so that an old event never reads a newer set.
//! - `config_store`: the applied configuration, its status and its watch: the
//!   CLI writes it, every service follows it.
//! - `config_mirror`: the whole configuration in memory, kept by one watch
//!   and readable as of now, for a stage that looks through every object on
//!   each event (the committer) without a request per object.
//! - `record_mirror`: the same for a bucket of JSON records (the policy
//!   selections the committer reads for every policy of an automation).
//! - `cas`: state two instances may race on, written only by compare-and-set
//!   and read from the stream leader, so that neither overwrites the other.
//!
//! Connecting, authenticating and the errors every part returns stay here.

mod cas;
mod config_mirror;
mod config_store;
mod log;
mod publish;
mod record_mirror;
mod tag_lists;
mod topology;

use std::time::Duration;

use async_nats::jetstream::{self, kv};

pub use cas::CasBucket;
pub use config_mirror::{ConfigMirror, MirroredConfig};
pub use config_store::{ConfigChange, ConfigIndex, ConfigStore, Revision, Watched};
pub use log::LoggedEvent;
pub use publish::{PublishFailure, Published, EXPECTED_LAST_SUBJECT_SEQUENCE, MSG_ID_HEADER};
pub use record_mirror::{MirroredRecords, RecordMirror};
pub use tag_lists::{tags_json_size, INLINE_TAGS_MAX_BYTES};
pub use topology::{
    bucket_configs, consumer_config, ensure_topology, object_store_configs, stream_configs,
};

/// Settings of the streams and buckets. Replicas is 1 on a single server and
/// 3 on a JetStream cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSettings {
    /// Replicas of every stream and bucket declared. A stream or bucket
    /// that already has more keeps them: a process started without
    /// `TAGRELAY_REPLICAS` (a CLI on an operator's laptop) must never scale a
    /// cluster's audit log down to one copy; lowering is an operator's
    /// deliberate `nats stream edit`.
    pub replicas: usize,
    /// How long the events stream remembers message ids to drop duplicates.
    /// Must exceed the longest time a publisher may retry the same event.
    pub duplicate_window: Duration,
    /// How long events are kept; zero keeps them forever (a full audit log).
    pub max_age: Duration,
    /// How long a consumer may hold a message before it is redelivered.
    pub ack_wait: Duration,
    /// How many times a message is delivered before JetStream gives up on it.
    pub max_deliver: i64,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
            ack_wait: Duration::from_secs(30),
            max_deliver: 20,
        }
    }
}

/// `url` (one NATS URL or a comma-separated list) with any `user:password@`
/// or `token@` replaced by `***@`: URLs end up in errors and logs, and
/// credentials must never.
pub fn redact_urls(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = one.split_once("://").unwrap_or(("", one));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) if scheme.is_empty() => format!("***{}", &rest[at..]),
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => one.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What went wrong talking to NATS, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The server could not be reached at all.
    #[error("cannot reach NATS at {url}: {reason} (is nats-server running with JetStream (-js)? set --nats-url or NATS_URL)")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The client's words.
        reason: String,
    },
    /// Declaring a stream, consumer or bucket failed.
    #[error("cannot set up {what}: {reason}")]
    Setup {
        /// The stream, consumer or bucket.
        what: String,
        /// The server's words.
        reason: String,
    },
    /// Publishing failed (after the client's own retries).
    #[error("cannot publish to {subject}: {reason}")]
    Publish {
        /// The subject.
        subject: String,
        /// The server's words.
        reason: String,
    },
    /// A bucket operation failed.
    #[error("{bucket} {key}: {reason}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The server's words.
        reason: String,
    },
    /// A stored value could not be read.
    #[error("{bucket} {key}: stored value is unreadable: {reason}")]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// An event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The JetStream error code somewhere in `error`'s chain of sources (the
/// client wraps the server's answer in one or more errors of its own).
fn jetstream_code(error: &(dyn std::error::Error + 'static)) -> Option<jetstream::ErrorCode> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(jetstream) = error.downcast_ref::<jetstream::Error>() {
            return Some(jetstream.error_code());
        }
        current = error.source();
    }
    None
}

/// Whether a conditional write lost its race: the subject's last sequence
/// is not the expected one. A clustered stream says so with a second code
/// (10164, no sequence in the message) when another write to the subject is
/// still being agreed by the replicas; the client reports only the first as
/// a wrong sequence, so both are recognised here.
fn is_wrong_last_sequence(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        jetstream_code(error),
        Some(
            jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                | jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
        )
    )
}

fn setup(what: String, error: impl std::fmt::Display) -> BusError {
    BusError::Setup {
        what,
        reason: error.to_string(),
    }
}

/// How a process authenticates to NATS. Secrets come from files or the
/// environment, never from the command line, and are never logged.
#[derive(Debug, Clone, Default)]
pub struct NatsAuth {
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// A bearer token.
    pub token: Option<String>,
    /// A `.creds` file (JWT + nkey seed), as NATS accounts issue.
    pub creds_file: Option<std::path::PathBuf>,
    /// A file holding an nkey seed (`SU…`).
    pub nkey_file: Option<std::path::PathBuf>,
    /// CA bundle to verify the server; implies TLS.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl NatsAuth {
    async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> std::io::Result<async_nats::ConnectOptions> {
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &self.nkey_file {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| secret_file_error("nkey seed file", path, e))?;
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| secret_file_error("NATS credentials file", path, e))?;
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.tls_client {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        Ok(options)
    }
}

/// `e`, from reading the secret file `path`, rewritten to name the file and
/// to tell a missing file from one that is there but cannot be read or used
/// (a directory, no permission, not UTF-8); never the content.
fn secret_file_error(what: &str, path: &std::path::Path, e: std::io::Error) -> std::io::Error {
    let message = if e.kind() == std::io::ErrorKind::NotFound {
        format!("there is no {what} {}", path.display())
    } else {
        let reason = match e.kind() {
            std::io::ErrorKind::InvalidData => {
                "not UTF-8 text, or not in the expected format".into()
            }
            kind => kind.to_string(),
        };
        format!(
            "the {what} {} is there but cannot be read or used: {reason}",
            path.display()
        )
    };
    std::io::Error::new(e.kind(), message)
}

/// A connection to the bus with the topology declared.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
    settings: BusSettings,
    source: String,
}

impl Bus {
    /// Connects to `url` (one URL, or a cluster's URLs comma-separated),
    /// failing fast with [`BusError::Unreachable`] when no
    /// server answers, then declares the topology. `source` names this
    /// process in the events it publishes (`scanner/host-1`).
    pub async fn connect(
        url: &str,
        source: impl Into<String>,
        settings: BusSettings,
    ) -> Result<Self, BusError> {
        Self::connect_with(url, &NatsAuth::default(), source, settings).await
    }

    /// [`Bus::connect`] with credentials and TLS. Reconnection after a server
    /// restart is unlimited: a service waits for NATS rather than dying.
    pub async fn connect_with(
        url: &str,
        auth: &NatsAuth,
        source: impl Into<String>,
        settings: BusSettings,
    ) -> Result<Self, BusError> {
        let source = source.into();
        let unreachable = |reason: String| BusError::Unreachable {
            url: redact_urls(url),
            reason,
        };
        let options = auth
            .apply(async_nats::ConnectOptions::new())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // A cluster is given as comma-separated URLs, the form every NATS
        // client takes in NATS_URL: the client starts from whichever node
        // answers and fails over between them (async-nats parses one URL
        // per string, so the list is split here).
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let client = options
            .name(source.clone())
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .connect(servers)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let js = jetstream::new(client.clone());
        ensure_topology(&js, &settings).await?;
        Ok(Self {
            client,
            js,
            settings,
            source,
        })
    }

    /// The JetStream context, for what this module does not wrap.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The core client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The `service/instance` name events are published under.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The settings the topology was declared with.
    pub fn settings(&self) -> &BusSettings {
        &self.settings
    }

    /// A KV bucket of the topology.
    pub async fn bucket(&self, name: &str) -> Result<kv::Store, BusError> {
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| BusError::Bucket {
                bucket: name.to_string(),
                key: String::new(),
                reason: e.to_string(),
            })
    }
}

fn bucket_error(bucket: &str, key: &str, error: impl std::fmt::Display) -> BusError {
    BusError::Bucket {
        bucket: bucket.to_string(),
        key: key.to_string(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact_urls, NatsAuth};

    #[tokio::test]
    async fn a_missing_and_an_unreadable_nkey_file_are_different_errors() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"SUs3cret\xff").unwrap();
        let error = |path: std::path::PathBuf| async move {
            let auth = NatsAuth {
                nkey_file: Some(path),
                ..NatsAuth::default()
            };
            match auth.apply(async_nats::ConnectOptions::new()).await {
                Ok(_) => panic!("an nkey file that cannot be read was accepted"),
                Err(e) => e,
            }
        };
        let missing = error(dir.path().join("absent")).await;
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        assert!(
            missing
                .to_string()
                .starts_with("there is no nkey seed file"),
            "{missing}"
        );
        for (path, reason) in [(dir.path().to_path_buf(), "directory"), (binary, "UTF-8")] {
            let e = error(path).await;
            let text = e.to_string();
            assert_ne!(e.kind(), std::io::ErrorKind::NotFound, "{text}");
            assert!(
                text.contains("is there but cannot be read") && text.contains(reason),
                "{text}"
            );
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn credentials_in_nats_urls_never_reach_an_error() {
        assert_eq!(
            redact_urls("nats://alice:s3cret@10.0.0.1:4222"),
            "nats://***@10.0.0.1:4222"
        );
        assert_eq!(
            redact_urls("tls://tok3n@a:4222,nats://b:4222,u:p@c:4222"),
            "tls://***@a:4222,nats://b:4222,***@c:4222"
        );
        assert_eq!(
            redact_urls("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            redact_urls("ws://host:80/path@x"),
            "ws://host:80/path@x",
            "an @ after the authority is not userinfo"
        );
    }
}
