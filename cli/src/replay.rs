//! `tagrelay replay`: re-run the recorded tag sets through the policy engine.
//!
//! With the recorded policies it is a determinism check: every recorded
//! `PolicyResolved` names the tag set it was computed from, and the engine,
//! given that tag set and the policy revision in force at the time, must
//! choose the same image. Any difference is reported and exits 1. With
//! `--policy FILE` it is a what-if: which tags proposed policies would have
//! shipped, and when, next to what was recorded.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tagrelay_policy::age::{Ages, FirstSeen};
use tagrelay_policy::rules::{policy_rules, reflects_digest, PolicyCache};
use tagrelay_proto::bus::Revision;
use tagrelay_proto::config::{load_documents, AgeGate, ImagePolicy, Kind, Object, ObjectKey};
use tagrelay_proto::event::{
    Envelope, Event, ObjectRef, PolicyResolved, SelectedImage, TagsDiscovered,
};
use tagrelay_proto::state::HeldBack;

use crate::audit::parse_since;
use crate::{Cli, Failure};

/// Arguments of `replay`.
#[derive(clap::Args)]
pub struct Args {
    /// Only events from this time (RFC 3339) or this long ago (`24h`).
    #[arg(long)]
    since: Option<String>,
    /// Proposed ImagePolicies (YAML) to evaluate instead of the recorded ones.
    #[arg(long)]
    policy: Option<PathBuf>,
}

/// The recorded log, as replay needs it.
#[derive(Default)]
struct Log {
    /// Every tag set, in order: (time, event).
    scans: Vec<(DateTime<Utc>, TagsDiscovered)>,
    /// Every recorded resolution, in order.
    resolutions: Vec<(DateTime<Utc>, PolicyResolved)>,
}

/// Runs `replay`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let since = match &args.since {
        Some(since) => Some(parse_since(since).map_err(|e| invalid(&e))?),
        None => None,
    };
    let proposed = match &args.policy {
        Some(path) => Some(load_policies(path)?),
        None => None,
    };
    let bus = cli.bus().await?;
    let store = bus.config_store().await?;
    let log = read(&bus, since).await?;
    let mut exclusions = BTreeMap::new();
    for object in store.list(Some(Kind::ImageRepository)).await? {
        if let Object::ImageRepository(r) = &object {
            exclusions.insert(object.key(), r.spec.exclusion_list.clone());
        }
    }
    match proposed {
        None => check(&store, &log, &exclusions).await,
        Some(policies) => {
            what_if(&log, &policies, &exclusions);
            Ok(())
        }
    }
}

fn invalid(message: &str) -> Failure {
    eprintln!("error: {message}");
    Failure::Invalid
}

fn load_policies(path: &PathBuf) -> Result<Vec<ImagePolicy>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(&format!("reading {}: {e}", path.display())))?;
    let documents = load_documents(&text)
        .map_err(|e| invalid(&format!("{}:{}: {}", path.display(), e.line, e.reason)))?;
    let mut policies = Vec::new();
    for document in documents {
        match Object::decode(&document.value) {
            Ok(Object::ImagePolicy(p)) => policies.push(p),
            Ok(other) => eprintln!(
                "{}: ignoring {} (only ImagePolicies are replayed)",
                path.display(),
                other.key()
            ),
            Err(e) => {
                return Err(invalid(&format!(
                    "{}:{}: {e}",
                    path.display(),
                    document.line_of(&e.path)
                )))
            }
        }
    }
    Ok(policies)
}

