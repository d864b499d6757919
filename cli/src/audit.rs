//! `tagrelay audit` and `tagrelay why`: the event log as a timeline, and the
//! causal chain of one commit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tagrelay_proto::bus::{Bus, LoggedEvent};
use tagrelay_proto::config::parse_go_duration;
use tagrelay_proto::config::{Kind, ObjectKey};
use tagrelay_proto::event::{ConfigObject, Envelope, Event, ScanTrigger, SignatureFormat};
use tagrelay_proto::names;

use crate::output::TextOrJson;
use crate::{Cli, Failure};

/// Arguments of `audit`.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Start at this time (RFC 3339) or this long ago (`30m`, `2h`).
    #[arg(long)]
    since: Option<String>,
    /// Only these events: `tags`, `policy`, `commit`, `pullrequest`,
    /// `warning`, `stale`, `failed` (or the event type names); may be
    /// repeated.
    #[arg(long)]
    kind: Vec<String>,
    /// Only events about this object (`NAME` or `NAMESPACE/NAME`).
    #[arg(long)]
    name: Option<String>,
    /// Keep printing new events as they arrive.
    #[arg(long, short = 'f')]
    follow: bool,
    /// `text` (a timeline) or `json` (one envelope per line).
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: TextOrJson,
}

/// Arguments of `why`.
#[derive(clap::Args)]
pub struct WhyArgs {
    /// The commit id (at least 7 hex digits).
    commit: String,
}

/// Parses `--since`: an RFC 3339 time or a Go duration before now.
pub fn parse_since(since: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(since) {
        return Ok(time.with_timezone(&Utc));
    }
    let duration = parse_go_duration(since).map_err(|_| {
        format!("--since {since:?}: expected an RFC 3339 time or a duration such as 30m or 2h")
    })?;
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .ok_or_else(|| format!("--since {since:?} is too far back"))
}

fn kind_filter(kind: &str) -> Option<&'static str> {
    match kind.to_ascii_lowercase().as_str() {
        "tags" | "scan" | "tagsdiscovered" => Some(names::TAGS_FILTER),
        "policy" | "policyresolved" => Some(names::POLICY_FILTER),
        "commit" | "commitpushed" => Some(names::COMMIT_FILTER),
        "warning" | "warnings" | "manifestwarning" => Some(names::WARNING_FILTER),
        "pullrequest" | "pr" | "pullrequestopened" | "pullrequestupdated" => {
            Some(names::PULL_REQUEST_FILTER)
        }
        "failed" | "failure" | "failures" | "scanfailed" | "resolvefailed" | "commitfailed"
        | "reviewfailed" | "notificationfailed" => Some(names::FAILED_FILTER),
        "stale" | "stalled" | "policystale" | "automationstalled" => Some(names::STALE_FILTER),
        "config" | "configsynced" | "configrejected" => Some(names::CONFIG_FILTER),
        _ => None,
    }
}

/// Runs `audit`.
pub async fn audit(cli: &Cli, args: &AuditArgs) -> Result<(), Failure> {
    let since = match &args.since {
        Some(since) => Some(parse_since(since).map_err(|e| invalid(&e))?),
        None => None,
    };
    let mut filters = Vec::new();
    for kind in &args.kind {
        let filter = kind_filter(kind).ok_or_else(|| {
            invalid(&format!(
                "--kind {kind:?}: expected tags, policy, commit, pullrequest, warning, stale or failed"
            ))
        })?;
        filters.push(filter);
    }
    let bus = cli.bus().await?;
    let filter = match filters.as_slice() {
        [one] => *one,
        _ => "tagrelay.>",
    };
    let mut log = Box::pin(bus.read_log(filter, since, args.follow).await?);
    if args.output == TextOrJson::Text {
        println!("{:<24}  {:<15}  {:<32}  DETAIL", "TIME", "EVENT", "OBJECT");
    }
    while let Some(logged) = log.next().await {
        let wanted_kind = filters.len() <= 1
            || logged.envelope.as_ref().is_ok_and(|e| {
                filters
                    .iter()
                    .any(|f| subject_matches(f, &e.payload.subject()))
            });
        let wanted_name = match (&args.name, &logged.envelope) {
            (None, _) => true,
            (Some(name), Ok(envelope)) => object_of(&envelope.payload).is_some_and(|object| {
                object == *name || object.rsplit('/').next() == Some(name.as_str())
            }),
            (Some(_), Err(_)) => false,
        };
        if !(wanted_kind && wanted_name) {
            continue;
        }
        match args.output {
            TextOrJson::Json => match &logged.envelope {
                Ok(envelope) => {
                    let json = envelope.to_json().map_err(anyhow::Error::from)?;
                    println!("{}", String::from_utf8_lossy(&json));
                }
                Err(e) => eprintln!("event #{}: {e}", logged.sequence),
            },
            TextOrJson::Text => println!("{}", timeline_line(&logged)),
        }
    }
    Ok(())
}

