//! What tagrelay costs at fleet size, measured: a generated fleet on one
//! machine with a real nats-server, CNCF registry and bare Git remotes, and
//! the four services as separate processes (the release binaries next to
//! this bench: `cargo build --release --bins` first).
//!
//! For each size N (repositories, one semver policy each, spread over G Git
//! repositories with one automation each, in its own namespace):
//! - cold start: from the services' start until every policy is resolved
//!   and every marker in Git holds its selection;
//! - steady state: a quiet window with scans running (every `INTERVAL`):
//!   CPU seconds per service, scans made, NATS messages and bytes through
//!   the server (every KV operation is one), events and bytes added to the
//!   log;
//! - a round where 1 % of the repositories get a new tag (pushed through
//!   the registry's API, announced by its webhook): push → commit p50/p99;
//! - a burst: `BURST` repositories of one Git repository get a new tag at
//!   once: the commits it took and push → commit p50/p99;
//! - peak RSS per service;
//! - with two sizes or more, how each figure grows with N (the exponent of
//!   a least-squares fit of log figure on log N: 1 is linear).
//!
//! `cargo build --release --bins && cargo bench -p tagrelay-e2e --bench fleet`
//! (`FLEET=100,1000` sizes, `TAGS=100` tags per repository, `GIT_REPOS=10`,
//! `INTERVAL=30s` between scans, `QUIET=30` seconds of steady state,
//! `BURST=100`, `RPS=200` registry requests a second allowed to the one
//! registry host; `LOG=debug` and `LOGS=DIR` keep the services' logs).
//!
//! Horizontal scale: `INSTANCES=1,2,4 CLUSTER=1` runs each size with that
//! many processes of the scanner, the resolver and the committer against a
//! 3-node JetStream cluster, and prints what each instance did (scans,
//! evaluations, commits from its `/metrics`) and how many events in the log
//! repeat work already announced (a second scan of the same tag set, a
//! second announcement of a selection or commit).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a failure is a failed run

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_proto::names;
use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::registry::Registry;
use tagrelay_testkit::{free_port, NatsCluster, NatsServer};

const SECRET: &str = "fleet-secret";
const SERVICES: [&str; 4] = ["scanner", "resolver", "committer", "notifier"];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn release_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} missing: run `cargo build --release --bins` first",
        path.display()
    );
    path
}

/// One service process with the figures read from `/proc`.
struct Service {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Service {
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after_name = stat.rsplit_once(')').unwrap().1;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib / 1024.0
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        tagrelay_testkit::stop_gracefully(&mut self.child);
    }
}

/// Where the services run: `instances` processes of each stage (one
/// notifier), on one NATS server or a 3-node JetStream cluster.
struct Topology {
    instances: usize,
    cluster: bool,
}

