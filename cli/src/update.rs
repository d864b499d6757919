//! `tagrelay update`: rewrite manifests offline, exactly as the committer
//! would, without a bus or Git.
//!
//! Contract (scripted against; keep it exact):
//! - `--policies LATEST.json` maps `"NS:NAME"` to the latest reference
//!   (`repo/name:tag` or `repo/name:tag@sha256:…`); only policies of
//!   `--namespace` (default `flux-system`) apply, as for an automation.
//! - `--available AVAILABLE.json` (Flux v1 mode) maps an image repository as
//!   written in the manifests to `[{"tag": …, "created": RFC3339}, …]`; each
//!   automated container gets the tag its v1 filter chooses.
//! - One line per change on stdout: `file: old -> new (policy or container)`;
//!   `--diff` prints a unified diff instead and writes nothing.
//! - Exit 0 on success (files that do not parse are skipped and reported on
//!   stderr; every other file is still updated), 2 on bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tagrelay_policy::{compile, Candidate, Choice, PolicyRules, V1Filter};
use tagrelay_proto::config::DEFAULT_NAMESPACE;
use tagrelay_proto::reference::ImageReference;
use tagrelay_rewrite::{
    discover_v1, is_setters_candidate, is_v1_candidate, may_contain_markers, rewrite_file,
    UpdateSet, V1Update,
};

use crate::tree::{self, Manifest};
use crate::Failure;

/// Arguments of `update`.
#[derive(clap::Args)]
pub struct Args {
    /// The directory whose manifests are updated (recursively).
    #[arg(long)]
    path: PathBuf,
    /// JSON map of `"NS:NAME"` to each policy's latest image reference.
    #[arg(
        long,
        required_unless_present = "available",
        conflicts_with = "available"
    )]
    policies: Option<PathBuf>,
    /// JSON map of image repository to its available tags (Flux v1 mode).
    #[arg(long)]
    available: Option<PathBuf>,
    /// The automation's namespace: only its policies apply.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Print a unified diff and write nothing.
    #[arg(long)]
    diff: bool,
}

/// One available tag in Flux v1 mode.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailableTag {
    tag: String,
    #[serde(default)]
    created: Option<DateTime<Utc>>,
}

/// Runs `update`.
pub fn run(args: &Args) -> Result<(), Failure> {
    if !args.path.is_dir() {
        return Err(invalid(&format!(
            "--path {}: not a directory",
            args.path.display()
        )));
    }
    let v1_mode = args.available.is_some();
    let tree = tree::read(&args.path, |name| {
        if v1_mode {
            is_v1_candidate(name)
        } else {
            is_setters_candidate(name)
        }
    })
    .map_err(|e| invalid(&e))?;
    let mut skipped: Vec<String> = tree
        .unread
        .iter()
        .map(|(shown, unread)| format!("{shown}: skipped: {unread}"))
        .collect();
    let manifests = tree.manifests;
    let updates = match (&args.policies, &args.available) {
        (Some(file), _) => UpdateSet {
            policies: read_policies(file, &args.namespace)?,
            v1: Vec::new(),
        },
        (None, Some(file)) => UpdateSet {
            policies: BTreeMap::new(),
            v1: v1_updates(&manifests, &read_available(file)?, &mut skipped),
        },
        (None, None) => return Err(invalid("one of --policies or --available is required")),
    };
    for manifest in &manifests {
        if !v1_mode && !may_contain_markers(&manifest.content) {
            continue;
        }
        let rewrite = match rewrite_file(&manifest.content, &updates) {
            Ok(rewrite) => rewrite,
            Err(e) => {
                skipped.push(format!("{}: skipped: {e}", manifest.shown));
                continue;
            }
        };
        for refusal in &rewrite.refusals {
            eprintln!(
                "{}:{}: not updated ({}): {}",
                manifest.shown, refusal.line, refusal.cause, refusal.reason
            );
        }
        if !rewrite.is_changed() {
            continue;
        }
        if args.diff {
            print!(
                "{}",
                unified_diff(&manifest.shown, &manifest.content, &rewrite.content)
            );
        } else {
            std::fs::write(&manifest.path, &rewrite.content).map_err(|e| {
                Failure::Failed(anyhow::anyhow!("writing {}: {e}", manifest.path.display()))
            })?;
            for change in &rewrite.changes {
                println!(
                    "{}: {} -> {} ({})",
                    manifest.shown, change.old, change.new, change.cause
                );
            }
        }
    }
    for line in skipped {
        eprintln!("{line}");
    }
    Ok(())
}

fn invalid(message: &str) -> Failure {
    eprintln!("error: {message}");
    Failure::Invalid
}

fn read_policies(
    file: &Path,
    namespace: &str,
) -> Result<BTreeMap<String, ImageReference>, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| invalid(&format!("reading {}: {e}", file.display())))?;
    let raw: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
        invalid(&format!(
            "{}: expected a JSON object of \"NS:NAME\": \"image:tag\": {e}",
            file.display()
        ))
    })?;
    let mut policies = BTreeMap::new();
    for (key, reference) in raw {
        let Some((ns, name)) = key.split_once(':') else {
            return Err(invalid(&format!(
                "{}: key {key:?} is not NS:NAME",
                file.display()
            )));
        };
        if name.is_empty() || name.contains(':') {
            return Err(invalid(&format!(
                "{}: key {key:?} is not NS:NAME",
                file.display()
            )));
        }
        let parsed = ImageReference::parse(&reference)
            .map_err(|e| invalid(&format!("{}: {key}: {e}", file.display())))?;
        if ns == namespace {
            policies.insert(key, parsed);
        }
    }
    Ok(policies)
}

fn read_available(file: &Path) -> Result<BTreeMap<String, Vec<AvailableTag>>, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| invalid(&format!("reading {}: {e}", file.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        invalid(&format!(
            "{}: expected a JSON object of repository to [{{\"tag\": …, \"created\": RFC3339}}]: {e}",
            file.display()
        ))
    })
}

/// The tag each automated container should carry, by its v1 filter.
fn v1_updates(
    manifests: &[Manifest],
    available: &BTreeMap<String, Vec<AvailableTag>>,
    skipped: &mut Vec<String>,
) -> Vec<V1Update> {
    let mut updates = Vec::new();
    for manifest in manifests {
        let discovery = match discover_v1(&manifest.content) {
            Ok(discovery) => discovery,
            Err(_) => continue,
        };
        for container in discovery.containers {
            let Some(tags) = available.get(&container.image) else {
                continue;
            };
            let choice = match container.filter.as_deref() {
                None | Some("") => Choice::NewestBuild,
                Some(filter) => Choice::FluxV1(V1Filter::parse(filter)),
            };
            let chosen = compile(&PolicyRules::new(choice))
                .map_err(|e| e.to_string())
                .and_then(|policy| {
                    policy
                        .select(tags.iter().map(|t| Candidate {
                            tag: &t.tag,
                            created: t.created,
                        }))
                        .map(|s| s.tag.to_string())
                        .map_err(|e| e.to_string())
                });
            match chosen {
                Ok(tag) if container.current_tag.as_deref() != Some(tag.as_str()) => {
                    updates.push(V1Update {
                        workload: container.workload.clone(),
                        container: container.container.clone(),
                        tag,
                    })
                }
                Ok(_) => {}
                Err(e) => skipped.push(format!(
                    "{}:{}: {} container {}: {e}",
                    manifest.shown, container.line, container.workload, container.container
                )),
            }
        }
    }
    updates
}

fn unified_diff(name: &str, old: &[u8], new: &[u8]) -> String {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}
