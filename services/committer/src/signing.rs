//! Commit signatures, made in-process.
//!
//! Branch protection that requires signed commits is why teams cannot let
//! an unsigned bot push. `spec.git.commit.signingKey` names a Secret as Flux
//! defines it: `git.asc` (an ASCII-armored OpenPGP key) and an optional
//! `passphrase` for type `gpg` (the default), or `identity` (an OpenSSH
//! private key) and an optional `password` for type `ssh`. The signature is
//! made here, with rpgp and RustCrypto's `ssh-key`, so the service needs no
//! `gpg` or `ssh-keygen` binary and no agent, and it is deterministic: the
//! same commit signed twice gives the same bytes (the OpenPGP creation time
//! is the commit's time; Ed25519, RSA PKCS#1 v1.5 and RFC 6979 ECDSA use no
//! randomness), so a commit re-made after a crash has the same id.
//!
//! A key that cannot sign is an error naming the Secret and why, never a
//! commit without a signature.

use std::path::Path;

use pgp::composed::{ArmorOptions, Deserializable, DetachedSignature, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{KeyFlags, SignatureConfig, SignatureType, Subpacket, SubpacketData};
use pgp::types::{KeyDetails, Password, SigningKey, Timestamp};
use ssh_key::{HashAlg, LineEnding, PrivateKey};
use tagrelay_proto::event::{CommitSignature, SignatureFormat};

use crate::credentials::{self, CredentialsError, SigningMaterial};

/// The namespace of SSH signatures over Git objects (`ssh-keygen -Y sign
/// -n git`), which `git verify-commit` checks.
const SSH_NAMESPACE: &str = "git";

/// Why commits cannot be signed. Names the Secret and the reason, never
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The Secret is not mounted, lacks the key, or cannot be read.
    #[error("signing key: {0}")]
    Secret(#[from] CredentialsError),
    /// The key is there but cannot sign: unparseable, encrypted without
    /// (or with a wrong) passphrase, several keys, or no key that signs.
    #[error("signing key secret {secret}: {reason}")]
    Unusable {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong with the key.
        reason: String,
    },
    /// Making the signature itself failed.
    #[error("signing the commit with the key of secret {secret} failed: {reason}")]
    Sign {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The signer's error.
        reason: String,
    },
}

/// A key ready to sign commits, with the fingerprint `why` and `audit`
/// show. `Debug` shows the fingerprint only.
pub struct Signer {
    secret: String,
    key: SignerKey,
    id: CommitSignature,
}

enum SignerKey {
    OpenPgp {
        key: Box<SignedSecretKey>,
        /// Which key signs: the primary (`None`) or a signing subkey.
        subkey: Option<usize>,
        passphrase: Password,
    },
    Ssh(Box<PrivateKey>),
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({:?} {})", self.id.format, self.id.fingerprint)
    }
}

impl Signer {
    /// Loads the key of `spec.git.commit.signingKey` from the Secret
    /// `namespace/name` under `secrets_dir`; `key_type` is the field's
    /// `type` (`gpg` when absent, or `ssh`).
    pub fn load(
        secrets_dir: &Path,
        namespace: &str,
        name: &str,
        key_type: Option<&str>,
    ) -> Result<Signer, SigningError> {
        let secret = format!("{namespace}/{name}");
        match key_type {
            None | Some("gpg") => {
                let material = credentials::load_signing(
                    secrets_dir,
                    namespace,
                    name,
                    "git.asc",
                    "passphrase",
                )?;
                Signer::openpgp(secret, &material)
            }
            Some("ssh") => {
                let material = credentials::load_signing(
                    secrets_dir,
                    namespace,
                    name,
                    "identity",
                    "password",
                )?;
                Signer::ssh(secret, &material)
            }
            Some(other) => Err(SigningError::Unusable {
                secret,
                reason: format!("unknown signing key type {other:?} (gpg or ssh)"),
            }),
        }
    }