fn subject_matches(filter: &str, subject: &str) -> bool {
    subject.starts_with(filter.trim_end_matches('>'))
}

fn invalid(message: &str) -> Failure {
    eprintln!("error: {message}");
    Failure::Invalid
}

/// `namespace/name` of the object an event is about.
fn object_of(event: &Event) -> Option<String> {
    Some(match event {
        Event::TagsDiscovered(e) => e.repository.to_string(),
        Event::PolicyResolved(e) => e.policy.to_string(),
        Event::CommitPushed(e) => e.automation.to_string(),
        Event::ManifestWarning(w) => w.automation.to_string(),
        Event::PullRequestOpened(e) | Event::PullRequestUpdated(e) => e.automation.to_string(),
        Event::PolicyStale(e) | Event::AutomationStalled(e) => e.object.to_string(),
        Event::ScanFailed(f)
        | Event::ResolveFailed(f)
        | Event::CommitFailed(f)
        | Event::ReviewFailed(f)
        | Event::NotificationFailed(f)
        | Event::ConfigFailed(f) => f.object.to_string(),
        Event::ConfigSynced(e) => format!("config/{}", e.source),
        Event::ConfigRejected(e) => format!("config/{}", e.source),
    })
}

fn trigger(trigger: &ScanTrigger) -> &'static str {
    match trigger {
        ScanTrigger::Schedule => "the interval schedule",
        ScanTrigger::Webhook => "a registry webhook",
        ScanTrigger::Reconcile => "tagrelay reconcile",
        ScanTrigger::Config => "a configuration change",
    }
}

/// What an event says, in one line.
fn detail(event: &Event) -> String {
    match event {
        Event::TagsDiscovered(e) => {
            let newest: Vec<&str> = e
                .tags
                .as_deref()
                .unwrap_or_default()
                .iter()
                .rev()
                .take(3)
                .map(String::as_str)
                .collect();
            format!(
                "{} has {} tags (last by name: {}) after a scan by {}",
                e.image,
                e.tag_count,
                newest.join(", "),
                trigger(&e.trigger)
            )
        }
        Event::PolicyResolved(e) => format!(
            "{}: {} -> {}",
            e.image,
            e.previous
                .as_ref()
                .map_or("(none)".to_string(), ToString::to_string),
            e.current
        ),
        Event::CommitPushed(e) => {
            let short = e.commit.get(..7).unwrap_or(&e.commit);
            let changes: Vec<String> = e
                .changes
                .iter()
                .map(|c| format!("{}: {} -> {}", c.file, c.old, c.new))
                .collect();
            let signed = e.signed_with.as_ref().map_or(String::new(), |key| {
                format!(
                    ", signed {} {}",
                    signature_format(key.format),
                    key.fingerprint
                )
            });
            format!("{short} to {} ({}{signed})", e.branch, changes.join("; "))
        }
        Event::ManifestWarning(w) => format!(
            "{}:{}: {}: {} (fix: {})",
            w.file, w.line, w.check, w.problem, w.fix
        ),
        Event::PullRequestOpened(e) | Event::PullRequestUpdated(e) => {
            let short = e.commit.get(..7).unwrap_or(&e.commit);
            format!(
                "#{} {} -> {} at {short}: {} ({} changes) {}",
                e.number,
                e.head,
                e.base,
                e.title,
                e.changes.len(),
                e.url
            )
        }
        Event::PolicyStale(e) | Event::AutomationStalled(e) => format!(
            "{}: {} (since {})",
            e.reason.as_str(),
            e.message,
            e.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        Event::ScanFailed(f)
        | Event::ResolveFailed(f)
        | Event::CommitFailed(f)
        | Event::ReviewFailed(f)
        | Event::NotificationFailed(f)
        | Event::ConfigFailed(f) => format!(
            "{}{} (attempt {}{})",
            if f.reason.is_other() {
                String::new()
            } else {
                format!("{}: ", f.reason)
            },
            f.error,
            f.attempt,
            if f.will_retry { ", will retry" } else { "" }
        ),
        Event::ConfigSynced(e) => {
            let short = e.commit.get(..7).unwrap_or(&e.commit);
            let list = |objects: &[ConfigObject]| {
                objects
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "{short} of {}: applied [{}], deleted [{}], {} unchanged",
                e.repository,
                list(&e.applied),
                list(&e.deleted),
                e.unchanged.len()
            )
        }
        Event::ConfigRejected(e) => {
            let short = e.commit.get(..7).unwrap_or(&e.commit);
            let errors: Vec<String> = e
                .errors
                .iter()
                .map(|p| {
                    let field = if p.field.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", p.field)
                    };
                    format!("{}:{}: {field}{}", p.file, p.line, p.reason)
                })
                .collect();
            format!(
                "{short} of {} refused, {} kept: {}",
                e.repository,
                e.kept_commit
                    .as_deref()
                    .map_or("nothing", |c| c.get(..7).unwrap_or(c)),
                errors.join("; ")
            )
        }
    }
}

