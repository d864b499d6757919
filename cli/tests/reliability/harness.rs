//! What every reliability test shares: the stack (NATS, a registry, a Git
//! remote, the Flux objects), service processes that can be SIGKILLed and
//! started again, and the checks run on the branch's history and the audit
//! log at the end.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::config::{load_documents, Object};
use tagrelay_proto::event::{ObjectRef, ScanTrigger};
use tagrelay_proto::scan::ScanRequest;
use tagrelay_testkit::free_port;
use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::registry::Registry;

pub const ROLES: [&str; 3] = ["scanner", "resolver", "committer"];

pub fn app(i: usize) -> String {
    format!("app{i}")
}

pub fn file_of(i: usize) -> String {
    format!("apps/app{i}.yaml")
}

pub fn manifest(host: &str, i: usize, tag: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app{i}\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: {host}/soak/app{i}:{tag} # {{\"$imagepolicy\": \"flux-system:app{i}\"}}\n"
    )
}

/// The tag a manifest of `app{i}` holds.
pub fn tag_in(text: &str, i: usize) -> Option<String> {
    let needle = format!("/soak/app{i}:");
    let start = text.find(&needle)? + needle.len();
    let rest = &text[start..];
    Some(rest.split_whitespace().next()?.to_string())
}

pub fn configuration(host: &str, git_url: &str, repos: usize) -> String {
    let mut yaml = automation(git_url);
    for i in 0..repos {
        yaml.push_str(&image_objects(host, i));
    }
    yaml
}

/// The ImageRepository and ImagePolicy of `app{i}`.
pub fn image_objects(host: &str, i: usize) -> String {
    format!(
        "---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\nmetadata:\n  name: app{i}\nspec:\n  image: {host}/soak/app{i}\n  interval: 2s\n  insecure: true\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app{i}\nspec:\n  imageRepositoryRef:\n    name: app{i}\n  policy:\n    semver:\n      range: '>=1.0.0'\n"
    )
}

/// The author email of the automation's commits.
pub const BOT_EMAIL: &str = "tagrelay@example.com";

/// The GitRepository and the ImageUpdateAutomation over `./apps`.
pub fn automation(git_url: &str) -> String {
    format!(
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: fleet\nspec:\n  url: {git_url}\n  interval: 1m\n  ref:\n    branch: main\n---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageUpdateAutomation\nmetadata:\n  name: fleet\nspec:\n  interval: 3s\n  sourceRef:\n    kind: GitRepository\n    name: fleet\n  git:\n    commit:\n      author:\n        name: tagrelay\n        email: {BOT_EMAIL}\n      messageTemplate: 'Update images'\n    push:\n      branch: main\n  update:\n    path: ./apps\n    strategy: Setters\n"
    )
}

/// The executable and arguments that run `role`: its own binary next to
/// `tagrelay`, else (or with `TAGRELAY_RELIABILITY_RUN_ALL=1`) `tagrelay run
/// --all`.
pub fn command_for(role: &str) -> (PathBuf, Vec<&'static str>) {
    let tagrelay = PathBuf::from(env!("CARGO_BIN_EXE_tagrelay"));
    let sibling = tagrelay.with_file_name(format!("tagrelay-{role}"));
    let run_all = std::env::var("TAGRELAY_RELIABILITY_RUN_ALL").is_ok_and(|v| v == "1");
    if sibling.is_file() && !run_all {
        (sibling, vec![])
    } else {
        (tagrelay, vec!["run", "--all"])
    }
}

/// One service instance: a process that can be SIGKILLed and started again
/// under the same instance name, cache directory and log.
pub struct Service {
    pub role: &'static str,
    pub index: usize,
    pub instance: String,
    nats_url: String,
    replicas: usize,
    env: Vec<(String, String)>,
    work: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub starts: usize,
}

impl Service {
    fn start(role: &'static str, index: usize, stack: &Stack) -> Self {
        let instance = format!("{role}-{index}");
        let mut service = Self {
            role,
            index,
            log: stack.work.path().join(format!("{instance}.log")),
            instance,
            nats_url: stack.nats_url.clone(),
            replicas: stack.replicas,
            env: stack.env.clone(),
            work: stack.work.path().to_path_buf(),
            child: None,
            starts: 0,
        };
        service.spawn();
        service
    }

