//! The bus: connecting, declaring streams / consumers / buckets, publishing
//! and consuming events, and the configuration and status buckets.
//!
//! Every service calls [`Bus::connect`] at start-up, which declares the whole
//! topology idempotently: whichever service starts first creates it, the
//! others find it unchanged, so start-up order never matters.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use async_nats::HeaderMap;
use futures::StreamExt;

use crate::config::{Kind, Object, ObjectKey};
use crate::event::{tag_set_digest, DecodeError, Envelope, TagsDiscovered, TagsRef};
use crate::names::{self, Stage};
use crate::status::ObjectStatus;
use crate::trace::{traceparent_for, TRACEPARENT};

/// The header carrying the deterministic message id the stream deduplicates on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

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

/// Why a conditional publication did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// Another event was published on the subject since the expected one.
    #[error("another event was published on the subject first")]
    Conflict,
    /// Anything else.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The header that makes a publication conditional on the subject's last
/// sequence.
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";

/// The first pause before publishing again a message whose id another
/// publication is storing on a cluster (doubled each time).
const DUPLICATE_IN_PROCESS_PAUSE: Duration = Duration::from_millis(25);

/// No pause longer than this: about 3 s of pauses in all, longer than a
/// replicated write takes even during a leader election's aftermath; then the
/// error goes to the caller, whose message is redelivered.
const DUPLICATE_IN_PROCESS_GIVE_UP: Duration = Duration::from_millis(1600);

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

/// Whether a publication was refused because a message with the same
/// `Nats-Msg-Id` is being stored at this moment (clustered streams only).
fn is_duplicate_in_process(error: &(dyn std::error::Error + 'static)) -> bool {
    jetstream_code(error) == Some(jetstream::ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT)
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

/// The outcome of a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The stream sequence of the stored message (of the original, for a
    /// duplicate).
    pub sequence: u64,
    /// Whether the stream dropped it as a duplicate of an earlier one.
    pub duplicate: bool,
}

/// One entry of the event log, as [`Bus::read_log`] yields it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    /// Its sequence in the events stream.
    pub sequence: u64,
    /// When the stream stored it.
    pub stored_at: chrono::DateTime<chrono::Utc>,
    /// The event, or why this build cannot read it.
    pub envelope: Result<Envelope, DecodeError>,
}

