//! Pull (merge) requests on GitHub, GitLab and Gitea/Forgejo over their
//! REST APIs.
//!
//! Only what the review stage needs: find the open request between two
//! branches, read one, open one, retitle it, label it, ask for reviewers
//! and switch auto-merge on. Tokens go in a header and nowhere else: an
//! error carries the forge's status and message, never a request header.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use tagrelay_proto::config::{ForgeProvider, MergeMethod};
use tagrelay_proto::event::FailureReason;

/// The most a forge answer may hold.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// One request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a forge call failed. Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// The forge could not be reached or timed out.
    #[error("{forge} unreachable: {reason}")]
    Unreachable {
        /// The forge's API base.
        forge: String,
        /// The transport's words.
        reason: String,
    },
    /// The forge answered with an error status.
    #[error("{forge} answered {status} to {what}: {message}")]
    Status {
        /// The forge's API base.
        forge: String,
        /// What was asked (`POST /repos/o/r/pulls`).
        what: String,
        /// The HTTP status.
        status: u16,
        /// The forge's message.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("{forge}: unexpected answer to {what}: {reason}")]
    Invalid {
        /// The forge's API base.
        forge: String,
        /// What was asked.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ForgeError {
    /// The reason a `ReviewFailed` records.
    pub fn reason(&self) -> FailureReason {
        match self {
            ForgeError::Status {
                status: 401 | 403, ..
            } => FailureReason::AuthenticationFailed,
            _ => FailureReason::ForgeUnavailable,
        }
    }
}

/// What the forge says of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeRequest {
    /// Its number (GitLab's `iid`).
    pub number: u64,
    /// Its web page.
    pub url: String,
    /// Whether it is open, merged, or closed without merging.
    pub state: RequestState,
    /// GitHub's GraphQL node id, for auto-merge.
    pub node_id: Option<String>,
}

/// The life of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Open (GitLab: opened or locked).
    Open,
    /// Merged.
    Merged,
    /// Closed without merging: a person declined it.
    Closed,
}

/// The request's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestText<'a> {
    /// The title.
    pub title: &'a str,
    /// The body (Markdown).
    pub body: &'a str,
}

/// A client for one repository on one forge, authenticated by a token.
pub struct Forge {
    provider: ForgeProvider,
    api: String,
    repository: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Forge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Forge({} {} {})",
            self.provider.as_str(),
            self.api,
            self.repository
        )
    }
}

