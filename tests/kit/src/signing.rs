//! Signing keys made by the real tools, and verification by `git` itself.
//!
//! Tests prove a commit is signed the way Git users check it: keys come
//! from `gpg --quick-gen-key` (in a private `GNUPGHOME`) and `ssh-keygen`,
//! and verdicts from `git verify-commit` with that keyring or with
//! `gpg.ssh.allowedSignersFile`. A second, unrelated key of each kind lets
//! a test show that verification can fail.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A GnuPG home with one key in it, made for one test.
pub struct GpgKey {
    home: tempfile::TempDir,
    /// The key's fingerprint, 40 upper-case hex digits.
    pub fingerprint: String,
    passphrase: String,
}

impl GpgKey {
    /// Generates a key of `algorithm` (`ed25519`, `rsa3072`, …; `gpg
    /// --quick-gen-key`'s names) for `uid`, protected by `passphrase`
    /// (empty for none).
    pub fn generate(uid: &str, algorithm: &str, passphrase: &str) -> GpgKey {
        let home = tempfile::tempdir().expect("GNUPGHOME");
        {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o700);
            std::fs::set_permissions(home.path(), private).expect("chmod GNUPGHOME");
        }
        let key = GpgKey {
            home,
            fingerprint: String::new(),
            passphrase: passphrase.to_string(),
        };
        let made = key
            .gpg()
            .args([
                "--passphrase",
                passphrase,
                "--quick-gen-key",
                uid,
                algorithm,
                "sign",
                "never",
            ])
            .output()
            .expect("run gpg");
        assert!(
            made.status.success(),
            "gpg --quick-gen-key failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let listed = key
            .gpg()
            .args(["--with-colons", "--list-secret-keys"])
            .output()
            .expect("run gpg");
        let fingerprint = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .find_map(|line| {
                line.strip_prefix("fpr:")
                    .map(|rest| rest.trim_matches(':').to_string())
            })
            .expect("a fingerprint in gpg --list-secret-keys");
        GpgKey { fingerprint, ..key }
    }

    /// `gpg` in this home, batch mode, no pinentry.
    fn gpg(&self) -> Command {
        let mut command = Command::new("gpg");
        command
            .env("GNUPGHOME", self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback"]);
        command
    }

    /// The GnuPG home, for `git verify-commit`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The ASCII-armored secret key, as a Flux `git.asc` holds it.
    pub fn armored_secret_key(&self) -> String {
        let exported = self
            .gpg()
            .args([
                "--passphrase",
                &self.passphrase,
                "--armor",
                "--export-secret-keys",
            ])
            .output()
            .expect("run gpg");
        assert!(exported.status.success(), "gpg --export-secret-keys failed");
        String::from_utf8(exported.stdout).expect("armored text")
    }

    /// `git verify-commit` of `commit` in `repo` with this keyring: whether
    /// it verified, and what git and gpg said.
    pub fn verify_commit(&self, repo: &Path, commit: &str) -> (bool, String) {
        let out = Command::new("git")
            .env("GNUPGHOME", self.home.path())
            .arg("-C")
            .arg(repo)
            .args(["verify-commit", "-v", commit])
            .output()
            .expect("run git verify-commit");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// An SSH key pair made by `ssh-keygen` in a temporary directory.
pub struct SshKey {
    dir: tempfile::TempDir,
    /// `ssh-keygen -l`'s fingerprint, `SHA256:…`.
    pub fingerprint: String,
}

impl SshKey {
    /// Generates a key of `key_type` (`ed25519`, `ecdsa`, `rsa`) with
    /// `passphrase` (empty for none).
    pub fn generate(key_type: &str, passphrase: &str) -> SshKey {
        let dir = tempfile::tempdir().expect("key directory");
        let path = dir.path().join("id");
        let made = Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                key_type,
                "-N",
                passphrase,
                "-C",
                "bot@example.com",
                "-f",
            ])
            .arg(&path)
            .output()
            .expect("run ssh-keygen");
        assert!(made.status.success(), "ssh-keygen failed");
        let listed = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(path.with_extension("pub"))
            .output()
            .expect("run ssh-keygen -l");
        let fingerprint = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .nth(1)
            .expect("a fingerprint in ssh-keygen -l")
            .to_string();
        SshKey { dir, fingerprint }
    }

    /// The private key file (OpenSSH format), as a Flux `identity`.
    pub fn private_key(&self) -> PathBuf {
        self.dir.path().join("id")
    }

    /// `git verify-commit` of `commit` in `repo` with an allowed-signers
    /// file that admits only this key for `bot@example.com`.
    pub fn verify_commit(&self, repo: &Path, commit: &str) -> (bool, String) {
        let public = std::fs::read_to_string(self.dir.path().join("id.pub")).expect("public key");
        let allowed = self.dir.path().join("allowed_signers");
        std::fs::write(
            &allowed,
            format!("bot@example.com namespaces=\"git\" {}\n", public.trim()),
        )
        .expect("write allowed_signers");
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .arg("-c")
            .arg(format!("gpg.ssh.allowedSignersFile={}", allowed.display()))
            .args(["verify-commit", "-v", commit])
            .output()
            .expect("run git verify-commit");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}
