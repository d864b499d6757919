//! The event contract as a public API: `examples/subscriber/follow_commits.py`
//! (nats-py, another team's program in another language) follows
//! `CommitPushed` from its own durable consumer, and resumes after a
//! restart without repeating or missing a commit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::process::Command;

use tagrelay_proto::bus::{Bus, BusSettings};
use tagrelay_proto::event::{
    CommitPushed, Envelope, Event, FileChange, ObjectRef, PolicyResolved, ResolveCause,
    SelectedImage,
};
use tagrelay_testkit::NatsServer;

fn pushed(commit: char, tag: &str) -> Event {
    Event::CommitPushed(CommitPushed {
        automation: ObjectRef::new("flux-system", "fleet"),
        remote: "https://git.example/org/fleet.git".into(),
        branch: "main".into(),
        commit: commit.to_string().repeat(40),
        parent: None,
        changes: vec![FileChange {
            file: "apps/app.yaml".into(),
            old: "reg/app:1.0.0".into(),
            new: format!("reg/app:{tag}"),
            setter: "flux-system:app".into(),
        }],
        causes: Vec::new(),
        signed_with: None,
    })
}

fn follow(nats: &str, count: usize) -> Vec<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/subscriber/follow_commits.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args([
            "--nats-url",
            nats,
            "--durable",
            "compliance-archive",
            "--json",
            "--timeout",
            "5",
        ])
        .args(["--count", &count.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn a_python_subscriber_follows_commits_durably() {
    let server = NatsServer::start();
    let bus = Bus::connect(&server.url(), "committer/test", BusSettings::default())
        .await
        .unwrap();
    let other = Event::PolicyResolved(PolicyResolved {
        policy: ObjectRef::new("flux-system", "app"),
        repository: ObjectRef::new("flux-system", "app"),
        image: "reg/app".into(),
        previous: None,
        current: SelectedImage {
            tag: "1.1.0".into(),
            digest: None,
        },
        cause: ResolveCause::TagsChanged,
        tag_set_digest: "sha256:x".into(),
    });
    for event in [other, pushed('a', "1.1.0"), pushed('b', "1.2.0")] {
        bus.publish(&Envelope::new("test", event)).await.unwrap();
    }
    let first = follow(&server.url(), 2);
    let commits: Vec<&str> = first
        .iter()
        .map(|p| p["commit"].as_str().unwrap())
        .collect();
    assert_eq!(commits, ["a".repeat(40), "b".repeat(40)]);
    assert_eq!(first[1]["changes"][0]["new"], "reg/app:1.2.0");

    // Restarted: only what came since, nothing twice.
    bus.publish(&Envelope::new("test", pushed('c', "1.3.0")))
        .await
        .unwrap();
    let second = follow(&server.url(), 1);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["commit"], "c".repeat(40));
}
