//! The poll loop: fetch, read, decide, write, announce.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use tagrelay_proto::bus::{redact_urls, Bus, BusError, ConfigStore};
use tagrelay_proto::config::{Kind, ObjectKey};
use tagrelay_proto::event::{
    ConfigObject, ConfigProblem, ConfigRejected, ConfigSynced, Envelope, Event, Failure,
    FailureReason, ObjectRef,
};
use tagrelay_proto::names;
use tagrelay_proto::runtime::Readiness;
use tagrelay_proto::telemetry::metrics;
use tagrelay_validate::Problem;

use crate::decide::{decide, Decision, Plan};
use crate::git::{Files, GitError, Remote};

/// What one source reads and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The source's name: the last token of its subjects, so two sources
    /// (two repositories, or two paths sets) keep apart what they own.
    pub name: String,
    /// The repository and branch, and the cache it is fetched into.
    pub remote: Remote,
    /// Paths under the repository root, normalized ("" for the root).
    pub paths: Vec<String>,
    /// Time between polls.
    pub interval: Duration,
}

/// Why one poll did not finish; the next poll tries again.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The repository could not be read.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The commit's documents were already in force: nothing written or
    /// published.
    Unchanged {
        /// The commit read.
        commit: String,
    },
    /// The bucket was made equal to the commit; `ConfigSynced` published.
    Synced(ConfigSynced),
    /// The commit was refused; `ConfigRejected` published (or already
    /// published for this commit).
    Rejected(ConfigRejected),
}

