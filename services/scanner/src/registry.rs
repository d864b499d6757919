//! Talking to registries: tag listing with pagination, authentication,
//! retries and a per-registry request budget; manifest digests and image
//! creation times for the policies that need them.
//!
//! Why requests are made with `reqwest` here rather than through
//! `oci-client`'s `list_tags` / `fetch_manifest_digest`: `oci-client` 0.18
//! hides each answer's status and headers (no `Link`, no `Retry-After`),
//! cannot present a client certificate (`certSecretRef`), and keeps the first
//! credentials it sees per registry for its lifetime, while one scanner
//! serves repositories with different Secrets on the same registry. The
//! `reqwest` used is the one `oci-client` brings (same version and TLS
//! stack); `oci-client`'s manifest types parse what comes back.
//!
//! Authentication is reactive, as containerd does it: a request goes out
//! with what is known for the (registry, repository, credentials); a `401`
//! carries the `WWW-Authenticate` challenge, answered with basic auth or a
//! bearer token from the challenge's realm, remembered with its expiry. An
//! unchanged repository therefore costs one tag-list call per scan once the
//! registry is known.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use oci_client::manifest::{
    OciManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LINK, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tagrelay_proto::event::FailureReason;

use tagrelay_proto::reference::cloud::CloudProvider;

use crate::backoff::{backoff_delay, parse_retry_after, TokenBucket};
use crate::cloud::{CloudEnvironment, CloudError, CloudLogins, LoginClients};
use crate::credentials::{parse_challenge, Challenge, Credentials, ProxySettings, TlsMaterial};
use crate::paging::{self, NextPage, Page, PagingError};

/// How the scanner treats registries; shared by all repositories.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Requests per second per registry host, on average.
    pub rate: f64,
    /// Requests per registry host allowed in a burst.
    pub burst: u32,
    /// Attempts per request on 429, 5xx and network errors.
    pub attempts: u32,
    /// First back-off step.
    pub backoff_base: Duration,
    /// Longest back-off step.
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this fails the scan (to be retried
    /// later) instead of holding it.
    pub max_retry_after: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Where `spec.provider: aws | gcp | azure` find the workload's
    /// identity and the clouds' endpoints.
    pub cloud: CloudEnvironment,
    /// Host names answered without DNS (curl's `--resolve`): a registry
    /// reached at another address than its name resolves to (split-horizon
    /// DNS, a mirror in front of a cloud registry). The URL's port is kept.
    pub resolve: Vec<(String, std::net::IpAddr)>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            rate: 20.0,
            burst: 40,
            attempts: 4,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            cloud: CloudEnvironment::default(),
            resolve: Vec::new(),
        }
    }
}

/// One repository on one registry, with how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host[:port]`.
    pub registry: String,
    /// The repository path (`org/app`, `library/nginx`).
    pub path: String,
    /// Plain HTTP (`insecure: true`).
    pub insecure: bool,
    /// Credentials from `secretRef`.
    pub credentials: Credentials,
    /// TLS material from `certSecretRef`.
    pub tls: TlsMaterial,
    /// The proxy from `proxySecretRef`.
    pub proxy: Option<ProxySettings>,
    /// The cloud `credentials` came from (`spec.provider`), if any.
    pub cloud: Option<CloudProvider>,
}

impl Target {
    fn base_url(&self) -> Result<Url, RegistryError> {
        let scheme = if self.insecure { "http" } else { "https" };
        Url::parse(&format!("{scheme}://{}/", self.registry))
            .map_err(|e| RegistryError::Address(format!("{}: {e}", self.registry)))
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base_url()?
            .join(path)
            .map_err(|e| RegistryError::Address(format!("{}{path}: {e}", self.registry)))
    }
}

/// `reason` for a refusal, saying that the proxy may be the one refusing
/// when there is one: some proxies (tinyproxy) answer bad proxy
/// credentials with a 401 and a `WWW-Authenticate` of their own.
fn with_proxy_hint(target: &Target, reason: String) -> String {
    if target.proxy.is_some() {
        format!("{reason} (or the proxy of spec.proxySecretRef refused its credentials)")
    } else {
        reason
    }
}