/// The format's name as `git log --show-signature` users know it.
fn signature_format(format: SignatureFormat) -> &'static str {
    match format {
        SignatureFormat::Openpgp => "openpgp",
        SignatureFormat::Ssh => "ssh",
    }
}

fn timeline_line(logged: &LoggedEvent) -> String {
    match &logged.envelope {
        Ok(envelope) => format!(
            "{:<24}  {:<15}  {:<32}  {}",
            envelope.occurred_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            envelope.event_type().as_str(),
            object_of(&envelope.payload).unwrap_or_default(),
            detail(&envelope.payload)
        ),
        Err(e) => format!(
            "{:<24}  {:<15}  {:<32}  {e}",
            logged.stored_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            "(unreadable)",
            format!("#{}", logged.sequence)
        ),
    }
}

/// Every readable event in the log, by id.
async fn load_all(bus: &Bus) -> Result<HashMap<String, Envelope>, Failure> {
    let mut log = Box::pin(bus.read_log("tagrelay.>", None, false).await?);
    let mut events = HashMap::new();
    while let Some(logged) = log.next().await {
        if let Ok(envelope) = logged.envelope {
            events.insert(envelope.id.clone(), envelope);
        }
    }
    Ok(events)
}

/// Runs `why`.
pub async fn why(cli: &Cli, args: &WhyArgs) -> Result<(), Failure> {
    let wanted = args.commit.to_ascii_lowercase();
    if wanted.len() < 7 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(&format!(
            "{:?} is not a commit id (at least 7 hex digits)",
            args.commit
        )));
    }
    let bus = cli.bus().await?;
    let events = load_all(&bus).await?;
    let mut commits: Vec<&Envelope> = events
        .values()
        .filter(|e| matches!(&e.payload, Event::CommitPushed(c) if c.commit.starts_with(&wanted)))
        .collect();
    commits.sort_by_key(|e| e.occurred_at);
    let Some(commit) = commits.first() else {
        return Err(Failure::Failed(anyhow::anyhow!(
            "no CommitPushed event for commit {wanted} in the log"
        )));
    };
    let Event::CommitPushed(pushed) = &commit.payload else {
        return Err(Failure::Failed(anyhow::anyhow!("unexpected event")));
    };
    println!(
        "commit {} on {} of {}",
        pushed.commit, pushed.branch, pushed.remote
    );
    match &pushed.signed_with {
        Some(key) => println!(
            "signed with {} key {}",
            signature_format(key.format),
            key.fingerprint
        ),
        None => println!("not signed (the automation has no signingKey)"),
    }
    println!(
        "{}  CommitPushed    {}  {}",
        stamp(commit),
        pushed.automation,
        detail(&commit.payload)
    );
    for change in &pushed.changes {
        println!(
            "    {}: {} -> {} ({})",
            change.file, change.old, change.new, change.setter
        );
    }
    let mut reviews: Vec<&Envelope> = events
        .values()
        .filter(|e| e.causation_id.as_deref() == Some(commit.id.as_str()))
        .filter(|e| {
            matches!(
                e.payload,
                Event::PullRequestOpened(_) | Event::PullRequestUpdated(_) | Event::ReviewFailed(_)
            )
        })
        .collect();
    reviews.sort_by_key(|e| e.occurred_at);
    for review in reviews {
        println!(
            "  -> {}  {:<18}  {}  (+{} after the commit)",
            stamp(review),
            review.event_type().as_str(),
            detail(&review.payload),
            latency(commit, review)
        );
    }
    for cause_id in &pushed.causes {
        let Some(resolved) = events.get(cause_id) else {
            println!("  <- {cause_id}: not in the log (expired or from another stream)");
            continue;
        };
        println!(
            "  <- {}  PolicyResolved  {}  (+{} before the commit)",
            stamp(resolved),
            object_of(&resolved.payload).unwrap_or_default(),
            latency(resolved, commit)
        );
        println!("       {}", detail(&resolved.payload));
        let mut current = resolved;
        while let Some(parent) = current.causation_id.as_ref().and_then(|id| events.get(id)) {
            println!(
                "  <- {}  {:<14}  {}  (+{} before the next step)",
                stamp(parent),
                parent.event_type().as_str(),
                object_of(&parent.payload).unwrap_or_default(),
                latency(parent, current)
            );
            println!("       {}", detail(&parent.payload));
            current = parent;
        }
    }
    let mut configured = vec![(
        ObjectKey::new(
            Kind::ImageUpdateAutomation,
            &pushed.automation.namespace,
            &pushed.automation.name,
        ),
        *commit,
    )];
    for resolved in pushed.causes.iter().filter_map(|id| events.get(id)) {
        if let Event::PolicyResolved(e) = &resolved.payload {
            let key = ObjectKey::new(Kind::ImagePolicy, &e.policy.namespace, &e.policy.name);
            configured.push((key, resolved));
        }
    }
    let from_git = events
        .values()
        .any(|e| matches!(e.payload, Event::ConfigSynced(_)));
    for (key, decision) in configured.into_iter().filter(|_| from_git) {
        match configuration_commit(&events, &key, decision) {
            Some((synced, e)) => println!(
                "  config: {key} as of configuration commit {} of {} (source {}, synced {})",
                e.commit,
                e.repository,
                e.source,
                stamp(synced)
            ),
            None => {
                println!("  config: {key} was not synced from Git (applied by hand or derived)")
            }
        }
    }
    println!(
        "total: {} from the first event of the chain to the commit",
        chain_latency(&events, commit)
    );
    Ok(())
}

