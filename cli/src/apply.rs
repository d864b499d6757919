//! `tagrelay apply -f FILE|DIR|-`: validate everything, then store
//! everything, or store nothing. Beyond Flux's schema rules, policies are
//! compiled with the resolver's engine, message templates parsed with the
//! committer's, and each automation resolved against its GitRepository as
//! the committer will (checkout, push branch, refspec), so what a stage
//! would refuse at run time is refused here, with its field.
//!
//! Deprecated versions and fields are stored with a warning. `Secret`
//! documents, which Flux guides put beside the objects, are never stored on
//! the bus: they are skipped with a warning saying where to mount them.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tagrelay_committer::automation::Automation;
use tagrelay_policy::rules::{compile_policy, error_field};
use tagrelay_proto::bus::ConfigStore;
use tagrelay_proto::config::{
    deprecations, load_documents, namespace_labels, validate, validate_references, Document,
    FieldError, ImagePolicy, ImageUpdateAutomation, Kind, Object, ObjectKey, PullRequestSpec,
    DEFAULT_NAMESPACE, PULL_REQUEST_ANNOTATION,
};
use tagrelay_rewrite::template::Template;

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
    apply_sources(cli, read_sources(&args.files)?).await
}

/// Validates every document of `sources` (`(name, YAML)`), then stores all
/// of them or none: `apply` and `create` share it.
pub async fn apply_sources(cli: &Cli, sources: Vec<(String, String)>) -> Result<(), Failure> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut batch = Vec::new();
    let mut decoded_keys = BTreeSet::new();
    for (source, text) in sources {
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
                &mut Found {
                    errors: &mut errors,
                    warnings: &mut warnings,
                },
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
    for applied in &batch {
        if let Object::ImagePolicy(policy) = &applied.object {
            if let Some(denied) = cross_namespace_denial(policy, &batch, &store).await? {
                errors.push(format!(
                    "{}:{}: {}: spec.imageRepositoryRef.namespace: {denied}",
                    applied.source,
                    applied.line,
                    applied.object.key()
                ));
            }
        }
        if let Object::ImageUpdateAutomation(automation) = &applied.object {
            if let Some(error) = resolve_automation(automation, &batch, &store).await? {
                errors.push(format!(
                    "{}:{}: {}: {error}",
                    applied.source,
                    applied.line,
                    applied.object.key()
                ));
            }
        }
    }
    for warning in &warnings {
        eprintln!("warning: {warning}");
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

/// The problems and warnings found so far, as printed lines.
struct Found<'a> {
    errors: &'a mut Vec<String>,
    warnings: &'a mut Vec<String>,
}

fn decode_and_validate(
    source: &str,
    document: Document,
    batch: &mut Vec<Applied>,
    found: &mut Found<'_>,
    decoded_keys: &mut BTreeSet<ObjectKey>,
) {
    let line = |error: &FieldError| {
        format!(
            "{source}:{}: {}: {error}",
            document.line_of(&error.path),
            label(&document.value)
        )
    };
    if is_secret(&document.value) {
        let namespace = document.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(DEFAULT_NAMESPACE);
        let name = document.value["metadata"]["name"]
            .as_str()
            .unwrap_or("<name>");
        found.warnings.push(line(&FieldError::new(
            "kind",
            format!("Secrets are never stored on the bus; skipped. Mount its keys as files in <secrets-dir>/{namespace}/{name}/ on the services that read it"),
        )));
        return;
    }
    match Object::decode(&document.value) {
        Err(error) => found.errors.push(line(&error)),
        Ok(object) => {
            decoded_keys.insert(object.key());
            let mut problems = validate(&object);
            if problems.is_empty() {
                problems.extend(engine_problems(&object));
            }
            for error in &problems {
                found.errors.push(line(error));
            }
            for warning in deprecations(&object) {
                found.warnings.push(line(&warning));
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

/// A Kubernetes `Secret` (`apiVersion: v1`), as Flux guides show them.
fn is_secret(value: &serde_json::Value) -> bool {
    value["kind"].as_str() == Some("Secret") && value["apiVersion"].as_str() == Some("v1")
}

/// What the stages' own engines refuse: a policy the resolver cannot
/// compile, a message template the committer cannot parse.
fn engine_problems(object: &Object) -> Vec<FieldError> {
    match object {
        Object::ImagePolicy(policy) => compile_policy(&policy.metadata, &policy.spec, None)
            .err()
            .map(|e| {
                let (path, reason) = error_field(&e);
                FieldError::new(path, reason)
            })
            .into_iter()
            .collect(),
        Object::ImageUpdateAutomation(automation) => {
            let message = automation
                .spec
                .git
                .as_ref()
                .and_then(|git| git.commit.message_template.clone())
                .map(|t| ("spec.git.commit.messageTemplate".to_string(), t));
            let review = automation
                .metadata
                .annotations
                .get(PULL_REQUEST_ANNOTATION)
                .and_then(|text| PullRequestSpec::parse(text).ok());
            let field =
                |name: &str| format!("metadata.annotations[{PULL_REQUEST_ANNOTATION}].{name}");
            let review_templates = review.into_iter().flat_map(|spec| {
                [
                    spec.title.map(|t| (field("title"), t)),
                    spec.body.map(|t| (field("body"), t)),
                ]
            });
            message
                .into_iter()
                .chain(review_templates.flatten())
                .filter_map(|(path, template)| {
                    Template::parse(&template)
                        .err()
                        .map(|e| FieldError::new(path, e.to_string()))
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Resolves an automation against its GitRepository (from this apply, else
/// the bus) exactly as the committer will, so a checkout, push branch or
/// refspec it would refuse is refused now. `None` when it resolves, or when
/// its source is missing (reported by the reference check).
async fn resolve_automation(
    automation: &ImageUpdateAutomation,
    batch: &[Applied],
    store: &ConfigStore,
) -> Result<Option<String>, Failure> {
    let key = Object::ImageUpdateAutomation(automation.clone()).key();
    let reference = &automation.spec.source_ref;
    let source_key = ObjectKey::new(
        Kind::GitRepository,
        reference.namespace.as_deref().unwrap_or(&key.namespace),
        &reference.name,
    );
    let Some(Object::GitRepository(source)) = applied_or_stored(&source_key, batch, store).await?
    else {
        return Ok(None);
    };
    Ok(Automation::resolve(automation, &source)
        .err()
        .map(|e| format!("{}: {}", e.field, e.reason)))
}

/// Why `policy` may not use the ImageRepository of another namespace it
/// names (Flux's `accessFrom` ACL, against that repository as this apply or
/// the bus holds it); `None` when it may, or the repository is missing
/// (reported by the reference check).
async fn cross_namespace_denial(
    policy: &ImagePolicy,
    batch: &[Applied],
    store: &ConfigStore,
) -> Result<Option<String>, Failure> {
    let repository_key = policy.repository_key();
    let namespace = policy
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE);
    if repository_key.namespace == namespace {
        return Ok(None);
    }
    let Some(Object::ImageRepository(repository)) =
        applied_or_stored(&repository_key, batch, store).await?
    else {
        return Ok(None);
    };
    let namespace_key = ObjectKey::new(Kind::Namespace, namespace, namespace);
    let applied_labels = match applied_or_stored(&namespace_key, batch, store).await? {
        Some(Object::Namespace(n)) => Some(n.metadata.labels),
        _ => None,
    };
    let labels = namespace_labels(namespace, applied_labels.as_ref());
    Ok(repository.admits(namespace, &labels).err())
}

/// The object under `key` as this apply will leave it: from the batch,
/// else from the bus.
async fn applied_or_stored(
    key: &ObjectKey,
    batch: &[Applied],
    store: &ConfigStore,
) -> Result<Option<Object>, Failure> {
    match batch.iter().find(|a| a.object.key() == *key) {
        Some(applied) => Ok(Some(applied.object.clone())),
        None => Ok(store.get(key).await?),
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
