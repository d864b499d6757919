//! `tagrelay create image repository|policy|update NAME` and `create
//! source git NAME`, with the Flux CLI's flags, so commands typed from
//! memory and from Flux's guides work. `--export` prints the YAML and
//! touches nothing (no bus needed); otherwise the object goes through the
//! same validation as `apply` and is stored.

use serde_json::{json, Value};
use tagrelay_proto::config::{Object, DEFAULT_NAMESPACE};

use crate::output::json_to_yaml;
use crate::{apply, Cli, Failure};

/// Arguments of `create`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    /// The object's namespace.
    #[arg(short = 'n', long, global = true, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Print the object as YAML instead of storing it.
    #[arg(long, global = true)]
    export: bool,
    /// How often the object is reconciled.
    #[arg(long, global = true, default_value = "1m0s")]
    interval: String,
}

#[derive(clap::Subcommand)]
enum What {
    /// Image automation objects.
    Image {
        #[command(subcommand)]
        object: ImageObject,
    },
    /// Sources.
    Source {
        #[command(subcommand)]
        object: SourceObject,
    },
}

#[derive(clap::Subcommand)]
enum ImageObject {
    /// An ImageRepository.
    Repository(RepositoryArgs),
    /// An ImagePolicy.
    Policy(PolicyArgs),
    /// An ImageUpdateAutomation.
    Update(UpdateArgs),
}

#[derive(clap::Subcommand)]
enum SourceObject {
    /// A GitRepository.
    Git(GitArgs),
}

/// `create image repository`'s flags, as `flux create image repository`.
#[derive(clap::Args)]
struct RepositoryArgs {
    /// Its name.
    name: String,
    /// The image repository to scan (`ghcr.io/org/app`).
    #[arg(long, required = true)]
    image: String,
    /// Secret with a docker config.json for the registry.
    #[arg(long)]
    secret_ref: Option<String>,
    /// Secret with a CA bundle and client certificate for the registry.
    #[arg(long)]
    cert_secret_ref: Option<String>,
    /// Regular expressions of tags to ignore (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    exclusion_list: Vec<String>,
    /// Allow plain HTTP to the registry.
    #[arg(long)]
    insecure: bool,
    /// Time limit of one scan.
    #[arg(long)]
    timeout: Option<String>,
}

/// `create image policy`'s flags, as `flux create image policy`.
#[derive(clap::Args)]
struct PolicyArgs {
    /// Its name.
    name: String,
    /// The ImageRepository whose tags it ranks.
    #[arg(long, required = true)]
    image_ref: String,
    /// A semver range (`7.8.x`, `>=1.0.0 <2.0.0`).
    #[arg(long, group = "select")]
    select_semver: Option<String>,
    /// Alphabetical order: `asc` or `desc`.
    #[arg(long, group = "select")]
    select_alpha: Option<String>,
    /// Numerical order: `asc` or `desc`.
    #[arg(long, group = "select")]
    select_numeric: Option<String>,
    /// Only tags matching this regular expression.
    #[arg(long)]
    filter_regex: Option<String>,
    /// What of a matching tag is ranked (`$1`, `$ts`).
    #[arg(long, requires = "filter_regex")]
    filter_extract: Option<String>,
}

/// `create image update`'s flags, as `flux create image update`.
#[derive(clap::Args)]
struct UpdateArgs {
    /// Its name.
    name: String,
    /// The GitRepository to check out and push to.
    #[arg(long, required = true)]
    git_repo_ref: String,
    /// The GitRepository's namespace, when not the automation's.
    #[arg(long)]
    git_repo_namespace: Option<String>,
    /// The directory whose manifests are updated.
    #[arg(long, default_value = "./")]
    git_repo_path: String,
    /// The branch to check out.
    #[arg(long)]
    checkout_branch: Option<String>,
    /// The branch to push to.
    #[arg(long)]
    push_branch: Option<String>,
    /// The commit author's name.
    #[arg(long)]
    author_name: Option<String>,
    /// The commit author's email.
    #[arg(long, required = true)]
    author_email: String,
    /// The commit message template.
    #[arg(long)]
    commit_template: Option<String>,
}

/// `create source git`'s flags, as `flux create source git`.
#[derive(clap::Args)]
struct GitArgs {
    /// Its name.
    name: String,
    /// The repository URL.
    #[arg(long, required = true)]
    url: String,
    /// The branch to check out.
    #[arg(long)]
    branch: Option<String>,
    /// The tag to check out.
    #[arg(long)]
    tag: Option<String>,
    /// Secret with the Git credentials.
    #[arg(long)]
    secret_ref: Option<String>,
}

