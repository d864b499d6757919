//! `tagrelay reconcile image repository NAME`: asks the scanners for a scan
//! now, as `flux reconcile image repository` does, and waits for its result.
//!
//! The request goes on the scanners' work queue (any instance takes it), so
//! it works however many scanners run; a fresh id per invocation means two
//! reconciles are two scans.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use tagrelay_proto::config::{Kind, ObjectKey};
use tagrelay_proto::event::{ObjectRef, ScanTrigger};
use tagrelay_proto::scan::ScanRequest;

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
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    tagrelay_proto::config::parse_go_duration(text).map_err(|e| e.to_string())
}

/// Runs `reconcile`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let What::Image {
        object: ImageObject::Repository { name },
    } = &args.what;
    let key = ObjectKey::new(Kind::ImageRepository, &args.namespace.namespace, name);
    let bus = cli.bus().await?;
    let store = bus.config_store().await?;
    if store.get(&key).await?.is_none() {
        return Err(Failure::Failed(anyhow!("{key} not found")));
    }
    let asked = chrono::Utc::now();
    let request = ScanRequest::new(
        ObjectRef::new(&args.namespace.namespace, name),
        ScanTrigger::Reconcile,
        ulid::Ulid::new().to_string(),
    );
    bus.request_scan(&request).await?;
    println!("► scan of {key} requested");
    if args.no_wait {
        return Ok(());
    }
    let deadline = Instant::now() + args.timeout;
    loop {
        if let Some(status) = store.status(&key).await? {
            if status.last_scan_time.is_some_and(|t| t >= asked) {
                return if status.ready {
                    println!("✔ {}", status.message);
                    Ok(())
                } else {
                    Err(Failure::Failed(anyhow!("scan failed: {}", status.message)))
                };
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Failed(anyhow!(
                "no scan of {key} within {}s: is a tagrelay-scanner running?",
                args.timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
