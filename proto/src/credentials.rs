//! Credentials from mounted Secret files: Git's (and how the `git` CLI is
//! handed them), signing keys' and forges'. Shared by the committer and the
//! configuration source, which both run `git` against remotes a Secret
//! opens.
//!
//! A GitRepository's `secretRef` names a directory
//! `<secrets-dir>/<namespace>/<name>/` holding the keys of Flux's Git Secret:
//! `identity` (+ `known_hosts`) for SSH, `username` + `password` for HTTPS
//! basic auth, or `bearerToken`. The values never leave the files except
//! into the Git transport itself: fetches hand them to gix in memory, and
//! pushes reach `git` through `GIT_ASKPASS` (a script that reads the files),
//! `GIT_SSH_COMMAND` (paths only) or `GIT_CONFIG_*` variables; never a URL,
//! an argument or a log line. `Debug` of a credential shows no secret.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use base64::Engine;

/// Why a Secret could not be used. Names the Secret and the key, never a
/// value, so it can go into a status and a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The `secretRef` cannot name a directory (empty, `..`, a slash).
    #[error("secret {namespace}/{name}: not a valid Secret name")]
    InvalidName {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Nothing usable is mounted: no directory, or not the keys a Git
    /// Secret needs. Fixed by mounting or completing the Secret.
    #[error("secret {namespace}/{name}: {reason}")]
    Missing {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is missing.
        reason: String,
    },
    /// A key's file is there but cannot be read: a directory in its place,
    /// no permission, or not UTF-8 text where text is expected. Fixed by
    /// repairing the mount, not by adding keys.
    #[error("secret {namespace}/{name}: key {key} is there but cannot be read: {reason}")]
    Unreadable {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key (file name) that cannot be read.
        key: String,
        /// Why, from the file system (never the content).
        reason: String,
    },
}

/// How to authenticate to a Git remote.
#[derive(Clone, PartialEq, Eq)]
pub enum GitAuth {
    /// No credentials (public remote, `file://`).
    Anonymous,
    /// HTTPS basic auth; `dir` holds the `username` and `password` files.
    Basic {
        /// The Secret's directory.
        dir: PathBuf,
        /// The user name.
        username: String,
        /// The password or token.
        password: String,
    },
    /// An HTTP `Authorization: Bearer` token.
    Bearer {
        /// The token.
        token: String,
    },
    /// SSH with a private key file and, when given, a known_hosts file.
    Ssh {
        /// Path of the private key.
        identity: PathBuf,
        /// Path of the known_hosts file.
        known_hosts: Option<PathBuf>,
        /// The Secret's directory when it holds the key's passphrase
        /// (`password`), which the askpass script answers ssh with.
        passphrase_dir: Option<PathBuf>,
    },
}

impl fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitAuth::Anonymous => f.write_str("Anonymous"),
            GitAuth::Basic { dir, .. } => write!(f, "Basic({})", dir.display()),
            GitAuth::Bearer { .. } => f.write_str("Bearer(…)"),
            GitAuth::Ssh { identity, .. } => write!(f, "Ssh({})", identity.display()),
        }
    }
}

/// One mounted Secret: its directory and name, to read keys from and to
/// name in errors.
struct Secret<'a> {
    dir: PathBuf,
    namespace: &'a str,
    name: &'a str,
}