/// The newest `ConfigSynced` before `decision` that applied `key`: the
/// configuration commit the decision was made under. An object the source
/// adopted as it was stored (listed `unchanged` only) is named by the
/// first sync that owned it.
fn configuration_commit<'a>(
    events: &'a HashMap<String, Envelope>,
    key: &ObjectKey,
    decision: &Envelope,
) -> Option<(&'a Envelope, &'a tagrelay_proto::event::ConfigSynced)> {
    let wanted = ConfigObject::from(key);
    let syncs: Vec<(&Envelope, &tagrelay_proto::event::ConfigSynced)> = events
        .values()
        .filter(|e| e.occurred_at <= decision.occurred_at)
        .filter_map(|e| match &e.payload {
            Event::ConfigSynced(synced) => Some((e, synced)),
            _ => None,
        })
        .collect();
    let applied = syncs
        .iter()
        .filter(|(_, synced)| synced.applied.contains(&wanted))
        .max_by_key(|(e, _)| e.occurred_at);
    let adopted = || {
        syncs
            .iter()
            .filter(|(_, synced)| synced.unchanged.contains(&wanted))
            .min_by_key(|(e, _)| e.occurred_at)
    };
    applied.or_else(adopted).copied()
}

fn stamp(envelope: &Envelope) -> String {
    envelope
        .occurred_at
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn latency(earlier: &Envelope, later: &Envelope) -> String {
    let millis = (later.occurred_at - earlier.occurred_at).num_milliseconds();
    format!("{:.3}s", millis as f64 / 1000.0)
}

fn chain_latency(events: &HashMap<String, Envelope>, commit: &Envelope) -> String {
    let Event::CommitPushed(pushed) = &commit.payload else {
        return "-".into();
    };
    let mut earliest = commit;
    for cause in pushed.causes.iter().filter_map(|id| events.get(id)) {
        let mut current = cause;
        while let Some(parent) = current.causation_id.as_ref().and_then(|id| events.get(id)) {
            current = parent;
        }
        if current.occurred_at < earliest.occurred_at {
            earliest = current;
        }
    }
    latency(earliest, commit)
}
