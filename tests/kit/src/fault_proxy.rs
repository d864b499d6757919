//! A small fault-injecting HTTP proxy in front of a real registry, for the
//! registry behaviours the CNCF registry cannot produce: 429 with
//! `Retry-After`, 5xx, slow answers, garbage JSON, truncated bodies and
//! connections dropped mid-body, and paginated tag lists (with a `Link`
//! header, or capped at a page size with only `last` to go on, as Quay does).
//!
//! Everything else is forwarded unchanged, so the registry under test stays
//! real. Faults come two ways: queued, each answering one tag-list request
//! in order; or as a [`Storm`], answering a share of the requests of a
//! [`Scope`] (tag lists, manifests and blobs, or both) until it is calmed.
//! Every request, and every fault served, is recorded for assertions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One misbehaviour, answering one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `429 Too Many Requests` with `Retry-After: <seconds>`.
    TooManyRequests {
        /// The `Retry-After` value in seconds.
        retry_after: u64,
    },
    /// An error status (`500`, `502`, `503`) with a short body.
    Status(u16),
    /// Waits this long, then forwards the request normally.
    Slow(Duration),
    /// Forwards the request at once and holds the registry's answer this
    /// long: when it arrives it is as old as the delay (a slow link, a
    /// lagging cache).
    Late(Duration),
    /// `200 OK` with a body that is not JSON.
    Garbage,
    /// `200 OK` with the registry's real body cut in the middle (mid-JSON);
    /// the `Content-Length` matches what is sent, so only the content is
    /// wrong. A `HEAD` is forwarded untouched.
    Truncated,
    /// `200 OK` announcing the real body's `Content-Length`, then the
    /// connection is closed after half of it. A `HEAD` is forwarded
    /// untouched.
    Dropped,
}

impl Fault {
    /// A short name of the kind of fault, for reports: `429`, `5xx`,
    /// `slow`, `late`, `garbage`, `truncated`, `dropped`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::TooManyRequests { .. } => "429",
            Fault::Status(_) => "5xx",
            Fault::Slow(_) => "slow",
            Fault::Late(_) => "late",
            Fault::Garbage => "garbage",
            Fault::Truncated => "truncated",
            Fault::Dropped => "dropped",
        }
    }

    /// Whether the fault is about a body (meaningless for a `HEAD`).
    fn needs_body(&self) -> bool {
        matches!(self, Fault::Garbage | Fault::Truncated | Fault::Dropped)
    }
}

/// Which requests a [`Storm`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `GET /v2/<repository>/tags/list`.
    TagLists,
    /// `/v2/<repository>/manifests/<reference>` and `/blobs/<digest>`.
    Images,
    /// Both.
    All,
}

impl Scope {
    fn covers(self, kind: RequestKind) -> bool {
        match (self, kind) {
            (_, RequestKind::Other) => false,
            (Scope::All, _) => true,
            (Scope::TagLists, kind) => kind == RequestKind::TagList,
            (Scope::Images, kind) => kind == RequestKind::Image,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    TagList,
    Image,
    Other,
}

fn request_kind(path: &str) -> RequestKind {
    if path.ends_with("/tags/list") {
        RequestKind::TagList
    } else if path.contains("/manifests/") || path.contains("/blobs/") {
        RequestKind::Image
    } else {
        RequestKind::Other
    }
}

/// Faults answering a share of the requests of a scope until calmed: what
/// a sick registry does for a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storm {
    /// The faults, served in turn.
    pub faults: Vec<Fault>,
    /// Which requests they answer.
    pub scope: Scope,
    /// How many requests in a hundred get a fault (spread evenly; 100:
    /// every one).
    pub percent: u32,
}

struct StormState {
    storm: Storm,
    seen: u64,
    served: usize,
}

impl StormState {
    /// The fault for the next request in scope, if it gets one.
    fn next(&mut self, method: &Method) -> Option<Fault> {
        self.seen += 1;
        let percent = u64::from(self.storm.percent.min(100));
        if (self.seen * percent) % 100 >= percent || self.storm.faults.is_empty() {
            return None;
        }
        let fault = self.storm.faults[self.served % self.storm.faults.len()].clone();
        if fault.needs_body() && method == Method::HEAD {
            return None;
        }
        self.served += 1;
        Some(fault)
    }
}

/// One fault served: when, to which request (`METHOD path?query`), which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// When the request arrived.
    pub at: Instant,
    /// The request.
    pub request: String,
    /// The fault.
    pub fault: Fault,
}

