//! A small fault-injecting HTTP proxy in front of a real registry, for the
//! registry behaviours the CNCF registry cannot produce: 429 with
//! `Retry-After`, 5xx, slow answers, garbage JSON, and paginated tag lists
//! (with a `Link` header, or capped at a page size with only `last` to go
//! on, as Quay does).
//!
//! Everything else is forwarded unchanged, so the registry under test stays
//! real. Faults are queued and each one answers one tag-list request, in
//! order; every request is recorded for assertions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// One misbehaviour, answering one tag-list request.
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
    /// `200 OK` with a body that is not JSON.
    Garbage,
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
    paging: Mutex<Paging>,
    requests: Mutex<Vec<(Instant, String)>>,
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
            paging: Mutex::new(Paging::Passthrough),
            requests: Mutex::new(Vec::new()),
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
    shared.requests.lock().expect("requests lock").push((
        Instant::now(),
        format!("{} {path_and_query}", request.method()),
    ));
    let is_tag_list = request.uri().path().ends_with("/tags/list");
    if is_tag_list {
        let fault = shared.faults.lock().expect("faults lock").pop_front();
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
                let status =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return (status, "injected failure").into_response();
            }
            Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
            Some(Fault::Garbage) => {
                return (StatusCode::OK, "{\"name\": \"x\", \"tags\": [\"a\", <html>")
                    .into_response()
            }
            None => {}
        }
        let paging = *shared.paging.lock().expect("paging lock");
        if paging != Paging::Passthrough {
            return paginate(&shared, request, paging).await;
        }
    }
    forward(&shared, request, &path_and_query).await
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