    /// An OpenPGP signer from an armored key: exactly one key, as Flux
    /// requires, unlocked now so that a wrong passphrase is found before
    /// anything is committed.
    pub fn openpgp(secret: String, material: &SigningMaterial) -> Result<Signer, SigningError> {
        let unusable = |reason: String| SigningError::Unusable {
            secret: secret.clone(),
            reason,
        };
        let blocks = material.key.matches("-----BEGIN PGP").count();
        if blocks > 1 {
            return Err(unusable(format!(
                "git.asc holds {blocks} armored blocks; it must hold exactly one key"
            )));
        }
        let (keys, _) = SignedSecretKey::from_armor_many(material.key.as_bytes())
            .map_err(|e| unusable(format!("git.asc is not an armored OpenPGP key: {e}")))?;
        let keys = keys
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unusable(format!("git.asc is not an armored OpenPGP key: {e}")))?;
        let key = match keys.as_slice() {
            [_] => keys.into_iter().next(),
            [] => None,
            _ => {
                return Err(unusable(format!(
                    "git.asc holds {} keys; it must hold exactly one",
                    keys.len()
                )))
            }
        };
        let Some(key) = key else {
            return Err(unusable(
                "git.asc holds no private key (export it with gpg --export-secret-keys)".into(),
            ));
        };
        let subkey = signing_subkey(&key).map_err(unusable)?;
        let passphrase = Password::from(material.passphrase.clone().unwrap_or_default());
        let locked = |e: pgp::errors::Error| {
            if material.passphrase.is_some() {
                unusable(format!("the passphrase does not unlock the key: {e}"))
            } else {
                unusable(
                    "the key is protected by a passphrase and the Secret has no passphrase key"
                        .into(),
                )
            }
        };
        let fingerprint = match subkey {
            None => {
                key.primary_key
                    .unlock(&passphrase, |_, _| Ok(()))
                    .and_then(|inner| inner)
                    .map_err(locked)?;
                key.primary_key.fingerprint()
            }
            Some(index) => {
                let sub = &key.secret_subkeys[index].key;
                sub.unlock(&passphrase, |_, _| Ok(()))
                    .and_then(|inner| inner)
                    .map_err(locked)?;
                sub.fingerprint()
            }
        };
        Ok(Signer {
            id: CommitSignature {
                format: SignatureFormat::Openpgp,
                fingerprint: hex::encode_upper(fingerprint.as_bytes()),
            },
            secret,
            key: SignerKey::OpenPgp {
                key: Box::new(key),
                subkey,
                passphrase,
            },
        })
    }

    /// An SSH signer from an OpenSSH private key, decrypted now with the
    /// Secret's `password` when the key has one.
    pub fn ssh(secret: String, material: &SigningMaterial) -> Result<Signer, SigningError> {
        let unusable = |reason: String| SigningError::Unusable {
            secret: secret.clone(),
            reason,
        };
        let key = PrivateKey::from_openssh(material.key.as_bytes()).map_err(|e| {
            unusable(format!(
                "identity is not an OpenSSH private key (ssh-keygen's format): {e}"
            ))
        })?;
        let key =
            match (key.is_encrypted(), &material.passphrase) {
                (false, _) => key,
                (true, Some(password)) => key.decrypt(password).map_err(|e| {
                    unusable(format!("the password does not decrypt the identity: {e}"))
                })?,
                (true, None) => return Err(unusable(
                    "the identity is protected by a passphrase and the Secret has no password key"
                        .into(),
                )),
            };
        if !matches!(
            key.algorithm(),
            ssh_key::Algorithm::Ed25519
                | ssh_key::Algorithm::Ecdsa { .. }
                | ssh_key::Algorithm::Rsa { .. }
        ) {
            return Err(unusable(format!(
                "{} keys cannot sign commits here (ed25519, ecdsa-sha2-nistp256/384/521 or rsa)",
                key.algorithm()
            )));
        }
        Ok(Signer {
            id: CommitSignature {
                format: SignatureFormat::Ssh,
                fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            },
            secret,
            key: SignerKey::Ssh(Box::new(key)),
        })
    }

    /// The key's identity as `CommitPushed` carries it.
    pub fn id(&self) -> &CommitSignature {
        &self.id
    }

    /// The armored signature of `payload` (the commit object without its
    /// `gpgsig` header), for the commit's `gpgsig` header. `time` is the
    /// commit's time, used as the OpenPGP signature's creation time.
    pub fn sign(&self, payload: &[u8], time: i64) -> Result<String, SigningError> {
        let failed = |reason: String| SigningError::Sign {
            secret: self.secret.clone(),
            reason,
        };
        match &self.key {
            SignerKey::Ssh(key) => {
                let signature = match key.key_data().rsa() {
                    Some(rsa) => rsa_sshsig(key, rsa, payload),
                    None => key.sign(SSH_NAMESPACE, HashAlg::Sha512, payload),
                };
                signature
                    .and_then(|signature| signature.to_pem(LineEnding::LF))
                    .map_err(|e| failed(e.to_string()))
            }
            SignerKey::OpenPgp {
                key,
                subkey,
                passphrase,
            } => {
                // Never before the key itself was made: GnuPG refuses such a
                // signature ("time conflict"), and a key can be newer than
                // the change a retried commit is dated by.
                let key_made = match subkey {
                    None => key.primary_key.created_at(),
                    Some(index) => key.secret_subkeys[*index].key.created_at(),
                };
                let at = u32::try_from(time.max(0)).unwrap_or(u32::MAX);
                let created = Timestamp::from_secs(at.max(key_made.as_secs()));
                let signature = match subkey {
                    None => openpgp_signature(&key.primary_key, passphrase, created, payload),
                    Some(index) => openpgp_signature(
                        &key.secret_subkeys[*index].key,
                        passphrase,
                        created,
                        payload,
                    ),
                }
                .map_err(|e| failed(e.to_string()))?;
                DetachedSignature::new(signature)
                    .to_armored_string(ArmorOptions::default())
                    .map_err(|e| failed(e.to_string()))
            }
        }
    }
}

