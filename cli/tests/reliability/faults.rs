//! Registry and Git faults under load, with real processes (issue 7).
//!
//! - `registry_storms_are_retried_and_recorded`: the scanners reach the
//!   registry (with basic auth) through the testkit's fault proxy while
//!   storms come and go: 429s with `Retry-After`, 500 / 502 / 503, answers
//!   slower than the scanners' request timeout, answers that arrive late
//!   (older than other scans' listings by then), bodies cut mid-JSON and
//!   connections dropped mid-body, on tag lists, manifests and blobs (every
//!   repository also has a "newest build" policy, so the scanners fetch
//!   image metadata too). Nothing is lost or duplicated, nothing goes back,
//!   no process exits, every failed scan is a `ScanFailed` in the audit log
//!   (tried again by redelivery, given up until the next interval only after
//!   its last delivery), failed requests are retried within the scan (the
//!   scanners' debug log says so), and no event or log line holds the
//!   password.
//! - `git_faults_are_retried_and_recorded`: the committers reach the remote
//!   over smart HTTP with basic auth; the remote goes down for seconds at a
//!   time, a pre-receive hook refuses pushes for a while, and a person's
//!   commit races every bot push (it lands between the bot's fetch and its
//!   push, as a note in the very file the bot updates or in `docs/`). Every
//!   line people wrote is still there at the end, every update lands once,
//!   every failed reconcile is a `CommitFailed`, no password anywhere.
//! - `registry_and_git_faults_over_a_long_soak` (`#[ignore]`d): both at
//!   once, 1,000 pushes over 6 repositories:
//!   `cargo build --bins && cargo test -p tagrelay --test reliability -- --ignored --nocapture registry_and_git_faults_over_a_long_soak`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tagrelay_testkit::fault_proxy::{Fault, FaultProxy, Scope, Storm};
use tagrelay_testkit::git::HttpRemote;
use tagrelay_testkit::registry::{Registry, RegistryOptions};
use tagrelay_testkit::NatsServer;

use super::harness::{
    audit, automation, image_objects, log_lines, History, Rng, Service, Setup, Stack,
};
use super::{soak, Chaos};

/// The scanners' time limit on one registry request
/// (`TAGRELAY_REGISTRY_TIMEOUT`).
const REQUEST_TIMEOUT: &str = "1s";
/// How long a slow answer takes: longer than [`REQUEST_TIMEOUT`].
const SLOW: Duration = Duration::from_millis(1500);
/// How old a late answer is when it arrives: within [`REQUEST_TIMEOUT`],
/// so the scanner reads a listing older than the ones other scans made
/// meanwhile.
const LATE: Duration = Duration::from_millis(700);
/// How long a storm or a Git fault lasts.
const FAULT_FOR: Duration = Duration::from_millis(2500);
/// The quiet time between two of them.
const QUIET_FOR: Duration = Duration::from_millis(1500);

/// The storms, in turn.
fn storms() -> [Storm; 4] {
    [
        Storm {
            faults: vec![Fault::TooManyRequests { retry_after: 1 }],
            scope: Scope::All,
            percent: 60,
        },
        Storm {
            faults: vec![Fault::Status(500), Fault::Status(502), Fault::Status(503)],
            scope: Scope::All,
            percent: 75,
        },
        Storm {
            faults: vec![Fault::Slow(SLOW), Fault::Late(LATE)],
            scope: Scope::All,
            percent: 100,
        },
        Storm {
            faults: vec![Fault::Truncated, Fault::Dropped],
            scope: Scope::All,
            percent: 100,
        },
    ]
}

/// The registry's user (basic auth, through the proxy).
const REGISTRY_USER: &str = "ci";
/// The Git remote's user (basic auth over smart HTTP).
const GIT_USER: &str = "bot";

/// A password no test would guess, to look for in events and logs.
fn password(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-s3cret-{nanos:x}")
}

/// Writes the file `key` of Secret `flux-system/<name>` where the services
/// read their Secrets (`TAGRELAY_SECRETS_DIR`).
fn write_secret(stack: &Stack, name: &str, key: &str, value: &str) {
    let dir = stack.work.path().join("secrets/flux-system").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(key), value).unwrap();
}

/// The failure events of `event_type` (`ScanFailed`, `CommitFailed`).
fn failures(stack: &Stack, event_type: &str) -> Vec<serde_json::Value> {
    audit(stack, "failed")
        .into_iter()
        .filter(|e| e["type"] == event_type)
        .collect()
}