/// How tag lists are paginated by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// Forwarded as the registry answers (the CNCF registry ignores `n` and
    /// `last` and returns everything).
    Passthrough,
    /// Pages of at most `page_size` tags (or the client's `n` when smaller)
    /// after `last`, with a `Link: <…>; rel="next"` header while more remain.
    Link {
        /// The cap on a page.
        page_size: usize,
    },
    /// Pages of at most `page_size` tags after `last`, whatever `n` asks,
    /// and no `Link` header: the client must advance with `last` itself.
    CappedWithoutLink {
        /// The cap on a page.
        page_size: usize,
    },
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Mutex<VecDeque<Fault>>,
    storm: Mutex<Option<StormState>>,
    paging: Mutex<Paging>,
    requests: Mutex<Vec<(Instant, String)>>,
    served: Mutex<Vec<Served>>,
}

/// A running proxy, stopped when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            faults: Mutex::new(VecDeque::new()),
            storm: Mutex::new(None),
            paging: Mutex::new(Paging::Passthrough),
            requests: Mutex::new(Vec::new()),
            served: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `127.0.0.1:PORT`, to use as the registry part of image names.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Queues `fault` for the next tag-list request not yet answered by one.
    pub fn inject(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .expect("faults lock")
            .push_back(fault);
    }

    /// Starts `storm`, replacing the one in force.
    pub fn storm(&self, storm: Storm) {
        *self.shared.storm.lock().expect("storm lock") = Some(StormState {
            storm,
            seen: 0,
            served: 0,
        });
    }

    /// Ends the storm in force, if any.
    pub fn calm(&self) {
        *self.shared.storm.lock().expect("storm lock") = None;
    }

    /// Every fault served so far (queued or from a storm), in order.
    pub fn served(&self) -> Vec<Served> {
        self.shared.served.lock().expect("served lock").clone()
    }

    /// Sets how tag lists are paginated from now on.
    pub fn set_paging(&self, paging: Paging) {
        *self.shared.paging.lock().expect("paging lock") = paging;
    }

    /// Every request seen so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.timed_requests().into_iter().map(|(_, r)| r).collect()
    }

    /// Every request seen so far with when it arrived.
    pub fn timed_requests(&self) -> Vec<(Instant, String)> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// How many tag-list requests were seen so far.
    pub fn tag_list_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.contains("/tags/list"))
            .count()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.requests.lock().expect("requests lock").clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let line = format!("{} {path_and_query}", request.method());
    let at = Instant::now();
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push((at, line.clone()));
    let kind = request_kind(request.uri().path());
    let queued = match kind {
        RequestKind::TagList => shared.faults.lock().expect("faults lock").pop_front(),
        _ => None,
    };
    let fault = queued.or_else(|| {
        let mut storm = shared.storm.lock().expect("storm lock");
        storm
            .as_mut()
            .filter(|s| s.storm.scope.covers(kind))
            .and_then(|s| s.next(request.method()))
    });
    if let Some(fault) = &fault {
        shared.served.lock().expect("served lock").push(Served {
            at,
            request: line,
            fault: fault.clone(),
        });
    }
    match fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            )
                .into_response();
            response.headers_mut().insert(
                "Retry-After",
                HeaderValue::from_str(&retry_after.to_string()).expect("header"),
            );
            return response;
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "injected failure").into_response();
        }
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::Late(delay)) => {
            let response = answer(&shared, request, &path_and_query, kind).await;
            tokio::time::sleep(delay).await;
            return response;
        }
        Some(Fault::Garbage) => {
            return (StatusCode::OK, "{\"name\": \"x\", \"tags\": [\"a\", <html>").into_response()
        }
        Some(fault @ (Fault::Truncated | Fault::Dropped)) => {
            return cut(&shared, request, &path_and_query, &fault).await;
        }
        None => {}
    }
    answer(&shared, request, &path_and_query, kind).await
}

