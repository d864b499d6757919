//! `tagrelay get image repository|policy|update|all` and `get source git`:
//! stored objects with the status the services wrote, as `flux get` shows.

use tagrelay_proto::bus::{Bus, CasBucket, ConfigStore};
use tagrelay_proto::config::{Kind, Object, ObjectKey};
use tagrelay_proto::event::{Event, Stalled};
use tagrelay_proto::names;
use tagrelay_proto::state::PolicySelection;
use tagrelay_proto::status::ObjectStatus;

use crate::flux_status::{flux_status, Observed};
use crate::objects::{short_name, Scope, SourceType};
use crate::output::{json_to_yaml, Table};
use crate::{Cli, Failure};

/// Arguments of `get`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    #[command(flatten)]
    scope: Scope,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    output: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImageTarget {
    Repository,
    Policy,
    Update,
    All,
}

#[derive(clap::Subcommand)]
enum What {
    /// Image automation objects.
    Image {
        /// Which type (`all` for the three).
        #[arg(value_enum)]
        object: ImageTarget,
        /// Only the object with this name.
        name: Option<String>,
    },
    /// Sources.
    Source {
        /// Which type.
        #[arg(value_enum)]
        object: SourceType,
        /// Only the object with this name.
        name: Option<String>,
    },
    /// Notification Alerts.
    Alerts {
        /// Only the Alert with this name.
        name: Option<String>,
    },
    /// Notification Providers.
    AlertProviders {
        /// Only the Provider with this name.
        name: Option<String>,
    },
}

/// Runs `get`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let (kinds, name): (Vec<Kind>, &Option<String>) = match &args.what {
        What::Image { object, name } => (
            match object {
                ImageTarget::Repository => vec![Kind::ImageRepository],
                ImageTarget::Policy => vec![Kind::ImagePolicy],
                ImageTarget::Update => vec![Kind::ImageUpdateAutomation],
                ImageTarget::All => vec![
                    Kind::ImageRepository,
                    Kind::ImagePolicy,
                    Kind::ImageUpdateAutomation,
                ],
            },
            name,
        ),
        What::Source { name, .. } => (vec![Kind::GitRepository], name),
        What::Alerts { name } => (vec![Kind::Alert], name),
        What::AlertProviders { name } => (vec![Kind::Provider], name),
    };
    let bus = cli.bus().await?;
    let store = bus.config_store().await?;
    let mut rows: Vec<(Object, Option<ObjectStatus>)> = Vec::new();
    for kind in &kinds {
        for object in store.list(Some(*kind)).await? {
            let wanted_namespace = args.scope.admits(&object);
            let wanted_name = name.as_ref().is_none_or(|n| *n == object.metadata().name);
            if wanted_namespace && wanted_name {
                let status = store.status(&object.key()).await?;
                let status = with_stall(&bus, &object.key(), status).await?;
                rows.push((object, status));
            }
        }
    }
    if let (Some(name), true) = (name, rows.is_empty()) {
        let key = ObjectKey::new(kinds[0], &args.scope.namespace, name);
        return Err(Failure::Failed(anyhow::anyhow!("{key} not found")));
    }
    match args.output {
        Format::Json | Format::Yaml => {
            let list = as_list(&bus, &store, &rows).await?;
            let text = if args.output == Format::Json {
                serde_json::to_string_pretty(&list).map_err(anyhow::Error::from)?
            } else {
                json_to_yaml(&list)
            };
            println!("{text}");
        }
        Format::Table => {
            let prefix = kinds.len() > 1;
            let mut first = true;
            for kind in kinds {
                let of_kind: Vec<_> = rows.iter().filter(|(o, _)| o.kind() == kind).collect();
                if of_kind.is_empty() {
                    continue;
                }
                if !first {
                    println!();
                }
                first = false;
                print!(
                    "{}",
                    table(kind, &of_kind, prefix, args.scope.all_namespaces)
                );
            }
            if first {
                eprintln!(
                    "no objects found in {}",
                    if args.scope.all_namespaces {
                        "any namespace".to_string()
                    } else {
                        format!("namespace {}", args.scope.namespace)
                    }
                );
            }
        }
    }
    Ok(())
}