/// Polls until `shutdown` resolves. A failed poll is recorded as a
/// `ConfigFailed` event and retried with back-off (2 s, 4 s, … up to the
/// interval); readiness is set once the bus is bound.
pub async fn run(
    bus: &Bus,
    settings: &Settings,
    readiness: Readiness,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BusError> {
    let store = bus.config_store().await?;
    readiness.set(true);
    tokio::pin!(shutdown);
    let mut failed_in_a_row: u32 = 0;
    loop {
        let outcome = poll(bus, &store, settings).await;
        let label = match &outcome {
            Ok(Outcome::Unchanged { .. }) => "unchanged",
            Ok(Outcome::Synced(_)) => "synced",
            Ok(Outcome::Rejected(_)) => "rejected",
            Err(_) => "failed",
        };
        metrics().record_config_poll(&settings.name, label);
        let pause = match outcome {
            Ok(outcome) => {
                failed_in_a_row = 0;
                log(settings, &outcome);
                settings.interval
            }
            Err(e) => {
                failed_in_a_row = failed_in_a_row.saturating_add(1);
                let pause = retry_pause(failed_in_a_row, settings.interval);
                tracing::warn!(source = %settings.name, error = %e, retry_in = ?pause, "configuration poll failed");
                record_failure(bus, settings, &e, failed_in_a_row).await;
                pause
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    readiness.set(false);
    Ok(())
}

/// How long to wait after the `failed`-th failed poll in a row: doubling
/// from 2 s, never longer than the interval.
fn retry_pause(failed: u32, interval: Duration) -> Duration {
    Duration::from_secs(1u64 << failed.clamp(1, 16)).min(interval)
}

/// Publishes the failed poll as a `ConfigFailed` (the object is
/// `config/<source>`); a bus that fails too is only logged.
async fn record_failure(bus: &Bus, settings: &Settings, error: &PollError, attempt: u32) {
    let reason = match error {
        PollError::Git(GitError::Credentials(_)) => FailureReason::AuthenticationFailed,
        PollError::Git(GitError::Failed { .. } | GitError::Timeout { .. }) => {
            FailureReason::GitUnavailable
        }
        _ => FailureReason::Other,
    };
    let failure = Failure {
        object: ObjectRef::new("config", &settings.name),
        error: error.to_string(),
        will_retry: true,
        attempt,
        reason,
    };
    let envelope = Envelope::new(bus.source(), Event::ConfigFailed(failure));
    if let Err(e) = bus.publish(&envelope).await {
        tracing::warn!(source = %settings.name, error = %e, "cannot record the failed poll");
    }
}

fn log(settings: &Settings, outcome: &Outcome) {
    match outcome {
        Outcome::Unchanged { commit } => {
            tracing::debug!(source = %settings.name, commit, "configuration unchanged")
        }
        Outcome::Synced(e) => tracing::info!(
            source = %settings.name,
            commit = %e.commit,
            applied = e.applied.len(),
            deleted = e.deleted.len(),
            unchanged = e.unchanged.len(),
            skipped = e.skipped.len(),
            "configuration synced"
        ),
        Outcome::Rejected(e) => {
            for error in &e.errors {
                tracing::warn!(source = %settings.name, commit = %e.commit, file = %error.file, line = error.line, field = %error.field, reason = %error.reason, "configuration refused");
            }
        }
    }
}

/// One poll: fetch the branch, read the documents under the paths, decide,
/// and carry the decision out.
pub async fn poll(
    bus: &Bus,
    store: &ConfigStore,
    settings: &Settings,
) -> Result<Outcome, PollError> {
    let commit = settings.remote.fetch().await?;
    let files = settings.remote.files(&commit, &settings.paths).await?;
    let last_synced = match bus
        .last_event(&names::config_synced_subject(&settings.name))
        .await?
    {
        Some((
            Envelope {
                payload: Event::ConfigSynced(synced),
                ..
            },
            sequence,
        )) => Some((synced, sequence)),
        _ => None,
    };
    let owned: BTreeSet<ObjectKey> = last_synced
        .iter()
        .flat_map(|(synced, _)| synced.owned())
        .filter_map(object_key)
        .collect();
    let stored = store.snapshot().await?;
    let decision = match unreadable_problems(&files) {
        problems if !problems.is_empty() => Decision::Reject(problems),
        _ => decide(&files.read, &owned, &stored),
    };
    match decision {
        Decision::Sync(plan) if plan.is_noop(&owned) => Ok(Outcome::Unchanged { commit }),
        Decision::Sync(plan) => {
            let synced = write(store, settings, commit, plan).await?;
            let envelope = Envelope::new(bus.source(), Event::ConfigSynced(synced.clone()));
            bus.publish(&envelope).await?;
            Ok(Outcome::Synced(synced))
        }
        Decision::Reject(problems) => {
            let rejected = ConfigRejected {
                source: settings.name.clone(),
                repository: redact_urls(&settings.remote.url),
                branch: settings.remote.branch.clone(),
                commit,
                paths: settings.paths.clone(),
                errors: problems.into_iter().map(config_problem).collect(),
                kept_commit: last_synced.as_ref().map(|(s, _)| s.commit.clone()),
            };
            if !already_rejected(bus, &rejected, last_synced.map(|(_, seq)| seq)).await? {
                let envelope = Envelope::new(bus.source(), Event::ConfigRejected(rejected.clone()));
                bus.publish(&envelope).await?;
            }
            Ok(Outcome::Rejected(rejected))
        }
    }
}

/// Carries `plan` out: puts first (sources before the objects referring to
/// them), then deletes (referring objects first).
async fn write(
    store: &ConfigStore,
    settings: &Settings,
    commit: String,
    plan: Plan,
) -> Result<ConfigSynced, BusError> {
    for object in &plan.puts {
        store.put(object).await?;
    }
    for key in &plan.deletes {
        store.delete(key).await?;
    }
    Ok(ConfigSynced {
        source: settings.name.clone(),
        repository: redact_urls(&settings.remote.url),
        branch: settings.remote.branch.clone(),
        commit,
        paths: settings.paths.clone(),
        applied: plan
            .puts
            .iter()
            .map(|object| ConfigObject::from(&object.key()))
            .collect(),
        deleted: plan.deletes.iter().map(ConfigObject::from).collect(),
        unchanged: plan.unchanged.iter().map(ConfigObject::from).collect(),
        skipped: plan.skipped.into_iter().map(config_problem).collect(),
    })
}

/// Whether this commit's refusal is already the last word on it: published
/// after the last sync, for the same commit and errors. A refused commit
/// stays the tip until someone fixes it, and is announced once.
async fn already_rejected(
    bus: &Bus,
    rejected: &ConfigRejected,
    synced_sequence: Option<u64>,
) -> Result<bool, BusError> {
    let last = bus
        .last_event(&names::config_rejected_subject(&rejected.source))
        .await?;
    Ok(matches!(
        last,
        Some((Envelope { payload: Event::ConfigRejected(previous), .. }, sequence))
            if sequence > synced_sequence.unwrap_or(0)
                && previous.commit == rejected.commit
                && previous.errors == rejected.errors
    ))
}

/// The files that could not be read, as problems refusing the commit.
fn unreadable_problems(files: &Files) -> Vec<Problem> {
    files
        .unreadable
        .iter()
        .map(|(file, reason)| Problem {
            file: file.clone(),
            line: 1,
            object: None,
            field: String::new(),
            reason: format!("not read: {reason}"),
        })
        .collect()
}

fn config_problem(problem: Problem) -> ConfigProblem {
    ConfigProblem {
        file: problem.file,
        line: problem.line.max(1),
        object: problem.object,
        field: problem.field,
        reason: problem.reason,
    }
}

/// The key of an object named by an event; `None` for a kind this build
/// does not store (written by a newer source).
fn object_key(object: &ConfigObject) -> Option<ObjectKey> {
    Kind::from_kind_name(&object.kind)
        .map(|kind| ObjectKey::new(kind, &object.namespace, &object.name))
}