/// The registry's answer, paginated as set for tag lists.
async fn answer(
    shared: &Shared,
    request: Request,
    path_and_query: &str,
    kind: RequestKind,
) -> Response {
    if kind == RequestKind::TagList {
        let paging = *shared.paging.lock().expect("paging lock");
        if paging != Paging::Passthrough {
            return paginate(shared, request, paging).await;
        }
    }
    forward(shared, request, path_and_query).await
}

/// The registry's real answer with its body cut in half: `Truncated` sends
/// the half with a matching `Content-Length`; `Dropped` announces the whole
/// length and breaks the connection after the half.
async fn cut(shared: &Shared, request: Request, path_and_query: &str, fault: &Fault) -> Response {
    let (status, headers, body) = match send(
        shared,
        request.method().clone(),
        request.headers(),
        path_and_query,
        Bytes::new(),
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e).into_response(),
    };
    let half = body.slice(..body.len() / 2);
    let mut response = if *fault == Fault::Dropped {
        use futures::StreamExt;
        // The break comes a moment after the half, so the head and the half
        // are on the wire first.
        let first = futures::stream::once(async move { Ok::<_, std::io::Error>(half) });
        let broken = futures::stream::once(async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "injected: connection dropped mid-body",
            ))
        });
        Response::new(Body::from_stream(first.chain(broken)))
    } else {
        Response::new(Body::from(half))
    };
    *response.status_mut() = status;
    for (name, value) in headers.iter() {
        if name != "transfer-encoding" && name != CONTENT_LENGTH {
            response.headers_mut().append(name, value.clone());
        }
    }
    if *fault == Fault::Dropped {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    response
}

async fn forward(shared: &Shared, request: Request, path_and_query: &str) -> Response {
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), usize::MAX).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    match send(shared, method, &headers, path_and_query, body).await {
        Ok((status, headers, body)) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            for (name, value) in headers.iter() {
                if name != "transfer-encoding" && name != "content-length" {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e).into_response(),
    }
}

async fn send(
    shared: &Shared,
    method: Method,
    headers: &HeaderMap,
    path_and_query: &str,
    body: Bytes,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let mut upstream = shared
        .http
        .request(method, format!("{}{path_and_query}", shared.upstream))
        .body(body);
    for (name, value) in headers.iter() {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name, value);
        }
    }
    let response = upstream.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, headers, body))
}

async fn paginate(shared: &Shared, request: Request, paging: Paging) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let param = |key: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
    };
    let asked: Option<usize> = param("n").and_then(|n| n.parse().ok());
    let last = param("last");
    let (status, headers, body) =
        match send(shared, Method::GET, request.headers(), &path, Bytes::new()).await {
            Ok(answer) => answer,
            Err(e) => return (StatusCode::BAD_GATEWAY, e).into_response(),
        };
    if !status.is_success() {
        return (status, headers, body).into_response();
    }
    let mut listing: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(listing) => listing,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut tags: Vec<String> = listing["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    let (cap, link) = match paging {
        Paging::Link { page_size } => (asked.unwrap_or(page_size).min(page_size), true),
        Paging::CappedWithoutLink { page_size } => (page_size, false),
        Paging::Passthrough => (usize::MAX, false),
    };
    let start = last
        .as_deref()
        .map_or(0, |last| tags.partition_point(|t| t.as_str() <= last));
    let page: Vec<String> = tags.iter().skip(start).take(cap).cloned().collect();
    let more = start + page.len() < tags.len();
    listing["tags"] = page.clone().into();
    let mut response = (StatusCode::OK, listing.to_string()).into_response();
    response
        .headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    if link && more {
        if let Some(last) = page.last() {
            let value = format!("<{path}?n={cap}&last={last}>; rel=\"next\"");
            response
                .headers_mut()
                .insert("Link", HeaderValue::from_str(&value).expect("link header"));
        }
    }
    response
}