/// `status` with the stall the notifier announced for the object, if it
/// is stuck now: not ready, and the stall first in the message, so `get
/// image all` shows a stuck policy without anyone reading the log.
async fn with_stall(
    bus: &Bus,
    key: &ObjectKey,
    status: Option<ObjectStatus>,
) -> Result<Option<ObjectStatus>, Failure> {
    if !matches!(key.kind, Kind::ImagePolicy | Kind::ImageUpdateAutomation) {
        return Ok(status);
    }
    let notifications = bus.bucket(names::NOTIFICATIONS_BUCKET).await?;
    let record = notifications
        .get(tagrelay_notifier::service::stall_key(key))
        .await
        .ok()
        .flatten();
    let Some(stalled) = record.and_then(|bytes| serde_json::from_slice::<Stalled>(&bytes).ok())
    else {
        return Ok(status);
    };
    let mut status = status.unwrap_or_default();
    let word = match key.kind {
        Kind::ImagePolicy => "stale",
        _ => "stalled",
    };
    status.ready = false;
    status.message = format!(
        "{word} since {} ({}): {}{}",
        stalled
            .since
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        stalled.reason.as_str(),
        stalled.message,
        if status.message.is_empty() {
            String::new()
        } else {
            format!("; {}", status.message)
        }
    );
    Ok(Some(status))
}

