//! Registry credentials from the cloud (`spec.provider: aws | gcp | azure`):
//! the workload's own identity is exchanged for a short-lived registry
//! credential, cached until shortly before it expires.
//!
//! Every call goes through the scanner's own `reqwest` clients, so the
//! repository's `proxySecretRef` proxy carries the calls to the clouds'
//! public endpoints (STS, ECR, Google's and Azure's token endpoints, the
//! ACR exchange) as it carries the registry's. The instance metadata
//! services (AWS IMDS, the GCE metadata server, Azure's managed identity
//! endpoint) are link-local, answered by the node itself, and are reached
//! without the proxy, as the clouds' SDKs do.
//!
//! Endpoints are taken from the environment variables the clouds' SDKs
//! honour (`AWS_ENDPOINT_URL[_ECR|_STS]`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`,
//! `GCE_METADATA_HOST`, a key file's `token_uri`, `AZURE_AUTHORITY_HOST`,
//! `IDENTITY_ENDPOINT`), read once into a [`CloudEnvironment`].
//!
//! Tokens never leave this module except inside [`Credentials`], whose
//! `Debug` redacts them; errors carry statuses and the clouds' error codes,
//! with anything we sent removed.

mod aws;
mod azure;
mod gcp;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use tagrelay_proto::reference::cloud::CloudProvider;

use crate::credentials::Credentials;

/// The environment variables the cloud logins read, captured once (the
/// process environment in the service; given explicitly in tests).
#[derive(Clone, Default)]
pub struct CloudEnvironment {
    vars: HashMap<String, String>,
}

impl std::fmt::Debug for CloudEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.vars.keys().collect();
        names.sort();
        f.debug_struct("CloudEnvironment")
            .field("names", &names)
            .finish()
    }
}

/// The prefixes of the variables read, so the captured environment holds
/// nothing else.
const VARIABLE_PREFIXES: [&str; 6] = ["AWS_", "GOOGLE_", "GCE_", "AZURE_", "IDENTITY_", "HOME"];

impl CloudEnvironment {
    /// The cloud variables of this process's environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// The cloud variables among `vars`.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| VARIABLE_PREFIXES.iter().any(|p| k.starts_with(p)))
            .collect();
        Self { vars }
    }

    /// A variable's value; an empty one counts as unset.
    fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// `~/<path>`, when `HOME` is set.
    fn home_file(&self, path: &str) -> Option<PathBuf> {
        self.var("HOME").map(|home| PathBuf::from(home).join(path))
    }
}

/// Why the cloud gave no registry credential. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// No identity of this cloud is configured where the scanner runs.
    #[error("provider {provider}: no credentials found ({tried})")]
    NotConfigured {
        /// The cloud.
        provider: CloudProvider,
        /// What was looked at.
        tried: String,
    },
    /// An identity exists but cannot be used (an unreadable key file).
    #[error("provider {provider}: {what}: {reason}")]
    Unusable {
        /// The cloud.
        provider: CloudProvider,
        /// The file or setting.
        what: String,
        /// Why.
        reason: String,
    },
    /// The endpoint did not answer.
    #[error("provider {provider}: cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// The cloud.
        provider: CloudProvider,
        /// The URL, without query.
        endpoint: String,
        /// The client's words.
        reason: String,
    },
    /// The endpoint refused to give a token.
    #[error("provider {provider}: {endpoint} answered {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The cloud.
        provider: CloudProvider,
        /// The URL, without query.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The cloud's error code or message, with nothing we sent.
        detail: Option<String>,
    },
    /// The endpoint's answer is not what its protocol specifies.
    #[error("provider {provider}: unreadable answer from {endpoint}: {reason}")]
    Malformed {
        /// The cloud.
        provider: CloudProvider,
        /// The URL, without query.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
}

impl CloudError {
    /// Whether asking again later may succeed without anyone changing
    /// anything (the endpoint was down or overloaded).
    pub fn is_transient(&self) -> bool {
        match self {
            CloudError::Unreachable { .. } | CloudError::Malformed { .. } => true,
            CloudError::Refused { status, .. } => *status >= 500 || *status == 429,
            CloudError::NotConfigured { .. } | CloudError::Unusable { .. } => false,
        }
    }
}

/// A registry credential from a cloud and how long to reuse it.
struct Login {
    credentials: Credentials,
    reuse_until: Instant,
}

/// What one login is cached under: the cloud, the registry and the client
/// (proxy and TLS) it was obtained through.
#[derive(Clone, PartialEq, Eq, Hash)]
struct LoginKey {
    provider: CloudProvider,
    registry: String,
    client: String,
}