/// What went wrong with a registry, in words an operator can act on.
/// Never carries credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No answer: connection refused, DNS, TLS handshake, timeout.
    #[error("cannot reach {registry}: {reason}")]
    Unreachable {
        /// The registry.
        registry: String,
        /// The client's words.
        reason: String,
    },
    /// 429 after every attempt, or a `Retry-After` too long to wait for.
    #[error("{registry} is rate-limiting (429){}", retry_after.map(|d| format!("; it asks to retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The registry.
        registry: String,
        /// What it asked for.
        retry_after: Option<Duration>,
    },
    /// An unexpected status (5xx after every attempt, or another code).
    #[error("{registry} answered {status} to {what}")]
    Status {
        /// The registry.
        registry: String,
        /// The HTTP status.
        status: u16,
        /// The request, without credentials.
        what: String,
    },
    /// The registry refused the credentials, or wants some and has none.
    #[error("{registry} refused access to {path}: {reason}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The repository.
        path: String,
        /// Why, without credentials.
        reason: String,
    },
    /// The repository does not exist.
    #[error("repository {path} not found on {registry}")]
    NotFound {
        /// The registry.
        registry: String,
        /// The repository.
        path: String,
    },
    /// An answer that is not what the API specifies (garbage JSON).
    #[error("{registry} sent an unreadable answer to {what}: {reason}")]
    Malformed {
        /// The registry.
        registry: String,
        /// The request.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Pagination cannot go on.
    #[error("{0}")]
    Paging(#[from] PagingError),
    /// The TLS material is unusable.
    #[error("TLS settings: {0}")]
    Tls(String),
    /// The registry address is not usable in a URL.
    #[error("bad registry address {0}")]
    Address(String),
}

impl RegistryError {
    /// Whether trying again later may succeed without anyone changing
    /// anything.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. }
            | RegistryError::RateLimited { .. }
            | RegistryError::Malformed { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    /// The kind of failure a `ScanFailed` records for this error.
    pub fn reason(&self) -> FailureReason {
        match self {
            RegistryError::Unreachable { .. } => FailureReason::RegistryUnavailable,
            RegistryError::Status { status, .. } if *status >= 500 || *status == 408 => {
                FailureReason::RegistryUnavailable
            }
            RegistryError::Status { .. } => FailureReason::Other,
            RegistryError::RateLimited { .. } => FailureReason::RateLimited,
            RegistryError::Unauthorized { .. } => FailureReason::AuthenticationFailed,
            RegistryError::NotFound { .. } => FailureReason::RepositoryNotFound,
            RegistryError::Malformed { .. } | RegistryError::Paging(_) => {
                FailureReason::InvalidResponse
            }
            RegistryError::Tls(_) => FailureReason::AuthenticationFailed,
            RegistryError::Address(_) => FailureReason::InvalidSpec,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AuthKey {
    registry: String,
    path: String,
    credentials: String,
}

#[derive(Debug, Clone)]
enum AuthState {
    Basic,
    Bearer {
        token: String,
        expires: Instant,
        challenge: Challenge,
    },
}

#[derive(Default)]
struct RegistryFacts {
    ignores_last: HashSet<String>,
}

/// The registries one scanner instance talks to: HTTP clients per TLS
/// configuration, one request budget per registry host, remembered
/// authentication and pagination behaviour, and a request counter.
pub struct Registries {
    settings: RegistrySettings,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    budgets: Mutex<HashMap<String, Arc<Mutex<TokenBucket>>>>,
    auth: Mutex<HashMap<AuthKey, AuthState>>,
    cloud: CloudLogins,
    /// The fingerprint of the last cloud credential per registry, so the
    /// authentication remembered for a replaced one is dropped.
    cloud_fingerprints: Mutex<HashMap<String, String>>,
    facts: Mutex<RegistryFacts>,
    requests: AtomicU64,
}

/// A listing of a repository's tags, as the registry gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Every tag seen, unique, in no particular order.
    pub tags: Vec<String>,
    /// How many pages were fetched.
    pub pages: usize,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    created: Option<DateTime<Utc>>,
}

/// Manifest media types a digest or creation-time lookup accepts.
const MANIFEST_ACCEPT: [&str; 4] = [
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

/// Lifetime assumed for a bearer token whose answer gives none (the
/// distribution token specification's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl Registries {
    /// Registries treated with `settings`.
    pub fn new(settings: RegistrySettings) -> Self {
        Self {
            cloud: CloudLogins::new(settings.cloud.clone(), settings.request_timeout),
            cloud_fingerprints: Mutex::new(HashMap::new()),
            settings,
            clients: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
            facts: Mutex::new(RegistryFacts::default()),
            requests: AtomicU64::new(0),
        }
    }

    /// How many HTTP requests were sent so far (every attempt, token
    /// requests included): what the benchmark reports per scan.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The registry credential `provider` gives for `target`, obtained
    /// through the repository's proxy (and TLS material) and cached.
    pub async fn cloud_credentials(
        &self,
        provider: CloudProvider,
        target: &Target,
    ) -> Result<Credentials, CloudError> {
        let proxied_key = client_key(&target.tls, target.proxy.as_ref());
        let unusable = |e: RegistryError| CloudError::Unusable {
            provider,
            what: "HTTP client".into(),
            reason: e.to_string(),
        };
        let proxied = self
            .client(&target.tls, target.proxy.as_ref())
            .map_err(unusable)?;
        let direct = self
            .client(&TlsMaterial::default(), None)
            .map_err(unusable)?;
        let scheme = if target.insecure { "http" } else { "https" };
        let credentials = self
            .cloud
            .credentials(
                provider,
                &target.registry,
                scheme,
                LoginClients {
                    proxied: &proxied,
                    direct: &direct,
                    proxied_key: &proxied_key,
                },
            )
            .await?;
        let current = fingerprint(&credentials);
        let replaced =
            lock(&self.cloud_fingerprints).insert(target.registry.clone(), current.clone());
        if let Some(replaced) = replaced.filter(|r| *r != current) {
            lock(&self.auth)
                .retain(|key, _| !(key.registry == target.registry && key.credentials == replaced));
        }
        Ok(credentials)
    }

    /// Lists every tag of `target`, following pages (see [`paging`]).
    #[tracing::instrument(name = "registry list tags", skip_all)]
    pub async fn list_tags(&self, target: &Target) -> Result<Listing, RegistryError> {
        let mut url = paging::first_page(&target.base_url()?, &target.path)?;
        let mut seen: HashSet<String> = HashSet::new();
        let mut pages = 0;
        let mut followed_link = false;
        loop {
            let (status, headers, body) = self
                .fetch(target, &url, &["application/json"], "the tag list")
                .await?;
            if status == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    registry: target.registry.clone(),
                    path: target.path.clone(),
                });
            }
            if !status.is_success() {
                return Err(status_error(target, status, "the tag list"));
            }
            let link = headers
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let page: TagList = decode_json(target, &body, "the tag list")?;
            let tags = page.tags.unwrap_or_default();
            pages += 1;
            {
                let mut facts = lock(&self.facts);
                let last = paging::last_param(&url);
                if paging::ignores_last(last.as_deref(), tags.iter().map(String::as_str)) {
                    facts.ignores_last.insert(target.registry.clone());
                }
            }
            let last_tag = tags.iter().max().cloned();
            let added = tags.into_iter().filter(|t| seen.insert(t.clone())).count();
            let ignores_last = lock(&self.facts).ignores_last.contains(&target.registry);

            match paging::next_page(&Page {
                url: &url,
                link: link.as_deref(),
                last_tag: last_tag.as_deref(),
                added,
                pages,
                registry_ignores_last: ignores_last,
                reached_by_link: followed_link,
            })? {
                NextPage::Fetch(next) => {
                    followed_link = link.is_some();
                    url = next;
                }
                NextPage::Done => break,
            }
        }
        Ok(Listing {
            tags: seen.into_iter().collect(),
            pages,
        })
    }

    /// The manifest digest `tag` points to (the index digest of a
    /// multi-platform image), from a `HEAD` request.
    #[tracing::instrument(name = "registry manifest digest", skip_all)]
    pub async fn manifest_digest(
        &self,
        target: &Target,
        tag: &str,
    ) -> Result<String, RegistryError> {
        let url = target.url(&format!("/v2/{}/manifests/{tag}", target.path))?;
        let response = self
            .send(target, Method::HEAD, &url, &MANIFEST_ACCEPT)
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(
                target,
                status,
                &format!("the manifest of {tag}"),
            ));
        }
        if let Some(digest) = response
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| tagrelay_proto::reference::is_valid_digest(d))
        {
            return Ok(digest.to_string());
        }
        let (_, digest) = self.manifest(target, tag).await?;
        Ok(digest)
    }

    /// The `created` time of the image `digest` names; for a
    /// multi-platform index, that of its linux/amd64 image (else its first).
    #[tracing::instrument(name = "registry image created", skip_all)]
    pub async fn created(
        &self,
        target: &Target,
        digest: &str,
    ) -> Result<Option<DateTime<Utc>>, RegistryError> {
        let (manifest, _) = self.manifest(target, digest).await?;
        let image = match manifest {
            OciManifest::Image(image) => image,
            OciManifest::ImageIndex(index) => {
                let chosen = oci_client::client::linux_amd64_resolver(&index.manifests)
                    .or_else(|| index.manifests.first().map(|m| m.digest.clone()));
                let Some(chosen) = chosen else {
                    return Ok(None);
                };
                match self.manifest(target, &chosen).await?.0 {
                    OciManifest::Image(image) => image,
                    OciManifest::ImageIndex(_) => return Ok(None),
                }
            }
        };
        let url = target.url(&format!(
            "/v2/{}/blobs/{}",
            target.path, image.config.digest
        ))?;
        let (status, _, body) = self
            .fetch(target, &url, &["*/*"], "an image config")
            .await?;
        if !status.is_success() {
            return Err(status_error(target, status, "an image config"));
        }
        let config: ImageConfig = decode_json(target, &body, "an image config")?;
        Ok(config.created)
    }

    async fn manifest(
        &self,
        target: &Target,
        reference: &str,
    ) -> Result<(OciManifest, String), RegistryError> {
        let url = target.url(&format!("/v2/{}/manifests/{reference}", target.path))?;
        let (status, _, body) = self
            .fetch(target, &url, &MANIFEST_ACCEPT, "a manifest")
            .await?;
        if !status.is_success() {
            return Err(status_error(target, status, "a manifest"));
        }
        let digest = format!("sha256:{:x}", Sha256::digest(&body));
        let manifest = decode_json(target, &body, "a manifest")?;
        Ok((manifest, digest))
    }

    /// A `GET` through [`send`](Registries::send), with the body of a
    /// successful answer read (up to [`MAX_RESPONSE_BYTES`]): a connection
    /// that breaks mid-body is retried with back-off, as one that breaks
    /// before the answer is. An unsuccessful answer's body is not read.
    async fn fetch(
        &self,
        target: &Target,
        url: &Url,
        accept: &[&str],
        what: &str,
    ) -> Result<(StatusCode, HeaderMap, bytes::Bytes), RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self.send(target, Method::GET, url, accept).await?;
            let (status, headers) = (response.status(), response.headers().clone());
            if !status.is_success() {
                return Ok((status, headers, bytes::Bytes::new()));
            }
            match read_body(target, response, what).await {
                Ok(body) => return Ok((status, headers, body)),
                Err(RegistryError::Unreachable { reason, .. })
                    if attempt < self.settings.attempts =>
                {
                    tracing::debug!(registry = %target.registry, %reason, attempt, "answer broken off; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one request with authentication, the registry's budget and
    /// retries: 429 waits for `Retry-After` (holding every request to that
    /// registry), 5xx and network errors back off with jitter, a 401 is
    /// answered once with the challenge's credentials.
    async fn send(
        &self,
        target: &Target,
        method: Method,
        url: &Url,
        accept: &[&str],
    ) -> Result<reqwest::Response, RegistryError> {
        let client = self.client(&target.tls, target.proxy.as_ref())?;
        let key = AuthKey {
            registry: target.registry.clone(),
            path: target.path.clone(),
            credentials: fingerprint(&target.credentials),
        };
        let mut attempt = 0;
        let mut answered_challenge = false;
        loop {
            attempt += 1;
            let authorization = self.authorization(&client, target, &key).await?;
            self.take_budget(&target.registry).await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let mut request = client
                .request(method.clone(), url.clone())
                .timeout(self.settings.request_timeout)
                .header(ACCEPT, accept.join(", "));
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    if attempt < self.settings.attempts {
                        tracing::debug!(registry = %target.registry, error = %error_chain(&e), attempt, "request failed; retrying");
                        tokio::time::sleep(self.backoff(attempt)).await;
                        continue;
                    }
                    return Err(RegistryError::Unreachable {
                        registry: target.registry.clone(),
                        reason: error_chain(&e),
                    });
                }
            };
            match response.status() {
                StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
                    return Err(RegistryError::Unauthorized {
                        registry: target.registry.clone(),
                        path: target.path.clone(),
                        reason: "the proxy refused the credentials of spec.proxySecretRef (407)"
                            .into(),
                    });
                }
                StatusCode::UNAUTHORIZED if !answered_challenge => {
                    answered_challenge = true;
                    attempt -= 1;
                    let challenge = response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge);
                    self.answer_challenge(&client, target, &key, challenge)
                        .await?;
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    lock(&self.auth).remove(&key);
                    let reason = match (&target.credentials, target.cloud) {
                        (_, Some(provider)) => {
                            self.cloud.forget(provider, &target.registry);
                            format!(
                                "{} with the credential provider {provider} gave",
                                response.status()
                            )
                        }
                        (Credentials::Anonymous, None) => {
                            "the registry requires credentials; set spec.secretRef".to_string()
                        }
                        _ => format!(
                            "{} with the credentials of spec.secretRef",
                            response.status()
                        ),
                    };
                    return Err(RegistryError::Unauthorized {
                        registry: target.registry.clone(),
                        path: target.path.clone(),
                        reason: with_proxy_hint(target, reason),
                    });
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, Utc::now()));
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    if attempt >= self.settings.attempts || wait > self.settings.max_retry_after {
                        self.pause(&target.registry, wait);
                        return Err(RegistryError::RateLimited {
                            registry: target.registry.clone(),
                            retry_after,
                        });
                    }
                    tracing::info!(registry = %target.registry, wait_ms = wait.as_millis() as u64, "registry asked to slow down (429)");
                    self.pause(&target.registry, wait);
                }
                status if is_retryable(status) && attempt < self.settings.attempts => {
                    tracing::debug!(registry = %target.registry, %status, attempt, "retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                _ => return Ok(response),
            }
        }
    }

    /// The `Authorization` value known for `key`, refreshing an expired
    /// bearer token first.
    async fn authorization(
        &self,
        client: &reqwest::Client,
        target: &Target,
        key: &AuthKey,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let state = lock(&self.auth).get(key).cloned();
        let value = match state {
            None => None,
            Some(AuthState::Basic) => basic_header(&target.credentials),
            Some(AuthState::Bearer {
                token,
                expires,
                challenge,
            }) => {
                if Instant::now() < expires {
                    Some(format!("Bearer {token}"))
                } else {
                    self.answer_challenge(client, target, key, Some(challenge))
                        .await?;
                    match lock(&self.auth).get(key) {
                        Some(AuthState::Bearer { token, .. }) => Some(format!("Bearer {token}")),
                        _ => None,
                    }
                }
            }
        };
        value
            .map(|v| {
                let mut header =
                    HeaderValue::from_str(&v).map_err(|_| RegistryError::Unauthorized {
                        registry: target.registry.clone(),
                        path: target.path.clone(),
                        reason: "the credentials contain characters not allowed in an HTTP header"
                            .into(),
                    })?;
                header.set_sensitive(true);
                Ok(header)
            })
            .transpose()
    }

    async fn answer_challenge(
        &self,
        client: &reqwest::Client,
        target: &Target,
        key: &AuthKey,
        challenge: Option<Challenge>,
    ) -> Result<(), RegistryError> {
        let refused = |reason: &str| RegistryError::Unauthorized {
            registry: target.registry.clone(),
            path: target.path.clone(),
            reason: with_proxy_hint(target, reason.to_string()),
        };
        let state = match (challenge, &target.credentials) {
            (_, Credentials::Bearer(token)) => AuthState::Bearer {
                token: token.clone(),
                expires: Instant::now() + Duration::from_secs(24 * 3600),
                challenge: Challenge::Basic,
            },
            (Some(Challenge::Basic), Credentials::Basic { .. }) => AuthState::Basic,
            (Some(Challenge::Basic), Credentials::Anonymous) => {
                return Err(refused(
                    "the registry requires credentials; set spec.secretRef",
                ))
            }
            (Some(Challenge::Basic), Credentials::IdentityToken(_)) => {
                return Err(refused(
                    "the registry asks for basic auth, which an identity token cannot answer",
                ))
            }
            (Some(challenge @ Challenge::Bearer { .. }), credentials) => {
                let (token, lifetime) = self
                    .fetch_token(client, target, &challenge, credentials)
                    .await?;
                AuthState::Bearer {
                    token,
                    expires: Instant::now() + lifetime,
                    challenge,
                }
            }
            (None, _) => return Err(refused("401 without a usable WWW-Authenticate challenge")),
        };
        lock(&self.auth).insert(key.clone(), state);
        Ok(())
    }

    async fn fetch_token(
        &self,
        client: &reqwest::Client,
        target: &Target,
        challenge: &Challenge,
        credentials: &Credentials,
    ) -> Result<(String, Duration), RegistryError> {
        let Challenge::Bearer {
            realm,
            service,
            scope,
        } = challenge
        else {
            return Err(RegistryError::Unauthorized {
                registry: target.registry.clone(),
                path: target.path.clone(),
                reason: "no bearer challenge to answer".into(),
            });
        };
        let mut url = Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
            registry: target.registry.clone(),
            path: target.path.clone(),
            reason: format!("the token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            let ours = format!("repository:{}:pull", target.path);
            query.append_pair("scope", scope.as_deref().unwrap_or(&ours));
        }
        self.take_budget(&target.registry).await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = match credentials {
            Credentials::IdentityToken(refresh_token) => {
                // The distribution token specification's OAuth2 form: a
                // POST with the refresh token, the query moved to the body.
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.extend_pairs(url.query_pairs());
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("client_id", "tagrelay");
                form.append_pair("refresh_token", refresh_token);
                url.set_query(None);
                client
                    .post(url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.finish())
            }
            _ => client.get(url),
        }
        .timeout(self.settings.request_timeout);
        if let Some(header) = basic_header(credentials) {
            request = request.header(AUTHORIZATION, header);
        }
        let response = request
            .send()
            .await
            .map_err(|e| RegistryError::Unreachable {
                registry: target.registry.clone(),
                reason: format!("token service: {}", error_chain(&e)),
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(if status.is_server_error() {
                status_error(target, status, "a token request")
            } else {
                RegistryError::Unauthorized {
                    registry: target.registry.clone(),
                    path: target.path.clone(),
                    reason: format!("the token service answered {status}"),
                }
            });
        }
        let answer: TokenAnswer = response
            .json()
            .await
            .map_err(|e| RegistryError::Malformed {
                registry: target.registry.clone(),
                what: "a token request".into(),
                reason: e.to_string(),
            })?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Malformed {
                registry: target.registry.clone(),
                what: "a token request".into(),
                reason: "no token in the answer".into(),
            })?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok((token, lifetime.saturating_sub(Duration::from_secs(5))))
    }

    fn client(
        &self,
        tls: &TlsMaterial,
        proxy: Option<&ProxySettings>,
    ) -> Result<reqwest::Client, RegistryError> {
        let key = client_key(tls, proxy);
        if let Some(client) = lock(&self.clients).get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(16);
        for (host, ip) in &self.settings.resolve {
            builder = builder.resolve(host, std::net::SocketAddr::new(*ip, 0));
        }
        if let Some(ca) = &tls.ca {
            for certificate in reqwest::Certificate::from_pem_bundle(ca)
                .map_err(|e| RegistryError::Tls(format!("ca.crt: {e}")))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(identity) = &tls.identity {
            builder = builder.identity(reqwest::Identity::from_pem(identity).map_err(|_| {
                RegistryError::Tls("tls.crt / tls.key are not a PEM certificate and key".into())
            })?);
        }
        if let Some(proxy) = proxy {
            let mut all = reqwest::Proxy::all(&proxy.address)
                .map_err(|e| RegistryError::Address(format!("proxy {}: {e}", proxy.address)))?;
            if let Some((username, password)) = &proxy.credentials {
                all = all.basic_auth(username, password);
            }
            builder = builder.proxy(all);
        }
        let client = builder
            .build()
            .map_err(|e| RegistryError::Tls(error_chain(&e)))?;
        lock(&self.clients).insert(key, client.clone());
        Ok(client)
    }

    fn budget(&self, registry: &str) -> Arc<Mutex<TokenBucket>> {
        lock(&self.budgets)
            .entry(registry.to_string())
            .or_insert_with(|| {
                Arc::new(Mutex::new(TokenBucket::new(
                    self.settings.rate,
                    self.settings.burst,
                    Instant::now(),
                )))
            })
            .clone()
    }

    async fn take_budget(&self, registry: &str) {
        let budget = self.budget(registry);
        loop {
            let wait = match lock(&budget).take(Instant::now()) {
                Ok(()) => return,
                Err(wait) => wait,
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn pause(&self, registry: &str, wait: Duration) {
        lock(&self.budget(registry)).pause_until(Instant::now() + wait);
    }

    fn backoff(&self, attempt: u32) -> Duration {
        backoff_delay(
            attempt,
            self.settings.backoff_base,
            self.settings.backoff_max,
            fastrand::f64(),
        )
    }
}

/// What tells HTTP clients apart: their TLS material and proxy, hashed so
/// that the key keeps neither readable.
fn client_key(tls: &TlsMaterial, proxy: Option<&ProxySettings>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(tls.ca.as_deref().unwrap_or_default());
    hasher.update(b"|");
    hasher.update(tls.identity.as_deref().unwrap_or_default());
    if let Some(proxy) = proxy {
        hasher.update(b"|");
        hasher.update(proxy.address.as_bytes());
        if let Some((username, password)) = &proxy.credentials {
            hasher.update(b"|");
            hasher.update(username.as_bytes());
            hasher.update(b"|");
            hasher.update(password.as_bytes());
        }
    }
    format!("{:x}", hasher.finalize())
}

fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 500 | 502 | 503 | 504)
}

fn status_error(target: &Target, status: StatusCode, what: &str) -> RegistryError {
    RegistryError::Status {
        registry: target.registry.clone(),
        status: status.as_u16(),
        what: what.to_string(),
    }
}

fn basic_header(credentials: &Credentials) -> Option<String> {
    use base64::Engine;
    match credentials {
        Credentials::Basic { username, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        )),
        _ => None,
    }
}

