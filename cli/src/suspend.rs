//! `tagrelay suspend|resume image repository|policy|update NAME` and
//! `source git NAME`, as `flux suspend` and `flux resume` take them: the
//! stored object's `spec.suspend` is set, and the services follow the
//! configuration (a resumed policy is evaluated at once against its
//! repository's newest tags, a resumed automation reconciled at once).

use anyhow::anyhow;

use crate::objects::NamedArgs;
use crate::{Cli, Failure};

/// Arguments of `suspend` and `resume`.
pub type Args = NamedArgs;

/// Runs `suspend` (`suspend: true`) or `resume` (`false`).
pub async fn run(cli: &Cli, args: &Args, suspend: bool) -> Result<(), Failure> {
    let key = args.key();
    let store = cli.bus().await?.config_store().await?;
    let Some(mut object) = store.get(&key).await? else {
        return Err(Failure::Failed(anyhow!("{key} not found")));
    };
    object.set_suspend(suspend);
    store.put(&object).await?;
    println!("{key} {}", if suspend { "suspended" } else { "resumed" });
    Ok(())
}
