//! A forge on loopback that keeps pull request state: the parts of the
//! GitHub (REST v3 + the GraphQL auto-merge mutation + App installation
//! tokens), GitLab (REST v4) and Gitea (REST v1) APIs the review stage uses,
//! as their documentation describes them.
//!
//! No forge server can be installed here, and Prism (the validating mock)
//! keeps no state; this server lets tests drive the life of a request: open
//! once, updated, closed or merged by a person. It checks each forge's auth
//! header, the documented required fields, and refuses a second open
//! request for the same branches as GitHub does (422). A GitHub App's JWT is
//! verified with the App's public key (RS256, `iss`, `exp`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};

/// Which API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// GitHub: `/repos/…`, `Authorization: Bearer`.
    Github,
    /// GitLab: `/api/v4/projects/<escaped path>/…`, `PRIVATE-TOKEN`.
    Gitlab,
    /// Gitea/Forgejo: `/api/v1/repos/…`, `Authorization: token`.
    Gitea,
}

/// One request as the forge holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRequest {
    /// Its number.
    pub number: u64,
    /// Source branch.
    pub head: String,
    /// Target branch.
    pub base: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    /// Labels put on it.
    pub labels: Vec<String>,
    /// Reviewers asked (GitLab: user ids as text).
    pub reviewers: Vec<String>,
    /// The auto-merge method asked for.
    pub auto_merge: Option<String>,
}

#[derive(Default)]
struct Forge {
    requests: Vec<StoredRequest>,
    calls: Vec<String>,
    token: String,
    app: Option<(String, String, rsa::RsaPublicKey)>,
    issued: Vec<String>,
}

type Shared = Arc<(Flavour, String, Mutex<Forge>)>;

