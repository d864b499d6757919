//! The clouds' credential endpoints, for `spec.provider` tests.
//!
//! AWS is real where it can be: [`Moto`] runs `moto_server` (PyPI `moto`),
//! which serves ECR `GetAuthorizationToken`, STS and the EC2 instance
//! metadata, and checks SigV4 signatures once auth is on. Google Cloud and
//! Azure have no emulator, so [`CloudIdentity`] implements their documented
//! token protocols on loopback, validating what a real endpoint validates:
//! the GCE metadata server (`Metadata-Flavor: Google` required), Google's
//! OAuth2 token endpoint (an RS256 JWT bearer grant checked with the
//! service account's public key, its issuer, audience and scope), the Azure
//! AD token endpoint (workload identity federation: client id and the
//! federated assertion) and the managed identity endpoint
//! (`X-IDENTITY-HEADER`). [`AcrFront`] is an Azure Container Registry's
//! front: `/oauth2/exchange` (AAD token → refresh token), `/oauth2/token`
//! (refresh token → access token, by basic auth or the OAuth2 form) and
//! `/v2/` accepting only that access token, forwarding to a real registry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::json;

use crate::free_port;

/// A running `moto_server`, stopped on drop.
pub struct Moto {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto. With `auth`, SigV4 is checked after the IAM user of
    /// [`Moto::access_key`] is made (moto's `INITIAL_NO_AUTH_ACTION_COUNT`).
    pub fn start(auth: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("log");
        let mut command = Command::new("moto_server");
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null());
        if auth {
            command.env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
        }
        let child = command
            .spawn()
            .expect("moto_server (pip install \"moto[server]\"; scripts/install-deps does)");
        crate::wait_for_port(port, Duration::from_secs(30), &dir.path().join("moto.log"));
        Self {
            port,
            child,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An IAM user allowed everything and its access key `(id, secret)`:
    /// three unauthenticated calls, after which moto checks signatures.
    pub fn access_key(&self) -> (String, String) {
        let script = r#"
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="tagrelay")
key = iam.create_access_key(UserName="tagrelay")["AccessKey"]
iam.put_user_policy(UserName="tagrelay", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let output = Command::new("python3")
            .args(["-c", script, &self.endpoint()])
            .output()
            .expect("python3 with boto3 (moto brings it)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("utf-8");
        let mut words = text.split_whitespace();
        (
            words.next().expect("key id").to_string(),
            words.next().expect("secret").to_string(),
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RSA key pair made by `openssl`: (PKCS#8 private key PEM, public key
/// PEM), for a Google service account key file.
pub fn rsa_key_pair() -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("key.pem");
    let public = dir.path().join("pub.pem");
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    let private_path = private.to_str().expect("utf-8 path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_path,
    ]);
    run(&[
        "pkey",
        "-in",
        private_path,
        "-pubout",
        "-out",
        public.to_str().expect("utf-8 path"),
    ]);
    (
        std::fs::read_to_string(private).expect("key"),
        std::fs::read_to_string(public).expect("public key"),
    )
}

/// What the identity endpoints accept and give.
#[derive(Clone, Debug)]
pub struct Identities {
    /// The access token Google's endpoints give.
    pub google_token: String,
    /// The service account whose JWTs the OAuth2 endpoint accepts.
    pub google_client_email: String,
    /// Its public key (PEM).
    pub google_public_key: String,
    /// The access token Azure AD gives.
    pub aad_token: String,
    /// The tenant.
    pub azure_tenant: String,
    /// The application (client) id.
    pub azure_client_id: String,
    /// The federated token (the Kubernetes service account token) accepted.
    pub azure_federated_token: String,
    /// The managed identity endpoint's `IDENTITY_HEADER`.
    pub identity_header: String,
}

struct IdentityState {
    identities: Identities,
    base: String,
    requests: Mutex<Vec<String>>,
}

/// Google's and Azure's identity endpoints on loopback, stopped on drop.
pub struct CloudIdentity {
    addr: SocketAddr,
    state: Arc<IdentityState>,
    task: tokio::task::JoinHandle<()>,
}

impl CloudIdentity {
    /// Serves `identities`.
    pub async fn start(identities: Identities) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(IdentityState {
            identities,
            base: format!("http://{addr}"),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(gce_metadata),
            )
            .route("/token", post(google_token))
            .route("/{tenant}/oauth2/v2.0/token", post(aad_token))
            .route("/msi/token", get(managed_identity))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    /// `127.0.0.1:PORT` (`GCE_METADATA_HOST`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT` (`AZURE_AUTHORITY_HOST`; `/token` is the
    /// key file's `token_uri`; `/msi/token` is `IDENTITY_ENDPOINT`).
    pub fn url(&self) -> String {
        self.state.base.clone()
    }

    /// `METHOD path` of every request, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().expect("lock").clone()
    }
}

impl Drop for CloudIdentity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(state: &IdentityState, what: &str) {
    state.requests.lock().expect("lock").push(what.to_string());
}

fn refuse(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": "refused by the test endpoint"})),
    )
        .into_response()
}

async fn gce_metadata(State(state): State<Arc<IdentityState>>, headers: HeaderMap) -> Response {
    record(&state, "GET metadata token");
    if headers.get("Metadata-Flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return refuse(StatusCode::FORBIDDEN, "missing Metadata-Flavor: Google");
    }
    Json(json!({"access_token": state.identities.google_token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
}

async fn google_token(
    State(state): State<Arc<IdentityState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    record(&state, "POST google token");
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let Ok(key) =
        jsonwebtoken::DecodingKey::from_rsa_pem(state.identities.google_public_key.as_bytes())
    else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, "bad test key");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("{}/token", state.base)]);
    validation.set_issuer(std::slice::from_ref(&state.identities.google_client_email));
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    match jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation) {
        Ok(token)
            if token.claims["scope"]
                .as_str()
                .is_some_and(|s| s.split(' ').any(|s| s == "https://www.googleapis.com/auth/cloud-platform")) =>
        {
            Json(json!({"access_token": state.identities.google_token, "expires_in": 3599, "token_type": "Bearer"})).into_response()
        }
        _ => refuse(StatusCode::BAD_REQUEST, "invalid_grant"),
    }
}

async fn aad_token(
    State(state): State<Arc<IdentityState>>,
    UrlPath(tenant): UrlPath<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    record(&state, "POST aad token");
    let ids = &state.identities;
    let field = |name: &str| form.get(name).map(String::as_str);
    let valid = tenant == ids.azure_tenant
        && field("grant_type") == Some("client_credentials")
        && field("client_id") == Some(ids.azure_client_id.as_str())
        && field("client_assertion_type")
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        && field("client_assertion") == Some(ids.azure_federated_token.as_str())
        && field("scope") == Some("https://management.azure.com/.default");
    if !valid {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    Json(json!({"access_token": ids.aad_token, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

async fn managed_identity(
    State(state): State<Arc<IdentityState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    record(&state, "GET managed identity token");
    let ids = &state.identities;
    let valid = headers
        .get("X-IDENTITY-HEADER")
        .and_then(|v| v.to_str().ok())
        == Some(ids.identity_header.as_str())
        && query.get("api-version").map(String::as_str) == Some("2019-08-01")
        && query.get("resource").map(String::as_str) == Some("https://management.azure.com/");
    if !valid {
        return refuse(StatusCode::UNAUTHORIZED, "invalid identity header or query");
    }
    let expires_on = chrono::Utc::now().timestamp() + 3599;
    Json(json!({"access_token": ids.aad_token, "expires_on": expires_on.to_string(), "resource": "https://management.azure.com/", "token_type": "Bearer"})).into_response()
}

struct AcrState {
    upstream: String,
    aad_token: String,
    refresh_token: String,
    access_token: String,
    http: reqwest::Client,
}

/// An Azure Container Registry's front on loopback, stopped on drop.
pub struct AcrFront {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AcrFront {
    /// Exchanges `aad_token` for `refresh_token`, that for an access token,
    /// and forwards `/v2/` requests carrying it to `upstream` (an anonymous
    /// registry, `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str, aad_token: &str, refresh_token: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(AcrState {
            upstream: upstream.trim_end_matches('/').to_string(),
            aad_token: aad_token.to_string(),
            refresh_token: refresh_token.to_string(),
            access_token: format!("acr-access-{}", fastrand_suffix()),
            http: reqwest::Client::new(),
        });
        let app = Router::new()
            .route("/oauth2/exchange", post(acr_exchange))
            .route("/oauth2/token", get(acr_token_basic).post(acr_token_form))
            .fallback(acr_forward)
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, task }
    }

    /// The front's port: images are `<name>.azurecr.io:PORT/…`, resolved
    /// to loopback.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for AcrFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fastrand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

async fn acr_exchange(
    State(state): State<Arc<AcrState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some("access_token")
        || field("service").is_none_or(|s| !s.ends_with(".azurecr.io"))
        || field("access_token") != Some(state.aad_token.as_str())
    {
        return refuse(StatusCode::UNAUTHORIZED, "invalid access token");
    }
    Json(json!({"refresh_token": state.refresh_token})).into_response()
}

fn access(state: &AcrState) -> Response {
    Json(json!({"access_token": state.access_token, "token": state.access_token, "expires_in": 3600})).into_response()
}

async fn acr_token_basic(State(state): State<Arc<AcrState>>, headers: HeaderMap) -> Response {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!(
        "00000000-0000-0000-0000-000000000000:{}",
        state.refresh_token
    ));
    if headers.get("Authorization").and_then(|v| v.to_str().ok())
        != Some(format!("Basic {expected}").as_str())
    {
        return refuse(StatusCode::UNAUTHORIZED, "invalid refresh token");
    }
    access(&state)
}

async fn acr_token_form(
    State(state): State<Arc<AcrState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("refresh_token") != Some(&state.refresh_token)
    {
        return refuse(StatusCode::UNAUTHORIZED, "invalid refresh token");
    }
    access(&state)
}

async fn acr_forward(
    State(state): State<Arc<AcrState>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if headers.get("Authorization").and_then(|v| v.to_str().ok())
        != Some(format!("Bearer {}", state.access_token).as_str())
    {
        let challenge = format!(
            "Bearer realm=\"http://{host}/oauth2/token\",service=\"{}\",scope=\"registry:catalog:*\"",
            host.split(':').next().unwrap_or_default()
        );
        return (
            StatusCode::UNAUTHORIZED,
            [("WWW-Authenticate", challenge)],
            "unauthorized",
        )
            .into_response();
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut forwarded = state.http.request(
        request.method().clone(),
        format!("{}{path}", state.upstream),
    );
    if let Some(accept) = headers.get("Accept") {
        forwarded = forwarded.header("Accept", accept.clone());
    }
    let Ok(answer) = forwarded.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for name in ["content-type", "docker-content-digest", "link"] {
        if let Some(value) = answer.headers().get(name) {
            out.insert(name, value.clone());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    (status, out, body).into_response()
}