fn start_services(
    nats: &str,
    topology: &Topology,
    work: &Path,
    scanner_port: u16,
    secret_file: &Path,
) -> Vec<Service> {
    let replicas = if topology.cluster { "3" } else { "1" };
    SERVICES
        .iter()
        .flat_map(|name| {
            let count = if *name == "notifier" {
                1
            } else {
                topology.instances
            };
            (0..count).map(move |i| (*name, i))
        })
        .map(|(name, i)| {
            // The registry's webhook reaches the first scanner; whichever
            // instance is free takes the request it queues.
            let port = if name == "scanner" && i == 0 {
                scanner_port
            } else {
                free_port()
            };
            let logs = std::env::var_os("LOGS").map_or_else(|| work.to_path_buf(), PathBuf::from);
            let log = std::fs::File::create(logs.join(format!("{name}-{i}.log"))).unwrap();
            let child = Command::new(release_binary(&format!("tagrelay-{name}")))
                .env("NATS_URL", nats)
                .env("TAGRELAY_REPLICAS", replicas)
                .env("TAGRELAY_LISTEN", format!("127.0.0.1:{port}"))
                .env("TAGRELAY_HTTP_ADDR", format!("127.0.0.1:{port}"))
                .env("TAGRELAY_WEBHOOK_SECRET_FILE", secret_file)
                .env("TAGRELAY_CACHE_DIR", work.join(format!("cache-{i}")))
                .env("TAGRELAY_SECRETS_DIR", work.join("secrets"))
                // One registry host carries the whole fleet here: let the
                // scanner use it as fast as the fleet needs (10,000
                // repositories every 5 minutes is 33 scans a second).
                .env("TAGRELAY_REGISTRY_RPS", env_or("RPS", "200"))
                .env("TAGRELAY_REGISTRY_BURST", env_or("RPS", "200"))
                .env("RUST_LOG", env_or("LOG", "warn"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            Service { name, port, child }
        })
        .collect()
}

/// The counter `metric` (summed over its labels) in a service's `/metrics`.
fn counter(port: u16, metric: &str) -> f64 {
    http_text(port, "/metrics")
        .lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Events of the log, and how many of them repeat work already announced:
/// the same tag set of a repository, the same selection of a policy, the
/// same commit.
async fn duplicates(bus: &Bus) -> (usize, usize) {
    use std::collections::HashSet;
    use tagrelay_proto::event::Event;
    let events = tagrelay_testkit::events(bus, ">").await;
    let mut seen = HashSet::new();
    let mut repeated = 0;
    for envelope in &events {
        let identity = match &envelope.payload {
            Event::TagsDiscovered(t) => format!("tags {} {}", t.repository, t.tag_set_digest),
            Event::PolicyResolved(p) => format!("policy {} {}", p.policy, p.current.tag),
            Event::CommitPushed(c) => format!("commit {}", c.commit),
            _ => continue,
        };
        if !seen.insert(identity) {
            repeated += 1;
        }
    }
    (events.len(), repeated)
}

fn repository(i: usize) -> String {
    format!("fleet/app-{i:05}")
}

fn marker_file(host: &str, i: usize, git: usize, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i:05}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {host}/{}:{tag} # {{\"$imagepolicy\": \"team-{git:03}:app-{i:05}\"}}\n",
        repository(i)
    )
}

fn configuration(host: &str, n: usize, gits: &[BareRepo], interval: &str) -> String {
    let mut yaml = String::new();
    for (g, repo) in gits.iter().enumerate() {
        yaml += &format!(
            "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: fleet, namespace: team-{g:03}}}\nspec: {{url: {}, interval: 1h, ref: {{branch: main}}}}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageUpdateAutomation\nmetadata: {{name: fleet, namespace: team-{g:03}}}\nspec:\n  interval: 1h\n  sourceRef: {{kind: GitRepository, name: fleet}}\n  git: {{commit: {{author: {{email: bench@example.com}}}}, push: {{branch: main}}}}\n  update: {{path: ./}}\n---\n",
            repo.url()
        );
    }
    for i in 0..n {
        let g = i % gits.len();
        yaml += &format!(
            "apiVersion: image.toolkit.fluxcd.io/v1\nkind: ImageRepository\nmetadata: {{name: app-{i:05}, namespace: team-{g:03}}}\nspec: {{image: {host}/{}, interval: {interval}, insecure: true}}\n---\napiVersion: image.toolkit.fluxcd.io/v1\nkind: ImagePolicy\nmetadata: {{name: app-{i:05}, namespace: team-{g:03}}}\nspec: {{imageRepositoryRef: {{name: app-{i:05}}}, policy: {{semver: {{range: '>=1.0.0'}}}}}}\n---\n",
            repository(i)
        );
    }
    yaml
}

/// How many of the `files` marker files of `repo` do not hold `wanted` yet.
fn behind(repo: &BareRepo, files: usize, wanted: &str) -> usize {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo.path())
        .args([
            "grep",
            "-l",
            "-F",
            &format!(":{wanted} "),
            "main",
            "--",
            "apps",
        ])
        .output()
        .unwrap();
    // Exit 1 is "no file matches".
    let matched = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    files.saturating_sub(matched)
}

/// What the NATS server has carried so far: messages and bytes in and out
/// (zeros for a cluster, whose nodes are not asked).
fn nats_traffic(monitor_port: Option<u16>) -> [f64; 4] {
    let Some(monitor_port) = monitor_port else {
        return [0.0; 4];
    };
    let varz = http_text(monitor_port, "/varz");
    let value: serde_json::Value = serde_json::from_str(&varz).unwrap();
    ["in_msgs", "out_msgs", "in_bytes", "out_bytes"].map(|k| value[k].as_f64().unwrap_or(0.0))
}

/// The counter `metric` summed over every instance of `service`.
fn total(services: &[Service], service: &str, metric: &str) -> f64 {
    services
        .iter()
        .filter(|s| s.name == service)
        .map(|s| counter(s.port, metric))
        .sum()
}

/// Scans the scanners have made so far.
fn scans(services: &[Service]) -> f64 {
    total(services, "scanner", "tagrelay_scans_total")
}

/// Policy evaluations the resolvers have made so far.
fn evaluations(services: &[Service]) -> f64 {
    total(services, "resolver", "tagrelay_resolutions_total")
}