/// A running forge, stopped when dropped.
pub struct ForgeServer {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ForgeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ForgeServer {
    /// Starts a forge of `flavour` holding the repository `repository`
    /// (`owner/name`), accepting `token`.
    pub async fn start(flavour: Flavour, repository: &str, token: &str) -> Self {
        let shared: Shared = Arc::new((
            flavour,
            repository.to_string(),
            Mutex::new(Forge {
                token: token.to_string(),
                ..Forge::default()
            }),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the forge");
        let addr = listener.local_addr().expect("forge address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// Also accepts installation tokens of the GitHub App `app_id`,
    /// installation `installation_id`, whose JWTs must verify with
    /// `public_key_pem` (PKCS#1 or SPKI PEM).
    pub fn allow_github_app(&self, app_id: &str, installation_id: &str, public_key_pem: &str) {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::pkcs8::DecodePublicKey;
        let key = rsa::RsaPublicKey::from_pkcs1_pem(public_key_pem)
            .or_else(|_| rsa::RsaPublicKey::from_public_key_pem(public_key_pem))
            .expect("an RSA public key");
        self.forge().app = Some((app_id.to_string(), installation_id.to_string(), key));
    }

    fn forge(&self) -> std::sync::MutexGuard<'_, Forge> {
        self.shared.2.lock().expect("forge lock")
    }

    /// The API base the review stage is configured with.
    pub fn api_url(&self) -> String {
        match self.shared.0 {
            Flavour::Github => format!("http://{}", self.addr),
            Flavour::Gitlab => format!("http://{}/api/v4", self.addr),
            Flavour::Gitea => format!("http://{}/api/v1", self.addr),
        }
    }

    /// Every request ever opened, oldest first.
    pub fn requests(&self) -> Vec<StoredRequest> {
        self.forge().requests.clone()
    }

    /// Every call served, as `METHOD /path`.
    pub fn calls(&self) -> Vec<String> {
        self.forge().calls.clone()
    }

    /// Installation tokens issued to the GitHub App.
    pub fn issued_tokens(&self) -> usize {
        self.forge().issued.len()
    }

    /// A person closes request `number` without merging it.
    pub fn close(&self, number: u64) {
        self.set_state(number, "closed");
    }

    /// A person merges request `number`.
    pub fn merge(&self, number: u64) {
        self.set_state(number, "merged");
    }

    fn set_state(&self, number: u64, state: &str) {
        let mut forge = self.forge();
        let request = forge
            .requests
            .iter_mut()
            .find(|r| r.number == number)
            .expect("no such request");
        request.state = state.to_string();
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

fn authorised(flavour: Flavour, headers: &HeaderMap, forge: &Forge) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = match flavour {
        Flavour::Github => header("authorization").and_then(|v| v.strip_prefix("Bearer ")),
        Flavour::Gitlab => header("private-token"),
        Flavour::Gitea => header("authorization").and_then(|v| v.strip_prefix("token ")),
    };
    presented.is_some_and(|token| token == forge.token || forge.issued.iter().any(|t| t == token))
}

/// The request as the flavour's JSON.
fn view(flavour: Flavour, base_url: &str, repository: &str, r: &StoredRequest) -> Value {
    let merged = r.state == "merged";
    match flavour {
        Flavour::Gitlab => json!({
            "iid": r.number, "id": 1000 + r.number, "title": r.title, "description": r.body,
            "state": if r.state == "open" { "opened" } else { r.state.as_str() },
            "source_branch": r.head, "target_branch": r.base,
            "web_url": format!("{base_url}/{repository}/-/merge_requests/{}", r.number),
        }),
        Flavour::Github | Flavour::Gitea => json!({
            "number": r.number, "title": r.title, "body": r.body,
            "state": if r.state == "open" { "open" } else { "closed" },
            "merged": merged,
            "merged_at": if merged { json!("2026-12-04T10:00:00Z") } else { Value::Null },
            "node_id": format!("PR_node{}", r.number),
            "head": {"ref": r.head}, "base": {"ref": r.base},
            "html_url": format!("{base_url}/{repository}/pull/{}", r.number),
        }),
    }
}

fn string_field<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get(field).and_then(Value::as_str)
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (flavour, repository) = (shared.0, shared.1.clone());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => return error(StatusCode::BAD_REQUEST, "body is not JSON"),
        }
    };
    let query: BTreeMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mut forge = shared.2.lock().expect("forge lock");
    forge.calls.push(format!("{method} {}", uri.path()));
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("forge");
    let base_url = format!("http://{host}");

    // A GitHub App asks for an installation token with its JWT.
    if flavour == Flavour::Github
        && method == Method::POST
        && uri.path().starts_with("/app/installations/")
    {
        return installation_token(&mut forge, &headers, uri.path());
    }
    if !authorised(flavour, &headers, &forge) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let path = uri.path().to_string();
    let rest = match flavour {
        Flavour::Github => path.strip_prefix(&format!("/repos/{repository}")),
        Flavour::Gitea => path.strip_prefix(&format!("/api/v1/repos/{repository}")),
        Flavour::Gitlab => path.strip_prefix(&format!(
            "/api/v4/projects/{}",
            url::form_urlencoded::byte_serialize(repository.as_bytes()).collect::<String>()
        )),
    };
    if flavour == Flavour::Github && path == "/graphql" {
        return graphql(&mut forge, &body);
    }
    if flavour == Flavour::Gitlab && path == "/api/v4/users" {
        let name = query.get("username").cloned().unwrap_or_default();
        let id = 500 + name.len() as u64;
        return axum::Json(json!([{ "id": id, "username": name }])).into_response();
    }
    let Some(rest) = rest else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let collection = if flavour == Flavour::Gitlab {
        "merge_requests"
    } else {
        "pulls"
    };
    let number = |s: &str| s.parse::<u64>().ok();
    let found = |forge: &Forge, n: u64| forge.requests.iter().position(|r| r.number == n);
    match (&method, segments.as_slice()) {
        (&Method::GET, [c]) if *c == collection => {
            let list: Vec<Value> = forge
                .requests
                .iter()
                .filter(|r| match flavour {
                    Flavour::Github => {
                        let owner = repository.split('/').next().unwrap_or_default();
                        query
                            .get("state")
                            .is_none_or(|s| s == "all" || (s == "open") == (r.state == "open"))
                            && query
                                .get("head")
                                .is_none_or(|h| *h == format!("{owner}:{}", r.head))
                            && query.get("base").is_none_or(|b| *b == r.base)
                    }
                    Flavour::Gitlab => {
                        query
                            .get("state")
                            .is_none_or(|s| (s == "opened") == (r.state == "open"))
                            && query.get("source_branch").is_none_or(|h| *h == r.head)
                            && query.get("target_branch").is_none_or(|b| *b == r.base)
                    }
                    Flavour::Gitea => query
                        .get("state")
                        .is_none_or(|s| s == "all" || (s == "open") == (r.state == "open")),
                })
                .map(|r| view(flavour, &base_url, &repository, r))
                .collect();
            axum::Json(Value::Array(list)).into_response()
        }
        (&Method::GET, [c, n]) if *c == collection => {
            match number(n).and_then(|n| found(&forge, n)) {
                Some(i) => axum::Json(view(flavour, &base_url, &repository, &forge.requests[i]))
                    .into_response(),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::POST, [c]) if *c == collection => {
            let (head, base, body_field) = match flavour {
                Flavour::Gitlab => ("source_branch", "target_branch", "description"),
                _ => ("head", "base", "body"),
            };
            let (Some(head), Some(base), Some(title)) = (
                string_field(&body, head),
                string_field(&body, base),
                string_field(&body, "title"),
            ) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "head/base/title required");
            };
            if forge
                .requests
                .iter()
                .any(|r| r.state == "open" && r.head == head && r.base == base)
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "A pull request already exists",
                );
            }
            let stored = StoredRequest {
                number: forge.requests.len() as u64 + 1,
                head: head.to_string(),
                base: base.to_string(),
                title: title.to_string(),
                body: string_field(&body, body_field)
                    .unwrap_or_default()
                    .to_string(),
                state: "open".into(),
                labels: Vec::new(),
                reviewers: Vec::new(),
                auto_merge: None,
            };
            let answer = view(flavour, &base_url, &repository, &stored);
            forge.requests.push(stored);
            (StatusCode::CREATED, axum::Json(answer)).into_response()
        }
        (m, [c, n]) if *c == collection && (*m == Method::PATCH || *m == Method::PUT) => {
            let Some(i) = number(n).and_then(|n| found(&forge, n)) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let body_field = if flavour == Flavour::Gitlab {
                "description"
            } else {
                "body"
            };
            let request = &mut forge.requests[i];
            if let Some(title) = string_field(&body, "title") {
                request.title = title.to_string();
            }
            if let Some(text) = string_field(&body, body_field) {
                request.body = text.to_string();
            }
            if let Some(labels) = string_field(&body, "add_labels") {
                request.labels.extend(labels.split(',').map(str::to_string));
            }
            if let Some(ids) = body.get("reviewer_ids").and_then(Value::as_array) {
                request.reviewers = ids.iter().map(ToString::to_string).collect();
            }
            let answer = view(flavour, &base_url, &repository, &forge.requests[i]);
            axum::Json(answer).into_response()
        }
        (&Method::POST, ["issues", n, "labels"]) if flavour != Flavour::Gitlab => {
            let Some(i) = number(n).and_then(|n| found(&forge, n)) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let Some(labels) = body.get("labels").and_then(Value::as_array) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "labels required");
            };
            let names: Vec<String> = labels
                .iter()
                .map(|l| match (flavour, l) {
                    (Flavour::Gitea, Value::Number(id)) => format!("label-{id}"),
                    (_, Value::String(name)) => name.clone(),
                    (_, other) => format!("invalid:{other}"),
                })
                .collect();
            if names.iter().any(|n| n.starts_with("invalid:")) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "labels must be names (GitHub) or ids (Gitea)",
                );
            }
            forge.requests[i].labels.extend(names);
            axum::Json(json!([])).into_response()
        }
        (&Method::GET, ["labels"]) if flavour == Flavour::Gitea => {
            axum::Json(json!([{ "id": 7, "name": "image-update" }, { "id": 8, "name": "bot" }]))
                .into_response()
        }
        (&Method::POST, [c, n, "requested_reviewers"]) if *c == collection => {
            let Some(i) = number(n).and_then(|n| found(&forge, n)) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let Some(reviewers) = body.get("reviewers").and_then(Value::as_array) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "reviewers required");
            };
            forge.requests[i].reviewers = reviewers
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            (StatusCode::CREATED, axum::Json(json!({}))).into_response()
        }
        (m, [c, n, "merge"]) if *c == collection && (*m == Method::POST || *m == Method::PUT) => {
            let Some(i) = number(n).and_then(|n| found(&forge, n)) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let method = match flavour {
                Flavour::Gitlab
                    if body.get("merge_when_pipeline_succeeds") == Some(&json!(true)) =>
                {
                    if body.get("squash") == Some(&json!(true)) {
                        "squash"
                    } else {
                        "merge"
                    }
                    .to_string()
                }
                Flavour::Gitea if body.get("merge_when_checks_succeed") == Some(&json!(true)) => {
                    string_field(&body, "Do").unwrap_or_default().to_string()
                }
                _ => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "only auto-merge is served",
                    )
                }
            };
            forge.requests[i].auto_merge = Some(method);
            axum::Json(json!({})).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn graphql(forge: &mut Forge, body: &Value) -> Response {
    let query = string_field(body, "query").unwrap_or_default();
    let variables = &body["variables"];
    if !query.contains("enablePullRequestAutoMerge") {
        return axum::Json(json!({"errors": [{"message": "unsupported query"}]})).into_response();
    }
    let node = string_field(variables, "id").unwrap_or_default();
    let method = string_field(variables, "method").unwrap_or_default();
    let Some(request) = forge
        .requests
        .iter_mut()
        .find(|r| format!("PR_node{}", r.number) == node)
    else {
        return axum::Json(json!({"errors": [{"message": "Could not resolve to a node"}]}))
            .into_response();
    };
    if !["MERGE", "SQUASH", "REBASE"].contains(&method) {
        return axum::Json(json!({"errors": [{"message": "bad mergeMethod"}]})).into_response();
    }
    request.auto_merge = Some(method.to_lowercase());
    axum::Json(json!({"data": {"enablePullRequestAutoMerge": {"clientMutationId": null}}}))
        .into_response()
}

