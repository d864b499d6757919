//! `tagrelay audit` and `tagrelay why` over a real event log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::collections::BTreeMap;
use std::process::{Command, Output};

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::event::{
    tag_set_digest, CommitPushed, CommitSignature, ConfigObject, ConfigSynced, Envelope, Event,
    Failure, FailureReason, FileChange, ObjectRef, PolicyResolved, PullRequest, ResolveCause,
    ScanTrigger, SelectedImage, SignatureFormat, TagsDiscovered,
};
use tagrelay_testkit::NatsServer;

/// The SSH key fingerprint the recorded commit is signed with.
const SIGNER: &str = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";

fn tagrelay(server: &NatsServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(args)
        .env("NATS_URL", server.url())
        .output()
        .unwrap()
}

/// Publishes scan → resolve → commit, plus an unrelated failure; returns
/// the commit id.
async fn record_a_chain(server: &NatsServer) -> String {
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let tags = vec!["1.0.0".to_string(), "1.1.0".to_string()];
    let scan = Envelope::new(
        "scanner/a",
        Event::TagsDiscovered(TagsDiscovered {
            repository: ObjectRef::new("flux-system", "podinfo"),
            image: "registry.example/podinfo".into(),
            tag_set_digest: tag_set_digest(tags.iter().map(String::as_str)),
            tag_count: tags.len(),
            tags: Some(tags),
            tags_ref: None,
            previous_tag_set_digest: None,
            scanned_at: chrono::Utc::now(),
            trigger: ScanTrigger::Webhook,
            images: BTreeMap::new(),
        }),
    );
    let resolved = Envelope::caused_by(
        &scan,
        "resolver/a",
        Event::PolicyResolved(PolicyResolved {
            policy: ObjectRef::new("flux-system", "podinfo"),
            repository: ObjectRef::new("flux-system", "podinfo"),
            image: "registry.example/podinfo".into(),
            previous: Some(SelectedImage {
                tag: "1.0.0".into(),
                digest: None,
            }),
            current: SelectedImage {
                tag: "1.1.0".into(),
                digest: None,
            },
            cause: ResolveCause::TagsChanged,
            tag_set_digest: tag_set_digest(["1.0.0", "1.1.0"]),
        }),
    );
    let commit = "0123456789abcdef0123456789abcdef01234567".to_string();
    let pushed = Envelope::caused_by(
        &resolved,
        "committer/a",
        Event::CommitPushed(CommitPushed {
            automation: ObjectRef::new("flux-system", "fleet"),
            remote: "file:///srv/fleet.git".into(),
            branch: "main".into(),
            commit: commit.clone(),
            parent: Some("f".repeat(40)),
            changes: vec![FileChange {
                file: "apps/podinfo.yaml".into(),
                old: "registry.example/podinfo:1.0.0".into(),
                new: "registry.example/podinfo:1.1.0".into(),
                setter: "flux-system:podinfo".into(),
            }],
            causes: vec![resolved.id.clone()],
            signed_with: Some(CommitSignature {
                format: SignatureFormat::Ssh,
                fingerprint: SIGNER.into(),
            }),
        }),
    );
    let failure = Envelope::new(
        "scanner/a",
        Event::ScanFailed(Failure {
            object: ObjectRef::new("apps", "other"),
            error: "registry answered 503".into(),
            will_retry: true,
            attempt: 3,
            reason: FailureReason::RegistryUnavailable,
        }),
    );
    for event in [&scan, &resolved, &pushed, &failure] {
        bus.publish(event).await.unwrap();
    }
    commit
}