/// The cloud logins of one scanner instance, with their cache.
pub struct CloudLogins {
    environment: CloudEnvironment,
    timeout: Duration,
    cache: Mutex<HashMap<LoginKey, Login>>,
}

/// The clients a login uses: `proxied` for the clouds' public endpoints
/// (with the repository's proxy and TLS material), `direct` for the
/// link-local metadata services.
pub struct LoginClients<'a> {
    /// Through the repository's proxy.
    pub proxied: &'a reqwest::Client,
    /// Without a proxy.
    pub direct: &'a reqwest::Client,
    /// Identifies `proxied` (its proxy and TLS), for the cache.
    pub proxied_key: &'a str,
}

impl CloudLogins {
    /// Logins reading `environment`, each HTTP call limited to `timeout`.
    pub fn new(environment: CloudEnvironment, timeout: Duration) -> Self {
        Self {
            environment,
            timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The registry credential `provider` gives for `registry` (`host[:port]`,
    /// `scheme` `http` or `https`), from the cache while it is fresh.
    pub async fn credentials(
        &self,
        provider: CloudProvider,
        registry: &str,
        scheme: &str,
        clients: LoginClients<'_>,
    ) -> Result<Credentials, CloudError> {
        let key = LoginKey {
            provider,
            registry: registry.to_string(),
            client: clients.proxied_key.to_string(),
        };
        if let Some(login) = lock(&self.cache).get(&key) {
            if Instant::now() < login.reuse_until {
                return Ok(login.credentials.clone());
            }
        }
        let call = Call {
            provider,
            timeout: self.timeout,
            env: &self.environment,
            proxied: clients.proxied,
            direct: clients.direct,
        };
        let (credentials, expires) = match provider {
            CloudProvider::Aws => aws::login(&call, registry).await?,
            CloudProvider::Gcp => gcp::login(&call).await?,
            CloudProvider::Azure => azure::login(&call, registry, scheme).await?,
        };
        let lifetime = expires
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let reuse_until = Instant::now() + reuse_for(lifetime);
        tracing::debug!(%provider, registry, reuse_secs = reuse_for(lifetime).as_secs(), "cloud registry credential obtained");
        lock(&self.cache).insert(
            key,
            Login {
                credentials: credentials.clone(),
                reuse_until,
            },
        );
        Ok(credentials)
    }

    /// Drops the cached credential for `registry`: the registry refused it,
    /// so the next scan asks the cloud again instead of reusing it.
    pub fn forget(&self, provider: CloudProvider, registry: &str) {
        lock(&self.cache).retain(|key, _| !(key.provider == provider && key.registry == registry));
    }
}

/// How long a credential valid for `lifetime` is reused: until five
/// minutes before it expires (half its life when it is shorter than ten
/// minutes). A credential already expired when it arrives (moto's ECR
/// tokens, a skewed clock) is still used, since the registry is the judge,
/// and kept [`EXPIRED_REUSE`] so that it is not asked for on every request.
fn reuse_for(lifetime: Duration) -> Duration {
    const MARGIN: Duration = Duration::from_secs(300);
    if lifetime.is_zero() {
        EXPIRED_REUSE
    } else if lifetime > 2 * MARGIN {
        lifetime - MARGIN
    } else {
        lifetime / 2
    }
}

/// How long a credential that arrives already expired is reused.
const EXPIRED_REUSE: Duration = Duration::from_secs(60);

/// One login's HTTP calls.
struct Call<'a> {
    provider: CloudProvider,
    timeout: Duration,
    env: &'a CloudEnvironment,
    proxied: &'a reqwest::Client,
    direct: &'a reqwest::Client,
}

impl Call<'_> {
    /// Sends `request` to `endpoint` (named in errors, query left out) and
    /// returns the body of a successful answer. `sent` are the secrets in
    /// the request, removed from any error detail the endpoint echoes.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: &str,
        sent: &[&str],
    ) -> Result<bytes::Bytes, CloudError> {
        let endpoint = endpoint.split('?').next().unwrap_or(endpoint).to_string();
        let response =
            request
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| CloudError::Unreachable {
                    provider: self.provider,
                    endpoint: endpoint.clone(),
                    reason: redact(&crate::registry::error_chain(&e), sent),
                })?;
        let status = response.status();
        if !status.is_success() {
            // A refusal's body is only read for its error code; a proxy's
            // refusal may not even be well-framed.
            let body = response.bytes().await.unwrap_or_default();
            let detail = if status == reqwest::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                Some("the proxy of spec.proxySecretRef refused its credentials".to_string())
            } else {
                error_detail(&body).map(|d| redact(&d, sent))
            };
            return Err(CloudError::Refused {
                provider: self.provider,
                endpoint,
                status: status.as_u16(),
                detail,
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| CloudError::Unreachable {
                provider: self.provider,
                endpoint: endpoint.clone(),
                reason: redact(&e.to_string(), sent),
            })?;
        Ok(body)
    }