/// Verifies a GitHub App JWT (RS256 with the App's key, `iss` the App,
/// not expired) and issues an installation token.
fn installation_token(forge: &mut Forge, headers: &HeaderMap, path: &str) -> Response {
    use rsa::signature::Verifier;
    let Some((app_id, installation, key)) = forge.app.clone() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if path != format!("/app/installations/{installation}/access_tokens") {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let parts: Vec<&str> = jwt.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verified = (|| {
        let [header, claims, signature] = parts.as_slice() else {
            return None;
        };
        let header: Value = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
        let claims: Value = serde_json::from_slice(&b64.decode(claims).ok()?).ok()?;
        let signature =
            rsa::pkcs1v15::Signature::try_from(b64.decode(signature).ok()?.as_slice()).ok()?;
        let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
        verifier
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .ok()?;
        let now = chrono::Utc::now().timestamp();
        (header["alg"] == "RS256"
            && claims["iss"].as_str() == Some(app_id.as_str())
            && claims["exp"]
                .as_i64()
                .is_some_and(|exp| exp > now && exp <= now + 600))
        .then_some(())
    })();
    if verified.is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "A JSON web token could not be decoded",
        );
    }
    let token = format!("ghs_installation{}", forge.issued.len() + 1);
    forge.issued.push(token.clone());
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (
        StatusCode::CREATED,
        axum::Json(json!({"token": token, "expires_at": expires})),
    )
        .into_response()
}