#[tokio::test]
async fn why_walks_from_the_commit_back_to_the_scan() {
    let server = NatsServer::start();
    let commit = record_a_chain(&server).await;
    let out = tagrelay(&server, &["why", &commit[..8]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let commit_at = text.find("CommitPushed").unwrap();
    let resolved_at = text.find("PolicyResolved").unwrap();
    let scan_at = text.find("TagsDiscovered").unwrap();
    assert!(commit_at < resolved_at && resolved_at < scan_at, "{text}");
    assert!(text.contains("1.0.0 -> 1.1.0"), "{text}");
    assert!(text.contains("a registry webhook"), "{text}");
    assert!(
        text.contains(&format!("signed with ssh key {SIGNER}")),
        "{text}"
    );
    assert!(
        text.contains(
            "apps/podinfo.yaml: registry.example/podinfo:1.0.0 -> registry.example/podinfo:1.1.0"
        ),
        "{text}"
    );

    let out = tagrelay(&server, &["why", "deadbeef"]);
    assert_eq!(out.status.code(), Some(1));
    let out = tagrelay(&server, &["why", "xyz"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn audit_prints_a_timeline_filtered_by_kind_and_name() {
    let server = NatsServer::start();
    record_a_chain(&server).await;
    let out = tagrelay(&server, &["audit"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "header + 4 events: {text}");
    for (line, event) in lines[1..].iter().zip([
        "TagsDiscovered",
        "PolicyResolved",
        "CommitPushed",
        "ScanFailed",
    ]) {
        assert!(line.contains(event), "oldest first: {text}");
    }
    assert!(lines[3].contains(&format!("signed ssh {SIGNER}")), "{text}");
    assert!(
        lines[4].contains("RegistryUnavailable: registry answered 503 (attempt 3, will retry)"),
        "{text}"
    );

    let out = tagrelay(&server, &["audit", "--kind", "failed"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    let out = tagrelay(&server, &["audit", "--name", "podinfo", "-o", "json"]);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["TagsDiscovered", "PolicyResolved"]);
    let out = tagrelay(&server, &["audit", "--since", "1h", "--kind", "commit"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = tagrelay(&server, &["audit", "--since", "2999-01-01T00:00:00Z"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().count(),
        1,
        "nothing after a future time: {text}"
    );
    let out = tagrelay(&server, &["audit", "--kind", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn why_follows_the_commit_to_the_pull_request_it_opened() {
    let server = NatsServer::start();
    let commit = record_a_chain(&server).await;
    let bus = Bus::connect(&server.url(), "committer/review", BusSettings::default())
        .await
        .unwrap();
    let pushed = tagrelay_testkit::events(&bus, "tagrelay.commit.>")
        .await
        .pop()
        .unwrap();
    let opened = Envelope::caused_by(
        &pushed,
        "committer/review",
        Event::PullRequestOpened(PullRequest {
            automation: ObjectRef::new("flux-system", "fleet"),
            provider: "github".into(),
            url: "https://github.example/org/fleet/pull/7".into(),
            number: 7,
            head: "image-updates".into(),
            base: "main".into(),
            commit: commit.clone(),
            title: "Update images from flux-system/fleet".into(),
            changes: Vec::new(),
        }),
    );
    bus.publish(&opened).await.unwrap();
    let out = tagrelay(&server, &["why", &commit[..8]]);
    let text = String::from_utf8_lossy(&out.stdout);
    let commit_at = text.find("CommitPushed").unwrap();
    let review_at = text
        .find("PullRequestOpened")
        .expect("why shows the request");
    assert!(commit_at < review_at, "{text}");
    assert!(
        text.contains("#7 image-updates -> main")
            && text.contains("https://github.example/org/fleet/pull/7"),
        "{text}"
    );
}

fn synced(commit: &str, applied: &[(&str, &str)]) -> Envelope {
    Envelope::new(
        "configsource/a",
        Event::ConfigSynced(ConfigSynced {
            source: "fleet".into(),
            repository: "file:///srv/config.git".into(),
            branch: "main".into(),
            commit: commit.into(),
            paths: vec!["clusters/images".into()],
            applied: applied
                .iter()
                .map(|(kind, name)| ConfigObject {
                    kind: kind.to_string(),
                    namespace: "flux-system".into(),
                    name: name.to_string(),
                })
                .collect(),
            deleted: Vec::new(),
            unchanged: Vec::new(),
            skipped: Vec::new(),
        }),
    )
}

#[tokio::test]
async fn why_names_the_configuration_commit_each_decision_was_made_under() {
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "test", BusSettings::default())
        .await
        .unwrap();
    let (automation_commit, policy_commit, later) =
        ("a".repeat(40), "b".repeat(40), "c".repeat(40));
    bus.publish(&synced(
        &automation_commit,
        &[
            ("ImageUpdateAutomation", "fleet"),
            ("ImagePolicy", "podinfo"),
        ],
    ))
    .await
    .unwrap();
    bus.publish(&synced(&policy_commit, &[("ImagePolicy", "podinfo")]))
        .await
        .unwrap();
    let commit = record_a_chain(&server).await;
    // A configuration change after the decision did not make it.
    bus.publish(&synced(&later, &[("ImagePolicy", "podinfo")]))
        .await
        .unwrap();

    let out = tagrelay(&server, &["why", &commit]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "config: ImageUpdateAutomation/flux-system/fleet as of configuration commit {automation_commit}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "config: ImagePolicy/flux-system/podinfo as of configuration commit {policy_commit}"
        )),
        "{text}"
    );
    assert!(!text.contains(&later), "{text}");

    let out = tagrelay(&server, &["audit", "--kind", "config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("ConfigSynced").count(), 3, "{text}");
}