fn http_text(port: u16, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn log_size(bus: &Bus) -> (u64, u64) {
    let mut stream = bus
        .jetstream()
        .get_stream(names::EVENTS_STREAM)
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    (info.state.messages, info.state.bytes)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len().saturating_sub(1))]
}

/// The figures of one size that the growth fit compares.
struct Figures {
    n: usize,
    cold_start: f64,
    steady_cpu: f64,
    nats_messages: f64,
    round_p50: f64,
    burst_p99: f64,
    peak_rss: f64,
}

/// Pushes `tag` to repositories `movers` at once; returns each push's time.
async fn push_all(registry: &Registry, movers: &[usize], tag: &str) -> Vec<(usize, Instant)> {
    futures::future::join_all(movers.iter().map(|&i| async move {
        registry.push_tags(&repository(i), &[tag]).await;
        (i, Instant::now())
    }))
    .await
}

/// Waits until every pushed file holds `tag`; returns push → commit seconds.
/// A file's commit time is when the first branch tip carrying it was seen
/// (tips polled every 20 ms), so the time spent reading the files afterwards
/// does not count (read one after another, the 100th would pay for 99 reads).
async fn landed(gits: &[BareRepo], pushed_at: Vec<(usize, Instant)>, tag: &str) -> Vec<f64> {
    let mut pending = pushed_at;
    let mut latencies = Vec::new();
    // Unknown at first, so a commit that landed before this began is found.
    let mut tips: Vec<Option<String>> = vec![None; gits.len()];
    let deadline = Instant::now() + Duration::from_secs(300);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} files never got {tag}",
            pending.len()
        );
        for (g, repo) in gits.iter().enumerate() {
            if !pending.iter().any(|(i, _)| i % gits.len() == g) {
                continue;
            }
            let tip = repo.tip("main");
            if tip.is_none() || tip == tips[g] {
                continue;
            }
            let seen = Instant::now();
            tips[g] = tip;
            pending.retain(|&(i, at)| {
                let carried = i % gits.len() == g
                    && repo
                        .read_text("main", &format!("apps/app-{i:05}.yaml"))
                        .unwrap_or_default()
                        .contains(tag);
                if carried {
                    latencies.push(seen.duration_since(at).as_secs_f64());
                }
                !carried
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

struct Run {
    tags: usize,
    git_repos: usize,
    interval: String,
    quiet: Duration,
    burst: usize,
}

/// The NATS the services use: one server (with its monitoring port) or a
/// 3-node JetStream cluster.
enum Nats {
    Server(NatsServer, u16),
    Cluster(NatsCluster),
}

impl Nats {
    fn start(cluster: bool) -> Self {
        if cluster {
            return Self::Cluster(NatsCluster::start());
        }
        let monitor_port = free_port();
        let server =
            NatsServer::start_with_config(&format!("http: \"127.0.0.1:{monitor_port}\"\n"));
        Self::Server(server, monitor_port)
    }

    fn url(&self) -> String {
        match self {
            Self::Server(server, _) => server.url(),
            Self::Cluster(cluster) => cluster.url(),
        }
    }

    fn monitor_port(&self) -> Option<u16> {
        match self {
            Self::Server(_, port) => Some(*port),
            Self::Cluster(_) => None,
        }
    }
}

async fn run_size(n: usize, run: &Run, topology: &Topology) -> Figures {
    let (tags, git_repos, quiet) = (run.tags, run.git_repos, run.quiet);
    let work = tempfile::tempdir().unwrap();
    let nats = Nats::start(topology.cluster);
    let monitor_port = nats.monitor_port();
    let scanner_port = free_port();
    let registry = Registry::notifying_scanner(scanner_port, SECRET);
    let host = registry.host();
    let seeding = Instant::now();
    registry.push_tags("fleet/seed", &["0.0.1"]).await;
    let tag_names: Vec<String> = (0..tags).map(|t| format!("1.{t}.0")).collect();
    for i in 0..n {
        registry.copy_tags_in_storage("fleet/seed", "0.0.1", &repository(i), &tag_names);
    }
    let highest = format!("1.{}.0", tags - 1);
    let gits: Vec<BareRepo> = (0..git_repos)
        .map(|g| {
            let files: Vec<Seed> = (g..n)
                .step_by(git_repos)
                .map(|i| {
                    Seed::file(
                        &format!("apps/app-{i:05}.yaml"),
                        &marker_file(&host, i, g, "0.0.1"),
                    )
                })
                .collect();
            BareRepo::seeded("main", &files)
        })
        .collect();
    let settings = BusSettings {
        replicas: if topology.cluster { 3 } else { 1 },
        ..BusSettings::default()
    };
    let bus = Bus::connect(&nats.url(), "bench/fleet", settings)
        .await
        .unwrap();
    let store = bus.config_store().await.unwrap();
    let yaml = configuration(&host, n, &gits, &run.interval);
    for doc in load_documents(yaml.trim_end_matches("---\n")).unwrap() {
        store
            .put(&Object::decode(&doc.value).unwrap())
            .await
            .unwrap();
    }
    let seeded = seeding.elapsed();
    let secret_file = work.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();

    let started = Instant::now();
    let services = start_services(
        &nats.url(),
        topology,
        work.path(),
        scanner_port,
        &secret_file,
    );
    let deadline = Instant::now() + Duration::from_secs(1800);
    // When as many scans and evaluations as repositories had been made: the
    // phases of the cold start, to tell which stage its length comes from.
    let (mut scanned_at, mut resolved_at) = (None, None);
    loop {
        if scanned_at.is_none() && scans(&services) >= n as f64 {
            scanned_at = Some(started.elapsed());
        }
        if resolved_at.is_none() && evaluations(&services) >= n as f64 {
            resolved_at = Some(started.elapsed());
        }
        let left: usize = gits
            .iter()
            .enumerate()
            .map(|(g, repo)| behind(repo, (g..n).step_by(git_repos).count(), &highest))
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cold start did not converge: {left} files behind"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let cold = started.elapsed();
    let commits: usize = gits.iter().map(|g| g.log("main").len() - 1).sum();

    let cpu_before: Vec<f64> = services.iter().map(Service::cpu_seconds).collect();
    let (messages_before, bytes_before) = log_size(&bus).await;
    let traffic_before = nats_traffic(monitor_port);
    let scans_before = scans(&services);
    tokio::time::sleep(quiet).await;
    let cpu: Vec<f64> = services
        .iter()
        .zip(&cpu_before)
        .map(|(s, before)| s.cpu_seconds() - before)
        .collect();
    let (messages_after, bytes_after) = log_size(&bus).await;
    let traffic: Vec<f64> = nats_traffic(monitor_port)
        .iter()
        .zip(traffic_before)
        .map(|(after, before)| after - before)
        .collect();
    let scanned = scans(&services) - scans_before;

    let movers: Vec<usize> = (0..n).step_by(100).collect();
    let new_tag = format!("2.0.{n}");
    let pushed_at = push_all(&registry, &movers, &new_tag).await;
    let latencies = landed(&gits, pushed_at, &new_tag).await;

    // The burst: many repositories of Git repository 0 at once.
    let burst: Vec<usize> = (0..n).step_by(git_repos).take(run.burst).collect();
    let commits_before = gits[0].log("main").len();
    let burst_tag = format!("3.0.{n}");
    let pushed_at = push_all(&registry, &burst, &burst_tag).await;
    let burst_latencies = landed(&gits, pushed_at, &burst_tag).await;
    // Commits still on their way would come within a second or two.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let burst_commits = gits[0].log("main").len() - commits_before;
    let rss: Vec<f64> = services.iter().map(Service::peak_rss_mib).collect();
    let window = quiet.as_secs_f64();

    println!(
        "\nN = {n} repositories × {tags} tags, {git_repos} Git repositories, {git_repos} automations; {} instance(s) of each stage on {}",
        topology.instances,
        if topology.cluster {
            "a 3-node JetStream cluster (R3)"
        } else {
            "one NATS server"
        }
    );
    println!(
        "  seeding (registry storage, Git, {} objects applied): {:.1} s",
        2 * n + 2 * git_repos,
        seeded.as_secs_f64()
    );
    let phase = |at: Option<Duration>| {
        at.map_or("-".to_string(), |at| format!("{:.1} s", at.as_secs_f64()))
    };
    println!(
        "  cold start → every selection in Git: {:.1} s ({commits} commits; the {n}th scan made at {}, the {n}th evaluation at {})",
        cold.as_secs_f64(),
        phase(scanned_at),
        phase(resolved_at),
    );
    let steady_cpu = cpu.iter().sum::<f64>() / window * 100.0;
    println!(
        "  steady state over {window:.0} s (scans every {}): CPU {} ; all services {steady_cpu:.2} % of one core",
        run.interval,
        SERVICES
            .iter()
            .map(|name| {
                let seconds: f64 = services
                    .iter()
                    .zip(&cpu)
                    .filter(|(s, _)| s.name == *name)
                    .map(|(_, seconds)| seconds)
                    .sum();
                format!("{name} {seconds:.2} s")
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    let carried = if monitor_port.is_some() {
        format!(
            "NATS {:.0} messages in / {:.0} out, {:.0} KiB in / {:.0} KiB out",
            traffic[0],
            traffic[1],
            traffic[2] / 1024.0,
            traffic[3] / 1024.0,
        )
    } else {
        "NATS traffic not measured on a cluster".to_string()
    };
    println!(
        "    {scanned:.0} scans; {carried}; log +{} events, +{} KiB",
        messages_after - messages_before,
        (bytes_after - bytes_before) / 1024
    );
    println!(
        "  1 % round ({} pushes): push → commit p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    println!(
        "  burst ({} repositories of one Git repository at once): {burst_commits} commit(s), push → commit p50 {:.2} s, p99 {:.2} s",
        burst_latencies.len(),
        percentile(&burst_latencies, 0.5),
        percentile(&burst_latencies, 0.99),
    );
    println!(
        "  peak RSS: {}",
        services
            .iter()
            .zip(&rss)
            .map(|(s, mib)| format!("{} {mib:.0} MiB", s.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if topology.instances > 1 || topology.cluster {
        for (name, metric) in [
            ("scanner", "tagrelay_scans_total"),
            ("resolver", "tagrelay_resolutions_total"),
            ("committer", "tagrelay_commits_total"),
        ] {
            let counts: Vec<String> = services
                .iter()
                .filter(|s| s.name == name)
                .map(|s| format!("{:.0}", counter(s.port, metric)))
                .collect();
            println!("  {metric} per {name} instance: {}", counts.join(" / "));
        }
        let (events, repeated) = duplicates(&bus).await;
        println!("  duplicate work in the log: {repeated} of {events} events repeat an announced tag set, selection or commit");
    }
    Figures {
        n,
        cold_start: cold.as_secs_f64(),
        steady_cpu,
        nats_messages: traffic[0] + traffic[1],
        round_p50: percentile(&latencies, 0.5),
        burst_p99: percentile(&burst_latencies, 0.99),
        peak_rss: rss.iter().copied().fold(0.0, f64::max),
    }
}

/// The slope of log `y` on log `x`: how `y` grows with `x` (1 is linear).
fn exponent(points: &[(f64, f64)]) -> f64 {
    let logs: Vec<(f64, f64)> = points
        .iter()
        .map(|(x, y)| (x.ln(), y.max(1e-9).ln()))
        .collect();
    let count = logs.len() as f64;
    let mean_x = logs.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = logs.iter().map(|p| p.1).sum::<f64>() / count;
    let covariance: f64 = logs.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = logs.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    covariance / variance
}

/// One growth series: its name and how to read it off a size's figures.
type Series = (&'static str, fn(&Figures) -> f64);

fn print_growth(figures: &[Figures]) {
    if figures.len() < 2 {
        return;
    }
    println!("\ngrowth with N (exponent of a log-log fit; 1 = linear):");
    let series: [Series; 6] = [
        ("cold start", |f| f.cold_start),
        ("steady-state CPU", |f| f.steady_cpu),
        ("steady-state NATS messages", |f| f.nats_messages),
        ("1 % round push → commit p50", |f| f.round_p50),
        ("burst push → commit p99", |f| f.burst_p99),
        ("largest peak RSS", |f| f.peak_rss),
    ];
    for (name, figure) in series {
        let points: Vec<(f64, f64)> = figures.iter().map(|f| (f.n as f64, figure(f))).collect();
        println!("  {name}: N^{:.2}", exponent(&points));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sizes: Vec<usize> = env_or("FLEET", "100,1000")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let run = Run {
        tags: env_or("TAGS", "100").parse().unwrap(),
        git_repos: env_or("GIT_REPOS", "10").parse().unwrap(),
        interval: env_or("INTERVAL", "30s"),
        quiet: Duration::from_secs(env_or("QUIET", "30").parse().unwrap()),
        burst: env_or("BURST", "100").parse().unwrap(),
    };
    println!("fleet bench: real nats-server, CNCF registry, bare Git remotes; the four services as processes");
    let cluster = env_or("CLUSTER", "0") == "1";
    let instances: Vec<usize> = env_or("INSTANCES", "1")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut figures = Vec::new();
    for n in sizes {
        for &instances in &instances {
            let topology = Topology { instances, cluster };
            let measured = run_size(n, &run, &topology).await;
            if instances == 1 {
                figures.push(measured);
            }
        }
    }
    print_growth(&figures);
}
