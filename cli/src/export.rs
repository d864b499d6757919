//! `tagrelay export image repository|policy|update|all [NAME]` and
//! `export source git [NAME]`, as `flux export` prints them: the stored
//! objects as multi-document YAML, without status, that `tagrelay apply`
//! (and Flux) take back unchanged.

use anyhow::anyhow;
use tagrelay_proto::config::{Kind, Object};

use crate::objects::{ImageType, Scope, SourceType};
use crate::output::json_to_yaml;
use crate::{Cli, Failure};

/// Arguments of `export`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    #[command(flatten)]
    scope: Scope,
}

#[derive(clap::Subcommand)]
enum What {
    /// Image automation objects.
    Image {
        /// Which type, or `all`.
        #[arg(value_enum)]
        object: ImageExport,
        /// One object's name; every object of the type when omitted.
        name: Option<String>,
    },
    /// Sources.
    Source {
        /// Which type.
        #[arg(value_enum)]
        object: SourceType,
        /// One object's name; every object of the type when omitted.
        name: Option<String>,
    },
}

/// `image repository|policy|update|all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImageExport {
    /// ImageRepository.
    Repository,
    /// ImagePolicy.
    Policy,
    /// ImageUpdateAutomation.
    Update,
    /// All three.
    All,
}

/// Runs `export`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let (kinds, name) = match &args.what {
        What::Image { object, name } => {
            let kinds = match object {
                ImageExport::Repository => vec![ImageType::Repository.kind()],
                ImageExport::Policy => vec![ImageType::Policy.kind()],
                ImageExport::Update => vec![ImageType::Update.kind()],
                ImageExport::All => vec![
                    Kind::ImageRepository,
                    Kind::ImagePolicy,
                    Kind::ImageUpdateAutomation,
                ],
            };
            (kinds, name.as_deref())
        }
        What::Source {
            object: SourceType::Git,
            name,
        } => (vec![Kind::GitRepository], name.as_deref()),
    };
    let store = cli.bus().await?.config_store().await?;
    let mut objects: Vec<Object> = Vec::new();
    for kind in kinds {
        objects.extend(
            store
                .list(Some(kind))
                .await?
                .into_iter()
                .filter(|o| args.scope.admits(o) && name.is_none_or(|n| o.key().name == n)),
        );
    }
    if let (Some(name), true) = (name, objects.is_empty()) {
        return Err(Failure::Failed(anyhow!(
            "{name} not found in namespace {}",
            args.scope.namespace
        )));
    }
    for object in &objects {
        // Each document starts with its own `---`.
        println!("{}", json_to_yaml(&object.to_json()).trim_end());
    }
    Ok(())
}
