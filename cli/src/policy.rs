//! `tagrelay policy test`: try a policy against a list of tags, offline.
//!
//! Contract (scripted against; keep it exact): prints the chosen tag alone
//! on stdout and exits 0; exits 1 with the reason on stderr when no tag
//! qualifies; exits 2 when the policy (or the input) is invalid. With
//! `--repeat N` it also prints, on stderr only, the selection's in-process
//! time per tag over N runs (best and median, the filter included), so the
//! engine can be compared with other tools on the same tag file.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tagrelay_policy::rules::compile_policy;
use tagrelay_policy::{compile, Candidate, Choice, CompiledPolicy, PolicyRules, V1Filter};
use tagrelay_proto::config::{load_documents, validate, Object};

use crate::Failure;

/// Arguments of `policy`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the tag a policy chooses from a list of tags.
    Test(TestArgs),
}

#[derive(clap::Args)]
struct TestArgs {
    /// A file holding one Flux ImagePolicy (v1beta2 or v1).
    #[arg(long, required_unless_present = "filter", conflicts_with = "filter")]
    policy: Option<PathBuf>,
    /// A Flux v1 filter instead of a policy: `semver:~1.0`, `glob:main-*`,
    /// `regex:^v`, or an empty string for the newest image by creation time.
    #[arg(long)]
    filter: Option<String>,
    /// One tag per line; `TAG<TAB>RFC3339` gives the image's creation time.
    #[arg(long)]
    tags: PathBuf,
    /// Run the selection N times and print its time per tag (best and
    /// median) on stderr.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    repeat: Option<u32>,
}

/// Runs `policy`.
pub fn run(args: &Args) -> Result<(), Failure> {
    let Command::Test(args) = &args.command;
    let policy = match (&args.policy, &args.filter) {
        (Some(path), _) => load_policy(path)?,
        (None, Some(filter)) => {
            let choice = if filter.trim().is_empty() {
                Choice::NewestBuild
            } else {
                Choice::FluxV1(V1Filter::parse(filter))
            };
            compile(&PolicyRules::new(choice)).map_err(|e| invalid(&e.to_string()))?
        }
        (None, None) => return Err(invalid("one of --policy or --filter is required")),
    };
    let text = std::fs::read_to_string(&args.tags)
        .with_context(|| format!("reading {}", args.tags.display()))
        .map_err(|e| invalid(&format!("{e:#}")))?;
    let candidates = parse_tags(&text).map_err(|e| invalid(&e))?;
    let select = || {
        policy.select(candidates.iter().map(|(tag, created)| Candidate {
            tag,
            created: *created,
        }))
    };
    if let Some(runs) = args.repeat {
        eprintln!("{}", timing(runs, candidates.len(), || select().is_ok()));
    }
    match select() {
        Ok(selected) => {
            println!("{}", selected.tag);
            Ok(())
        }
        Err(e) => Err(Failure::Failed(anyhow::anyhow!("{e}"))),
    }
}

/// Times `runs` selections over `tags` tags: one line with the best and
/// median time per tag, and per run.
fn timing(runs: u32, tags: usize, mut select: impl FnMut() -> bool) -> String {
    let mut times: Vec<std::time::Duration> = (0..runs)
        .map(|_| {
            let started = std::time::Instant::now();
            std::hint::black_box(select());
            started.elapsed()
        })
        .collect();
    times.sort();
    let best = times.first().copied().unwrap_or_default();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let per_tag = |d: std::time::Duration| d.as_secs_f64() * 1e9 / tags.max(1) as f64;
    format!(
        "selection over {tags} tags, {runs} runs (filter included): best {:.1} ns/tag ({:.3} ms), median {:.1} ns/tag ({:.3} ms)",
        per_tag(best),
        best.as_secs_f64() * 1e3,
        per_tag(median),
        median.as_secs_f64() * 1e3
    )
}

fn invalid(message: &str) -> Failure {
    eprintln!("error: {message}");
    Failure::Invalid
}

fn load_policy(path: &PathBuf) -> Result<CompiledPolicy, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(&format!("reading {}: {e}", path.display())))?;
    let source = path.display();
    let documents = load_documents(&text)
        .map_err(|e| invalid(&format!("{source}:{}: {}", e.line, e.reason)))?;
    let [document] = documents.as_slice() else {
        return Err(invalid(&format!(
            "{source}: expected exactly one ImagePolicy, found {} documents",
            documents.len()
        )));
    };
    let object = Object::decode(&document.value)
        .map_err(|e| invalid(&format!("{source}:{}: {e}", document.line_of(&e.path))))?;
    let Object::ImagePolicy(policy) = &object else {
        return Err(invalid(&format!(
            "{source}: expected an ImagePolicy, found {}",
            object.kind()
        )));
    };
    let problems = validate(&object);
    if let Some(first) = problems.first() {
        for problem in &problems {
            eprintln!("{source}:{}: {problem}", document.line_of(&problem.path));
        }
        return Err(invalid(&format!("{first}")));
    }
    compile_policy(&policy.metadata, &policy.spec, None).map_err(|e| invalid(&e.to_string()))
}

/// A tag and, when the file gives it, its image's creation time.
type TagLine = (String, Option<DateTime<Utc>>);

/// Reads `TAG` or `TAG<TAB>RFC3339` lines; blank lines are skipped.
fn parse_tags(text: &str) -> Result<Vec<TagLine>, String> {
    let mut tags = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (tag, created) = match line.split_once('\t') {
            Some((tag, time)) => {
                let time = DateTime::parse_from_rfc3339(time.trim())
                    .map_err(|e| format!("tags line {}: invalid time {time:?}: {e}", number + 1))?;
                (tag, Some(time.with_timezone(&Utc)))
            }
            None => (line, None),
        };
        tags.push((tag.trim().to_string(), created));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lines_with_and_without_times() {
        let tags = parse_tags("1.0.0\n\n1.1.0\t2026-01-02T03:04:05Z\r\n").unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0], ("1.0.0".to_string(), None));
        assert_eq!(tags[1].1.unwrap().to_rfc3339(), "2026-01-02T03:04:05+00:00");
        assert!(parse_tags("1.0.0\tyesterday\n")
            .unwrap_err()
            .contains("line 1"));
    }
}