/// A key for remembered authentication that tells credentials apart
/// without keeping them readable.
fn fingerprint(credentials: &Credentials) -> String {
    let mut hasher = Sha256::new();
    match credentials {
        Credentials::Anonymous => hasher.update(b"anonymous"),
        Credentials::Basic { username, password } => {
            hasher.update(b"basic|");
            hasher.update(username.as_bytes());
            hasher.update(b"|");
            hasher.update(password.as_bytes());
        }
        Credentials::Bearer(token) => {
            hasher.update(b"bearer|");
            hasher.update(token.as_bytes());
        }
        Credentials::IdentityToken(token) => {
            hasher.update(b"identity|");
            hasher.update(token.as_bytes());
        }
    }
    format!("{:x}", hasher.finalize())
}

/// An error with its causes (reqwest's own message is often only "error
/// sending request").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
/// The largest registry response read. A tag list of a million
/// 30-character tags is about 35 MB of JSON; a body past this is a registry
/// misbehaving (or hostile), and reading it whole would exhaust memory.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The body of a successful response, read up to [`MAX_RESPONSE_BYTES`]; a
/// connection that breaks mid-body is the registry being unreachable, which
/// [`Registries::fetch`] retries.
async fn read_body(
    target: &Target,
    mut response: reqwest::Response,
    what: &str,
) -> Result<bytes::Bytes, RegistryError> {
    let too_large = || RegistryError::Malformed {
        registry: target.registry.clone(),
        what: what.into(),
        reason: format!(
            "larger than {} MiB; not read further",
            MAX_RESPONSE_BYTES >> 20
        ),
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| RegistryError::Unreachable {
            registry: target.registry.clone(),
            reason: e.to_string(),
        })?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Decodes a JSON body, naming what it should have been when it is not.
fn decode_json<T: serde::de::DeserializeOwned>(
    target: &Target,
    body: &[u8],
    what: &str,
) -> Result<T, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::Malformed {
        registry: target.registry.clone(),
        what: what.into(),
        reason: e.to_string(),
    })
}