/// Which key made `signature` (a commit's `gpgsig` header), read from
/// the signature itself: the issuer fingerprint of an OpenPGP signature,
/// the public key inside an SSH one. Lets a commit that landed before it
/// was announced be announced with the key that really signed it, even
/// after the Secret changed. `None` when it is neither.
pub fn signed_with(signature: &str) -> Option<CommitSignature> {
    if let Ok(ssh) = ssh_key::SshSig::from_pem(signature.as_bytes()) {
        return Some(CommitSignature {
            format: SignatureFormat::Ssh,
            fingerprint: ssh.public_key().fingerprint(HashAlg::Sha256).to_string(),
        });
    }
    let (parsed, _) = DetachedSignature::from_string(signature).ok()?;
    let fingerprint = parsed.signature.issuer_fingerprint().into_iter().next()?;
    Some(CommitSignature {
        format: SignatureFormat::Openpgp,
        fingerprint: hex::encode_upper(fingerprint.as_bytes()),
    })
}

/// An `rsa-sha2-512` SSH signature made with the `rsa` crate directly:
/// ssh-key 0.6.7's own RSA signer builds the private key from `p` twice
/// and always fails. The envelope is still ssh-key's.
fn rsa_sshsig(
    key: &PrivateKey,
    rsa: &ssh_key::private::RsaKeypair,
    payload: &[u8],
) -> Result<ssh_key::SshSig, ssh_key::Error> {
    use rsa::signature::{SignatureEncoding, Signer as _};
    let uint = |m: &ssh_key::Mpint| {
        m.as_positive_bytes()
            .map(rsa::BigUint::from_bytes_be)
            .ok_or(ssh_key::Error::Crypto)
    };
    let private = rsa::RsaPrivateKey::from_components(
        uint(&rsa.public.n)?,
        uint(&rsa.public.e)?,
        uint(&rsa.private.d)?,
        vec![uint(&rsa.private.p)?, uint(&rsa.private.q)?],
    )
    .map_err(|_| ssh_key::Error::Crypto)?;
    let signed = ssh_key::SshSig::signed_data(SSH_NAMESPACE, HashAlg::Sha512, payload)?;
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(private)
        .try_sign(&signed)
        .map_err(|_| ssh_key::Error::Crypto)?;
    let signature = ssh_key::Signature::new(
        ssh_key::Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        signature.to_vec(),
    )?;
    ssh_key::SshSig::new(
        key.public_key().key_data().clone(),
        SSH_NAMESPACE,
        HashAlg::Sha512,
        signature,
    )
}

/// A v4 binary signature over `payload` with the subpackets GnuPG writes
/// (creation time and issuer fingerprint hashed, issuer key id not), and
/// SHA-256 whatever the key's preference.
fn openpgp_signature<K: SigningKey + KeyDetails>(
    key: &K,
    passphrase: &Password,
    created: Timestamp,
    payload: &[u8],
) -> Result<pgp::packet::Signature, pgp::errors::Error> {
    let mut config = SignatureConfig::v4(
        SignatureType::Binary,
        key.algorithm(),
        HashAlgorithm::Sha256,
    );
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(created))?,
        Subpacket::regular(SubpacketData::IssuerFingerprint(key.fingerprint()))?,
    ];
    config.unhashed_subpackets = vec![Subpacket::regular(SubpacketData::IssuerKeyId(
        key.legacy_key_id(),
    ))?];
    config.sign(key, passphrase, payload)
}

/// Which key of `key` signs: the primary when it is a v4 key of a signing
/// algorithm whose self-signatures allow signing (or say nothing), else
/// the first such subkey. GnuPG 2.2 reads v4 keys only.
fn signing_subkey(key: &SignedSecretKey) -> Result<Option<usize>, String> {
    if key.primary_key.version() != pgp::types::KeyVersion::V4 {
        return Err(format!(
            "a {:?} OpenPGP key; git's GnuPG verifies v4 keys only",
            key.primary_key.version()
        ));
    }
    let flags: Vec<KeyFlags> = key
        .details
        .users
        .iter()
        .flat_map(|user| user.signatures.iter().map(|s| s.key_flags()))
        .collect();
    let primary_signs = key.primary_key.algorithm().can_sign()
        && (flags.iter().any(KeyFlags::sign) || flags.iter().all(|f| *f == KeyFlags::default()));
    if primary_signs {
        return Ok(None);
    }
    key.secret_subkeys
        .iter()
        .position(|sub| {
            sub.key.algorithm().can_sign() && sub.signatures.iter().any(|s| s.key_flags().sign())
        })
        .map(Some)
        .ok_or_else(|| "no key in git.asc may sign (none has the signing flag)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh_material(key: &str, passphrase: Option<&str>) -> SigningMaterial {
        SigningMaterial {
            key: key.to_string(),
            passphrase: passphrase.map(str::to_string),
        }
    }

    #[test]
    fn garbage_is_unusable_and_names_the_secret_not_the_key() {
        let material = ssh_material("not a key at all", None);
        for result in [
            Signer::ssh("ns/bot".into(), &material),
            Signer::openpgp("ns/bot".into(), &material),
        ] {
            let error = result.expect_err("garbage must not load").to_string();
            assert!(error.contains("ns/bot"), "{error}");
            assert!(!error.contains("not a key at all"), "{error}");
        }
    }
}