/// Percent-encodes one path segment or query value.
fn escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Forge {
    /// A client for `repository` (`owner/name`, GitLab: the project path)
    /// at the API base `api`.
    pub fn new(
        provider: ForgeProvider,
        api: &str,
        repository: &str,
        token: String,
    ) -> Result<Forge, ForgeError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("tagrelay/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ForgeError::Unreachable {
                forge: api.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Forge {
            provider,
            api: api.trim_end_matches('/').to_string(),
            repository: repository.to_string(),
            token,
            http,
        })
    }

    /// The repository's API path: `/repos/o/r` or `/projects/<escaped>`.
    fn repo_path(&self) -> String {
        match self.provider {
            ForgeProvider::Github | ForgeProvider::Gitea => format!("/repos/{}", self.repository),
            ForgeProvider::Gitlab => format!("/projects/{}", escape(&self.repository)),
        }
    }

    /// Sends one call and returns the decoded JSON answer (`Null` for an
    /// empty one).
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ForgeError> {
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header("Accept", "application/json");
        request = match self.provider {
            ForgeProvider::Github => request
                .header("Authorization", format!("Bearer {}", self.token))
                .header("X-GitHub-Api-Version", "2022-11-28"),
            ForgeProvider::Gitlab => request.header("PRIVATE-TOKEN", &self.token),
            ForgeProvider::Gitea => {
                request.header("Authorization", format!("token {}", self.token))
            }
        };
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| ForgeError::Unreachable {
            forge: self.api.clone(),
            reason: e.without_url().to_string(),
        };
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ForgeError::Invalid {
                    forge: self.api.clone(),
                    what,
                    reason: format!("more than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .or_else(|| v.get("error"))
                        .map(|m| m.to_string())
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(ForgeError::Status {
                forge: self.api.clone(),
                what,
                status: status.as_u16(),
                message,
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ForgeError::Invalid {
            forge: self.api.clone(),
            what,
            reason: e.to_string(),
        })
    }

    fn invalid(&self, what: &str, reason: &str) -> ForgeError {
        ForgeError::Invalid {
            forge: self.api.clone(),
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Reads a request from the forge's JSON.
    fn request_of(&self, value: &Value, what: &str) -> Result<ForgeRequest, ForgeError> {
        let number_field = match self.provider {
            ForgeProvider::Gitlab => "iid",
            ForgeProvider::Github | ForgeProvider::Gitea => "number",
        };
        let number = value[number_field]
            .as_u64()
            .ok_or_else(|| self.invalid(what, &format!("no {number_field}")))?;
        let url = value["html_url"]
            .as_str()
            .or_else(|| value["web_url"].as_str())
            .ok_or_else(|| self.invalid(what, "no web URL"))?
            .to_string();
        let state = match (self.provider, value["state"].as_str()) {
            (ForgeProvider::Gitlab, Some("opened" | "locked")) => RequestState::Open,
            (ForgeProvider::Gitlab, Some("merged")) => RequestState::Merged,
            (ForgeProvider::Gitlab, Some("closed")) => RequestState::Closed,
            (_, Some("open")) => RequestState::Open,
            (_, Some("closed")) if value["merged"].as_bool() == Some(true) => RequestState::Merged,
            (_, Some("closed")) if !value["merged_at"].is_null() => RequestState::Merged,
            (_, Some("closed")) => RequestState::Closed,
            (_, other) => return Err(self.invalid(what, &format!("state {other:?}"))),
        };
        Ok(ForgeRequest {
            number,
            url,
            state,
            node_id: value["node_id"].as_str().map(str::to_string),
        })
    }

    /// The open request from `head` into `base`, if there is one.
    pub async fn find_open(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<ForgeRequest>, ForgeError> {
        let repo = self.repo_path();
        let (path, filter_here) = match self.provider {
            ForgeProvider::Github => {
                let owner = self.repository.split('/').next().unwrap_or_default();
                (
                    format!(
                        "{repo}/pulls?state=open&head={}&base={}",
                        escape(&format!("{owner}:{head}")),
                        escape(base)
                    ),
                    false,
                )
            }
            ForgeProvider::Gitlab => (
                format!(
                    "{repo}/merge_requests?state=opened&source_branch={}&target_branch={}",
                    escape(head),
                    escape(base)
                ),
                false,
            ),
            ForgeProvider::Gitea => (format!("{repo}/pulls?state=open&limit=50"), true),
        };
        let answer = self.call(Method::GET, &path, None).await?;
        let list = answer
            .as_array()
            .ok_or_else(|| self.invalid(&path, "not a list"))?;
        for item in list {
            // Gitea's list cannot be filtered by branch: match them here.
            if filter_here
                && (item["head"]["ref"].as_str() != Some(head)
                    || item["base"]["ref"].as_str() != Some(base))
            {
                continue;
            }
            let found = self.request_of(item, &path)?;
            if found.state == RequestState::Open {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// One request by number.
    pub async fn get(&self, number: u64) -> Result<ForgeRequest, ForgeError> {
        let path = match self.provider {
            ForgeProvider::Gitlab => format!("{}/merge_requests/{number}", self.repo_path()),
            _ => format!("{}/pulls/{number}", self.repo_path()),
        };
        let answer = self.call(Method::GET, &path, None).await?;
        self.request_of(&answer, &path)
    }

    /// Opens a request from `head` into `base`.
    pub async fn open(
        &self,
        head: &str,
        base: &str,
        text: &RequestText<'_>,
    ) -> Result<ForgeRequest, ForgeError> {
        let (path, body) = match self.provider {
            ForgeProvider::Gitlab => (
                format!("{}/merge_requests", self.repo_path()),
                json!({"source_branch": head, "target_branch": base, "title": text.title, "description": text.body}),
            ),
            _ => (
                format!("{}/pulls", self.repo_path()),
                json!({"head": head, "base": base, "title": text.title, "body": text.body}),
            ),
        };
        let answer = self.call(Method::POST, &path, Some(body)).await?;
        self.request_of(&answer, &path)
    }

    /// Sets the title and body of request `number`.
    pub async fn retitle(&self, number: u64, text: &RequestText<'_>) -> Result<(), ForgeError> {
        let (method, path, body) = match self.provider {
            ForgeProvider::Gitlab => (
                Method::PUT,
                format!("{}/merge_requests/{number}", self.repo_path()),
                json!({"title": text.title, "description": text.body}),
            ),
            _ => (
                Method::PATCH,
                format!("{}/pulls/{number}", self.repo_path()),
                json!({"title": text.title, "body": text.body}),
            ),
        };
        self.call(method, &path, Some(body)).await.map(drop)
    }

    /// Adds `labels` to request `number` (Gitea wants label ids: the
    /// repository's labels are looked up by name, and a missing one is an
    /// error naming it).
    pub async fn label(&self, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        if labels.is_empty() {
            return Ok(());
        }
        let repo = self.repo_path();
        match self.provider {
            ForgeProvider::Github => {
                let path = format!("{repo}/issues/{number}/labels");
                self.call(Method::POST, &path, Some(json!({ "labels": labels })))
                    .await
                    .map(drop)
            }
            ForgeProvider::Gitlab => {
                let path = format!("{repo}/merge_requests/{number}");
                self.call(
                    Method::PUT,
                    &path,
                    Some(json!({ "add_labels": labels.join(",") })),
                )
                .await
                .map(drop)
            }
            ForgeProvider::Gitea => {
                let list_path = format!("{repo}/labels?limit=50");
                let known = self.call(Method::GET, &list_path, None).await?;
                let mut ids = Vec::new();
                for label in labels {
                    let id = known
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|l| l["name"].as_str() == Some(label.as_str()))
                        .and_then(|l| l["id"].as_u64())
                        .ok_or_else(|| {
                            self.invalid(
                                &list_path,
                                &format!("no label {label:?} in the repository"),
                            )
                        })?;
                    ids.push(id);
                }
                let path = format!("{repo}/issues/{number}/labels");
                self.call(Method::POST, &path, Some(json!({ "labels": ids })))
                    .await
                    .map(drop)
            }
        }
    }

    /// Asks `reviewers` (user names) to review request `number` (GitLab
    /// wants user ids: each is looked up by name).
    pub async fn request_reviews(
        &self,
        number: u64,
        reviewers: &[String],
    ) -> Result<(), ForgeError> {
        if reviewers.is_empty() {
            return Ok(());
        }
        let repo = self.repo_path();
        match self.provider {
            ForgeProvider::Github | ForgeProvider::Gitea => {
                let path = format!("{repo}/pulls/{number}/requested_reviewers");
                self.call(Method::POST, &path, Some(json!({ "reviewers": reviewers })))
                    .await
                    .map(drop)
            }
            ForgeProvider::Gitlab => {
                let mut ids = Vec::new();
                for name in reviewers {
                    let path = format!("/users?username={}", escape(name));
                    let users = self.call(Method::GET, &path, None).await?;
                    let id = users
                        .as_array()
                        .and_then(|u| u.first())
                        .and_then(|u| u["id"].as_u64())
                        .ok_or_else(|| self.invalid(&path, &format!("no user {name:?}")))?;
                    ids.push(id);
                }
                let path = format!("{repo}/merge_requests/{number}");
                self.call(Method::PUT, &path, Some(json!({ "reviewer_ids": ids })))
                    .await
                    .map(drop)
            }
        }
    }

    /// Lets the forge merge `request` with `method` once it may (GitHub:
    /// the GraphQL `enablePullRequestAutoMerge` mutation, which REST lacks;
    /// GitLab: merge when the pipeline succeeds; Gitea: merge when checks
    /// succeed).
    pub async fn auto_merge(
        &self,
        request: &ForgeRequest,
        method: MergeMethod,
    ) -> Result<(), ForgeError> {
        let repo = self.repo_path();
        let number = request.number;
        match self.provider {
            ForgeProvider::Github => {
                let node = request
                    .node_id
                    .as_deref()
                    .ok_or_else(|| self.invalid("auto-merge", "the request has no node_id"))?;
                let query = "mutation($id: ID!, $method: PullRequestMergeMethod!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: $method}) { clientMutationId } }";
                let body = json!({"query": query, "variables": {"id": node, "method": method.as_str().to_uppercase()}});
                let answer = self
                    .call(Method::POST, &graphql_path(&self.api), Some(body))
                    .await?;
                match answer.get("errors") {
                    Some(errors) if !errors.is_null() => {
                        Err(self.invalid("POST /graphql", &errors.to_string()))
                    }
                    _ => Ok(()),
                }
            }
            ForgeProvider::Gitlab => {
                let path = format!("{repo}/merge_requests/{number}/merge");
                let squash = method == MergeMethod::Squash;
                self.call(
                    Method::PUT,
                    &path,
                    Some(json!({"merge_when_pipeline_succeeds": true, "squash": squash})),
                )
                .await
                .map(drop)
            }
            ForgeProvider::Gitea => {
                let path = format!("{repo}/pulls/{number}/merge");
                self.call(
                    Method::POST,
                    &path,
                    Some(json!({"Do": method.as_str(), "merge_when_checks_succeed": true})),
                )
                .await
                .map(drop)
            }
        }
    }
}

/// GitHub's GraphQL endpoint beside a REST base: `https://api.github.com`
/// → `/graphql`; GitHub Enterprise's `https://host/api/v3` → `/api/graphql`,
/// returned relative to the REST base.
fn graphql_path(api: &str) -> String {
    if api.ends_with("/api/v3") {
        "/../graphql".to_string()
    } else {
        "/graphql".to_string()
    }
}

/// The RS256 JSON Web Token a GitHub App signs to ask for an installation
/// token: issued a minute in the past (clock drift), valid nine minutes.
pub fn github_app_jwt(app_id: &str, private_key_pem: &str, now: i64) -> Result<String, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer as _};
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(private_key_pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_pem(private_key_pem))
        .map_err(|_| "githubAppPrivateKey is not an RSA private key in PEM".to_string())?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = b64.encode(json!({"iat": now - 60, "exp": now + 540, "iss": app_id}).to_string());
    let signing_input = format!("{header}.{claims}");
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
        .try_sign(signing_input.as_bytes())
        .map_err(|e| format!("signing the GitHub App token request failed: {e}"))?;
    Ok(format!(
        "{signing_input}.{}",
        b64.encode(signature.to_vec())
    ))
}

/// Exchanges a GitHub App's JWT for an installation token
/// (`POST /app/installations/{id}/access_tokens`): the token and when it
/// expires (RFC 3339).
pub async fn github_installation_token(
    api: &str,
    installation_id: &str,
    jwt: &str,
) -> Result<(String, String), ForgeError> {
    let forge = Forge::new(ForgeProvider::Github, api, "", jwt.to_string())?;
    let path = format!(
        "/app/installations/{}/access_tokens",
        escape(installation_id)
    );
    let answer = forge.call(Method::POST, &path, None).await?;
    match (answer["token"].as_str(), answer["expires_at"].as_str()) {
        (Some(token), Some(expires)) => Ok((token.to_string(), expires.to_string())),
        _ => Err(forge.invalid(&path, "no token and expires_at")),
    }
}
