//! `tagrelay lint`: find the automation that silently does nothing.
//!
//! Contract (scripted against; keep it exact):
//! - `tagrelay lint --path DIR [--config FLUX_YAML_OR_DIR | bus] [-o text|json]`;
//! - one finding per line on stdout, `file:line: check: problem (fix: …)`,
//!   or with `-o json` one JSON array of `{file, line, check, problem, fix,
//!   id}`;
//! - exit 1 when it found problems, 0 when clean, 2 on bad input.
//!
//! The checks are the committer's (`tagrelay_rewrite::lint`); `--config`
//! gives them the ImagePolicies and ImageRepositories that exist, from Flux
//! YAML (a file or a directory, read recursively) or from the bus.

use std::path::{Path, PathBuf};

use tagrelay_proto::config::{load_documents, Kind, Object};
use tagrelay_rewrite::lint::{lint_file, lint_unread, Finding, KnownPolicies};
use tagrelay_rewrite::screen::is_manifest_name;

use crate::output::TextOrJson;
use crate::tree;
use crate::{Cli, Failure};

/// Arguments of `lint`.
#[derive(clap::Args)]
pub struct Args {
    /// The directory whose manifests are checked (recursively).
    #[arg(long)]
    path: PathBuf,
    /// The Flux objects the manifests are automated with: a YAML file or a
    /// directory, or `bus` for the stored configuration. Without it, markers
    /// are not checked against policies, nor images for missing markers.
    #[arg(long)]
    config: Option<String>,
    /// `text` (one finding per line) or `json` (an array, for CI).
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    output: TextOrJson,
}

/// Runs `lint`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    if !args.path.is_dir() {
        return Err(invalid(&format!(
            "--path {}: not a directory",
            args.path.display()
        )));
    }
    let known = match args.config.as_deref() {
        None => None,
        Some("bus") => Some(from_bus(cli).await?),
        Some(path) => Some(from_yaml(Path::new(path))?),
    };
    let tree = tree::read(&args.path, is_manifest_name).map_err(|e| invalid(&e))?;
    let mut findings: Vec<Finding> = tree
        .unread
        .iter()
        .map(|(shown, unread)| lint_unread(shown, unread))
        .collect();
    for manifest in &tree.manifests {
        findings.extend(lint_file(
            &manifest.shown,
            &manifest.content,
            known.as_ref(),
        ));
    }
    findings.sort();
    match args.output {
        TextOrJson::Text => {
            for finding in &findings {
                println!("{finding}");
            }
        }
        TextOrJson::Json => {
            let json: Vec<serde_json::Value> = findings
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "file": f.file,
                        "line": f.line,
                        "check": f.check.as_str(),
                        "problem": f.problem,
                        "fix": f.fix,
                        "id": f.id(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json).map_err(anyhow::Error::from)?
            );
        }
    }
    if findings.is_empty() {
        Ok(())
    } else {
        eprintln!("{} problems found", findings.len());
        Err(Failure::Reported)
    }
}

fn invalid(message: &str) -> Failure {
    eprintln!("error: {message}");
    Failure::Invalid
}

/// The policies in the configuration bucket.
async fn from_bus(cli: &Cli) -> Result<KnownPolicies, Failure> {
    let store = cli.bus().await?.config_store().await?;
    let mut objects = store.list(Some(Kind::ImageRepository)).await?;
    objects.extend(store.list(Some(Kind::ImagePolicy)).await?);
    Ok(KnownPolicies::from_objects(&objects))
}

/// The policies in Flux YAML: a file, or every `*.yaml`/`*.yml` under a
/// directory. Documents of other kinds (Deployments, Secrets…) are passed
/// over, so a whole cluster directory may be given.
fn from_yaml(path: &Path) -> Result<KnownPolicies, Failure> {
    let sources: Vec<(String, String)> = if path.is_dir() {
        tree::read(path, is_manifest_name)
            .map_err(|e| invalid(&e))?
            .manifests
            .into_iter()
            .map(|m| {
                let shown = path.join(&m.shown).display().to_string();
                (shown, String::from_utf8_lossy(&m.content).into_owned())
            })
            .collect()
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(&format!("--config {}: {e}", path.display())))?;
        vec![(path.display().to_string(), text)]
    };
    let mut objects = Vec::new();
    for (source, text) in sources {
        let Ok(documents) = load_documents(&text) else {
            continue;
        };
        for document in documents {
            let kind = document.value["kind"].as_str().unwrap_or_default();
            let api = document.value["apiVersion"].as_str().unwrap_or_default();
            if !matches!(kind, "ImagePolicy" | "ImageRepository")
                || !api.starts_with("image.toolkit.fluxcd.io/")
            {
                continue;
            }
            match Object::decode(&document.value) {
                Ok(object) => objects.push(object),
                Err(e) => {
                    return Err(invalid(&format!(
                        "{source}:{}: {e}",
                        document.line_of(&e.path)
                    )))
                }
            }
        }
    }
    Ok(KnownPolicies::from_objects(&objects))
}