impl Secret<'_> {
    fn missing(&self, reason: String) -> CredentialsError {
        CredentialsError::Missing {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            reason,
        }
    }

    fn unreadable(&self, key: &str, reason: String) -> CredentialsError {
        CredentialsError::Unreadable {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            key: key.to_string(),
            reason,
        }
    }

    /// The open file of `key`: `None` when the Secret has no such key, an
    /// error when the file is there but is not a readable regular file.
    fn open(&self, key: &str) -> Result<Option<(PathBuf, File)>, CredentialsError> {
        let path = self.dir.join(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.unreadable(key, e.kind().to_string())),
        };
        match file.metadata() {
            Ok(meta) if meta.is_file() => Ok(Some((path, file))),
            Ok(meta) if meta.is_dir() => {
                Err(self.unreadable(key, "a directory, not a file".into()))
            }
            Ok(_) => Err(self.unreadable(key, "not a regular file".into())),
            Err(e) => Err(self.unreadable(key, e.kind().to_string())),
        }
    }

    /// The path of `key`, for keys handed to `ssh` by path; checked to be a
    /// readable file now so that a broken mount is reported as such.
    fn path(&self, key: &str) -> Result<Option<PathBuf>, CredentialsError> {
        Ok(self.open(key)?.map(|(path, _)| path))
    }

    /// The text of `key` without its final line break (`kubectl create
    /// secret --from-file` keeps one).
    fn text(&self, key: &str) -> Result<Option<String>, CredentialsError> {
        let Some((_, mut file)) = self.open(key)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| self.unreadable(key, e.kind().to_string()))?;
        let text =
            String::from_utf8(bytes).map_err(|_| self.unreadable(key, "not UTF-8 text".into()))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        Ok(Some(value.to_string()))
    }
}

/// Loads the Secret `namespace/name` from `secrets_dir`: SSH when it has
/// `identity`, else `bearerToken`, else `username` + `password`. A key
/// that is absent and a key that is there but unreadable are different
/// errors, since they are fixed differently.
pub fn load(secrets_dir: &Path, namespace: &str, name: &str) -> Result<GitAuth, CredentialsError> {
    let secret = mounted(secrets_dir, namespace, name)?;
    let auth = auth_of(&secret)?;
    if auth == GitAuth::Anonymous && tls_of(&secret)? == GitTls::default() {
        return Err(secret.missing(
            "holds none of identity, bearerToken, username and password, or ca.crt / tls.crt and tls.key".into(),
        ));
    }
    Ok(auth)
}

/// The TLS files of the Secret `namespace/name` (`ca.crt`, and `tls.crt`
/// with `tls.key` for a client certificate), as Flux's Git Secret holds
/// them beside the credentials.
pub fn load_tls(
    secrets_dir: &Path,
    namespace: &str,
    name: &str,
) -> Result<GitTls, CredentialsError> {
    tls_of(&mounted(secrets_dir, namespace, name)?)
}

/// TLS for an HTTPS remote with a private CA or a client certificate:
/// paths only, read by the transport itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitTls {
    /// CA certificates (PEM) to trust besides the system's.
    pub ca: Option<PathBuf>,
    /// The client certificate and its key (PEM).
    pub client: Option<(PathBuf, PathBuf)>,
}

fn tls_of(secret: &Secret<'_>) -> Result<GitTls, CredentialsError> {
    let client = match (secret.path("tls.crt")?, secret.path("tls.key")?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(secret.missing("has one of tls.crt and tls.key, not both".into())),
    };
    Ok(GitTls {
        ca: secret.path("ca.crt")?,
        client,
    })
}

fn auth_of(secret: &Secret<'_>) -> Result<GitAuth, CredentialsError> {
    if let Some(identity) = secret.path("identity")? {
        return Ok(GitAuth::Ssh {
            identity,
            known_hosts: secret.path("known_hosts")?,
            passphrase_dir: secret.path("password")?.map(|_| secret.dir.clone()),
        });
    }
    if let Some(token) = secret.text("bearerToken")? {
        return Ok(GitAuth::Bearer { token });
    }
    match (secret.text("username")?, secret.text("password")?) {
        (Some(username), Some(password)) => Ok(GitAuth::Basic {
            dir: secret.dir.clone(),
            username,
            password,
        }),
        (Some(_), None) => Err(secret.missing("has username but no password".into())),
        (None, Some(_)) => Err(secret.missing("has password but no username".into())),
        (None, None) => Ok(GitAuth::Anonymous),
    }
}

/// A commit signing key as the Secret holds it: the key's text (`git.asc`
/// or `identity`) and, when present, its passphrase (`passphrase` or
/// `password`). Lives in memory only: `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningMaterial {
    /// The private key, ASCII-armored OpenPGP or OpenSSH.
    pub key: String,
    /// The key's passphrase.
    pub passphrase: Option<String>,
}