    /// Decodes a JSON answer from `endpoint`.
    fn json<T: serde::de::DeserializeOwned>(
        &self,
        body: &[u8],
        endpoint: &str,
    ) -> Result<T, CloudError> {
        serde_json::from_slice(body).map_err(|e| CloudError::Malformed {
            provider: self.provider,
            endpoint: endpoint.split('?').next().unwrap_or(endpoint).to_string(),
            reason: format!("line {} column {}", e.line(), e.column()),
        })
    }

    fn not_configured(&self, tried: &str) -> CloudError {
        CloudError::NotConfigured {
            provider: self.provider,
            tried: tried.to_string(),
        }
    }

    fn unusable(&self, what: impl Into<String>, reason: impl Into<String>) -> CloudError {
        CloudError::Unusable {
            provider: self.provider,
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A mounted file's text (a token file, a key file).
    fn read_file(&self, path: &str) -> Result<String, CloudError> {
        match crate::credentials::read_secret_file(std::path::Path::new(path)) {
            Ok(Some(bytes)) => {
                String::from_utf8(bytes).map_err(|_| self.unusable(path, "not UTF-8 text"))
            }
            Ok(None) => Err(self.unusable(path, "no such file")),
            Err(e) => Err(self.unusable(path, format!("cannot be read: {}", e.kind()))),
        }
    }
}

/// The error code or message in a refusal's body (JSON `error`,
/// `error_description`, `message`, `__type`; XML `<Code>`, `<Message>`),
/// cut to 300 characters; never the whole body.
fn error_detail(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut parts = Vec::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        for field in [
            "__type",
            "error",
            "code",
            "error_description",
            "message",
            "Message",
        ] {
            if let Some(value) = map.get(field).and_then(|v| v.as_str()) {
                parts.push(value.to_string());
            }
        }
    } else {
        for tag in ["Code", "Message"] {
            let open = format!("<{tag}>");
            let close = format!("</{tag}>");
            if let Some(start) = text.find(&open) {
                let rest = &text[start + open.len()..];
                if let Some(end) = rest.find(&close) {
                    parts.push(rest[..end].trim().to_string());
                }
            }
        }
    }
    let detail = parts.join(": ");
    (!detail.is_empty()).then(|| detail.chars().take(300).collect())
}

/// `text` with every secret in `sent` replaced.
fn redact(text: &str, sent: &[&str]) -> String {
    sent.iter()
        .filter(|s| s.len() >= 4)
        .fold(text.to_string(), |text, secret| {
            text.replace(secret, "<redacted>")
        })
}

/// `application/x-www-form-urlencoded` of `fields`.
fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The expiry `expires_in` seconds from now.
fn expires_in(seconds: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(seconds)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_reused_until_shortly_before_it_expires_and_an_expired_one_briefly() {
        assert_eq!(
            reuse_for(Duration::from_secs(12 * 3600)),
            Duration::from_secs(12 * 3600 - 300)
        );
        assert_eq!(
            reuse_for(Duration::from_secs(300)),
            Duration::from_secs(150)
        );
        assert_eq!(reuse_for(Duration::ZERO), EXPIRED_REUSE);
        assert!(EXPIRED_REUSE >= Duration::from_secs(30), "not a loop");
    }

    #[test]
    fn error_details_are_the_codes_without_what_we_sent() {
        let json = br#"{"error":"invalid_grant","error_description":"assertion abc-secret-123 rejected","other":"x"}"#;
        let detail = error_detail(json).unwrap();
        assert_eq!(
            redact(&detail, &["abc-secret-123"]),
            "invalid_grant: assertion <redacted> rejected"
        );
        let xml = b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad token</Message></Error></ErrorResponse>";
        assert_eq!(
            error_detail(xml).as_deref(),
            Some("InvalidIdentityToken: bad token")
        );
        assert_eq!(error_detail(b"<html>secret page</html>"), None);
    }

    #[test]
    fn only_cloud_variables_are_captured() {
        let env = CloudEnvironment::from_vars([
            ("AWS_REGION", "eu-west-1"),
            ("PATH", "/bin"),
            ("GCE_METADATA_HOST", " "),
        ]);
        assert_eq!(env.var("AWS_REGION"), Some("eu-west-1"));
        assert_eq!(env.var("PATH"), None);
        assert_eq!(env.var("GCE_METADATA_HOST"), None, "empty is unset");
    }
}
