//! `tagrelay demo` and `tagrelay demo --review` end to end: the services as
//! processes and registry pushes; the commits and the notifications they
//! caused; on a review branch a signed commit that `git verify-commit`
//! accepts and the pull request it opened, followed by `why`. (`cargo test
//! --workspace` builds every binary the demo starts.)

use std::process::Command;

#[test]
fn the_review_demo_shows_a_signed_commit_and_the_pull_request_it_opened() {
    let out = Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(["demo", "--review"])
        .output()
        .expect("run tagrelay demo --review");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Good \"git\" signature for bot@example.com"),
        "{text}"
    );
    assert!(
        text.contains("pull request #1 image-updates -> main (open)"),
        "{text}"
    );
    assert!(
        text.contains("PullRequestOpened   #1 image-updates -> main"),
        "{text}"
    );
    assert!(text.contains("signed with ssh key SHA256:"), "{text}");
}

#[test]
fn the_demo_shows_commits_and_the_notifications_they_caused() {
    let out = Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .arg("demo")
        .output()
        .expect("run tagrelay demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("landed"), "{text}");
    assert!(
        text.contains("notifications to the generic webhook Provider (Flux's event JSON, header gotk-component: tagrelay-committer)"),
        "{text}"
    );
    assert!(
        text.contains("info ImageUpdateAutomation/fleet: pushed commit '"),
        "{text}"
    );
}