impl fmt::Debug for SigningMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningMaterial(<redacted>)")
    }
}

/// Loads the signing Secret `namespace/name`: the file `key_file` is
/// required, `passphrase_file` optional (Flux's keys: `git.asc` +
/// `passphrase` for OpenPGP, `identity` + `password` for SSH).
pub fn load_signing(
    secrets_dir: &Path,
    namespace: &str,
    name: &str,
    key_file: &str,
    passphrase_file: &str,
) -> Result<SigningMaterial, CredentialsError> {
    let secret = mounted(secrets_dir, namespace, name)?;
    let Some(key) = secret.text(key_file)? else {
        return Err(secret.missing(format!("has no {key_file}")));
    };
    Ok(SigningMaterial {
        key,
        passphrase: secret.text(passphrase_file)?,
    })
}

/// A forge's credentials for opening pull requests, from the Secret the
/// `tagrelay.dev/pull-request` annotation names: a `token`, or a GitHub
/// App (`githubAppID`, `githubAppInstallationID`, `githubAppPrivateKey`, as
/// Flux's GitHub App Secrets hold them). `Debug` shows no secret.
#[derive(Clone, PartialEq, Eq)]
pub enum ForgeCredentials {
    /// A personal, project or bot access token.
    Token(String),
    /// A GitHub App installation, whose short-lived token is asked for
    /// with a JWT signed by the App's key.
    GithubApp {
        /// The App's id.
        app_id: String,
        /// The installation's id.
        installation_id: String,
        /// The App's private key, PEM.
        private_key: String,
    },
}

impl fmt::Debug for ForgeCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForgeCredentials::Token(_) => f.write_str("Token(<redacted>)"),
            ForgeCredentials::GithubApp { app_id, .. } => write!(f, "GithubApp({app_id})"),
        }
    }
}

/// Loads the forge Secret `namespace/name`: `token`, else the three GitHub
/// App keys together.
pub fn load_forge(
    secrets_dir: &Path,
    namespace: &str,
    name: &str,
) -> Result<ForgeCredentials, CredentialsError> {
    let secret = mounted(secrets_dir, namespace, name)?;
    if let Some(token) = secret.text("token")? {
        return Ok(ForgeCredentials::Token(token));
    }
    match (
        secret.text("githubAppID")?,
        secret.text("githubAppInstallationID")?,
        secret.text("githubAppPrivateKey")?,
    ) {
        (Some(app_id), Some(installation_id), Some(private_key)) => Ok(ForgeCredentials::GithubApp {
            app_id,
            installation_id,
            private_key,
        }),
        (None, None, None) => Err(secret.missing(
            "has no token (nor githubAppID, githubAppInstallationID and githubAppPrivateKey)".into(),
        )),
        _ => Err(secret.missing(
            "has some of githubAppID, githubAppInstallationID and githubAppPrivateKey, not all three"
                .into(),
        )),
    }
}

/// Everything needed to reach a Git remote: its credentials and the proxy
/// in between, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitAccess {
    /// How to authenticate to the remote.
    pub auth: GitAuth,
    /// The HTTP(S) proxy to go through.
    pub proxy: Option<GitProxy>,
    /// A private CA or a client certificate for an HTTPS remote.
    pub tls: GitTls,
    /// The askpass script that answers prompts from the Secret's files.
    pub askpass: PathBuf,
}

/// An HTTP(S) proxy for Git (`GitRepository.spec.proxySecretRef`), as the
/// proxy URL Git and gix take, with its credentials in it. Lives in memory
/// only: `Debug` shows no part of it.
#[derive(Clone, PartialEq, Eq)]
pub struct GitProxy(String);

impl GitProxy {
    /// The proxy URL, `http://user:password@host:port`, for `http.proxy`.
    pub fn url(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GitProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GitProxy(<redacted>)")
    }
}