/// Objects with their status as Flux writes it, in Kubernetes' `List`
/// shape, for scripts.
async fn as_list(
    bus: &Bus,
    store: &ConfigStore,
    rows: &[(Object, Option<ObjectStatus>)],
) -> Result<serde_json::Value, Failure> {
    let state = CasBucket::new(
        bus.bucket(names::POLICY_STATE_BUCKET).await?,
        names::POLICY_STATE_BUCKET,
    );
    let mut items = Vec::new();
    for (object, status) in rows {
        let observed = observe(bus, store, &state, object).await?;
        let mut value = object.to_json();
        if let Some(map) = value.as_object_mut() {
            map.insert(
                "status".into(),
                flux_status(object, status.as_ref(), &observed),
            );
        }
        items.push(value);
    }
    Ok(serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
}

/// What Flux's status shows beyond tagrelay's record: a policy's previous
/// selection (its last `PolicyResolved`), an automation's policies and
/// their selections.
async fn observe(
    bus: &Bus,
    store: &ConfigStore,
    state: &CasBucket,
    object: &Object,
) -> Result<Observed, Failure> {
    let mut observed = Observed::default();
    match object {
        Object::ImagePolicy(_) => {
            let key = object.key();
            let subject = names::policy_subject(&key.namespace, &key.name);
            if let Some((envelope, _)) = bus.last_event(&subject).await? {
                if let Event::PolicyResolved(resolved) = envelope.payload {
                    observed.previous = resolved.previous;
                }
            }
        }
        Object::ImageUpdateAutomation(automation) => {
            let git = automation.spec.git.as_ref();
            observed.push_branch = git
                .and_then(|g| g.push.as_ref().and_then(|p| p.branch.clone()))
                .or_else(|| git.and_then(|g| g.checkout.as_ref()?.reference.branch.clone()));
            let selector = automation.spec.policy_selector.clone().unwrap_or_default();
            for policy in store.list(Some(Kind::ImagePolicy)).await? {
                let key = policy.key();
                if key.namespace != object.namespace()
                    || !selector.matches(&policy.metadata().labels)
                {
                    continue;
                }
                let (selection, _) = state.read::<PolicySelection>(&key.bucket_key()).await?;
                if let Some(selection) = selection {
                    observed
                        .policies
                        .insert(key.name.clone(), (selection.image, selection.selected));
                }
            }
        }
        _ => {}
    }
    Ok(observed)
}

/// The table `flux get` prints for `kind`: Flux's columns in Flux's
/// order (`NAME LAST SCAN SUSPENDED READY MESSAGE` for repositories,
/// `NAME LATEST IMAGE READY MESSAGE` for policies, `NAME LAST RUN SUSPENDED
/// READY MESSAGE` for automations), so scripts and habits carry over. Git
/// sources show their URL where Flux shows the fetched revision, which
/// tagrelay does not track.
fn table(
    kind: Kind,
    rows: &[&(Object, Option<ObjectStatus>)],
    prefix: bool,
    namespaces: bool,
) -> String {
    let (middle, with_suspended): (&[&str], bool) = match kind {
        Kind::ImageRepository => (&["LAST SCAN"], true),
        Kind::ImagePolicy => (&["LATEST IMAGE"], false),
        Kind::ImageUpdateAutomation => (&["LAST RUN"], true),
        Kind::GitRepository => (&["URL"], true),
        Kind::Namespace => (&["LABELS"], false),
        Kind::Provider => (&["TYPE"], true),
        Kind::Alert => (&["PROVIDER"], true),
    };
    let mut header = Vec::new();
    if namespaces {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    header.extend(middle);
    if with_suspended {
        header.push("SUSPENDED");
    }
    header.extend(["READY", "MESSAGE"]);
    let mut table = Table::new(&header);
    for (object, status) in rows {
        let mut cells = Vec::new();
        if namespaces {
            cells.push(object.namespace().to_string());
        }
        let name = &object.metadata().name;
        cells.push(if prefix {
            format!("{}/{name}", short_name(kind))
        } else {
            name.clone()
        });
        let (ready, message) = match status {
            Some(s) if s.warnings.is_empty() => (
                if s.ready { "True" } else { "False" }.to_string(),
                s.message.clone(),
            ),
            Some(s) => (
                if s.ready { "True" } else { "False" }.to_string(),
                format!(
                    "{}; {} manifest warnings: {}",
                    s.message,
                    s.warnings.len(),
                    s.warnings
                        .iter()
                        .map(|w| w.text.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            None => ("Unknown".to_string(), waiting_message(kind).to_string()),
        };
        let status = status.clone().unwrap_or_default();
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        cells.push(match object {
            Object::ImageRepository(_) => time(status.last_scan_time),
            Object::ImagePolicy(_) => status.latest_image.unwrap_or_default(),
            Object::ImageUpdateAutomation(_) => time(status.updated_at),
            Object::GitRepository(o) => o.spec.url.clone(),
            Object::Namespace(n) => n
                .metadata
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            Object::Provider(p) => p.spec.provider_type.clone(),
            Object::Alert(a) => a.spec.provider_ref.name.clone(),
        });
        if with_suspended {
            cells.push(if suspended(object) { "True" } else { "False" }.to_string());
        }
        cells.push(ready);
        cells.push(message);
        table.row(cells);
    }
    table.render()
}

fn suspended(object: &Object) -> bool {
    match object {
        Object::ImageRepository(o) => o.spec.suspend,
        Object::ImagePolicy(o) => o.spec.suspend,
        Object::ImageUpdateAutomation(o) => o.spec.suspend,
        Object::GitRepository(o) => o.spec.suspend,
        Object::Provider(o) => o.spec.suspend,
        Object::Alert(o) => o.spec.suspend,
        Object::Namespace(_) => false,
    }
}

fn waiting_message(kind: Kind) -> &'static str {
    match kind {
        Kind::ImageRepository => "waiting for the scanner",
        Kind::ImagePolicy => "waiting for the resolver",
        Kind::ImageUpdateAutomation => "waiting for the committer",
        Kind::Provider => "waiting for the notifier's first delivery",
        Kind::GitRepository | Kind::Namespace | Kind::Alert => "stored",
    }
}
