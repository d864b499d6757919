//! `tagrelay delete image repository|policy|update NAME` and `delete source
//! git NAME`, as `flux delete` does (without the prompt: scripts call it).

use anyhow::anyhow;
use tagrelay_proto::config::{Kind, ObjectKey, DEFAULT_NAMESPACE};

use crate::objects::{ImageType, SourceType};
use crate::{Cli, Failure};

/// Arguments of `delete`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    /// The object's namespace.
    #[arg(short = 'n', long, global = true, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
}

#[derive(clap::Subcommand)]
enum What {
    /// An image automation object.
    Image {
        /// Which type.
        #[arg(value_enum)]
        object: ImageType,
        /// Its name.
        name: String,
    },
    /// A source.
    Source {
        /// Which type.
        #[arg(value_enum)]
        object: SourceType,
        /// Its name.
        name: String,
    },
}

/// Runs `delete`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let (kind, name) = match &args.what {
        What::Image { object, name } => (object.kind(), name),
        What::Source {
            object: SourceType::Git,
            name,
        } => (Kind::GitRepository, name),
    };
    let key = ObjectKey::new(kind, &args.namespace, name);
    let store = cli.bus().await?.config_store().await?;
    if store.delete(&key).await? {
        println!("{key} deleted");
        Ok(())
    } else {
        Err(Failure::Failed(anyhow!("{key} not found")))
    }
}
