//! `tagrelay-demo`: the whole pipeline on this machine, from an image push to
//! a commit, with nothing but local parts.
//!
//! Starts nats-server (JetStream), a CNCF registry that sends push webhooks
//! to the scanner, and a bare Git repository seeded with three manifests (a
//! Setters marker, a Flux v1 annotated Deployment, a HelmRelease); applies
//! the matching Flux objects (with a Flux Provider and Alert sending every
//! automation event to a loopback webhook); starts `tagrelay-scanner`,
//! `tagrelay-resolver`, `tagrelay-committer` and `tagrelay-notifier` as
//! separate processes; pushes new tags and shows each commit with its
//! push-to-commit time and the notification it caused. Everything it starts stops on
//! exit or Ctrl-C. `scripts/demo` builds and runs it.
//!
//! With `--gitops` the Flux objects are not applied: they are committed to
//! the same Git repository (`clusters/demo/`) and `tagrelay-configsource`
//! keeps the bus equal to them; the demo then shows that the bot's own
//! commits cause no new `ConfigSynced`, a broken configuration commit
//! refused with a `ConfigRejected` (the last good one kept), and `why`
//! naming the configuration commit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use tagrelay_proto::bus::{Bus, BusSettings, ConfigStore};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::receiver::Receiver;
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::{free_port, NatsServer};

const SECRET: &str = "demo-webhook-secret";

fn manifests(host: &str) -> Vec<Seed> {
    vec![
        Seed::file(
            "apps/podinfo/deployment.yaml",
            &format!(
                "# A Setters marker, as Flux's image-automation-controller reads it.\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n  namespace: apps\nspec:\n  template:\n    spec:\n      containers:\n        - name: podinfo\n          image: {host}/demo/podinfo:1.0.0 # {{\"$imagepolicy\": \"flux-system:podinfo\"}}\n"
            ),
        ),
        Seed::file(
            "apps/legacy/deployment.yaml",
            &format!(
                "# Flux v1 annotations: automated, with a semver filter for container app.\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: legacy\n  namespace: apps\n  annotations:\n    fluxcd.io/automated: \"true\"\n    fluxcd.io/tag.app: semver:~1.0\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {host}/demo/legacy:1.0.0\n"
            ),
        ),
        Seed::file(
            "apps/podinfo/helmrelease.yaml",
            &format!(
                "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: podinfo\n  namespace: apps\nspec:\n  interval: 10m\n  chart:\n    spec:\n      chart: podinfo\n      sourceRef:\n        kind: HelmRepository\n        name: podinfo\n  values:\n    image:\n      repository: {host}/demo/podinfo # {{\"$imagepolicy\": \"flux-system:podinfo:name\"}}\n      tag: 1.0.0 # {{\"$imagepolicy\": \"flux-system:podinfo:tag\"}}\n"
            ),
        ),
    ]
}

/// The demo's Flux notification objects: every automation event to a
/// generic webhook (Flux's event JSON), as a Flux user's Alert would.
fn notification_configuration(hook_url: &str) -> String {
    format!(
        "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata:\n  name: webhook\nspec:\n  type: generic\n  address: {hook_url}\n---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata:\n  name: commits\nspec:\n  providerRef:\n    name: webhook\n  eventSources:\n    - kind: ImageUpdateAutomation\n      name: '*'\n"
    )
}

fn configuration(host: &str, git_url: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: fleet\nspec:\n  url: {git_url}\n  interval: 1m\n  ref:\n    branch: main\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: podinfo\nspec:\n  image: {host}/demo/podinfo\n  interval: 1m\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: podinfo\nspec:\n  imageRepositoryRef:\n    name: podinfo\n  policy:\n    semver:\n      range: '>=1.0.0'\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata:\n  name: fleet\nspec:\n  interval: 1m\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n  git:\n    commit:\n      author:\n        name: tagrelay\n        email: tagrelay@example.com\n      messageTemplate: |\n        Automated image update\n\n        {{{{ range .Changed.Changes -}}}}\n        - {{{{ .OldValue }}}} -> {{{{ .NewValue }}}}\n        {{{{ end -}}}}\n    push:\n      branch: main\n  update:\n    path: ./apps\n    strategy: Setters\n"
    )
}