async fn read(
    bus: &tagrelay_proto::bus::Bus,
    since: Option<DateTime<Utc>>,
) -> Result<Log, Failure> {
    let mut entries = Box::pin(bus.read_log("tagrelay.>", since, false).await?);
    let mut log = Log::default();
    let spinner = ProgressBar::new_spinner().with_message("reading the event log");
    while let Some(entry) = entries.next().await {
        spinner.tick();
        match entry.envelope {
            Ok(Envelope {
                payload: Event::TagsDiscovered(e),
                occurred_at,
                ..
            }) => log.scans.push((occurred_at, e)),
            Ok(Envelope {
                payload: Event::PolicyResolved(e),
                occurred_at,
                ..
            }) => log.resolutions.push((occurred_at, e)),
            Ok(_) => {}
            Err(e) => eprintln!("event #{}: {e}", entry.sequence),
        }
    }
    spinner.finish_and_clear();
    Ok(log)
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

/// What `policy` selects from `scan`, exactly as the resolver decides.
fn decide(
    policies: &PolicyCache,
    policy: &ImagePolicy,
    scan: &TagsDiscovered,
    exclusions: &BTreeMap<ObjectKey, Option<Vec<String>>>,
) -> Result<SelectedImage, String> {
    let tags = scan.tags.as_deref().unwrap_or_default();
    let exclusion = exclusions.get(&policy.repository_key()).cloned().flatten();
    let rules =
        policy_rules(&policy.metadata, &policy.spec, exclusion).map_err(|e| e.to_string())?;
    policies
        .select_image(&rules, reflects_digest(&policy.spec), tags, &scan.images)
        .map_err(|e| e.to_string())
}

/// The determinism check.
async fn check(
    store: &tagrelay_proto::bus::ConfigStore,
    log: &Log,
    exclusions: &BTreeMap<ObjectKey, Option<Vec<String>>>,
) -> Result<(), Failure> {
    let by_digest: HashMap<(&ObjectRef, &str), &TagsDiscovered> = log
        .scans
        .iter()
        .map(|(_, scan)| ((&scan.repository, scan.tag_set_digest.as_str()), scan))
        .collect();
    let mut histories: BTreeMap<ObjectKey, Vec<Revision>> = BTreeMap::new();
    let compiled = PolicyCache::default();
    let (mut reproduced, mut unverifiable, mut failures) = (0usize, 0usize, Vec::new());
    let bar = progress(log.resolutions.len(), "replaying decisions");
    for (at, recorded) in &log.resolutions {
        bar.inc(1);
        let key = ObjectKey::new(
            Kind::ImagePolicy,
            &recorded.policy.namespace,
            &recorded.policy.name,
        );
        if !histories.contains_key(&key) {
            let history = store.history(&key).await?;
            histories.insert(key.clone(), history);
        }
        let in_force = histories.get(&key).and_then(|h| {
            h.iter()
                .rev()
                .find(|r| r.written <= *at)
                .or_else(|| h.first())
        });
        let policy = match in_force {
            Some(Revision {
                object: Some(Object::ImagePolicy(p)),
                ..
            }) => p,
            _ => {
                unverifiable += 1;
                continue;
            }
        };
        let Some(scan) = by_digest.get(&(&recorded.repository, recorded.tag_set_digest.as_str()))
        else {
            unverifiable += 1;
            continue;
        };
        if scan.tags.is_none() {
            unverifiable += 1;
            continue;
        }
        match decide(&compiled, policy, scan, exclusions) {
            Ok(selected) if selected == recorded.current => reproduced += 1,
            Ok(selected) => failures.push(format!(
                "{at}: {}: recorded {} but the engine now chooses {} from the same tag set",
                recorded.policy, recorded.current, selected
            )),
            Err(e) => failures.push(format!(
                "{at}: {}: recorded {} but the engine now fails: {e}",
                recorded.policy, recorded.current
            )),
        }
    }
    bar.finish_and_clear();
    println!(
        "replayed {} tag sets and {} decisions: {reproduced} reproduced, {} determinism failures, {unverifiable} not verifiable (policy revision or tag set no longer kept)",
        log.scans.len(),
        log.resolutions.len(),
        failures.len()
    );
    for failure in &failures {
        println!("DETERMINISM FAILURE {failure}");
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(anyhow::anyhow!(
            "{} decisions were not reproduced",
            failures.len()
        )))
    }
}

