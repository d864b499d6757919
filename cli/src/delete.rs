//! `tagrelay delete image repository|policy|update NAME` and `delete source
//! git NAME`, as `flux delete` does (without the prompt: scripts call it).

use anyhow::anyhow;

use crate::objects::NamedArgs;
use crate::{Cli, Failure};

/// Arguments of `delete`.
pub type Args = NamedArgs;

/// Runs `delete`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let key = args.key();
    let store = cli.bus().await?.config_store().await?;
    if store.delete(&key).await? {
        println!("{key} deleted");
        Ok(())
    } else {
        Err(Failure::Failed(anyhow!("{key} not found")))
    }
}