/// A service process, stopped with SIGTERM (then SIGKILL) when dropped.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        tagrelay_testkit::stop_gracefully(&mut self.child);
    }
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(message.to_string());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn done(bar: ProgressBar, message: String) {
    bar.finish_and_clear();
    println!("✔ {message}");
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} not found next to {}: build every binary (cargo build --release --bins)",
            name,
            exe.display()
        );
    }
    Ok(path)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    services: &[Service],
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            let logs: Vec<String> = services
                .iter()
                .map(|s| format!("--- {} ({}):\n{}", s.name, s.log.display(), tail(&s.log)))
                .collect();
            bail!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// The Git path the `--gitops` demo keeps its Flux objects in.
const CONFIG_PATH: &str = "clusters/demo";

/// Starts the scanner (webhooks on `scanner_port`), the resolver, the
/// committer and the notifier as four processes, their logs and Git cache under `work`,
/// Secrets under `work/secrets`; with `config_repository`, also the Git
/// configuration source reading [`CONFIG_PATH`] of it.
fn start_services(
    work: &Path,
    nats: &str,
    scanner_port: u16,
    config_repository: Option<&str>,
) -> anyhow::Result<Vec<Service>> {
    let secret_file = work.join("webhook-secret");
    std::fs::write(&secret_file, SECRET)?;
    let mut services = Vec::new();
    let mut names = vec![
        ("scanner", scanner_port),
        ("resolver", free_port()),
        ("committer", free_port()),
        ("notifier", free_port()),
    ];
    if config_repository.is_some() {
        names.push(("configsource", free_port()));
    }
    for (name, port) in names {
        let log = work.join(format!("{name}.log"));
        let child = Command::new(sibling(&format!("tagrelay-{name}"))?)
            .env(
                "TAGRELAY_CONFIG_GIT_URL",
                config_repository.unwrap_or_default(),
            )
            .env("TAGRELAY_CONFIG_GIT_PATHS", CONFIG_PATH)
            .env("TAGRELAY_CONFIG_GIT_INTERVAL", "1s")
            .env("TAGRELAY_CONFIG_SOURCE_NAME", "fleet")
            .env("TAGRELAY_CONFIG_CACHE_DIR", work.join("config-cache"))
            .env("NATS_URL", nats)
            .env("TAGRELAY_INSTANCE", "demo")
            .env("TAGRELAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("TAGRELAY_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("TAGRELAY_WEBHOOK_SECRET_FILE", &secret_file)
            .env("TAGRELAY_CACHE_DIR", work.join("cache"))
            .env("TAGRELAY_SECRETS_DIR", work.join("secrets"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting tagrelay-{name}"))?;
        services.push(Service { name, child, log });
    }
    Ok(services)
}

fn tagrelay(nats: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(sibling("tagrelay")?)
        .args(args)
        .env("NATS_URL", nats)
        .output()
        .context("running tagrelay")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tagrelay_proto::runtime::install_crypto_provider();
    let review = std::env::args().any(|arg| arg == "--review");
    let gitops = std::env::args().any(|arg| arg == "--gitops");
    tokio::select! {
        result = async { if review { review_demo().await } else { demo(gitops).await } } => result,
        _ = tokio::signal::ctrl_c() => {
            println!("\ninterrupted: stopping everything the demo started");
            Ok(())
        }
    }
}

async fn demo(gitops: bool) -> anyhow::Result<()> {
    println!("tagrelay demo: a registry push becomes a Git commit\n");
    let work = tempfile::Builder::new()
        .prefix("tagrelay-demo-")
        .tempdir()?;

    let bar = spinner("starting nats-server with JetStream");
    let nats = NatsServer::start();
    done(bar, format!("nats-server with JetStream on {}", nats.url()));

    let bar = spinner("starting the registry");
    let scanner_port = free_port();
    let registry = Registry::notifying_scanner(scanner_port, SECRET);
    let host = registry.host();
    registry.push_tags("demo/podinfo", &["1.0.0"]).await;
    registry.push_tags("demo/legacy", &["1.0.0"]).await;
    done(bar, format!("CNCF registry on {host} (push webhooks to the scanner), demo/podinfo:1.0.0 and demo/legacy:1.0.0 pushed"));

    let bar = spinner("seeding the Git remote");
    let repo = BareRepo::seeded("main", &manifests(&host));
    done(bar, format!("Git remote {} with apps/podinfo (Setters marker), apps/legacy (fluxcd.io/automated), a HelmRelease", repo.url()));

    let webhook = Receiver::start();
    let bus = Bus::connect(&nats.url(), "demo", BusSettings::default()).await?;
    let store = bus.config_store().await?;
    let config = configuration(&host, &repo.url())
        + &notification_configuration(&webhook.url("/flux-events"));
    let services = if gitops {
        let file = format!("{CONFIG_PATH}/image-automation.yaml");
        let commit = repo.human_commit(
            "main",
            &file,
            &config,
            "image automation: podinfo >=1.0.0, notifications",
        );
        println!(
            "✔ Flux configuration committed to {file} ({}), not applied",
            &commit[..12]
        );
        let bar = spinner(
            "starting the configuration source, the scanner, the resolver, the committer and the notifier",
        );
        let services = start_services(work.path(), &nats.url(), scanner_port, Some(&repo.url()))?;
        wait_for("ConfigSynced", Duration::from_secs(30), &services, || {
            config_events(&nats.url()).contains("ConfigSynced")
        })
        .await?;
        done(
            bar,
            format!(
                "tagrelay-configsource synced {CONFIG_PATH} of {}; five processes running",
                repo.url()
            ),
        );
        print!("{}", config_events(&nats.url()));
        services
    } else {
        let bar = spinner("applying the Flux configuration");
        let mut applied = Vec::new();
        for document in load_documents(&config)? {
            let object = Object::decode(&document.value).map_err(|e| anyhow::anyhow!("{e}"))?;
            store.put(&object).await?;
            applied.push(object.key().to_string());
        }
        done(bar, format!("applied {}", applied.join(", ")));
        let bar = spinner("starting the scanner, the resolver, the committer and the notifier");
        let services = start_services(work.path(), &nats.url(), scanner_port, None)?;
        done(
            bar,
            "tagrelay-scanner, tagrelay-resolver, tagrelay-committer, tagrelay-notifier running as four processes".into(),
        );
        services
    };

    let bar = spinner("waiting for the first scan and resolution of both images");
    wait_for(
        "both policies to resolve",
        Duration::from_secs(60),
        &services,
        || {
            tagrelay(&nats.url(), &["audit", "--kind", "policy"])
                .map(|out| out.lines().filter(|l| l.contains("PolicyResolved")).count() >= 2)
                .unwrap_or(false)
        },
    )
    .await?;
    done(
        bar,
        "both policies resolved to 1.0.0, which Git already holds: nothing to commit".into(),
    );

    let mut latencies = Vec::new();
    let mut podinfo_commit = None;
    for (repository, tag, why) in [
        (
            "demo/podinfo",
            "1.1.0",
            "semver >=1.0.0 (Setters marker and HelmRelease values)",
        ),
        ("demo/legacy", "1.0.1", "fluxcd.io/tag.app: semver:~1.0"),
        ("demo/legacy", "1.1.0", "outside ~1.0: must not be written"),
        ("demo/podinfo", "1.2.0", "semver >=1.0.0"),
    ] {
        let before = repo.tip("main");
        println!("\n→ pushing {repository}:{tag} ({why})");
        let pushed = Instant::now();
        registry
            .push_image(repository, tag, chrono::Utc::now())
            .await;
        let bar = spinner("waiting for the commit");
        let landed = wait_for(
            "the commit",
            Duration::from_secs(if tag == "1.1.0" && repository == "demo/legacy" {
                5
            } else {
                60
            }),
            &services,
            || repo.tip("main") != before,
        )
        .await;
        bar.finish_and_clear();
        match landed {
            Ok(()) => {
                let took = pushed.elapsed();
                latencies.push(took);
                let commit = repo.tip("main").unwrap_or_default();
                if repository == "demo/podinfo" {
                    podinfo_commit = Some(commit.clone());
                }
                println!(
                    "  ✔ commit {} landed {:.2} s after the push:",
                    &commit[..commit.len().min(12)],
                    took.as_secs_f64()
                );
                for line in repo
                    .git(&["show", "--format=", "--unified=0", &commit])
                    .lines()
                {
                    if (line.starts_with('+') || line.starts_with('-'))
                        && !line.starts_with("+++")
                        && !line.starts_with("---")
                    {
                        println!("      {line}");
                    } else if line.starts_with("+++") {
                        println!("    {}", line.trim_start_matches("+++ b/"));
                    }
                }
            }
            Err(_) if repository == "demo/legacy" && tag == "1.1.0" => {
                println!("  ✔ no commit: 1.1.0 is outside the workload's semver:~1.0 filter");
            }
            Err(e) => return Err(e),
        }
    }

    let bar = spinner("waiting for the notifications of the commits");
    let commits = latencies.len();
    wait_for(
        "the webhook notifications",
        Duration::from_secs(30),
        &services,
        || webhook.received_at("/flux-events").len() >= commits,
    )
    .await?;
    bar.finish_and_clear();
    let received = webhook.received_at("/flux-events");
    println!(
        "\n✔ the Alert 'commits' sent {} notifications to the generic webhook Provider (Flux's event JSON, header gotk-component: {}); the last one:",
        received.len(),
        received
            .last()
            .and_then(|r| r.header("gotk-component"))
            .unwrap_or_default()
    );
    if let Some(last) = received.last() {
        let event = last.json();
        println!(
            "    {} {}/{}: {}",
            event["severity"].as_str().unwrap_or_default(),
            event["involvedObject"]["kind"].as_str().unwrap_or_default(),
            event["involvedObject"]["name"].as_str().unwrap_or_default(),
            event["message"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', "\n    ")
        );
    }

    guard_rails(
        &nats.url(),
        &registry,
        &repo,
        &store,
        &services,
        work.path(),
    )
    .await?;

    // With GitOps, `why` of a podinfo commit names the configuration
    // commit its policy and automation came from.
    let last_bot_commit = if gitops {
        gitops_epilogue(&nats.url(), &host, &repo, &services).await?;
        podinfo_commit
    } else {
        repo.tip("main")
    };
    if let Some(commit) = last_bot_commit {
        println!("\n$ tagrelay why {}", &commit[..12.min(commit.len())]);
        print!("{}", tagrelay(&nats.url(), &["why", &commit])?);
    }
    println!("\n$ tagrelay get image all");
    print!("{}", tagrelay(&nats.url(), &["get", "image", "all"])?);
    if !latencies.is_empty() {
        let total: f64 = latencies.iter().map(Duration::as_secs_f64).sum();
        println!(
            "\npush → commit: {} commits, mean {:.2} s, max {:.2} s",
            latencies.len(),
            total / latencies.len() as f64,
            latencies
                .iter()
                .map(Duration::as_secs_f64)
                .fold(0.0, f64::max)
        );
    }
    println!("\nstopping everything the demo started");
    drop(services);
    Ok(())
}

/// `tagrelay audit --kind config`: the configuration source's events.
fn config_events(nats: &str) -> String {
    tagrelay(nats, &["audit", "--kind", "config"]).unwrap_or_default()
}

/// What GitOps adds: the bot's commits into the configuration repository
/// caused no new `ConfigSynced`, and a broken configuration commit is
/// refused as a whole while the last good one stays in force.
async fn gitops_epilogue(
    nats: &str,
    host: &str,
    repo: &BareRepo,
    services: &[Service],
) -> anyhow::Result<()> {
    let synced = config_events(nats).matches("ConfigSynced").count();
    let bot_commits = repo
        .log("main")
        .iter()
        .filter(|commit| repo.message(commit).starts_with("Automated image update"))
        .count();
    println!(
        "\n✔ {bot_commits} commits of the bot in the same repository, {synced} ConfigSynced: the source did not react to them"
    );
    let file = format!("{CONFIG_PATH}/image-automation.yaml");
    let broken = repo
        .read_text("main", &file)
        .unwrap_or_else(|| configuration(host, &repo.url()))
        .replace("'>=1.0.0'", "'>= 1.0 <<2'");
    println!("\n→ committing a broken range to {file}");
    let commit = repo.human_commit("main", &file, &broken, "image automation: a typo");
    wait_for("ConfigRejected", Duration::from_secs(30), services, || {
        config_events(nats).contains("ConfigRejected")
    })
    .await?;
    println!("$ tagrelay audit --kind config");
    print!("{}", config_events(nats));
    println!(
        "  ✔ {} refused as a whole; the configuration of the last ConfigSynced stays in force",
        &commit[..12]
    );
    Ok(())
}

/// How long the demo's gated policy holds a new tag back.
const DEMO_MINIMUM_AGE_SECONDS: u64 = 5;

/// The guard rails: `tagrelay lint` finding a marker that silently does
/// nothing, and a release held back by its policy's minimum age, then
/// shipped when it comes of age without another scan.
async fn guard_rails(
    nats: &str,
    registry: &Registry,
    repo: &BareRepo,
    store: &ConfigStore,
    services: &[Service],
    work: &Path,
) -> anyhow::Result<()> {
    let copied = work.join("lint/apps/copied.yaml");
    std::fs::create_dir_all(copied.parent().context("lint directory")?)?;
    std::fs::write(
        &copied,
        format!(
            "# Copied from a tutorial that prints the marker without its $.\nimage: {}/demo/podinfo:1.0.0 # {{\"imagepolicy\": \"flux-system:podinfo\"}}\n",
            registry.host()
        ),
    )?;
    let lint_dir = work.join("lint").display().to_string();
    println!("\n$ tagrelay lint --path {lint_dir} --config bus");
    print!(
        "{}",
        tagrelay(nats, &["lint", "--path", &lint_dir, "--config", "bus"])?
    );

    let host = registry.host();
    registry
        .push_image("demo/gated", "1.0.0", chrono::Utc::now())
        .await;
    repo.human_commit(
        "main",
        "apps/gated/deployment.yaml",
        &format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gated\n  namespace: apps\nspec:\n  template:\n    spec:\n      containers:\n        - name: gated\n          image: {host}/demo/gated:1.0.0 # {{\"$imagepolicy\": \"flux-system:gated\"}}\n"),
        "a workload whose policy waits for releases to age",
    );
    let gated = format!("apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata:\n  name: gated\nspec:\n  image: {host}/demo/gated\n  interval: 1m\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata:\n  name: gated\n  annotations:\n    tagrelay.dev/minimum-age: {DEMO_MINIMUM_AGE_SECONDS}s\nspec:\n  imageRepositoryRef:\n    name: gated\n  policy:\n    semver:\n      range: '>=1.0.0'\n");
    for document in load_documents(&gated)? {
        store
            .put(&Object::decode(&document.value).map_err(|e| anyhow::anyhow!("{e}"))?)
            .await?;
    }
    let policy_line = || {
        tagrelay(nats, &["get", "image", "policy", "gated"])
            .map(|out| out.lines().nth(1).unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let bar = spinner("waiting for the gated policy to take demo/gated:1.0.0");
    wait_for(
        "the gated policy",
        Duration::from_secs(60),
        services,
        || policy_line().contains(":1.0.0"),
    )
    .await?;
    done(
        bar,
        format!("applied ImagePolicy gated with tagrelay.dev/minimum-age: {DEMO_MINIMUM_AGE_SECONDS}s; it resolved to 1.0.0"),
    );

    let before = repo.tip("main");
    println!("\n→ pushing demo/gated:1.1.0 (too new to ship for {DEMO_MINIMUM_AGE_SECONDS} s)");
    let pushed = Instant::now();
    registry
        .push_image("demo/gated", "1.1.0", chrono::Utc::now())
        .await;
    wait_for("the hold", Duration::from_secs(30), services, || {
        policy_line().contains("held back")
    })
    .await?;
    println!("$ tagrelay get image policy gated");
    print!("{}", tagrelay(nats, &["get", "image", "policy", "gated"])?);
    let bar = spinner("waiting for 1.1.0 to come of age");
    wait_for(
        "the gated commit",
        Duration::from_secs(60),
        services,
        || repo.tip("main") != before,
    )
    .await?;
    bar.finish_and_clear();
    println!(
        "  ✔ 1.1.0 shipped {:.2} s after the push, once it was {DEMO_MINIMUM_AGE_SECONDS} s old (no new scan needed)",
        pushed.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The automation of the review demo: checks out `main`, pushes signed
/// commits to the review branch `image-updates` and keeps a pull request
/// open on the loopback forge at `forge_api`.
fn review_configuration(host: &str, git_url: &str, forge_api: &str) -> String {
    let annotation = format!(
        "provider: github\nsecretRef: {{name: forge}}\napiURL: {forge_api}\nrepository: org/fleet\nlabels: [image-update]\nreviewers: [platform-team]\n"
    );
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: fleet\nspec:\n  url: {git_url}\n  interval: 1m\n  ref:\n    branch: main\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: podinfo\nspec:\n  image: {host}/demo/podinfo\n  interval: 1m\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: podinfo\nspec:\n  imageRepositoryRef:\n    name: podinfo\n  policy:\n    semver:\n      range: '>=1.0.0'\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata:\n  name: fleet\n  annotations:\n    tagrelay.dev/pull-request: {}\nspec:\n  interval: 1m\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n  git:\n    checkout:\n      ref:\n        branch: main\n    commit:\n      author:\n        name: tagrelay\n        email: bot@example.com\n      signingKey:\n        type: ssh\n        secretRef:\n          name: signing\n    push:\n      branch: image-updates\n  update:\n    path: ./apps\n    strategy: Setters\n",
        serde_json::to_string(&annotation).unwrap_or_default()
    )
}

/// `tagrelay demo --review`: a registry push becomes a signed commit on a
/// review branch and a pull request on a (loopback, GitHub-API) forge.
async fn review_demo() -> anyhow::Result<()> {
    use tagrelay_testkit::forge::{Flavour, ForgeServer};
    println!("tagrelay demo --review: a registry push becomes a signed commit on a review branch and a pull request\n");
    let work = tempfile::Builder::new()
        .prefix("tagrelay-demo-")
        .tempdir()?;
    let bar = spinner("starting nats-server, the registry, the Git remote and a forge");
    let nats = NatsServer::start();
    let scanner_port = free_port();
    let registry = Registry::notifying_scanner(scanner_port, SECRET);
    let host = registry.host();
    registry.push_tags("demo/podinfo", &["1.0.0"]).await;
    let repo = BareRepo::seeded("main", &manifests(&host)[..1]);
    let forge = ForgeServer::start(Flavour::Github, "org/fleet", "demo-forge-token").await;
    done(
        bar,
        format!(
            "nats-server {}, registry {host}, Git remote {}, a GitHub-API forge at {} (loopback; no forge server installs here)",
            nats.url(),
            repo.url(),
            forge.api_url()
        ),
    );

    let bar = spinner("making the bot's SSH signing key and the forge token Secret");
    let secrets = work.path().join("secrets/flux-system");
    std::fs::create_dir_all(secrets.join("signing"))?;
    std::fs::create_dir_all(secrets.join("forge"))?;
    let key = secrets.join("signing/identity");
    let made = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "bot@example.com",
            "-f",
        ])
        .arg(&key)
        .status()
        .context("running ssh-keygen")?;
    if !made.success() {
        bail!("ssh-keygen failed");
    }
    std::fs::write(secrets.join("forge/token"), "demo-forge-token")?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    let allowed = work.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!("bot@example.com namespaces=\"git\" {public}"),
    )?;
    done(bar, "ed25519 signing key in secrets/flux-system/signing/identity, forge token in secrets/flux-system/forge/token".into());

    let bar = spinner("applying the configuration and starting the services");
    let bus = Bus::connect(&nats.url(), "demo", BusSettings::default()).await?;
    let store = bus.config_store().await?;
    for document in load_documents(&review_configuration(&host, &repo.url(), &forge.api_url()))? {
        let object = Object::decode(&document.value).map_err(|e| anyhow::anyhow!("{e}"))?;
        store.put(&object).await?;
    }
    let services = start_services(work.path(), &nats.url(), scanner_port, None)?;
    wait_for(
        "the policy to resolve",
        Duration::from_secs(60),
        &services,
        || {
            tagrelay(&nats.url(), &["audit", "--kind", "policy"])
                .map(|out| out.contains("PolicyResolved"))
                .unwrap_or(false)
        },
    )
    .await?;
    done(bar, "automation fleet: checkout main, signed commits to image-updates, a pull request into main".into());

    println!("\n→ pushing demo/podinfo:1.1.0");
    let pushed = Instant::now();
    registry
        .push_image("demo/podinfo", "1.1.0", chrono::Utc::now())
        .await;
    let bar = spinner("waiting for the commit and the pull request");
    wait_for(
        "the pull request",
        Duration::from_secs(60),
        &services,
        || !forge.requests().is_empty(),
    )
    .await?;
    bar.finish_and_clear();
    let commit = repo.tip("image-updates").unwrap_or_default();
    println!(
        "  ✔ commit {} on image-updates and its pull request {:.2} s after the push",
        &commit[..commit.len().min(12)],
        pushed.elapsed().as_secs_f64()
    );
    let verified = Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
        .args(["verify-commit", &commit])
        .output()?;
    println!(
        "\n$ git -c gpg.ssh.allowedSignersFile=… verify-commit {}\n{}",
        &commit[..commit.len().min(12)],
        String::from_utf8_lossy(&verified.stderr).trim_end()
    );
    for request in forge.requests() {
        println!(
            "\npull request #{} {} -> {} ({}), labels {:?}, reviewers {:?}\ntitle: {}\n{}",
            request.number,
            request.head,
            request.base,
            request.state,
            request.labels,
            request.reviewers,
            request.title,
            request.body
        );
    }
    println!("$ tagrelay why {}", &commit[..commit.len().min(12)]);
    print!("{}", tagrelay(&nats.url(), &["why", &commit])?);
    println!("\nstopping everything the demo started");
    drop(services);
    Ok(())
}