    /// Starts the process (again).
    pub fn spawn(&mut self) {
        let (program, args) = command_for(self.role);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(program)
            .args(args)
            .env("NATS_URL", &self.nats_url)
            .env("TAGRELAY_REPLICAS", self.replicas.to_string())
            .env("TAGRELAY_INSTANCE", &self.instance)
            .env("TAGRELAY_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("TAGRELAY_HTTP_ADDR", format!("127.0.0.1:{}", free_port()))
            .env(
                "TAGRELAY_CACHE_DIR",
                self.work.join(format!("cache-{}", self.instance)),
            )
            .env("TAGRELAY_SECRETS_DIR", self.work.join("secrets"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running (an exit is a failure: services
    /// are meant to ride out every fault these tests inject).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything the instance logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the instance's log, for a failure message.
    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} ({}):\n{}",
            self.instance,
            self.log.display(),
            lines[lines.len().saturating_sub(15)..].join("\n")
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            tagrelay_testkit::stop_gracefully(&mut child);
        }
    }
}

/// How a test wants its stack: which NATS, how many repositories, and where
/// the scanner reaches the registry.
pub struct Setup {
    /// The NATS URL(s) the services and the test use (comma-separated for a
    /// cluster).
    pub nats_url: String,
    /// Replicas of every stream and bucket (3 on a 3-node cluster).
    pub replicas: usize,
    /// Repositories (`soak/app{i}`), each at 1.0.0 in the registry and Git.
    pub repos: usize,
    /// How many of them have their image objects applied at the start (the
    /// others wait for [`apply`]).
    pub configured: usize,
    /// The registry the test pushes to.
    pub registry: Registry,
    /// The `host:port` the image objects and manifests name: the registry's
    /// own, or a fault proxy's in front of it.
    pub image_host: String,
    /// Extra environment of every service process (flags such as
    /// `TAGRELAY_REGISTRY_TIMEOUT`).
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// `repos` repositories, all configured, on a fresh registry, scanned
    /// directly, over the single NATS server at `nats_url`.
    pub fn new(nats_url: &str, repos: usize) -> Self {
        let registry = Registry::start();
        Self {
            nats_url: nats_url.to_string(),
            replicas: 1,
            repos,
            configured: repos,
            image_host: registry.host(),
            registry,
            env: Vec::new(),
        }
    }
}

/// A registry with `repos` repositories at 1.0.0, a Git remote whose files
/// hold 1.0.0, and the Flux objects applied, over a NATS the test owns.
pub struct Stack {
    pub nats_url: String,
    pub replicas: usize,
    pub registry: Registry,
    pub image_host: String,
    pub repo: BareRepo,
    pub repos: usize,
    pub work: tempfile::TempDir,
    pub seed: String,
    pub env: Vec<(String, String)>,
}

impl Stack {
    /// Pushes the repositories, seeds Git and applies the configuration.
    pub async fn start(setup: Setup) -> Self {
        let Setup {
            nats_url,
            replicas,
            repos,
            configured,
            registry,
            image_host,
            env,
        } = setup;
        for i in 0..repos {
            registry
                .push_tags(&format!("soak/{}", app(i)), &["1.0.0"])
                .await;
        }
        let seeds: Vec<Seed> = (0..repos)
            .map(|i| Seed::file(&file_of(i), &manifest(&image_host, i, "1.0.0")))
            .collect();
        let repo = BareRepo::seeded("main", &seeds);
        let seed = repo.tip("main").unwrap();
        let stack = Self {
            nats_url,
            replicas,
            registry,
            image_host,
            repo,
            repos,
            work: tempfile::Builder::new()
                .prefix("tagrelay-reliability-")
                .tempdir()
                .unwrap(),
            seed,
            env,
        };
        stack
            .apply(&configuration(
                &stack.image_host,
                &stack.repo.url(),
                configured,
            ))
            .await;
        stack
    }

    /// `per_role` instances of each stage, started.
    pub fn services(&self, per_role: usize) -> Vec<Service> {
        let mut services = Vec::new();
        for role in ROLES {
            for index in 0..per_role {
                services.push(Service::start(role, index, self));
            }
        }
        services
    }

    /// Puts every object of `yaml` in the configuration bucket.
    pub async fn apply(&self, yaml: &str) {
        let settings = BusSettings {
            replicas: self.replicas,
            ..BusSettings::default()
        };
        let bus = Bus::connect(&self.nats_url, "test", settings)
            .await
            .unwrap();
        let store = bus.config_store().await.unwrap();
        for doc in load_documents(yaml).unwrap() {
            store
                .put(&Object::decode(&doc.value).unwrap())
                .await
                .unwrap();
        }
    }

    /// The tag each file holds at `commit`.
    pub fn tags_at(&self, commit: &str) -> Vec<Option<String>> {
        (0..self.repos)
            .map(|i| {
                let text = self
                    .repo
                    .git(&["show", &format!("{commit}:{}", file_of(i))]);
                tag_in(&text, i)
            })
            .collect()
    }

    /// The tags the branch's tip holds.
    pub fn tip_tags(&self) -> Vec<Option<String>> {
        self.tags_at(&self.repo.tip("main").unwrap())
    }
}

/// The test's side of a soak: pushes the next `1.0.N` of a repository and
/// asks for its scan at once, remembering the highest tag of each.
pub struct Pusher {
    nats_url: String,
    bus: Option<Bus>,
    next: Vec<u64>,
    /// The highest tag pushed to each repository (`1.0.0` at the start).
    pub highest: Vec<String>,
    /// Tags pushed so far.
    pub pushes: usize,
}

impl Pusher {
    /// Nothing pushed yet to the stack's repositories.
    pub fn new(stack: &Stack) -> Self {
        Self {
            nats_url: stack.nats_url.clone(),
            bus: None,
            next: vec![0; stack.repos],
            highest: vec!["1.0.0".into(); stack.repos],
            pushes: 0,
        }
    }

    /// Pushes the next tag of repository `i` and asks for its scan.
    pub async fn push(&mut self, stack: &Stack, i: usize) {
        self.next[i] += 1;
        let tag = format!("1.0.{}", self.next[i]);
        stack
            .registry
            .push_tags(&format!("soak/{}", app(i)), &[&tag])
            .await;
        self.request_scan(&app(i)).await;
        self.highest[i] = tag;
        self.pushes += 1;
    }

    /// Forgets the bus connection (NATS was restarted): the next scan
    /// request connects again.
    pub fn reconnect(&mut self) {
        self.bus = None;
    }

    /// Asks for a scan now (any scanner takes it); failures are ignored,
    /// the repositories' 2 s interval scans anyway.
    async fn request_scan(&mut self, name: &str) {
        if self.bus.is_none() {
            self.bus = tokio::time::timeout(
                Duration::from_secs(2),
                Bus::connect(&self.nats_url, "test-pusher", BusSettings::default()),
            )
            .await
            .ok()
            .and_then(Result::ok);
        }
        if let Some(bus) = &self.bus {
            let request = ScanRequest::new(
                ObjectRef::new("flux-system", name),
                ScanTrigger::Reconcile,
                ulid::Ulid::new().to_string(),
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), bus.request_scan(&request)).await;
        }
    }
}

pub fn semver(tag: &str) -> (u64, u64, u64) {
    let mut parts = tag.split('.').map(|p| p.parse::<u64>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    )
}

/// What the branch's history says.
#[derive(Debug, Default)]
pub struct History {
    /// Commits by the automation's author (the bot).
    pub commits: usize,
    /// Commits by anyone else (people pushing to the branch too).
    pub human_commits: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub backwards: usize,
    pub unannounced: usize,
    pub announced_twice: usize,
    pub announced_elsewhere: usize,
    /// Lines people added that the tip no longer holds.
    pub overwritten: usize,
    pub problems: Vec<String>,
}

impl History {
    /// Nothing lost, duplicated, moved back, misannounced or overwritten.
    pub fn clean(&self) -> bool {
        self.overwritten == 0
            && self.lost == 0
            && self.duplicates == 0
            && self.backwards == 0
            && self.unannounced == 0
            && self.announced_twice == 0
            && self.announced_elsewhere == 0
    }
}

/// Walks the branch from the seed: every bot commit (authored by
/// [`BOT_EMAIL`]) changes at least one file (else it duplicates its
/// parent), every changed file's tag goes strictly up, the tip holds
/// `highest`, and the audit log holds exactly one `CommitPushed` per bot
/// commit and none for a commit not on the branch or by someone else.
/// Commits by anyone else (people pushing too) are counted apart: they
/// change no tag, so they are no duplicates, but no tag may go down in them
/// either, and every line they add (other than an image reference) must
/// still be at the tip: the bot re-applies its change over theirs, never
/// over-writes it.
pub fn check_history(stack: &Stack, highest: &[String]) -> History {
    let mut history = History::default();
    let mut log = stack.repo.log("main");
    log.reverse();
    assert_eq!(log.first(), Some(&stack.seed), "the seed is the root");
    let authors: HashMap<String, String> = stack
        .repo
        .git(&["log", "--first-parent", "--format=%H %ae", "main"])
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(commit, email)| (commit.to_string(), email.to_string()))
        .collect();
    let is_bot = |commit: &String| authors.get(commit).map(String::as_str) == Some(BOT_EMAIL);
    let mut previous = stack.tags_at(&stack.seed);
    for commit in &log[1..] {
        let bot = is_bot(commit);
        if bot {
            history.commits += 1;
        } else {
            history.human_commits += 1;
        }
        let tags = stack.tags_at(commit);
        if bot && tags == previous {
            history.duplicates += 1;
            history
                .problems
                .push(format!("{commit} changes no tag: {tags:?}"));
        }
        for (i, (old, new)) in previous.iter().zip(&tags).enumerate() {
            if old != new {
                let (Some(old), Some(new)) = (old, new) else {
                    history
                        .problems
                        .push(format!("{commit}: app{i} lost its tag"));
                    history.backwards += 1;
                    continue;
                };
                if semver(new) <= semver(old) {
                    history.backwards += 1;
                    history
                        .problems
                        .push(format!("{commit}: app{i} {old} -> {new}"));
                }
            }
        }
        if !bot {
            let tip = log.last().expect("the branch has commits");
            check_kept(stack, commit, tip, &mut history);
        }
        previous = tags;
    }
    for (i, want) in highest.iter().enumerate() {
        if previous[i].as_deref() != Some(want.as_str()) {
            history.lost += 1;
            history.problems.push(format!(
                "app{i}: the branch holds {:?}, the highest pushed tag is {want}",
                previous[i]
            ));
        }
    }

