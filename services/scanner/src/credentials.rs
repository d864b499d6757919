//! Registry credentials and TLS material, read from Secrets mounted as
//! directories (`<secrets-dir>/<namespace>/<name>/<key>`, the way Kubernetes
//! mounts a Secret), and the registry's `WWW-Authenticate` challenge.
//!
//! Credentials only ever live in memory here: they are not logged
//! ([`Credentials`]' `Debug` redacts them), not put in errors, and never
//! travel on the bus (configuration names the Secret, not its content).

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// How to authenticate to a registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials; a bearer token may still be obtained anonymously.
    #[default]
    Anonymous,
    /// Username and password: sent as HTTP basic auth, or to the token
    /// service when the registry asks for a bearer token.
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// A registry token used as the bearer token as is.
    Bearer(String),
    /// An OAuth2 refresh token (docker config `identitytoken`, a credential
    /// helper's `<token>` user): exchanged at the registry's token service
    /// for an access token.
    IdentityToken(String),
}

/// What a docker config says about one registry: credentials, or the
/// credential helper (`credHelpers` / `credsStore`) to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerCredentials {
    /// Credentials written in the config.
    Resolved(Credentials),
    /// `docker-credential-<name>` holds them.
    Helper(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// PEM material for TLS to one registry (`certSecretRef`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// CA certificates to trust, in addition to the system's.
    pub ca: Option<Vec<u8>>,
    /// Client certificate chain and private key, concatenated PEM.
    pub identity: Option<Vec<u8>>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An HTTP(S) proxy from a `proxySecretRef` Secret (`address`, optional
/// `username` and `password`), as Flux reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// `http://host:port` or `https://host:port`.
    pub address: String,
    /// Basic credentials for the proxy.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxySettings")
            .field("address", &self.address)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why a Secret could not be used. Never carries the Secret's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The Secret's directory or the expected file is missing: the Secret
    /// is not mounted or lacks the key.
    #[error("secret {secret}: no {expected} in {dir}")]
    Missing {
        /// `namespace/name`.
        secret: String,
        /// The file(s) looked for.
        expected: String,
        /// The directory looked in.
        dir: String,
    },
    /// A file exists but cannot be read (no permission, a directory in its
    /// place): the mount is broken, which adding keys will not fix.
    #[error("secret {secret}: {file} is there but cannot be read: {reason}")]
    Unreadable {
        /// `namespace/name`.
        secret: String,
        /// The file.
        file: String,
        /// The I/O error.
        reason: String,
    },
    /// The docker config is not valid JSON of the expected shape.
    #[error("secret {secret}: not a docker config.json: {reason}")]
    BadDockerConfig {
        /// `namespace/name`.
        secret: String,
        /// What is wrong (position, not content).
        reason: String,
    },
    /// A credential helper name that is not a plain name (it would run
    /// another program than `docker-credential-<name>`).
    #[error("secret {secret}: credential helper name {name:?} is not a plain name")]
    BadHelperName {
        /// `namespace/name`.
        secret: String,
        /// The name.
        name: String,
    },
    /// An `auth` entry is not base64 of `user:password`.
    #[error("secret {secret}: the auth entry for {registry} is not base64 of user:password")]
    BadAuthEntry {
        /// `namespace/name`.
        secret: String,
        /// The registry whose entry is bad.
        registry: String,
    },
    /// `tls.crt` without `tls.key` or the other way round.
    #[error("secret {secret}: a client certificate needs both tls.crt and tls.key")]
    HalfIdentity {
        /// `namespace/name`.
        secret: String,
    },
}

/// Where Secrets are mounted.
#[derive(Debug, Clone)]
pub struct SecretsDir {
    root: PathBuf,
}

impl SecretsDir {
    /// Secrets under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join(namespace).join(name)
    }

    /// The credentials for `registry` from the docker config in Secret
    /// `namespace/name` (key `.dockerconfigjson`, else `config.json`);
    /// anonymous when the config has no entry for the registry.
    pub fn credentials(
        &self,
        namespace: &str,
        name: &str,
        registry: &str,
    ) -> Result<DockerCredentials, CredentialsError> {
        let secret = format!("{namespace}/{name}");
        let dir = self.dir(namespace, name);
        let bytes = [".dockerconfigjson", "config.json"]
            .iter()
            .find_map(|file| read_optional(&dir.join(file), &secret).transpose())
            .transpose()?
            .ok_or_else(|| CredentialsError::Missing {
                secret: secret.clone(),
                expected: ".dockerconfigjson or config.json".into(),
                dir: dir.display().to_string(),
            })?;
        docker_config_credentials(&bytes, registry, &secret)
    }

    /// The TLS material of Secret `namespace/name`: `ca.crt`, `tls.crt` and
    /// `tls.key` (or Flux's older `caFile`, `certFile`, `keyFile`).
    pub fn tls(&self, namespace: &str, name: &str) -> Result<TlsMaterial, CredentialsError> {
        let secret = format!("{namespace}/{name}");
        let dir = self.dir(namespace, name);
        let read = |keys: [&str; 2]| -> Result<Option<Vec<u8>>, CredentialsError> {
            for key in keys {
                if let Some(bytes) = read_optional(&dir.join(key), &secret)? {
                    return Ok(Some(bytes));
                }
            }
            Ok(None)
        };
        let ca = read(["ca.crt", "caFile"])?;
        let cert = read(["tls.crt", "certFile"])?;
        let key = read(["tls.key", "keyFile"])?;
        let identity = match (cert, key) {
            (Some(mut cert), Some(key)) => {
                cert.push(b'\n');
                cert.extend_from_slice(&key);
                Some(cert)
            }
            (None, None) => None,
            _ => return Err(CredentialsError::HalfIdentity { secret }),
        };
        if ca.is_none() && identity.is_none() {
            return Err(CredentialsError::Missing {
                secret,
                expected: "ca.crt or tls.crt and tls.key".into(),
                dir: dir.display().to_string(),
            });
        }
        Ok(TlsMaterial { ca, identity })
    }

    /// The proxy in Secret `namespace/name` (`proxySecretRef`): `address`
    /// required, `username` and `password` together or not at all.
    pub fn proxy(&self, namespace: &str, name: &str) -> Result<ProxySettings, CredentialsError> {
        let secret = format!("{namespace}/{name}");
        let dir = self.dir(namespace, name);
        let text = |key: &str| -> Result<Option<String>, CredentialsError> {
            let path = dir.join(key);
            match read_optional(&path, &secret)? {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes)
                    .map(|t| Some(t.trim().to_string()))
                    .map_err(|_| CredentialsError::Unreadable {
                        secret: secret.clone(),
                        file: path.display().to_string(),
                        reason: "not UTF-8 text".into(),
                    }),
            }
        };
        let Some(address) = text("address")? else {
            return Err(CredentialsError::Missing {
                secret,
                expected: "address".into(),
                dir: dir.display().to_string(),
            });
        };
        let credentials = match (text("username")?, text("password")?) {
            (Some(username), Some(password)) => Some((username, password)),
            (None, None) => None,
            _ => {
                return Err(CredentialsError::Missing {
                    secret,
                    expected: "username and password together".into(),
                    dir: dir.display().to_string(),
                })
            }
        };
        Ok(ProxySettings {
            address,
            credentials,
        })
    }
}

