//! What the bus must hold: the streams, durable consumers, KV buckets and
//! object store, and declaring them idempotently.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, object_store, stream};

use super::{setup, Bus, BusError, BusSettings};
use crate::names::{self, Stage};

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
                names::PULL_REQUEST_FILTER.to_string(),
                names::FAILED_FILTER.to_string(),
                names::WARNING_FILTER.to_string(),
                names::CONFIG_FILTER.to_string(),
                names::STALE_FILTER.to_string(),
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
        Stage::Review => (
            names::EVENTS_STREAM,
            names::REVIEW_CONSUMER,
            names::COMMIT_FILTER,
        ),
        Stage::Notify => (
            names::EVENTS_STREAM,
            names::NOTIFIER_CONSUMER,
            names::EVENTS_FILTER,
        ),
    };
    // The notifier starts from the events published after its consumer
    // was first declared (by any process), never from the whole history:
    // an upgrade must not send a year of old events to Slack.
    let deliver_policy = match stage {
        Stage::Notify => consumer::DeliverPolicy::New,
        _ => consumer::DeliverPolicy::All,
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
            deliver_policy,
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
        bucket(
            names::PULL_REQUESTS_BUCKET,
            "the pull request each automation keeps open",
            5,
        ),
        kv::Config {
            // A redelivery comes within minutes; a week is ample.
            max_age: std::time::Duration::from_secs(7 * 24 * 3600),
            ..bucket(
                names::NOTIFICATIONS_BUCKET,
                "notifications sent per Provider and stalls announced",
                1,
            )
        },
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

/// How long a service keeps declaring the topology while the cluster does
/// not answer in time (a node just lost, a stream leader being elected)
/// before it gives up: long enough for a JetStream election, short enough
/// that a service pointed at the wrong place still fails visibly.
const DECLARE_DEADLINE: Duration = Duration::from_secs(60);

/// Declares every stream, consumer and bucket, creating what is missing and
/// updating what differs. Safe to call from any number of services at once.
/// A declaration the cluster did not answer in time is tried again with
/// back-off, since every declaration is idempotent; a refusal is returned at
/// once.
pub async fn ensure_topology(
    js: &jetstream::Context,
    settings: &BusSettings,
) -> Result<(), BusError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match declare_topology(js, settings).await {
            Ok(()) => return Ok(()),
            Err(failure) if failure.timed_out && started.elapsed() < DECLARE_DEADLINE => {
                tracing::warn!(
                    error = %failure.error,
                    retry_in_ms = pause.as_millis() as u64,
                    "the cluster did not answer a declaration in time; trying again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            Err(failure) => return Err(failure.error),
        }
    }
}

/// A declaration that failed, and whether only for want of an answer.
struct DeclarationFailed {
    error: BusError,
    timed_out: bool,
}

fn declaration_failed(what: String, error: impl std::error::Error + 'static) -> DeclarationFailed {
    DeclarationFailed {
        timed_out: timed_out(&error),
        error: setup(what, error),
    }
}

/// Whether `error`, or any error under it, is a JetStream request that got
/// no answer in time, as opposed to an answer refusing it.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    use jetstream::context::{CreateKeyValueErrorKind, CreateStreamErrorKind, RequestErrorKind};
    let mut next = Some(error);
    while let Some(error) = next {
        let this = error
            .downcast_ref::<jetstream::context::RequestError>()
            .is_some_and(|e| e.kind() == RequestErrorKind::TimedOut)
            || error
                .downcast_ref::<jetstream::context::CreateStreamError>()
                .is_some_and(|e| e.kind() == CreateStreamErrorKind::TimedOut)
            || error
                .downcast_ref::<jetstream::context::CreateKeyValueError>()
                .is_some_and(|e| e.kind() == CreateKeyValueErrorKind::TimedOut)
            || error
                .downcast_ref::<jetstream::stream::ConsumerError>()
                .is_some_and(|e| e.kind() == jetstream::stream::ConsumerErrorKind::TimedOut)
            || error
                .downcast_ref::<async_nats::RequestError>()
                .is_some_and(|e| e.kind() == async_nats::RequestErrorKind::TimedOut);
        if this {
            return true;
        }
        next = error.source();
    }
    false
}

async fn declare_topology(
    js: &jetstream::Context,
    settings: &BusSettings,
) -> Result<(), DeclarationFailed> {
    for mut config in stream_configs(settings) {
        let what = format!("stream {}", config.name);
        config.num_replicas = kept_replicas(js, &config.name, config.num_replicas)
            .await
            .map_err(|e| declaration_failed(what.clone(), e))?;
        js.create_or_update_stream(config)
            .await
            .map_err(|e| declaration_failed(what, e))?;
    }
    for mut config in bucket_configs(settings) {
        let what = format!("bucket {}", config.bucket);
        let stream = format!("KV_{}", config.bucket);
        config.num_replicas = kept_replicas(js, &stream, config.num_replicas)
            .await
            .map_err(|e| declaration_failed(what.clone(), e))?;
        js.create_or_update_key_value(config)
            .await
            .map_err(|e| declaration_failed(what, e))?;
    }
    for mut config in object_store_configs(settings) {
        let what = format!("object store {}", config.bucket);
        let stream = format!("OBJ_{}", config.bucket);
        config.num_replicas = kept_replicas(js, &stream, config.num_replicas)
            .await
            .map_err(|e| declaration_failed(what.clone(), e))?;
        js.create_object_store(config)
            .await
            .map_err(|e| declaration_failed(what, e))?;
    }
    for stage in [
        Stage::Scan,
        Stage::Resolve,
        Stage::Commit,
        Stage::Review,
        Stage::Notify,
    ] {
        let (stream, config) = consumer_config(stage, settings);
        let what = format!(
            "consumer {stream}/{}",
            config.durable_name.as_deref().unwrap_or("")
        );
        js.create_consumer_on_stream(config, stream)
            .await
            .map_err(|e| declaration_failed(what, e))?;
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

impl Bus {
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
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::context::{
        CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError, CreateStreamErrorKind,
    };

    use super::timed_out;

    #[test]
    fn a_bucket_whose_stream_got_no_answer_is_tried_again_and_a_refusal_is_not() {
        // What async-nats returns when the cluster lost a node mid-declaration.
        let no_answer = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::JetStream,
            CreateStreamError::new(CreateStreamErrorKind::TimedOut),
        );
        assert!(timed_out(&no_answer));
        let refused = CreateKeyValueError::with_source(
            CreateKeyValueErrorKind::JetStream,
            CreateStreamError::new(CreateStreamErrorKind::EmptyStreamName),
        );
        assert!(!timed_out(&refused));
        assert!(!timed_out(&CreateKeyValueError::new(
            CreateKeyValueErrorKind::InvalidStoreName
        )));
    }
}
