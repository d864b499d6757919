//! `tagrelay apply -f FILE|DIR|-`: validate everything, then store
//! everything, or store nothing. Beyond Flux's schema rules, policies are
//! compiled with the resolver's engine, so a range or pattern the resolver
//! would refuse is refused here, with its field.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tagrelay_proto::config::{
    load_documents, validate, validate_references, Document, FieldError, Kind, Object, ObjectKey,
    DEFAULT_NAMESPACE,
};

use tagrelay_policy::rules::{compile_policy, error_field};

use crate::{Cli, Failure};

/// Arguments of `apply`.
#[derive(clap::Args)]
pub struct Args {
    /// A YAML file, a directory of `*.yaml`/`*.yml` files, or `-` for stdin.
    /// May be given several times.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
}

/// One decoded document and where it came from.
struct Applied {
    source: String,
    line: usize,
    object: Object,
}

/// Runs `apply`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let mut errors = Vec::new();
    let mut batch = Vec::new();
    let mut decoded_keys = BTreeSet::new();
    for (source, text) in read_sources(&args.files)? {
        let documents = match load_documents(&text) {
            Ok(documents) => documents,
            Err(e) => {
                errors.push(format!("{source}:{}: {}", e.line, e.reason));
                continue;
            }
        };
        for document in documents {
            decode_and_validate(
                &source,
                document,
                &mut batch,
                &mut errors,
                &mut decoded_keys,
            );
        }
    }
    let mut seen = BTreeSet::new();
    for applied in &batch {
        if !seen.insert(applied.object.key()) {
            errors.push(format!(
                "{}:{}: {}: defined more than once in this apply",
                applied.source,
                applied.line,
                applied.object.key()
            ));
        }
    }
    let store = match cli.bus().await {
        Ok(bus) => bus.config_store().await?,
        Err(Failure::Failed(e)) if !errors.is_empty() => {
            errors.push(format!("references were not checked: {e:#}"));
            return refuse(&errors);
        }
        Err(e) => return Err(e),
    };
    let mut known = store.keys().await?;
    known.extend(seen.iter().cloned());
    known.extend(decoded_keys);
    for applied in &batch {
        for error in validate_references(&applied.object, &known) {
            errors.push(format!(
                "{}:{}: {}: {error}",
                applied.source,
                applied.line,
                applied.object.key()
            ));
        }
    }
    if !errors.is_empty() {
        return refuse(&errors);
    }

    for kind in Kind::ALL {
        for applied in batch.iter().filter(|a| a.object.kind() == kind) {
            let key = applied.object.key();
            let verb = match store.get(&key).await? {
                Some(existing) if existing.to_json() == applied.object.to_json() => "unchanged",
                Some(_) => "configured",
                None => "created",
            };
            if verb != "unchanged" {
                store.put(&applied.object).await?;
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

fn decode_and_validate(
    source: &str,
    document: Document,
    batch: &mut Vec<Applied>,
    errors: &mut Vec<String>,
    decoded_keys: &mut BTreeSet<ObjectKey>,
) {
    let report = |errors: &mut Vec<String>, error: &FieldError| {
        errors.push(format!(
            "{source}:{}: {}: {error}",
            document.line_of(&error.path),
            label(&document.value)
        ));
    };
    match Object::decode(&document.value) {
        Err(error) => report(errors, &error),
        Ok(object) => {
            decoded_keys.insert(object.key());
            let mut problems = validate(&object);
            if let (true, Object::ImagePolicy(policy)) = (problems.is_empty(), &object) {
                if let Err(e) = compile_policy(&policy.metadata, &policy.spec, None) {
                    let (path, reason) = error_field(&e);
                    problems.push(FieldError::new(path, reason));
                }
            }
            for error in &problems {
                report(errors, error);
            }
            if problems.is_empty() {
                batch.push(Applied {
                    source: source.to_string(),
                    line: document.line,
                    object,
                });
            }
        }
    }
}

/// `kind/namespace/name` of a document that may not even decode.
fn label(value: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let kind = text(&value["kind"]).unwrap_or_else(|| "<no kind>".into());
    let namespace =
        text(&value["metadata"]["namespace"]).unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    let name = text(&value["metadata"]["name"]).unwrap_or_else(|| "<no name>".into());
    format!("{kind}/{namespace}/{name}")
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