/// Loads the proxy Secret `namespace/name`: `address` required,
/// `username` and `password` together or not at all.
pub fn load_proxy(
    secrets_dir: &Path,
    namespace: &str,
    name: &str,
) -> Result<GitProxy, CredentialsError> {
    let secret = mounted(secrets_dir, namespace, name)?;
    let Some(address) = secret.text("address")? else {
        return Err(secret.missing("has no address".into()));
    };
    let mut url = url::Url::parse(&address).map_err(|e| CredentialsError::Unreadable {
        namespace: namespace.to_string(),
        name: name.to_string(),
        key: "address".into(),
        reason: format!("not a URL: {e}"),
    })?;
    match (secret.text("username")?, secret.text("password")?) {
        (Some(username), Some(password)) => {
            let set =
                url.set_username(&username).is_ok() && url.set_password(Some(&password)).is_ok();
            if !set {
                return Err(secret.missing("address cannot carry a username and password".into()));
            }
        }
        (None, None) => {}
        _ => return Err(secret.missing("has one of username and password, not both".into())),
    }
    Ok(GitProxy(url.to_string()))
}

/// The mounted directory of Secret `namespace/name`, checked to be one.
fn mounted<'a>(
    secrets_dir: &Path,
    namespace: &'a str,
    name: &'a str,
) -> Result<Secret<'a>, CredentialsError> {
    if [namespace, name]
        .iter()
        .any(|part| part.is_empty() || part.contains(['/', '\\']) || *part == "..")
    {
        return Err(CredentialsError::InvalidName {
            namespace: namespace.to_string(),
            name: name.to_string(),
        });
    }
    let secret = Secret {
        dir: secrets_dir.join(namespace).join(name),
        namespace,
        name,
    };
    match std::fs::metadata(&secret.dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(secret.missing(format!(
                "{} is not a directory (mount the Secret there)",
                secret.dir.display()
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(secret.missing(format!(
                "no directory {} (mount the Secret there)",
                secret.dir.display()
            )))
        }
        Err(e) => {
            return Err(secret.missing(format!(
                "cannot open the directory {}: {}",
                secret.dir.display(),
                e.kind()
            )))
        }
    }
    Ok(secret)
}

/// The base64 of `username:password` that follows `Basic ` in an HTTP
/// `Authorization` header (RFC 7617), through the `base64` crate. Public so
/// that tests can look for it where it must never appear.
pub fn basic_credentials(username: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
}

/// The environment variable the askpass script reads the Secret's
/// directory from.
pub const SECRET_DIR_ENV: &str = "TAGRELAY_GIT_SECRET_DIR";

const ASKPASS: &str = "#!/bin/sh\n# Written by tagrelay: answers git's credential prompts from the\n# mounted Secret named by $TAGRELAY_GIT_SECRET_DIR. Holds no secret itself.\ncase \"$1\" in\n  [Uu]sername*) exec cat \"$TAGRELAY_GIT_SECRET_DIR/username\" ;;\n  *) exec cat \"$TAGRELAY_GIT_SECRET_DIR/password\" ;;\nesac\n";

/// Writes the askpass script under `dir` (idempotent) and returns its path.
pub fn ensure_askpass(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join("tagrelay-askpass.sh");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(ASKPASS) {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("tagrelay-askpass.{}.tmp", std::process::id()));
        std::fs::write(&tmp, ASKPASS)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// The `ssh` command line for a Secret's key: paths only, never key
/// material; strict host checking when known_hosts is given.
///
/// A key with a passphrase (`passphrase`: the askpass script and the
/// Secret's directory) is unlocked by ssh asking the script, which prints
/// the Secret's `password` file; no other prompt is allowed.
pub fn ssh_command(
    identity: &Path,
    known_hosts: Option<&Path>,
    passphrase: Option<(&Path, &Path)>,
) -> String {
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let mut command = match passphrase {
        Some((askpass, dir)) => format!(
            "SSH_ASKPASS={} SSH_ASKPASS_REQUIRE=force {SECRET_DIR_ENV}={} ssh -F /dev/null -o IdentitiesOnly=yes -o BatchMode=no -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o NumberOfPasswordPrompts=1 -i {}",
            quote(askpass),
            quote(dir),
            quote(identity)
        ),
        None => format!(
            "ssh -F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes -i {}",
            quote(identity)
        ),
    };
    match known_hosts {
        Some(path) => command.push_str(&format!(
            " -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
            quote(path)
        )),
        None => command.push_str(" -o StrictHostKeyChecking=accept-new"),
    }
    command
}

/// The environment that lets the `git` CLI reach a remote with `access`,
/// for `Command::envs`: TLS files as Git's own `GIT_SSL_*` variables (they
/// win over any the process inherited), basic auth through the askpass
/// script at `askpass` reading the Secret's files, SSH through
/// `GIT_SSH_COMMAND` (paths only), and the proxy and a bearer token as
/// `GIT_CONFIG_*` configuration. Secrets go through the environment only,
/// never an argument or a URL.
pub fn git_cli_environment(
    access: &GitAccess,
    askpass: &Path,
) -> Vec<(String, std::ffi::OsString)> {
    let mut env: Vec<(String, std::ffi::OsString)> = Vec::new();
    let mut set = |key: &str, value: std::ffi::OsString| env.push((key.to_string(), value));
    let mut config: Vec<(&str, String)> = Vec::new();
    if let Some(proxy) = &access.proxy {
        config.push(("http.proxy", proxy.url().to_string()));
    }
    if let Some(ca) = &access.tls.ca {
        set("GIT_SSL_CAINFO", ca.into());
    }
    if let Some((cert, key)) = &access.tls.client {
        set("GIT_SSL_CERT", cert.into());
        set("GIT_SSL_KEY", key.into());
    }
    match &access.auth {
        GitAuth::Anonymous => {}
        GitAuth::Basic { dir, .. } => {
            set("GIT_ASKPASS", askpass.into());
            set(SECRET_DIR_ENV, dir.into());
        }
        GitAuth::Bearer { token } => {
            config.push(("http.extraHeader", format!("Authorization: Bearer {token}")));
        }
        GitAuth::Ssh {
            identity,
            known_hosts,
            passphrase_dir,
        } => {
            let passphrase = passphrase_dir.as_deref().map(|dir| (askpass, dir));
            set(
                "GIT_SSH_COMMAND",
                ssh_command(identity, known_hosts.as_deref(), passphrase).into(),
            );
        }
    }
    set("GIT_CONFIG_COUNT", config.len().to_string().into());
    for (i, (key, value)) in config.into_iter().enumerate() {
        set(&format!("GIT_CONFIG_KEY_{i}"), key.into());
        set(&format!("GIT_CONFIG_VALUE_{i}"), value.into());
    }
    env
}

/// Removes credentials from a URL, for events and logs: all user info of an
/// HTTP(S) URL (a token may be the user name), the password of any other
/// (`ssh://git@host` keeps its user, which is not a secret).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let host = &rest[at + 1..];
    if scheme.starts_with("http") {
        return format!("{scheme}://{host}");
    }
    let user = rest[..at].split(':').next().unwrap_or("");
    format!("{scheme}://{user}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_read_by_flux_key_names_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let basic = dir.path().join("ns/basic");
        std::fs::create_dir_all(&basic).unwrap();
        std::fs::write(basic.join("username"), "bot\n").unwrap();
        std::fs::write(basic.join("password"), "s3cret\n").unwrap();
        let auth = load(dir.path(), "ns", "basic").unwrap();
        assert!(
            matches!(&auth, GitAuth::Basic { username, password, .. } if username == "bot" && password == "s3cret")
        );
        assert!(!format!("{auth:?}").contains("s3cret"));

        let bearer = dir.path().join("ns/token");
        std::fs::create_dir_all(&bearer).unwrap();
        std::fs::write(bearer.join("bearerToken"), "tok").unwrap();
        let auth = load(dir.path(), "ns", "token").unwrap();
        assert_eq!(
            auth,
            GitAuth::Bearer {
                token: "tok".into()
            }
        );
        assert!(!format!("{auth:?}").contains("tok)"));

        let ssh = dir.path().join("ns/ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(ssh.join("identity"), "KEY").unwrap();
        std::fs::write(ssh.join("known_hosts"), "host key").unwrap();
        assert!(matches!(
            load(dir.path(), "ns", "ssh").unwrap(),
            GitAuth::Ssh {
                known_hosts: Some(_),
                ..
            }
        ));

        let err = load(dir.path(), "ns", "missing").unwrap_err();
        assert!(err.to_string().contains("mount the Secret"), "{err}");
        assert!(matches!(
            load(dir.path(), "..", "ns"),
            Err(CredentialsError::InvalidName { .. })
        ));
    }

    #[test]
    fn basic_credentials_are_rfc_7617_base64() {
        assert_eq!(basic_credentials("", ""), "Og==");
        assert_eq!(basic_credentials("bot", "s3cret"), "Ym90OnMzY3JldA==");
        assert_eq!(
            basic_credentials("Aladdin", "open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    /// A Secret `ns/<name>` under `root` with `files` (key, content).
    fn mount(root: &Path, name: &str, files: &[(&str, &[u8])]) {
        let dir = root.join("ns").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (key, content) in files {
            std::fs::write(dir.join(key), content).unwrap();
        }
    }

    #[test]
    fn a_missing_key_and_an_unreadable_key_are_different_errors() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        // Missing: no directory, no keys, half a pair.
        mount(root, "empty", &[]);
        mount(root, "half", &[("username", b"bot")]);
        for name in ["absent", "empty", "half"] {
            let err = load(root, "ns", name).unwrap_err();
            assert!(
                matches!(err, CredentialsError::Missing { .. }),
                "{name}: {err}"
            );
        }
        assert!(load(root, "ns", "half")
            .unwrap_err()
            .to_string()
            .contains("no password"));

        // Unreadable: a directory where a key's file should be, or text
        // keys that are not UTF-8. The value never shows.
        for (name, key, files) in [
            ("dir-token", "bearerToken", &[][..]),
            ("dir-password", "password", &[("username", &b"bot"[..])][..]),
            ("dir-identity", "identity", &[][..]),
            (
                "dir-known-hosts",
                "known_hosts",
                &[("identity", &b"KEY"[..])][..],
            ),
            (
                "binary-token",
                "bearerToken",
                &[("bearerToken", &b"s3cret\xff"[..])][..],
            ),
            (
                "binary-user",
                "username",
                &[("username", &b"\xfe"[..]), ("password", &b"s3cret"[..])][..],
            ),
        ] {
            mount(root, name, files);
            if files.iter().all(|(k, _)| *k != key) {
                std::fs::create_dir(root.join("ns").join(name).join(key)).unwrap();
            }
            let err = load(root, "ns", name).unwrap_err();
            assert!(
                matches!(&err, CredentialsError::Unreadable { key: k, .. } if k == key),
                "{name}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!("ns/{name}")) && text.contains(key),
                "{text}"
            );
            assert!(!text.contains("s3cret"), "{text}");
        }
        let dir = load(root, "ns", "dir-token").unwrap_err().to_string();
        assert!(dir.contains("a directory"), "{dir}");
        let binary = load(root, "ns", "binary-token").unwrap_err().to_string();
        assert!(binary.contains("not UTF-8"), "{binary}");
    }

    #[test]
    fn urls_lose_their_userinfo() {
        assert_eq!(
            redact_url("https://bot:pw@git.example/org/repo.git"),
            "https://git.example/org/repo.git"
        );
        assert_eq!(
            redact_url("file:///tmp/a@b/repo.git"),
            "file:///tmp/a@b/repo.git"
        );
        assert_eq!(redact_url("ssh://git:pw@host/x"), "ssh://git@host/x");
        assert_eq!(redact_url("https://token@host/x"), "https://host/x");
    }
}