    let mut announced: HashMap<String, usize> = HashMap::new();
    for envelope in audit(stack, "commit") {
        if envelope["type"] == "CommitPushed" {
            let commit = envelope["payload"]["commit"].as_str().unwrap().to_string();
            *announced.entry(commit).or_default() += 1;
        }
    }
    for commit in log[1..].iter().filter(|c| !is_bot(c)) {
        if announced.contains_key(commit) {
            history.announced_elsewhere += 1;
            history.problems.push(format!(
                "CommitPushed {commit} announces a commit the bot did not author"
            ));
        }
    }
    for commit in log[1..].iter().filter(|c| is_bot(c)) {
        match announced.get(commit).copied().unwrap_or(0) {
            0 => {
                history.unannounced += 1;
                history
                    .problems
                    .push(format!("{commit} has no CommitPushed"));
            }
            1 => {}
            n => {
                history.announced_twice += 1;
                history
                    .problems
                    .push(format!("{commit} has {n} CommitPushed events"));
            }
        }
    }
    for commit in announced.keys() {
        if !log.contains(commit) {
            history.announced_elsewhere += 1;
            history
                .problems
                .push(format!("CommitPushed {commit} is not on the branch"));
        }
    }
    history
}

/// The audit log's events of `kind` (`tagrelay audit -o json --kind
/// <kind>`: `tags`, `policy`, `commit` or `failed`), in order.
pub fn audit(stack: &Stack, kind: &str) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(["audit", "-o", "json", "--kind", kind])
        .env("NATS_URL", &stack.nats_url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Counts in `history` the lines `commit` added (image references aside)
/// that `tip` no longer holds.
fn check_kept(stack: &Stack, commit: &str, tip: &str, history: &mut History) {
    let diff = stack.repo.git(&[
        "diff",
        "--unified=0",
        "--no-color",
        &format!("{commit}^"),
        commit,
    ]);
    let mut file = None;
    let mut kept: HashMap<String, String> = HashMap::new();
    for line in diff.lines() {
        if let Some(path) = line.strip_prefix("+++ ") {
            file = path.strip_prefix("b/").map(str::to_string);
            continue;
        }
        let (Some(path), Some(added)) = (&file, line.strip_prefix('+')) else {
            continue;
        };
        if added.contains("/soak/app") {
            continue;
        }
        let text = kept.entry(path.clone()).or_insert_with(|| {
            String::from_utf8_lossy(
                &Command::new("git")
                    .arg("--git-dir")
                    .arg(stack.repo.path())
                    .args(["cat-file", "blob", &format!("{tip}:{path}")])
                    .output()
                    .expect("git")
                    .stdout,
            )
            .into_owned()
        });
        if !text.lines().any(|l| l == added) {
            history.overwritten += 1;
            history.problems.push(format!(
                "{path}: the line {added:?} of human commit {commit} is not at the tip"
            ));
        }
    }
}

/// Waits until every file holds its highest tag (or the deadline passes).
pub fn wait_for_tags(stack: &Stack, highest: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let tip = stack.repo.tip("main").unwrap();
        let tags = stack.tags_at(&tip);
        if tags
            .iter()
            .zip(highest)
            .all(|(have, want)| have.as_deref() == Some(want.as_str()))
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn logs(services: &[Service]) -> String {
    services
        .iter()
        .map(Service::tail)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tiny xorshift generator seeded from the clock (printed, to replay).
pub struct Rng(u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

pub fn fastrand_seed() -> Rng {
    let seed = std::env::var("TAGRELAY_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("chaos seed: TAGRELAY_CHAOS_SEED={seed}");
    Rng(seed)
}

/// How many lines of the logs of `role`'s instances contain every one of
/// `needles` (a message, its module: field names come with colour codes).
pub fn log_lines(services: &[Service], role: &str, needles: &[&str]) -> usize {
    services
        .iter()
        .filter(|s| s.role == role)
        .map(|s| {
            s.log_text()
                .lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .count()
        })
        .sum()
}