/// The what-if: proposed policies over the recorded tag sets.
fn what_if(
    log: &Log,
    policies: &[ImagePolicy],
    exclusions: &BTreeMap<ObjectKey, Option<Vec<String>>>,
) {
    let bar = progress(
        log.scans.len() * policies.len().max(1),
        "evaluating proposed policies",
    );
    let compiled = PolicyCache::default();
    for policy in policies {
        let name = format!(
            "{}/{}",
            policy.metadata.namespace.as_deref().unwrap_or_default(),
            policy.metadata.name
        );
        let repository = policy.repository_key();
        println!("{name} (proposed):");
        match policy.age_gate() {
            Ok(Some(gate)) => {
                gated_what_if(log, policy, gate, exclusions, &compiled, &bar);
                continue;
            }
            Ok(None) => {}
            Err(errors) => {
                for error in errors {
                    println!("  invalid: {error}");
                }
                continue;
            }
        }
        let mut shipped: Option<SelectedImage> = None;
        let mut moves = 0;
        for (at, scan) in &log.scans {
            bar.inc(1);
            if scan.repository.namespace != repository.namespace
                || scan.repository.name != repository.name
            {
                continue;
            }
            if scan.tags.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            let chosen = match decide(&compiled, policy, scan, exclusions) {
                Ok(chosen) => chosen,
                Err(e) => {
                    println!("  {at}: no tag: {e}");
                    continue;
                }
            };
            if shipped.as_ref() != Some(&chosen) {
                let recorded = log
                    .resolutions
                    .iter()
                    .rev()
                    .find(|(t, r)| {
                        t >= at
                            && r.policy.name == policy.metadata.name
                            && r.tag_set_digest == scan.tag_set_digest
                    })
                    .map(|(_, r)| r.current.to_string())
                    .unwrap_or_else(|| "no recorded move".to_string());
                println!(
                    "  {at}: would ship {}:{chosen} (recorded: {recorded})",
                    scan.image
                );
                shipped = Some(chosen);
                moves += 1;
            }
        }
        println!("  {moves} moves");
    }
    bar.finish_and_clear();
}

/// The what-if of a policy with a release-age gate: the recorded tag sets
/// in order, with the first sightings folded from them as the resolver
/// folds them, and time stepped from each scan to the next through the
/// moments a held-back tag comes of age.
fn gated_what_if(
    log: &Log,
    policy: &ImagePolicy,
    gate: AgeGate,
    exclusions: &BTreeMap<ObjectKey, Option<Vec<String>>>,
    compiled: &PolicyCache,
    bar: &ProgressBar,
) {
    let repository = policy.repository_key();
    let scans: Vec<&TagsDiscovered> = log
        .scans
        .iter()
        .map(|(_, scan)| scan)
        .filter(|scan| {
            scan.repository.namespace == repository.namespace
                && scan.repository.name == repository.name
        })
        .collect();
    bar.inc((log.scans.len() - scans.len()) as u64);
    let exclusion = exclusions.get(&repository).cloned().flatten();
    let rules = match policy_rules(&policy.metadata, &policy.spec, exclusion) {
        Ok(rules) => rules,
        Err(e) => {
            println!("  invalid: {e}");
            return;
        }
    };
    let reflect = reflects_digest(&policy.spec);
    let mut seen = FirstSeen::default();
    let mut shipped: Option<SelectedImage> = None;
    let mut waiting: Option<HeldBack> = None;
    let (mut moves, mut held) = (0, 0);
    for (index, scan) in scans.iter().enumerate() {
        bar.inc(1);
        let tags = scan.tags.as_deref().unwrap_or_default();
        if tags.is_empty() {
            continue;
        }
        seen.observe(tags, &scan.images, scan.scanned_at);
        let next_scan = scans
            .get(index + 1)
            .map_or_else(Utc::now, |next| next.scanned_at);
        let mut now = scan.scanned_at;
        loop {
            let ages = Ages {
                gate,
                first_seen: &seen,
                images: &scan.images,
                selected: shipped.as_ref().map(|s| s.tag.as_str()),
                now,
            };
            let decision =
                match compiled.select_image_gated(&rules, reflect, tags, &scan.images, &ages) {
                    Ok(decision) => decision,
                    Err(e) => {
                        println!("  {now}: no tag: {e}");
                        break;
                    }
                };
            if let Some(selected) = decision.selected.filter(|s| shipped.as_ref() != Some(s)) {
                println!("  {now}: would ship {}:{selected}", scan.image);
                shipped = Some(selected);
                moves += 1;
            }
            if decision.held_back != waiting {
                if let Some(held_back) = &decision.held_back {
                    let until = held_back
                        .until
                        .map_or("never (its image has no creation time)".to_string(), |t| {
                            t.to_string()
                        });
                    println!("  {now}: holds back {} until {until}", held_back.image);
                    held += 1;
                }
                waiting = decision.held_back;
            }
            match decision.recheck_at {
                Some(at) if at < next_scan && at > now => now = at,
                _ => break,
            }
        }
    }
    let seconds = gate.minimum_age.as_secs();
    let age = match seconds {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    println!("  {moves} moves, {held} tags held back by the minimum age of {age}");
}