/// Runs `create`.
pub async fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let object = build(args);
    let decoded = Object::decode(&object)
        .map_err(|e| Failure::Failed(anyhow::anyhow!("the flags make an invalid object: {e}")))?;
    let yaml = json_to_yaml(&decoded.to_json());
    if args.export {
        println!("{}", yaml.trim_end());
        return Ok(());
    }
    apply::apply_sources(cli, vec![("<create>".to_string(), yaml)]).await
}

/// The object the flags describe, as Flux's CLI writes it.
fn build(args: &Args) -> Value {
    let image = |kind: &str, name: &str, spec: Value| {
        json!({
            "apiVersion": "image.toolkit.fluxcd.io/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": args.namespace},
            "spec": spec,
        })
    };
    match &args.what {
        What::Image {
            object: ImageObject::Repository(r),
        } => {
            let mut spec = json!({"image": r.image, "interval": args.interval});
            insert(&mut spec, "secretRef", r.secret_ref.as_ref().map(named));
            insert(
                &mut spec,
                "certSecretRef",
                r.cert_secret_ref.as_ref().map(named),
            );
            if !r.exclusion_list.is_empty() {
                insert(&mut spec, "exclusionList", Some(json!(r.exclusion_list)));
            }
            if r.insecure {
                insert(&mut spec, "insecure", Some(json!(true)));
            }
            insert(&mut spec, "timeout", r.timeout.as_ref().map(|t| json!(t)));
            image("ImageRepository", &r.name, spec)
        }
        What::Image {
            object: ImageObject::Policy(p),
        } => {
            let policy = match (&p.select_semver, &p.select_alpha, &p.select_numeric) {
                (Some(range), _, _) => json!({"semver": {"range": range}}),
                (_, Some(order), _) => json!({"alphabetical": {"order": order}}),
                (_, _, Some(order)) => json!({"numerical": {"order": order}}),
                _ => json!({}),
            };
            let mut spec = json!({"imageRepositoryRef": named(&p.image_ref)});
            if policy != json!({}) {
                insert(&mut spec, "policy", Some(policy));
            }
            if let Some(pattern) = &p.filter_regex {
                let mut filter = json!({"pattern": pattern});
                insert(
                    &mut filter,
                    "extract",
                    p.filter_extract.as_ref().map(|e| json!(e)),
                );
                insert(&mut spec, "filterTags", Some(filter));
            }
            image("ImagePolicy", &p.name, spec)
        }
        What::Image {
            object: ImageObject::Update(u),
        } => {
            let mut source = json!({"kind": "GitRepository", "name": u.git_repo_ref});
            insert(
                &mut source,
                "namespace",
                u.git_repo_namespace.as_ref().map(|n| json!(n)),
            );
            let mut author = json!({"email": u.author_email});
            insert(
                &mut author,
                "name",
                u.author_name.as_ref().map(|n| json!(n)),
            );
            let mut commit = json!({"author": author});
            insert(
                &mut commit,
                "messageTemplate",
                u.commit_template.as_ref().map(|t| json!(t)),
            );
            let mut git = json!({"commit": commit});
            insert(
                &mut git,
                "checkout",
                u.checkout_branch
                    .as_ref()
                    .map(|b| json!({"ref": {"branch": b}})),
            );
            insert(
                &mut git,
                "push",
                u.push_branch.as_ref().map(|b| json!({"branch": b})),
            );
            let spec = json!({
                "interval": args.interval,
                "sourceRef": source,
                "git": git,
                "update": {"path": u.git_repo_path, "strategy": "Setters"},
            });
            image("ImageUpdateAutomation", &u.name, spec)
        }
        What::Source {
            object: SourceObject::Git(g),
        } => {
            let reference = match (&g.branch, &g.tag) {
                (_, Some(tag)) => json!({"tag": tag}),
                (branch, None) => json!({"branch": branch.as_deref().unwrap_or("master")}),
            };
            let mut spec = json!({"url": g.url, "interval": args.interval, "ref": reference});
            insert(&mut spec, "secretRef", g.secret_ref.as_ref().map(named));
            json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {"name": g.name, "namespace": args.namespace},
                "spec": spec,
            })
        }
    }
}

/// `{name: NAME}`, Flux's local object reference.
fn named(name: &String) -> Value {
    json!({ "name": name })
}

/// Sets `key` on the JSON object `target` when there is a value.
fn insert(target: &mut Value, key: &str, value: Option<Value>) {
    if let (Some(map), Some(value)) = (target.as_object_mut(), value) {
        map.insert(key.to_string(), value);
    }
}