/// The stream configurations, from the settings.
pub fn stream_configs(settings: &BusSettings) -> Vec<stream::Config> {
    vec![
        stream::Config {
            name: names::EVENTS_STREAM.to_string(),
            description: Some("tagrelay events: the audit log".to_string()),
            subjects: vec![
                names::TAGS_FILTER.to_string(),
                names::POLICY_FILTER.to_string(),
                names::COMMIT_FILTER.to_string(),
                names::FAILED_FILTER.to_string(),
            ],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            max_age: settings.max_age,
            ..Default::default()
        },
        stream::Config {
            name: names::SCAN_REQUESTS_STREAM.to_string(),
            description: Some("tagrelay scan requests: a work queue".to_string()),
            subjects: vec![names::SCAN_REQUEST_FILTER.to_string()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            ..Default::default()
        },
    ]
}

/// The durable pull consumer of one stage.
pub fn consumer_config(
    stage: Stage,
    settings: &BusSettings,
) -> (&'static str, consumer::pull::Config) {
    let (stream, durable, filter) = match stage {
        Stage::Scan => (
            names::SCAN_REQUESTS_STREAM,
            names::SCANNER_CONSUMER,
            names::SCAN_REQUEST_FILTER,
        ),
        Stage::Resolve => (
            names::EVENTS_STREAM,
            names::RESOLVER_CONSUMER,
            names::TAGS_FILTER,
        ),
        Stage::Commit => (
            names::EVENTS_STREAM,
            names::COMMITTER_CONSUMER,
            names::POLICY_FILTER,
        ),
    };
    (
        stream,
        consumer::pull::Config {
            durable_name: Some(durable.to_string()),
            description: Some(format!("tagrelay {} stage", stage.as_str())),
            filter_subject: filter.to_string(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: settings.max_deliver,
            // 0: as many as the stream, so the consumer's state (what was
            // acked) is exactly as durable as the messages it tracks.
            num_replicas: 0,
            ..Default::default()
        },
    )
}

/// The KV bucket configurations.
pub fn bucket_configs(settings: &BusSettings) -> Vec<kv::Config> {
    let bucket = |name: &str, description: &str, history: i64| kv::Config {
        bucket: name.to_string(),
        description: description.to_string(),
        history,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    vec![
        bucket(names::CONFIG_BUCKET, "applied configuration objects", 5),
        bucket(names::STATUS_BUCKET, "status per configuration object", 1),
        bucket(
            names::POLICY_STATE_BUCKET,
            "latest selection per ImagePolicy",
            5,
        ),
        bucket(
            names::TAG_SETS_BUCKET,
            "last good tag set per ImageRepository",
            1,
        ),
        bucket(
            names::IMAGE_METADATA_BUCKET,
            "digest and creation time per image",
            1,
        ),
    ]
}

/// The object store configurations: the tag lists too large for an event.
/// Kept as long as the events that refer to them.
pub fn object_store_configs(settings: &BusSettings) -> Vec<object_store::Config> {
    vec![object_store::Config {
        bucket: names::TAG_LISTS_BUCKET.to_string(),
        description: Some(
            "tag lists too large for a TagsDiscovered, by tag-set digest".to_string(),
        ),
        max_age: settings.max_age,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    }]
}

/// A tag list whose JSON is larger than this travels in the
/// [`names::TAG_LISTS_BUCKET`] object store instead of inside its
/// `TagsDiscovered` (`tags_ref` instead of `tags`). A quarter of NATS'
/// default 1 MiB payload limit: the envelope and the per-tag image
/// metadata must fit beside it. About 20,000 ten-character tags.
pub const INLINE_TAGS_MAX_BYTES: usize = 256 * 1024;

/// The size of `tags` as a JSON array, to compare with
/// [`INLINE_TAGS_MAX_BYTES`] without serialising them.
pub fn tags_json_size(tags: &[String]) -> usize {
    2 + tags.iter().map(|t| t.len() + 3).sum::<usize>()
}

/// Declares every stream, consumer and bucket, creating what is missing and
/// updating what differs. Safe to call from any number of services at once.
pub async fn ensure_topology(
    js: &jetstream::Context,
    settings: &BusSettings,
) -> Result<(), BusError> {
    for mut config in stream_configs(settings) {
        let what = format!("stream {}", config.name);
        config.num_replicas = kept_replicas(js, &config.name, config.num_replicas)
            .await
            .map_err(|e| setup(what.clone(), e))?;
        js.create_or_update_stream(config)
            .await
            .map_err(|e| setup(what, e))?;
    }
    for mut config in bucket_configs(settings) {
        let what = format!("bucket {}", config.bucket);
        let stream = format!("KV_{}", config.bucket);
        config.num_replicas = kept_replicas(js, &stream, config.num_replicas)
            .await
            .map_err(|e| setup(what.clone(), e))?;
        js.create_or_update_key_value(config)
            .await
            .map_err(|e| setup(what, e))?;
    }
    for mut config in object_store_configs(settings) {
        let what = format!("object store {}", config.bucket);
        let stream = format!("OBJ_{}", config.bucket);
        config.num_replicas = kept_replicas(js, &stream, config.num_replicas)
            .await
            .map_err(|e| setup(what.clone(), e))?;
        js.create_object_store(config)
            .await
            .map_err(|e| setup(what, e))?;
    }
    for stage in [Stage::Scan, Stage::Resolve, Stage::Commit] {
        let (stream, config) = consumer_config(stage, settings);
        let what = format!(
            "consumer {stream}/{}",
            config.durable_name.as_deref().unwrap_or("")
        );
        js.create_consumer_on_stream(config, stream)
            .await
            .map_err(|e| setup(what, e))?;
    }
    Ok(())
}

/// The replicas to declare the stream `stream` with: `wanted`, or the
/// existing stream's count when it is higher (see [`BusSettings::replicas`]).
/// Declaring fewer would scale an R3 stream down (`create_or_update`), or fail
/// outright for an object store, whose creation refuses any difference.
async fn kept_replicas(
    js: &jetstream::Context,
    stream: &str,
    wanted: usize,
) -> Result<usize, jetstream::context::GetStreamError> {
    match js.get_stream(stream).await {
        Ok(existing) => Ok(existing.cached_info().config.num_replicas.max(wanted)),
        Err(e) if is_stream_not_found(&e) => Ok(wanted),
        Err(e) => Err(e),
    }
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
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

    /// Publishes an event with its `Nats-Msg-Id` and `traceparent` and waits
    /// for the stream's acknowledgement, so the caller acks its own input only
    /// once the output is durable.
    pub async fn publish(&self, envelope: &Envelope) -> Result<Published, BusError> {
        match self.publish_inner(envelope, None).await {
            Ok(published) => Ok(published),
            Err(PublishFailure::Bus(e)) => Err(e),
            Err(PublishFailure::Conflict) => Err(BusError::Publish {
                subject: envelope.payload.subject(),
                reason: "unexpected sequence conflict".to_string(),
            }),
        }
    }

    /// Publishes only if the last event on the envelope's subject is the one
    /// at `last_subject_sequence` (0: no event yet). This is optimistic
    /// concurrency on the log itself: of two instances that computed a change
    /// from the same predecessor, one publishes and the other learns
    /// [`PublishFailure::Conflict`], so each change is published once.
    pub async fn publish_after(
        &self,
        envelope: &Envelope,
        last_subject_sequence: u64,
    ) -> Result<Published, PublishFailure> {
        self.publish_inner(envelope, Some(last_subject_sequence))
            .await
    }

    async fn publish_inner(
        &self,
        envelope: &Envelope,
        last_subject_sequence: Option<u64>,
    ) -> Result<Published, PublishFailure> {
        let subject = envelope.payload.subject();
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID_HEADER, envelope.msg_id().as_str());
        headers.insert(TRACEPARENT, traceparent_for(envelope).as_str());
        if let Some(sequence) = last_subject_sequence {
            headers.insert(
                EXPECTED_LAST_SUBJECT_SEQUENCE,
                sequence.to_string().as_str(),
            );
        }
        let payload = envelope.to_json().map_err(BusError::from)?;
        let fail = |e: &dyn std::fmt::Display| {
            PublishFailure::Bus(BusError::Publish {
                subject: subject.clone(),
                reason: e.to_string(),
            })
        };
        let payload = bytes::Bytes::from(payload);
        let mut pause = DUPLICATE_IN_PROCESS_PAUSE;
        loop {
            let acked = self
                .js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await
                .map_err(|e| fail(&e))?
                .await;
            match acked {
                Ok(ack) => {
                    return Ok(Published {
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Err(e)
                    if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence
                        || is_wrong_last_sequence(&e) =>
                {
                    return Err(PublishFailure::Conflict)
                }
                // On a cluster, a message whose id another publication is
                // storing right now (not yet agreed by the replicas) is
                // refused with this code instead of being acknowledged as a
                // duplicate, as a single server would. Ask again once that
                // publication is settled: it is then a duplicate (or, if it
                // failed, this one is stored).
                Err(e) if is_duplicate_in_process(&e) && pause <= DUPLICATE_IN_PROCESS_GIVE_UP => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(fail(&e)),
            }
        }
    }

    /// The last event published on `subject` and its stream sequence, the
    /// way a stage finds "the current fact" (a repository's latest tag set, a
    /// policy's latest move) without keeping a copy of its own.
    pub async fn last_event(&self, subject: &str) -> Result<Option<(Envelope, u64)>, BusError> {
        let stream = self
            .js
            .get_stream_no_info(names::EVENTS_STREAM)
            .await
            .map_err(|e| setup(names::EVENTS_STREAM.to_string(), e))?;
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => {
                let envelope =
                    Envelope::from_json(&message.payload).map_err(|e| BusError::Corrupt {
                        bucket: names::EVENTS_STREAM.to_string(),
                        key: subject.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(Some((envelope, message.sequence)))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::Bucket {
                bucket: names::EVENTS_STREAM.to_string(),
                key: subject.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Reads the event log in order: every event matching `filter` (a
    /// subject filter such as [`names::POLICY_FILTER`] or `tagrelay.>`) from
    /// `since` (the beginning when `None`). Without `follow` the stream ends
    /// at the current end of the log; with it, it waits for new events. An
    /// event this build cannot decode is yielded as an error with its
    /// sequence, never skipped silently.
    pub async fn read_log(
        &self,
        filter: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
        follow: bool,
    ) -> Result<impl futures::Stream<Item = LoggedEvent> + use<>, BusError> {
        let deliver_policy = match since {
            Some(since) => consumer::DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp(since.timestamp())
                    .map(|t| t + time::Duration::nanoseconds(since.timestamp_subsec_nanos().into()))
                    .map_err(|e| BusError::Setup {
                        what: format!("log reader on {filter}"),
                        reason: format!("start time {since} out of range: {e}"),
                    })?,
            },
            None => consumer::DeliverPolicy::All,
        };
        let what = || format!("log reader on {filter}");
        let stream = self
            .js
            .get_stream_no_info(names::EVENTS_STREAM)
            .await
            .map_err(|e| setup(what(), e))?;
        let mut reader = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| setup(what(), e))?;
        let empty = reader
            .info()
            .await
            .map(|info| info.num_pending == 0)
            .map_err(|e| setup(what(), e))?;
        let messages = reader.messages().await.map_err(|e| setup(what(), e))?;
        let done = !follow && empty;
        Ok(
            futures::stream::unfold((messages, done), move |(mut messages, done)| async move {
                if done {
                    return None;
                }
                let message = messages.next().await?.ok()?;
                let info = message.info().ok()?;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                let stored_at = chrono::DateTime::from_timestamp_nanos(
                    i64::try_from(info.published.unix_timestamp_nanos()).unwrap_or(0),
                );
                let event = LoggedEvent {
                    sequence,
                    stored_at,
                    envelope: Envelope::from_json(&message.payload),
                };
                Some((event, (messages, !follow && pending == 0)))
            })
            .filter(move |event| {
                // The server's start-time lookup is a hint (a start time past the
                // last message has been seen to deliver everything): enforce it.
                futures::future::ready(since.is_none_or(|since| event.stored_at >= since))
            }),
        )
    }

    /// Stores a tag list too large for an event in the tag-lists object
    /// store under its tag-set digest, and returns the reference to put in
    /// `TagsDiscovered.tags_ref`. The key is the content's digest, so an
    /// entry never changes: writing an existing one is skipped, and a reader
    /// of an older event never sees a newer set.
    pub async fn put_tag_list(&self, tags: &[String]) -> Result<TagsRef, BusError> {
        let key = tag_set_digest(tags.iter().map(String::as_str));
        let store = self.tag_lists().await?;
        if store.info(&key).await.is_err() {
            let bytes = serde_json::to_vec(tags)?;
            store
                .put(key.as_str(), &mut bytes.as_slice())
                .await
                .map_err(|e| bucket_error(names::TAG_LISTS_BUCKET, &key, e))?;
        }
        Ok(TagsRef {
            bucket: names::TAG_LISTS_BUCKET.to_string(),
            key,
        })
    }

    /// The complete tag list of a `TagsDiscovered`: inline, or read from
    /// the object store its `tags_ref` names. `None` when the event carries
    /// no complete list (no list, a count that does not match, a stored
    /// list that is missing or is not the set the event's digest names): a
    /// reader must then act as if it had no tags, never on a partial set.
    pub async fn tag_list(
        &self,
        discovered: &TagsDiscovered,
    ) -> Result<Option<Vec<String>>, BusError> {
        if let Some(tags) = &discovered.tags {
            return Ok((tags.len() == discovered.tag_count).then(|| tags.clone()));
        }
        let Some(reference) = &discovered.tags_ref else {
            return Ok(None);
        };
        let store = self
            .js
            .get_object_store(&reference.bucket)
            .await
            .map_err(|e| bucket_error(&reference.bucket, &reference.key, e))?;
        let mut object = match store.get(&reference.key).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => {
                tracing::warn!(bucket = %reference.bucket, key = %reference.key, "tag list referred to by an event is missing");
                return Ok(None);
            }
            Err(e) => return Err(bucket_error(&reference.bucket, &reference.key, e)),
        };
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
            .await
            .map_err(|e| bucket_error(&reference.bucket, &reference.key, e))?;
        let tags: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| BusError::Corrupt {
            bucket: reference.bucket.clone(),
            key: reference.key.clone(),
            reason: e.to_string(),
        })?;
        let complete = tags.len() == discovered.tag_count
            && tag_set_digest(tags.iter().map(String::as_str)) == discovered.tag_set_digest;
        Ok(complete.then_some(tags))
    }

    async fn tag_lists(&self) -> Result<object_store::ObjectStore, BusError> {
        self.js
            .get_object_store(names::TAG_LISTS_BUCKET)
            .await
            .map_err(|e| bucket_error(names::TAG_LISTS_BUCKET, "", e))
    }

    /// The durable pull consumer of `stage`, shared by every instance of it.
    pub async fn consumer(&self, stage: Stage) -> Result<consumer::PullConsumer, BusError> {
        let (stream, config) = consumer_config(stage, &self.settings);
        let what = format!(
            "consumer {stream}/{}",
            config.durable_name.as_deref().unwrap_or("")
        );
        self.js
            .create_consumer_on_stream(config, stream)
            .await
            .map_err(|e| setup(what, e))
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

    /// The configuration store.
    pub async fn config_store(&self) -> Result<ConfigStore, BusError> {
        Ok(ConfigStore {
            config: self.bucket(names::CONFIG_BUCKET).await?,
            status: self.bucket(names::STATUS_BUCKET).await?,
        })
    }
}

/// The applied configuration and its status, as `tagrelay apply/get/delete`
/// and the services' watchers see them.
#[derive(Clone)]
pub struct ConfigStore {
    config: kv::Store,
    status: kv::Store,
}

impl ConfigStore {
    /// Stores (creates or replaces) an object; returns the bucket revision.
    pub async fn put(&self, object: &Object) -> Result<u64, BusError> {
        let key = object.key().bucket_key();
        let bytes = serde_json::to_vec(object)?;
        self.config
            .put(&key, bytes.into())
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, &key, e))
    }

    /// Reads one object.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, BusError> {
        let bucket_key = key.bucket_key();
        let entry = self
            .config
            .get(&bucket_key)
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
        entry
            .map(|bytes| decode_object(&bucket_key, &bytes))
            .transpose()
    }

    /// Every stored key.
    pub async fn keys(&self) -> Result<BTreeSet<ObjectKey>, BusError> {
        let mut keys = BTreeSet::new();
        let mut listing = match self.config.keys().await {
            Ok(listing) => listing,
            Err(e) => return Err(bucket_error(names::CONFIG_BUCKET, ">", e)),
        };
        while let Some(key) = listing.next().await {
            let key = key.map_err(|e| bucket_error(names::CONFIG_BUCKET, ">", e))?;
            if let Some(parsed) = ObjectKey::from_bucket_key(&key) {
                keys.insert(parsed);
            }
        }
        Ok(keys)
    }

    /// Every stored object of `kind` (all kinds when `None`), in key order.
    pub async fn list(&self, kind: Option<Kind>) -> Result<Vec<Object>, BusError> {
        let mut objects = Vec::new();
        for key in self.keys().await? {
            if kind.is_none_or(|k| k == key.kind) {
                if let Some(object) = self.get(&key).await? {
                    objects.push(object);
                }
            }
        }
        Ok(objects)
    }

    /// Deletes an object and its status; returns whether it existed.
    pub async fn delete(&self, key: &ObjectKey) -> Result<bool, BusError> {
        let existed = self.get(key).await?.is_some();
        let bucket_key = key.bucket_key();
        if existed {
            self.config
                .delete(&bucket_key)
                .await
                .map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
            self.status
                .delete(&bucket_key)
                .await
                .map_err(|e| bucket_error(names::STATUS_BUCKET, &bucket_key, e))?;
        }
        Ok(existed)
    }

    /// Writes an object's status.
    pub async fn put_status(&self, key: &ObjectKey, status: &ObjectStatus) -> Result<(), BusError> {
        let bucket_key = key.bucket_key();
        let bytes = serde_json::to_vec(status)?;
        self.status
            .put(&bucket_key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| bucket_error(names::STATUS_BUCKET, &bucket_key, e))
    }

    /// Reads an object's status; `None` until a service has written one.
    pub async fn status(&self, key: &ObjectKey) -> Result<Option<ObjectStatus>, BusError> {
        let bucket_key = key.bucket_key();
        let entry = self
            .status
            .get(&bucket_key)
            .await
            .map_err(|e| bucket_error(names::STATUS_BUCKET, &bucket_key, e))?;
        entry
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| BusError::Corrupt {
                    bucket: names::STATUS_BUCKET.to_string(),
                    key: bucket_key.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Every kept revision of an object (the bucket keeps 5), oldest first,
    /// with when it was written; `None` marks a deletion. `tagrelay replay`
    /// uses it to evaluate each recorded decision with the policy in force
    /// at the time.
    pub async fn history(&self, key: &ObjectKey) -> Result<Vec<Revision>, BusError> {
        let bucket_key = key.bucket_key();
        let mut entries = self
            .config
            .history(&bucket_key)
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
        let mut revisions = Vec::new();
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(|e| bucket_error(names::CONFIG_BUCKET, &bucket_key, e))?;
            let written = chrono::DateTime::from_timestamp_nanos(
                i64::try_from(entry.created.unix_timestamp_nanos()).unwrap_or(0),
            );
            let object = match entry.operation {
                kv::Operation::Put => Some(decode_object(&bucket_key, &entry.value)?),
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            revisions.push(Revision { written, object });
        }
        Ok(revisions)
    }

    /// Watches configuration changes, starting with the current value of
    /// every key, so a service that starts late sees everything applied.
    pub async fn watch(
        &self,
    ) -> Result<impl futures::Stream<Item = ConfigChange> + use<>, BusError> {
        let watch = self
            .config
            .watch_with_history(">")
            .await
            .map_err(|e| bucket_error(names::CONFIG_BUCKET, ">", e))?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry.ok()?;
            let key = ObjectKey::from_bucket_key(&entry.key)?;
            Some(match entry.operation {
                kv::Operation::Put => match decode_object(&entry.key, &entry.value) {
                    Ok(object) => ConfigChange::Applied(Box::new(object)),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping unreadable configuration entry");
                        return None;
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => ConfigChange::Deleted(key),
            })
        }))
    }
}

/// The header a KV bucket marks deletions and purges with.
const KV_OPERATION_HEADER: &str = "KV-Operation";

/// A KV bucket of JSON records written only with compare-and-set: the way
/// every stage keeps state that two instances may race on (policy
/// selections, scan records), so neither ever overwrites the other blindly.
#[derive(Clone)]
pub struct CasBucket {
    store: kv::Store,
    bucket: &'static str,
}

impl CasBucket {
    /// Wraps `store`, the bucket named `bucket`.
    pub fn new(store: kv::Store, bucket: &'static str) -> Self {
        Self { store, bucket }
    }

    /// The record under `key` and the revision to write against (0: none).
    /// A record that no longer decodes is logged and treated as absent, so
    /// the next write replaces it instead of wedging the key forever.
    pub async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<(Option<T>, u64), BusError> {
        Ok(match self.latest(key).await? {
            Some((Some(value), revision)) => match serde_json::from_slice(&value) {
                Ok(value) => (Some(value), revision),
                Err(e) => {
                    tracing::warn!(bucket = self.bucket, key, error = %e, "unreadable record; it will be replaced");
                    (None, revision)
                }
            },
            Some((None, revision)) => (None, revision),
            None => (None, 0),
        })
    }

    /// The record under `key`, for a reader that acts on it without writing
    /// back (the committer reading selections); `None` when absent or
    /// deleted, an error when it does not decode.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, BusError> {
        let Some((Some(value), _)) = self.latest(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|e| BusError::Corrupt {
                bucket: self.bucket.to_string(),
                key: key.to_string(),
                reason: e.to_string(),
            })
    }

    /// The latest value under `key` (`None` for a deletion) and its
    /// revision, or `None` when the key was never written.
    ///
    /// Read from the bucket's stream leader, not with the KV "direct get":
    /// on a cluster a direct get may be answered by a follower that has not
    /// applied the latest writes yet (NATS promises monotonic reads, not
    /// read-your-writes). A stale revision makes every compare-and-set lose,
    /// and a stale selection could make the committer write an older tag
    /// over a newer one. The leader has applied every acknowledged write.
    async fn latest(&self, key: &str) -> Result<Option<(Option<bytes::Bytes>, u64)>, BusError> {
        let subject = format!("{}{}", self.store.prefix, key);
        let message = match self
            .store
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                return Ok(None)
            }
            Err(e) => return Err(bucket_error(self.bucket, key, e)),
        };
        let operation = match message.headers.get(KV_OPERATION_HEADER) {
            Some(operation) => operation.as_str().parse().map_err(|_| BusError::Corrupt {
                bucket: self.bucket.to_string(),
                key: key.to_string(),
                reason: format!("unknown operation {operation}"),
            })?,
            None => kv::Operation::Put,
        };
        let value = (operation == kv::Operation::Put).then_some(message.payload);
        Ok(Some((value, message.sequence)))
    }

    /// Removes the record and its history (a deleted object's state).
    pub async fn purge(&self, key: &str) -> Result<(), BusError> {
        self.store
            .purge(key)
            .await
            .map_err(|e| bucket_error(self.bucket, key, e))
    }

    /// Writes `value` if the key is still at `revision` (0: absent);
    /// `false` when another writer got there first.
    pub async fn write<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
        revision: u64,
    ) -> Result<bool, BusError> {
        let bytes = serde_json::to_vec(value)?;
        let result = if revision == 0 {
            self.store
                .create(key, bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        matches!(e.kind(), kv::CreateErrorKind::AlreadyExists)
                            || is_wrong_last_sequence(&e),
                        e.to_string(),
                    )
                })
        } else {
            self.store
                .update(key, bytes.into(), revision)
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        matches!(e.kind(), kv::UpdateErrorKind::WrongLastRevision)
                            || is_wrong_last_sequence(&e),
                        e.to_string(),
                    )
                })
        };
        match result {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, reason)) => Err(bucket_error(self.bucket, key, reason)),
        }
    }
}

