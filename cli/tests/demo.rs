//! `tagrelay demo`, `tagrelay demo --review` and `tagrelay demo --gitops`
//! end to end: the services as processes and registry pushes; the commits
//! and the notifications they caused; on a review branch a signed commit
//! that `git verify-commit` accepts and the pull request it opened,
//! followed by `why`; with GitOps the configuration read from Git, the
//! bot's commits ignored, a broken configuration commit refused, and `why`
//! naming the configuration commit. (`cargo test --workspace` builds every
//! binary the demos start.)

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

#[test]
fn the_gitops_demo_reads_its_configuration_from_git_and_ignores_its_own_commits() {
    let out = Command::new(env!("CARGO_BIN_EXE_tagrelay"))
        .args(["demo", "--gitops"])
        .output()
        .expect("run tagrelay demo --gitops");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("not applied"), "{text}");
    assert!(
        text.contains("applied [GitRepository/flux-system/fleet, ImageRepository/flux-system/podinfo, ImagePolicy/flux-system/podinfo, ImageUpdateAutomation/flux-system/fleet, Provider/flux-system/webhook, Alert/flux-system/commits]"),
        "{text}"
    );
    // The notification kinds came from Git too, and work.
    assert!(
        text.contains("notifications to the generic webhook Provider"),
        "{text}"
    );
    // Four bot commits into the configuration repository, one sync.
    assert!(
        text.contains("4 commits of the bot in the same repository, 1 ConfigSynced"),
        "{text}"
    );
    assert!(
        text.contains("spec.policy.semver.range: invalid range"),
        "{text}"
    );
    assert!(text.contains("refused as a whole"), "{text}");
    assert!(
        text.contains("config: ImagePolicy/flux-system/podinfo as of configuration commit"),
        "{text}"
    );
    // The pipeline still works from the configuration in Git.
    assert!(text.contains("push → commit: 3 commits"), "{text}");
}