/// How many of `failed` carry each `reason`, and the panic message when one
/// is not among `injected`: every failure must be of a kind the test caused.
fn count_reasons(failed: &[serde_json::Value], injected: &[&str]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in failed {
        let reason = event["payload"]["reason"].as_str().unwrap_or("Other");
        assert!(
            injected.contains(&reason),
            "a failure no injected fault explains: {event:#}"
        );
        *counts.entry(reason.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Panics when the password of `user`, or their basic-auth header value,
/// is in any event of the audit log or any service log.
fn assert_nowhere(user: &str, password: &str, stack: &Stack, services: &[Service]) {
    let header = tagrelay_committer::credentials::basic_credentials(user, password);
    for kind in ["tags", "policy", "commit", "failed"] {
        for event in audit(stack, kind) {
            let text = event.to_string();
            assert!(
                !text.contains(password) && !text.contains(&header),
                "an event holds {user}'s credentials: {event}"
            );
        }
    }
    for service in services {
        let text = service.log_text();
        assert!(
            !text.contains(password) && !text.contains(&header),
            "the log of {} holds {user}'s credentials",
            service.instance
        );
    }
}

/// The fault proxy on a runtime of its own: the soak blocks the test's
/// runtime threads between pushes, and a registry does not wait for its
/// clients anyway.
struct ProxyHost {
    proxy: Option<FaultProxy>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ProxyHost {
    async fn start(upstream: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let upstream = upstream.to_string();
        let proxy = runtime
            .spawn(async move { FaultProxy::start(&upstream).await })
            .await
            .unwrap();
        Self {
            proxy: Some(proxy),
            runtime: Some(runtime),
        }
    }

    fn proxy(&self) -> &FaultProxy {
        self.proxy.as_ref().expect("the proxy runs until dropped")
    }
}

impl Drop for ProxyHost {
    fn drop(&mut self) {
        self.proxy.take();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Storms of registry faults through the proxy, each [`FAULT_FOR`] long,
/// [`QUIET_FOR`] apart, the kinds of [`storms`] in turn.
struct RegistryStorms {
    host: ProxyHost,
    password: String,
    next: usize,
    raging: bool,
    until: Option<Instant>,
    storms: BTreeMap<&'static str, usize>,
}

impl RegistryStorms {
    /// A stack whose scanners reach a registry with basic auth through a
    /// fault proxy, with a request timeout of [`REQUEST_TIMEOUT`], and a
    /// "newest build" policy per repository (so manifests and blobs are
    /// fetched too).
    async fn stack(nats_url: &str, repos: usize) -> (Stack, Self) {
        let password = password("registry");
        let registry = Registry::start_with(RegistryOptions {
            basic_auth: Some((REGISTRY_USER.into(), password.clone())),
            ..Default::default()
        });
        let host = ProxyHost::start(&registry.url()).await;
        let image_host = host.proxy().host();
        let stack = Stack::start(Setup {
            registry,
            image_host: image_host.clone(),
            env: vec![
                ("TAGRELAY_REGISTRY_TIMEOUT".into(), REQUEST_TIMEOUT.into()),
                (
                    "RUST_LOG".into(),
                    format!(
                        "{},tagrelay_scanner::registry=debug",
                        std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())
                    ),
                ),
            ],
            ..Setup::new(nats_url, repos)
        })
        .await;
        let config = serde_json::json!({
            "auths": {image_host.as_str(): {"username": REGISTRY_USER, "password": password.as_str()}}
        });
        write_secret(&stack, "regcred", ".dockerconfigjson", &config.to_string());
        let mut yaml = String::new();
        for i in 0..repos {
            yaml.push_str(&image_objects(&image_host, i).replace(
                "  insecure: true\n",
                "  insecure: true\n  secretRef:\n    name: regcred\n",
            ));
            yaml.push_str(&format!(
                "---\napiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\nmetadata:\n  name: app{i}-newest\n  annotations:\n    tagrelay.io/flux-v1-filter: ''\nspec:\n  imageRepositoryRef:\n    name: app{i}\n  policy:\n    alphabetical: {{}}\n"
            ));
        }
        stack.apply(&yaml).await;
        let storms = Self {
            host,
            password,
            next: 0,
            raging: false,
            until: None,
            storms: BTreeMap::new(),
        };
        (stack, storms)
    }

    /// Faults served, by kind.
    fn served(&self) -> BTreeMap<&'static str, usize> {
        let mut served = BTreeMap::new();
        for s in self.host.proxy().served() {
            *served.entry(s.fault.kind()).or_default() += 1;
        }
        served
    }

    /// The checks of registry faults: recorded, retried, no password.
    fn check(&self, stack: &Stack, services: &[Service]) -> String {
        let served = self.served();
        let total: usize = served.values().sum();
        let on_images = self
            .host
            .proxy()
            .served()
            .iter()
            .filter(|s| s.request.contains("/manifests/") || s.request.contains("/blobs/"))
            .count();
        let retried = log_lines(
            services,
            "scanner",
            &["tagrelay_scanner::registry", "retrying"],
        );
        let failed = failures(stack, "ScanFailed");
        let redelivered = failed
            .iter()
            .filter(|e| e["payload"]["attempt"].as_u64().unwrap_or(0) > 1)
            .count();
        let logged = log_lines(services, "scanner", &["scan failed"]);
        let rate_limited = log_lines(services, "scanner", &["registry asked to slow down"]);
        for kind in self.storms.keys() {
            assert!(
                served.contains_key(kind),
                "a {kind} storm served no fault: {served:?}"
            );
        }
        assert!(on_images > 0, "no fault hit a manifest or a blob");
        assert!(!failed.is_empty(), "no ScanFailed after {total} faults");
        let reasons = count_reasons(
            &failed,
            &["RegistryUnavailable", "RateLimited", "InvalidResponse"],
        );
        let max_attempts = tagrelay_scanner::ScannerSettings::default().max_attempts;
        let mut given_up = 0;
        for event in &failed {
            if event["payload"]["will_retry"] != true {
                given_up += 1;
                assert!(
                    event["payload"]["attempt"].as_u64() >= Some(max_attempts.into()),
                    "a scan given up before its last delivery: {event}"
                );
            }
        }
        assert_eq!(
            failed.len(),
            logged,
            "every failed scan the scanners logged is one ScanFailed"
        );
        assert!(
            failed.len() < total,
            "{} faults, {} ScanFailed: no fault was absorbed by a retry within the scan",
            total,
            failed.len()
        );
        assert!(retried > 0, "no request was retried within a scan");
        assert!(rate_limited > 0, "no scanner waited for a Retry-After");
        assert_nowhere(REGISTRY_USER, &self.password, stack, services);
        format!(
            "registry: storms={:?} faults={total} {served:?} on_manifests_and_blobs={on_images} requests_retried_in_scan={retried} retry_after_waits={rate_limited} scan_failed={} {reasons:?} redelivered_scans={redelivered} given_up_until_next_interval={given_up}",
            self.storms,
            failed.len()
        )
    }
}

impl Chaos for RegistryStorms {
    fn tick(&mut self, _: &Stack, _: &mut [Service], _: &mut Rng) {
        let now = Instant::now();
        if now < *self.until.get_or_insert(now + QUIET_FOR) {
            return;
        }
        if self.raging {
            self.host.proxy().calm();
            self.raging = false;
            self.until = Some(now + QUIET_FOR);
        } else {
            let storm = storms()[self.next % storms().len()].clone();
            *self.storms.entry(storm.faults[0].kind()).or_default() += 1;
            self.host.proxy().storm(storm);
            self.next += 1;
            self.raging = true;
            self.until = Some(now + FAULT_FOR);
        }
    }

    fn heal(&mut self, _: &Stack, _: &mut [Service]) {
        self.host.proxy().calm();
        self.raging = false;
    }

    fn report(&self) -> String {
        format!(
            "registry_storms={:?} faults={:?}",
            self.storms,
            self.served()
        )
    }

    fn verify(&mut self, stack: &Stack, services: &[Service], _: &History) {
        println!("faults: {}", self.check(stack, services));
    }
}

/// The pre-receive hook of the Git faults: refuses every push while
/// `reject` exists; while `race` exists, every other push first lands a
/// person's commit on the branch (a note appended to the file the bot is
/// updating, or every second time a new file under `docs/`), as a person
/// pushing between the bot's fetch and its push does. `human-count` counts
/// those commits.
const HOOK: &str = r##"#!/bin/sh
dir=$(git rev-parse --absolute-git-dir)
if [ -e "$dir/reject" ]; then
  echo "main is frozen for the release; try again later"
  exit 1
fi
[ -e "$dir/race" ] || exit 0
if [ -e "$dir/raced" ]; then
  rm -f "$dir/raced"
  exit 0
fi
read -r old new ref
[ "$ref" = refs/heads/main ] || exit 0
file=$(git diff --name-only "$old" "$new" | head -n 1)
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
n=$(( $(cat "$dir/human-count" 2>/dev/null || echo 0) + 1 ))
if [ $((n % 2)) -eq 0 ] || [ -z "$file" ]; then
  file="docs/notes-$n.md"
  blob=$(printf '# Note %s\n\nWritten by a person while the bot pushed.\n' "$n" | git hash-object -w --stdin)
else
  blob=$( (git cat-file blob "$old:$file"; echo "# human note $n") | git hash-object -w --stdin)
fi
export GIT_INDEX_FILE="$dir/race-index"
git read-tree "$old" && git update-index --add --cacheinfo "100644,$blob,$file" || exit 0
tree=$(git write-tree)
commit=$(GIT_AUTHOR_NAME=Human GIT_AUTHOR_EMAIL=human@example.com GIT_COMMITTER_NAME=Human GIT_COMMITTER_EMAIL=human@example.com git commit-tree "$tree" -p "$old" -m "human note $n on $file")
if git update-ref refs/heads/main "$commit" "$old"; then
  echo "$n" > "$dir/human-count"
  touch "$dir/raced"
fi
rm -f "$GIT_INDEX_FILE"
exit 0
"##;

/// Where the Git faults are in their cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GitPhase {
    Up,
    Down,
    Rejecting,
}

/// Git faults: the remote down ([`FAULT_FOR`]), up ([`QUIET_FOR`]), pushes
/// refused by the hook, up again, and so on; a person's commit racing every
/// bot push all along.
struct GitFaults {
    remote: HttpRemote,
    dir: PathBuf,
    password: String,
    phase: GitPhase,
    after_up: GitPhase,
    until: Option<Instant>,
    downs: usize,
    refusals: usize,
}

impl GitFaults {
    /// Serves the stack's remote over smart HTTP with basic auth, points
    /// the GitRepository there with a `secretRef`, and installs the hook.
    async fn new(stack: &Stack) -> Self {
        let password = password("git");
        let remote = HttpRemote::serve(&stack.repo.scratch(), Some((GIT_USER, &password)));
        write_secret(stack, "git-auth", "username", GIT_USER);
        write_secret(stack, "git-auth", "password", &password);
        stack
            .apply(&automation(&remote.url("remote.git")).replace(
                "  interval: 1m\n",
                "  interval: 1m\n  secretRef:\n    name: git-auth\n",
            ))
            .await;
        stack.repo.install_hook("pre-receive", HOOK);
        let dir = stack.repo.path();
        flag(&dir, "race", true);
        Self {
            remote,
            dir,
            password,
            phase: GitPhase::Up,
            after_up: GitPhase::Down,
            until: None,
            downs: 0,
            refusals: 0,
        }
    }

    /// How many human commits the hook landed.
    fn human_commits(&self) -> usize {
        std::fs::read_to_string(self.dir.join("human-count"))
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The checks of Git faults: recorded, retried, people's commits kept,
    /// no password.
    fn check(&self, stack: &Stack, services: &[Service], history: &History) -> String {
        let failed = failures(stack, "CommitFailed");
        // Remote down: unreachable. Hook refusing: rejected. A person's
        // commit before every other push, with the other committer pushing
        // to the same branch, can move it on every attempt: outraced.
        let reasons = count_reasons(&failed, &["GitUnavailable", "PushRejected", "BranchMoved"]);
        let count = |reason: &str| reasons.get(reason).copied().unwrap_or(0);
        let unreachable = count("GitUnavailable");
        let logged = log_lines(services, "committer", &["commit failed"]);
        let reapplied = log_lines(services, "committer", &["re-applying on the new tip"]);
        let humans = self.human_commits();
        for event in &failed {
            assert_eq!(event["payload"]["will_retry"], true, "{event}");
        }
        assert!(self.downs > 0 && self.refusals > 0, "{}", self.report());
        assert!(
            unreachable > 0,
            "no CommitFailed for the remote being down: {failed:#?}"
        );
        assert!(
            failed
                .iter()
                .any(|e| e["payload"]["reason"] == "PushRejected"
                    && e["payload"]["error"]
                        .as_str()
                        .is_some_and(|error| error.contains("main is frozen"))),
            "no CommitFailed for the refused pushes with the hook's words: {failed:#?}"
        );
        assert_eq!(
            failed.len(),
            logged,
            "every failure the committers logged is one CommitFailed"
        );
        assert!(humans > 0, "no human commit raced the bot");
        assert_eq!(
            history.human_commits, humans,
            "every human commit is on the branch"
        );
        assert!(reapplied > 0, "no bot push was re-applied after a race");
        assert_nowhere(GIT_USER, &self.password, stack, services);
        format!(
            "git: downs={} refusals={} commit_failed={} {reasons:?} human_commits={humans} reapplied_after_race={reapplied} overwritten={}",
            self.downs,
            self.refusals,
            failed.len(),
            history.overwritten
        )
    }
}

/// Creates or removes the flag file `name` of the hook.
fn flag(dir: &Path, name: &str, on: bool) {
    let path = dir.join(name);
    if on {
        std::fs::write(path, "").unwrap();
    } else {
        let _ = std::fs::remove_file(path);
    }
}

impl Chaos for GitFaults {
    fn tick(&mut self, _: &Stack, _: &mut [Service], _: &mut Rng) {
        let now = Instant::now();
        if now < *self.until.get_or_insert(now + QUIET_FOR) {
            return;
        }
        match self.phase {
            GitPhase::Up => {
                self.phase = self.after_up;
                match self.phase {
                    GitPhase::Down => {
                        self.remote.stop();
                        self.downs += 1;
                        self.after_up = GitPhase::Rejecting;
                    }
                    _ => {
                        flag(&self.dir, "reject", true);
                        self.refusals += 1;
                        self.after_up = GitPhase::Down;
                    }
                }
                self.until = Some(now + FAULT_FOR);
            }
            GitPhase::Down | GitPhase::Rejecting => {
                self.remote.start();
                flag(&self.dir, "reject", false);
                self.phase = GitPhase::Up;
                self.until = Some(now + QUIET_FOR);
            }
        }
    }

    fn heal(&mut self, _: &Stack, _: &mut [Service]) {
        self.remote.start();
        flag(&self.dir, "reject", false);
        flag(&self.dir, "race", false);
        self.phase = GitPhase::Up;
    }

    fn report(&self) -> String {
        format!(
            "git_downs={} git_refusals={} human_commits={}",
            self.downs,
            self.refusals,
            self.human_commits()
        )
    }

    fn verify(&mut self, stack: &Stack, services: &[Service], history: &History) {
        println!("faults: {}", self.check(stack, services, history));
    }
}

/// Registry storms and Git faults at once.
struct Both {
    registry: RegistryStorms,
    git: GitFaults,
}

impl Chaos for Both {
    fn tick(&mut self, stack: &Stack, services: &mut [Service], rng: &mut Rng) {
        self.registry.tick(stack, services, rng);
        self.git.tick(stack, services, rng);
    }

    fn heal(&mut self, stack: &Stack, services: &mut [Service]) {
        self.registry.heal(stack, services);
        self.git.heal(stack, services);
    }

    fn report(&self) -> String {
        format!("{} {}", self.registry.report(), self.git.report())
    }

    fn verify(&mut self, stack: &Stack, services: &[Service], history: &History) {
        println!(
            "faults: {} {}",
            self.registry.check(stack, services),
            self.git.check(stack, services, history)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_storms_are_retried_and_recorded() {
    let nats = NatsServer::start();
    let (stack, mut storms) = RegistryStorms::stack(&nats.url(), 3).await;
    soak(stack, 30, Duration::from_secs(30), &mut storms).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_faults_are_retried_and_recorded() {
    let nats = NatsServer::start();
    let stack = Stack::start(Setup::new(&nats.url(), 3)).await;
    let mut faults = GitFaults::new(&stack).await;
    soak(stack, 30, Duration::from_secs(30), &mut faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 1,000 pushes under registry and Git faults (run with --ignored)"]
async fn registry_and_git_faults_over_a_long_soak() {
    let nats = NatsServer::start();
    let (stack, registry) = RegistryStorms::stack(&nats.url(), 6).await;
    let git = GitFaults::new(&stack).await;
    let mut both = Both { registry, git };
    soak(stack, 1000, Duration::from_secs(600), &mut both).await;
}
