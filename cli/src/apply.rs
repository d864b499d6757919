//! `tagrelay apply -f FILE|DIR|-`: validate everything, then store
//! everything, or store nothing. The checks are `tagrelay-validate`'s, the
//! same the Git configuration source runs: beyond Flux's schema rules,
//! policies are compiled with the resolver's engine, message templates
//! parsed with the committer's, and each automation resolved against its
//! GitRepository as the committer will (checkout, push branch, refspec), so
//! what a stage would refuse at run time is refused here, with its field.
//!
//! Deprecated versions and fields are stored with a warning. `Secret`
//! documents, which Flux guides put beside the objects, are never stored on
//! the bus: they are skipped with a warning saying where to mount them.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tagrelay_proto::config::Kind;
use tagrelay_validate::{check_references, decode_batch, Problem, UnknownKinds};

use crate::{Cli, Failure};

/// Arguments of `apply`.
#[derive(clap::Args)]
pub struct Args {
    /// A YAML file, a directory of `*.yaml`/`*.yml` files, or `-` for stdin.
    /// May be given several times.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

/// Runs `apply`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    apply_sources(cli, read_sources(&args.files)?).await
}

/// Validates every document of `sources` (`(name, YAML)`) with the checks
/// every configuration source shares (`tagrelay-validate`), then stores all
/// of them or none: `apply` and `create` share it.
pub async fn apply_sources(cli: &Cli, sources: Vec<(String, String)>) -> Result<(), Failure> {
    let mut batch = decode_batch(&sources, UnknownKinds::Refuse);
    let store = match cli.bus().await {
        Ok(bus) => bus.config_store().await?,
        Err(Failure::Failed(e)) if !batch.errors.is_empty() => {
            let mut errors: Vec<String> = batch.errors.iter().map(Problem::to_string).collect();
            errors.push(format!("references were not checked: {e:#}"));
            return refuse(&errors);
        }
        Err(e) => return Err(e),
    };
    let stored = store.snapshot().await?;
    check_references(&mut batch, &stored);
    for note in &batch.notes {
        eprintln!("warning: {}", note.problem());
    }
    if !batch.errors.is_empty() {
        let errors: Vec<String> = batch.errors.iter().map(Problem::to_string).collect();
        return refuse(&errors);
    }

    for kind in Kind::ALL {
        for checked in batch.objects.iter().filter(|c| c.object.kind() == kind) {
            let key = checked.object.key();
            let verb = match stored.get(&key) {
                Some(existing) if existing.to_json() == checked.object.to_json() => "unchanged",
                Some(_) => "configured",
                None => "created",
            };
            if verb != "unchanged" {
                store.put(&checked.object).await?;
            }
            println!("{key} {verb}");
        }
    }
    Ok(())
}

fn refuse(errors: &[String]) -> Result<(), Failure> {
    for error in errors {
        eprintln!("{error}");
    }
    eprintln!(
        "error: {} problem(s) found; nothing was applied",
        errors.len()
    );
    Err(Failure::Invalid)
}

/// Reads every input: files as given, directories' `*.yaml`/`*.yml`/`*.json`
/// files in name order, `-` from stdin.
fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, String)>> {
    let mut sources = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            sources.push(("<stdin>".to_string(), text));
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            files.sort();
            for file in files {
                sources.push((file.display().to_string(), read_file(&file)?));
            }
        } else {
            sources.push((path.display().to_string(), read_file(path)?));
        }
    }
    Ok(sources)
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
