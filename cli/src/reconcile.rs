//! `tagrelay reconcile image repository|policy|update NAME`, as `flux
//! reconcile` takes them, each waiting for the result.
//!
//! A repository's scan request goes on the scanners' work queue (any
//! instance takes it), so it works however many scanners run; a fresh id per
//! invocation means two reconciles are two scans. A policy or an automation
//! gets Flux's `reconcile.fluxcd.io/requestedAt` annotation, a configuration
//! change the resolver answers by evaluating the policy again and the
//! committer by running the automation now; the command waits for the status
//! written after the request.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use tagrelay_proto::config::{Kind, ObjectKey};
use tagrelay_proto::event::{ObjectRef, ScanTrigger};
use tagrelay_proto::scan::ScanRequest;

use crate::flux_status::REQUESTED_AT_ANNOTATION;
use crate::objects::NamespaceArg;
use crate::{Cli, Failure};

/// Arguments of `reconcile`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    #[command(flatten)]
    namespace: NamespaceArg,
    /// How long to wait for the result.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_timeout)]
    timeout: Duration,
    /// Return once the request is queued, without waiting for the scan.
    #[arg(long, global = true)]
    no_wait: bool,
}

#[derive(clap::Subcommand)]
enum What {
    /// An image automation object.
    Image {
        #[command(subcommand)]
        object: ImageObject,
    },
}

#[derive(clap::Subcommand)]
enum ImageObject {
    /// Scan an ImageRepository now.
    Repository {
        /// Its name.
        name: String,
    },
    /// Evaluate an ImagePolicy again now.
    Policy {
        /// Its name.
        name: String,
    },
    /// Run an ImageUpdateAutomation now.
    Update {
        /// Its name.
        name: String,
    },
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    tagrelay_proto::config::parse_go_duration(text).map_err(|e| e.to_string())
}

/// Runs `reconcile`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let What::Image { object } = &args.what;
    let namespace = &args.namespace.namespace;
    let (kind, name) = match object {
        ImageObject::Repository { name } => (Kind::ImageRepository, name),
        ImageObject::Policy { name } => (Kind::ImagePolicy, name),
        ImageObject::Update { name } => (Kind::ImageUpdateAutomation, name),
    };
    let key = ObjectKey::new(kind, namespace, name);
    let bus = cli.bus().await?;
    let store = bus.config_store().await?;
    let Some(mut stored) = store.get(&key).await? else {
        return Err(Failure::Failed(anyhow!("{key} not found")));
    };
    let asked = chrono::Utc::now();
    if kind == Kind::ImageRepository {
        let request = ScanRequest::new(
            ObjectRef::new(namespace, name),
            ScanTrigger::Reconcile,
            ulid::Ulid::new().to_string(),
        );
        bus.request_scan(&request).await?;
        println!("► scan of {key} requested");
    } else {
        stored.metadata_mut().annotations.insert(
            REQUESTED_AT_ANNOTATION.to_string(),
            asked.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        );
        store.put(&stored).await?;
        println!("► reconciliation of {key} requested");
    }
    if args.no_wait {
        return Ok(());
    }
    let deadline = Instant::now() + args.timeout;
    loop {
        if let Some(status) = store.status(&key).await? {
            let handled = match kind {
                Kind::ImageRepository => status.last_scan_time,
                _ => status.updated_at,
            };
            if handled.is_some_and(|t| t >= asked) {
                return if status.ready {
                    println!("✔ {}", status.message);
                    Ok(())
                } else {
                    Err(Failure::Failed(anyhow!("{key}: {}", status.message)))
                };
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Failed(anyhow!(
                "{key} was not reconciled within {}s: is its tagrelay service running?",
                args.timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
