//! Commit signatures made in-process, verified by `git verify-commit`
//! against keys made by `gpg` and `ssh-keygen` (no NATS needed): every
//! algorithm Flux takes, a passphrase, and the failures that must stop a
//! commit rather than let it go out unsigned.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use tagrelay_committer::credentials::SigningMaterial;
use tagrelay_committer::git::{self, CommitSpec, NewFile};
use tagrelay_committer::signing::{self, Signer, SigningError};
use tagrelay_proto::event::SignatureFormat;
use tagrelay_testkit::git::{BareRepo, Seed};
use tagrelay_testkit::signing::{GpgKey, SshKey};

/// A commit signed by `signer` on top of the seed, twice (the second
/// write must give the same id), returned with the repository.
fn signed_commit(signer: &Signer) -> (BareRepo, String) {
    let repo = BareRepo::seeded("main", &[Seed::file("a.yaml", "image: app:1.0.0\n")]);
    let tip = repo.tip("main").unwrap();
    let gix_repo = git::open_or_init(&repo.path()).unwrap().to_thread_local();
    let spec = CommitSpec {
        parent: tip.parse().unwrap(),
        merged_into: None,
        name: "tagrelay".into(),
        email: "bot@example.com".into(),
        time: 1_780_000_000,
        message: "Update app to 1.1.0\n".into(),
    };
    let files = [NewFile {
        path: "a.yaml".into(),
        executable: false,
        content: b"image: app:1.1.0\n".to_vec(),
    }];
    let (first, _) = git::write_commit(&gix_repo, &spec, &files, Some(signer)).unwrap();
    let (second, _) = git::write_commit(&gix_repo, &spec, &files, Some(signer)).unwrap();
    assert_eq!(first, second, "a signed commit re-made is the same commit");
    (repo, first.to_string())
}

/// The `gpgsig` header of `commit`, continuation lines unfolded.
fn gpgsig(repo: &BareRepo, commit: &str) -> String {
    let object = repo.git(&["cat-file", "commit", commit]);
    let (_, rest) = object.split_once("gpgsig ").expect("a gpgsig header");
    let header = rest.split("\n\n").next().unwrap();
    header.replace("\n ", "\n")
}

fn material(key: String, passphrase: Option<&str>) -> SigningMaterial {
    SigningMaterial {
        key,
        passphrase: passphrase.map(str::to_string),
    }
}

#[test]
fn openpgp_signatures_verify_with_gnupg_and_not_with_another_key() {
    let stranger = GpgKey::generate("Stranger <stranger@example.com>", "ed25519", "");
    for (algorithm, passphrase) in [("ed25519", ""), ("rsa3072", "s3cret"), ("nistp256", "")] {
        let key = GpgKey::generate("Bot <bot@example.com>", algorithm, passphrase);
        let passphrase = (!passphrase.is_empty()).then_some(passphrase);
        let signer = Signer::openpgp(
            "ns/bot".into(),
            &material(key.armored_secret_key(), passphrase),
        )
        .unwrap();
        assert_eq!(signer.id().format, SignatureFormat::Openpgp);
        assert_eq!(signer.id().fingerprint, key.fingerprint, "{algorithm}");
        let (repo, commit) = signed_commit(&signer);

        let (verified, said) = key.verify_commit(&repo.path(), &commit);
        assert!(verified, "{algorithm}: git verify-commit refused: {said}");
        assert!(said.contains("Good signature"), "{algorithm}: {said}");
        let (verified, said) = stranger.verify_commit(&repo.path(), &commit);
        assert!(
            !verified,
            "{algorithm}: verified without the signer's key: {said}"
        );

        assert_eq!(
            signing::signed_with(&gpgsig(&repo, &commit)).map(|s| s.fingerprint),
            Some(key.fingerprint.clone()),
            "{algorithm}: the signature names its key"
        );
    }
}

#[test]
fn ssh_signatures_verify_with_allowed_signers_and_not_for_another_key() {
    let stranger = SshKey::generate("ed25519", "");
    for (key_type, passphrase) in [("ed25519", ""), ("ecdsa", "s3cret"), ("rsa", "")] {
        let key = SshKey::generate(key_type, passphrase);
        let passphrase = (!passphrase.is_empty()).then_some(passphrase);
        let identity = std::fs::read_to_string(key.private_key()).unwrap();
        let signer = Signer::ssh("ns/bot".into(), &material(identity, passphrase)).unwrap();
        assert_eq!(signer.id().format, SignatureFormat::Ssh);
        assert_eq!(signer.id().fingerprint, key.fingerprint, "{key_type}");
        let (repo, commit) = signed_commit(&signer);

        let (verified, said) = key.verify_commit(&repo.path(), &commit);
        assert!(verified, "{key_type}: git verify-commit refused: {said}");
        assert!(
            said.contains("Good \"git\" signature"),
            "{key_type}: {said}"
        );
        let (verified, said) = stranger.verify_commit(&repo.path(), &commit);
        assert!(
            !verified,
            "{key_type}: verified for a key not allowed: {said}"
        );
        assert!(said.contains("No principal matched"), "{key_type}: {said}");
        assert_eq!(
            signing::signed_with(&gpgsig(&repo, &commit)).map(|s| s.fingerprint),
            Some(key.fingerprint.clone()),
            "{key_type}: the signature names its key"
        );
    }
}

#[test]
fn keys_that_cannot_sign_are_refused_with_the_reason_and_no_secret() {
    let gpg = GpgKey::generate("Bot <bot@example.com>", "ed25519", "right passphrase");
    let armored = gpg.armored_secret_key();
    let ssh = SshKey::generate("ed25519", "right passphrase");
    let identity = std::fs::read_to_string(ssh.private_key()).unwrap();
    let two_keys = format!(
        "{armored}\n{}",
        GpgKey::generate("Other <o@example.com>", "ed25519", "").armored_secret_key()
    );
    let cases: Vec<(&str, Result<Signer, SigningError>, &str)> = vec![
        (
            "gpg, wrong passphrase",
            Signer::openpgp(
                "ns/bot".into(),
                &material(armored.clone(), Some("wrong passphrase")),
            ),
            "passphrase does not unlock",
        ),
        (
            "gpg, no passphrase",
            Signer::openpgp("ns/bot".into(), &material(armored.clone(), None)),
            "no passphrase key",
        ),
        (
            "gpg, two keys",
            Signer::openpgp(
                "ns/bot".into(),
                &material(two_keys, Some("right passphrase")),
            ),
            "exactly one",
        ),
        (
            "ssh, wrong password",
            Signer::ssh(
                "ns/bot".into(),
                &material(identity.clone(), Some("wrong passphrase")),
            ),
            "does not decrypt",
        ),
        (
            "ssh, no password",
            Signer::ssh("ns/bot".into(), &material(identity, None)),
            "no password key",
        ),
        (
            "ssh key given as gpg",
            Signer::openpgp(
                "ns/bot".into(),
                &material(
                    std::fs::read_to_string(SshKey::generate("ed25519", "").private_key()).unwrap(),
                    None,
                ),
            ),
            "not an armored OpenPGP key",
        ),
    ];
    for (case, result, reason) in cases {
        let error = result.expect_err(case).to_string();
        assert!(error.contains(reason), "{case}: {error}");
        assert!(
            error.contains("ns/bot"),
            "{case}: names the Secret: {error}"
        );
        assert!(!error.contains("right passphrase"), "{case}: {error}");
        assert!(!error.contains("PRIVATE KEY"), "{case}: {error}");
    }
}