/// The ImageRepositories and ImagePolicies a service acts on, kept current
/// from [`ConfigStore::watch`]: what the scanner and the resolver both need
/// to know which policies read which repository.
#[derive(Debug, Default)]
pub struct ConfigIndex {
    /// Every ImageRepository, by key.
    pub repositories: std::collections::BTreeMap<ObjectKey, crate::config::ImageRepository>,
    /// Every ImagePolicy, by key.
    pub policies: std::collections::BTreeMap<ObjectKey, crate::config::ImagePolicy>,
}

impl ConfigIndex {
    /// Records one change.
    pub fn apply(&mut self, change: &ConfigChange) {
        match change {
            ConfigChange::Applied(object) => match object.as_ref() {
                Object::ImageRepository(r) => {
                    self.repositories.insert(object.key(), r.clone());
                }
                Object::ImagePolicy(p) => {
                    self.policies.insert(object.key(), p.clone());
                }
                _ => {}
            },
            ConfigChange::Deleted(key) => {
                self.repositories.remove(key);
                self.policies.remove(key);
            }
        }
    }

    /// Every policy reading `repository`.
    pub fn policies_of(
        &self,
        repository: &ObjectKey,
    ) -> Vec<(ObjectKey, crate::config::ImagePolicy)> {
        self.policies
            .iter()
            .filter(|(_, p)| p.repository_key() == *repository)
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }
}

/// One kept revision of a configuration object.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// When it was written.
    pub written: chrono::DateTime<chrono::Utc>,
    /// The object, or `None` for a deletion.
    pub object: Option<Object>,
}

/// One change seen by [`ConfigStore::watch`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange {
    /// An object was applied (or already existed when the watch started).
    Applied(Box<Object>),
    /// An object was deleted.
    Deleted(ObjectKey),
}

fn decode_object(key: &str, bytes: &[u8]) -> Result<Object, BusError> {
    let corrupt = |reason: String| BusError::Corrupt {
        bucket: names::CONFIG_BUCKET.to_string(),
        key: key.to_string(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    Object::decode(&value).map_err(|e| corrupt(e.to_string()))
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