fn read_optional(path: &Path, secret: &str) -> Result<Option<Vec<u8>>, CredentialsError> {
    read_secret_file(path).map_err(|e| CredentialsError::Unreadable {
        secret: secret.to_string(),
        file: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

/// The bytes of a mounted secret file: `None` when there is no such file,
/// an error when there is one that cannot be read (no permission, a
/// directory in its place). The one way the scanner reads secret files, so
/// that "not mounted" and "mounted but broken" are never confused.
pub fn read_secret_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The host a docker config key names: `https://ghcr.io/v1/` → `ghcr.io`.
fn config_key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// The Docker Hub's names, any of which a config may use.
const DOCKER_HUB: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

fn same_registry(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (DOCKER_HUB.contains(&a) && DOCKER_HUB.contains(&b))
}

/// The credentials a docker `config.json` holds for `registry`, in the
/// Docker CLI's order: the registry's `credHelpers` entry, else
/// `credsStore`, else its `auths` entry.
pub fn docker_config_credentials(
    bytes: &[u8],
    registry: &str,
    secret: &str,
) -> Result<DockerCredentials, CredentialsError> {
    let config: DockerConfig =
        serde_json::from_slice(bytes).map_err(|e| CredentialsError::BadDockerConfig {
            secret: secret.to_string(),
            reason: format!("line {} column {}", e.line(), e.column()),
        })?;
    let helper = config
        .cred_helpers
        .iter()
        .find(|(key, _)| same_registry(config_key_host(key), registry))
        .map(|(_, helper)| helper.clone())
        .or(config.creds_store.clone())
        .filter(|h| !h.is_empty());
    if let Some(name) = helper {
        let plain = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !name.starts_with('.');
        if !plain {
            return Err(CredentialsError::BadHelperName {
                secret: secret.to_string(),
                name,
            });
        }
        return Ok(DockerCredentials::Helper(name));
    }
    auths_credentials(&config, registry, secret).map(DockerCredentials::Resolved)
}

fn auths_credentials(
    config: &DockerConfig,
    registry: &str,
    secret: &str,
) -> Result<Credentials, CredentialsError> {
    let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| same_registry(config_key_host(key), registry))
        .map(|(_, entry)| entry)
    else {
        return Ok(Credentials::Anonymous);
    };
    if let Some(token) = entry.registrytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Credentials::Bearer(token.clone()));
    }
    if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Credentials::IdentityToken(token.clone()));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Credentials::Basic {
            username: username.clone(),
            password: password.clone(),
        });
    }
    if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
        let bad = || CredentialsError::BadAuthEntry {
            secret: secret.to_string(),
            registry: registry.to_string(),
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    Ok(Credentials::Anonymous)
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm="…",service="…",scope="…"`: get a token from `realm`.
    Bearer {
        /// The token service URL.
        realm: String,
        /// The `service` parameter, if given.
        service: Option<String>,
        /// The `scope` parameter, if given.
        scope: Option<String>,
    },
    /// `Basic realm="…"`: send the username and password.
    Basic,
}

/// Parses a `WWW-Authenticate` header value (RFC 7235 auth-params, quoted
/// or not, commas inside quotes kept). `None` for schemes other than Basic
/// and Bearer, or a Bearer challenge without a realm.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (name, value) in auth_params(params) {
        match name.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer {
        realm: realm.filter(|r| !r.is_empty())?,
        service,
        scope,
    })
}

fn auth_params(mut rest: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else {
            return params;
        };
        let name = rest[..eq].trim().to_string();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            out.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        params.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_entries_in_every_spelling() {
        let auth = base64::engine::general_purpose::STANDARD.encode("ci:pa:ss");
        let config = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "ghcr.io": {{"username": "u", "password": "p"}},
                "http://127.0.0.1:5000": {{"registrytoken": "tok"}},
                "empty.example": {{}},
                "acr.example": {{"auth": "{auth}", "identitytoken": "refresh"}}
            }}}}"#
        );
        let get = |r: &str| match docker_config_credentials(config.as_bytes(), r, "ns/s").unwrap() {
            DockerCredentials::Resolved(credentials) => credentials,
            DockerCredentials::Helper(name) => panic!("helper {name}"),
        };
        assert_eq!(
            get("docker.io"),
            Credentials::Basic {
                username: "ci".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(
            get("GHCR.io"),
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        assert_eq!(get("127.0.0.1:5000"), Credentials::Bearer("tok".into()));
        assert_eq!(get("empty.example"), Credentials::Anonymous);
        assert_eq!(get("quay.io"), Credentials::Anonymous);
        assert_eq!(
            get("acr.example"),
            Credentials::IdentityToken("refresh".into())
        );
    }

    #[test]
    fn credential_helpers_come_before_auths_and_must_be_plain_names() {
        let config =
            br#"{"auths": {"r.example": {"username": "u", "password": "p"}, "ghcr.io": {}},
            "credHelpers": {"r.example": "ecr-login"}, "credsStore": "pass"}"#;
        let get = |r: &str| docker_config_credentials(config, r, "ns/s").unwrap();
        assert_eq!(
            get("r.example"),
            DockerCredentials::Helper("ecr-login".into())
        );
        assert_eq!(get("ghcr.io"), DockerCredentials::Helper("pass".into()));
        for bad in ["../../bin/sh", "a/b", ".hidden", "x y"] {
            let config = format!(r#"{{"credsStore": "{bad}"}}"#);
            assert!(
                matches!(
                    docker_config_credentials(config.as_bytes(), "r", "ns/s"),
                    Err(CredentialsError::BadHelperName { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_configs_are_errors_without_their_content() {
        let err =
            docker_config_credentials(b"{\"auths\": {\"r\": {\"auth\": \"!!\"}}}", "r", "ns/s")
                .unwrap_err();
        assert!(matches!(err, CredentialsError::BadAuthEntry { .. }));
        let err = docker_config_credentials(b"{secret-stuff", "r", "ns/s").unwrap_err();
        assert!(!err.to_string().contains("secret-stuff"), "{err}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let basic = Credentials::Basic {
            username: "ci".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credentials::Bearer("tok-123".into())).contains("tok-123"));
        assert!(!format!("{:?}", Credentials::IdentityToken("tok-456".into())).contains("tok-456"));
        let tls = TlsMaterial {
            ca: None,
            identity: Some(b"PRIVATE KEY".to_vec()),
        };
        assert!(!format!("{tls:?}").contains("PRIVATE"));
    }

    #[test]
    fn secrets_are_read_from_mounted_directories() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("apps/regcred");
        std::fs::create_dir_all(&dir).unwrap();
        let secrets = SecretsDir::new(root.path());
        assert!(matches!(
            secrets.credentials("apps", "regcred", "r"),
            Err(CredentialsError::Missing { .. })
        ));
        std::fs::write(
            dir.join("config.json"),
            r#"{"auths": {"r": {"username": "a", "password": "b"}}}"#,
        )
        .unwrap();
        assert!(matches!(
            secrets.credentials("apps", "regcred", "r"),
            Ok(DockerCredentials::Resolved(Credentials::Basic { .. }))
        ));
        std::fs::write(dir.join(".dockerconfigjson"), r#"{"auths": {}}"#).unwrap();
        assert_eq!(
            secrets.credentials("apps", "regcred", "r"),
            Ok(DockerCredentials::Resolved(Credentials::Anonymous)),
            ".dockerconfigjson wins"
        );
        std::fs::write(dir.join("tls.crt"), "CERT").unwrap();
        assert!(matches!(
            secrets.tls("apps", "regcred"),
            Err(CredentialsError::HalfIdentity { .. })
        ));
        std::fs::write(dir.join("tls.key"), "KEY").unwrap();
        std::fs::write(dir.join("ca.crt"), "CA").unwrap();
        let tls = secrets.tls("apps", "regcred").unwrap();
        assert_eq!(tls.ca.as_deref(), Some(&b"CA"[..]));
        assert_eq!(tls.identity.as_deref(), Some(&b"CERT\nKEY"[..]));
    }

    #[test]
    fn a_missing_key_and_an_unreadable_key_are_different_errors() {
        let root = tempfile::tempdir().unwrap();
        let secrets = SecretsDir::new(root.path());
        // Missing: no directory at all, then a directory without the keys.
        for _ in 0..2 {
            assert!(matches!(
                secrets.credentials("apps", "regcred", "r"),
                Err(CredentialsError::Missing { .. })
            ));
            assert!(matches!(
                secrets.tls("apps", "regcred"),
                Err(CredentialsError::Missing { .. })
            ));
            std::fs::create_dir_all(root.path().join("apps/regcred")).unwrap();
        }
        // Unreadable: a directory in place of each key (tests run as root,
        // so permission bits would not stop a read).
        for key in [
            ".dockerconfigjson",
            "config.json",
            "ca.crt",
            "tls.crt",
            "tls.key",
        ] {
            let dir = root.path().join("apps").join(key);
            std::fs::create_dir_all(dir.join(key)).unwrap();
            // Fails where the key itself is the directory; that is the point.
            let _ = std::fs::write(dir.join("tls.crt"), "CERT");
            let _ = std::fs::write(dir.join("tls.key"), "s3cret KEY");
            let err = if key.contains("config") {
                secrets.credentials("apps", key, "r").unwrap_err()
            } else {
                secrets.tls("apps", key).unwrap_err()
            };
            assert!(
                matches!(&err, CredentialsError::Unreadable { secret, file, .. }
                    if secret == &format!("apps/{key}") && file.ends_with(key)),
                "{key}: {err:?}"
            );
            let text = err.to_string();
            assert!(
                text.contains("cannot be read") && !text.contains("s3cret"),
                "{text}"
            );
        }
        // A file where the Secret's directory should be: its keys cannot be
        // read, which is not the same as the Secret not being mounted.
        std::fs::write(root.path().join("apps/flat"), "x").unwrap();
        assert!(matches!(
            secrets.credentials("apps", "flat", "r"),
            Err(CredentialsError::Unreadable { .. })
        ));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=https://r/token, scope="repository:a:pull,push""#),
            Some(Challenge::Bearer {
                realm: "https://r/token".into(),
                service: None,
                scope: Some("repository:a:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge(""), None);
        assert_eq!(
            parse_challenge(r#"Bearer realm="a\"b""#),
            Some(Challenge::Bearer {
                realm: "a\"b".into(),
                service: None,
                scope: None
            })
        );
        assert!(parse_challenge("Bearer realm=\"unterminated").is_some());
    }
}
