//! Registry push notifications, parsed and authenticated by pure functions
//! (they take bytes from the network, so they are fuzzed): the CNCF
//! distribution registry's notification envelope, Docker Hub, Harbor, Quay
//! and GitHub's `package` event for GHCR.
//!
//! A notification only says "this repository changed"; the scanner then
//! scans the repository itself, so a notification can never inject tags.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Who sent a notification, from the URL path it was posted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The CNCF distribution registry (`notifications.endpoints`).
    Distribution,
    /// Docker Hub repository webhooks.
    DockerHub,
    /// Harbor webhooks (HTTP, JSON payload).
    Harbor,
    /// Quay repository notifications ("Webhook POST").
    Quay,
    /// GitHub `package` webhooks, for GHCR.
    Ghcr,
}

impl Provider {
    /// The provider of `/hooks/<name>`.
    pub fn from_path(name: &str) -> Option<Self> {
        match name {
            "distribution" => Some(Provider::Distribution),
            "dockerhub" => Some(Provider::DockerHub),
            "harbor" => Some(Provider::Harbor),
            "quay" => Some(Provider::Quay),
            "ghcr" | "github" => Some(Provider::Ghcr),
            _ => None,
        }
    }
}

/// One repository a notification says changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The registry host as the sender names it, when it does.
    pub registry: Option<String>,
    /// The repository path on the registry (`org/app`).
    pub repository: String,
    /// The tag pushed or deleted, when known (for logs only).
    pub tag: Option<String>,
    /// An id that stays the same when the sender re-sends the notification,
    /// for de-duplication.
    pub id: String,
}

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON of the provider's shape.
    #[error("not a {provider} notification: {reason}")]
    Shape {
        /// The provider expected.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A repository name that is not a valid repository path.
    #[error("invalid repository name {0:?}")]
    BadRepository(String),
}

fn shape(provider: &'static str) -> impl Fn(serde_json::Error) -> PayloadError {
    move |e| PayloadError::Shape {
        provider,
        reason: e.to_string(),
    }
}

fn body_id(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Parses a notification body from `provider` into the repositories it
/// names. Events that do not change tags (pulls, blob uploads, pings) give
/// no push.
pub fn parse(provider: Provider, body: &[u8]) -> Result<Vec<Push>, PayloadError> {
    let pushes = match provider {
        Provider::Distribution => distribution(body)?,
        Provider::DockerHub => dockerhub(body)?,
        Provider::Harbor => harbor(body)?,
        Provider::Quay => quay(body)?,
        Provider::Ghcr => ghcr(body)?,
    };
    for push in &pushes {
        if tagrelay_proto::reference::Repository::parse(&push.repository).is_err()
            || push.repository.contains(':')
        {
            return Err(PayloadError::BadRepository(push.repository.clone()));
        }
    }
    Ok(pushes)
}

#[derive(Deserialize)]
struct DistributionEnvelope {
    events: Vec<DistributionEvent>,
}

#[derive(Deserialize)]
struct DistributionEvent {
    #[serde(default)]
    id: String,
    action: String,
    target: DistributionTarget,
    #[serde(default)]
    request: Option<DistributionRequest>,
}

#[derive(Deserialize)]
struct DistributionTarget {
    #[serde(default, rename = "mediaType")]
    media_type: String,
    repository: String,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct DistributionRequest {
    #[serde(default)]
    host: Option<String>,
}

/// Media types of manifests: a push event with one of these (or a tag)
/// changes tags; blob uploads do not.
fn is_manifest(media_type: &str) -> bool {
    media_type.contains("manifest") || media_type.contains("image.index")
}

fn distribution(body: &[u8]) -> Result<Vec<Push>, PayloadError> {
    let envelope: DistributionEnvelope =
        serde_json::from_slice(body).map_err(shape("distribution"))?;
    let mut pushes = Vec::new();
    for event in envelope.events {
        let tagged = event.target.tag.as_deref().is_some_and(|t| !t.is_empty());
        let relevant = match event.action.as_str() {
            "push" => tagged || is_manifest(&event.target.media_type),
            "delete" => true,
            _ => false,
        };
        if !relevant {
            continue;
        }
        let registry = event
            .request
            .and_then(|r| r.host)
            .filter(|h| !h.is_empty())
            .or_else(|| event.target.url.as_deref().and_then(url_host));
        let id = if event.id.is_empty() {
            body_id(body)
        } else {
            event.id
        };
        pushes.push(Push {
            registry,
            repository: event.target.repository,
            tag: event.target.tag.filter(|t| !t.is_empty()),
            id,
        });
    }
    Ok(pushes)
}

fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split('/').next()?;
    (!host.is_empty()).then(|| host.to_string())
}

#[derive(Deserialize)]
struct DockerHubPayload {
    push_data: DockerHubPushData,
    repository: DockerHubRepository,
}

#[derive(Deserialize)]
struct DockerHubPushData {
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Deserialize)]
struct DockerHubRepository {
    repo_name: String,
}

fn dockerhub(body: &[u8]) -> Result<Vec<Push>, PayloadError> {
    let payload: DockerHubPayload = serde_json::from_slice(body).map_err(shape("Docker Hub"))?;
    let name = payload.repository.repo_name;
    let repository = if name.contains('/') {
        name
    } else {
        format!("library/{name}")
    };
    Ok(vec![Push {
        registry: Some("docker.io".into()),
        repository,
        tag: payload.push_data.tag,
        id: body_id(body),
    }])
}

#[derive(Deserialize)]
struct HarborPayload {
    #[serde(rename = "type")]
    event_type: String,
    event_data: HarborEventData,
}

#[derive(Deserialize)]
struct HarborEventData {
    #[serde(default)]
    resources: Vec<HarborResource>,
    repository: HarborRepository,
}

#[derive(Deserialize)]
struct HarborResource {
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    resource_url: Option<String>,
}

#[derive(Deserialize)]
struct HarborRepository {
    repo_full_name: String,
}

fn harbor(body: &[u8]) -> Result<Vec<Push>, PayloadError> {
    let payload: HarborPayload = serde_json::from_slice(body).map_err(shape("Harbor"))?;
    let relevant = matches!(
        payload.event_type.as_str(),
        "PUSH_ARTIFACT" | "DELETE_ARTIFACT" | "pushImage" | "deleteImage"
    );
    if !relevant {
        return Ok(Vec::new());
    }
    let first = payload.event_data.resources.first();
    let registry = first
        .and_then(|r| r.resource_url.as_deref())
        .and_then(|u| u.split('/').next())
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    Ok(vec![Push {
        registry,
        repository: payload.event_data.repository.repo_full_name,
        tag: first.and_then(|r| r.tag.clone()),
        id: body_id(body),
    }])
}

#[derive(Deserialize)]
struct QuayPayload {
    repository: String,
    #[serde(default)]
    docker_url: Option<String>,
    #[serde(default)]
    updated_tags: Vec<String>,
}

fn quay(body: &[u8]) -> Result<Vec<Push>, PayloadError> {
    let payload: QuayPayload = serde_json::from_slice(body).map_err(shape("Quay"))?;
    let registry = payload
        .docker_url
        .as_deref()
        .and_then(|u| u.split('/').next())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| Some("quay.io".into()));
    Ok(vec![Push {
        registry,
        repository: payload.repository,
        tag: payload.updated_tags.into_iter().next(),
        id: body_id(body),
    }])
}

#[derive(Deserialize)]
struct GithubPayload {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    package: Option<GithubPackage>,
}

#[derive(Deserialize)]
struct GithubPackage {
    name: String,
    package_type: String,
    owner: GithubOwner,
    #[serde(default)]
    package_version: Option<GithubVersion>,
}

#[derive(Deserialize)]
struct GithubOwner {
    login: String,
}

#[derive(Deserialize)]
struct GithubVersion {
    #[serde(default)]
    package_url: Option<String>,
    #[serde(default)]
    container_metadata: Option<GithubContainerMetadata>,
}

#[derive(Deserialize)]
struct GithubContainerMetadata {
    #[serde(default)]
    tag: Option<GithubTag>,
}

#[derive(Deserialize)]
struct GithubTag {
    #[serde(default)]
    name: Option<String>,
}

fn ghcr(body: &[u8]) -> Result<Vec<Push>, PayloadError> {
    let payload: GithubPayload = serde_json::from_slice(body).map_err(shape("GitHub package"))?;
    let Some(package) = payload.package else {
        return Ok(Vec::new());
    };
    let published = matches!(payload.action.as_deref(), Some("published" | "updated"));
    if !published || !package.package_type.eq_ignore_ascii_case("container") {
        return Ok(Vec::new());
    }
    let version = package.package_version;
    let tag = version
        .as_ref()
        .and_then(|v| v.container_metadata.as_ref())
        .and_then(|m| m.tag.as_ref())
        .and_then(|t| t.name.clone())
        .filter(|t| !t.is_empty());
    let from_url = version
        .as_ref()
        .and_then(|v| v.package_url.as_deref())
        .and_then(|url| {
            let (registry, rest) = url.split_once('/')?;
            let (path, _) = tagrelay_proto::reference::split_tag(rest);
            let path = path.split('@').next().unwrap_or(path);
            Some((registry.to_string(), path.to_string()))
        });
    let (registry, repository) = from_url.unwrap_or_else(|| {
        (
            "ghcr.io".to_string(),
            format!("{}/{}", package.owner.login, package.name).to_ascii_lowercase(),
        )
    });
    Ok(vec![Push {
        registry: Some(registry),
        repository,
        tag,
        id: body_id(body),
    }])
}

/// What a request offers as proof that it comes from a configured sender.
#[derive(Debug, Clone, Copy, Default)]
pub struct Proof<'a> {
    /// The `Authorization` header: `Bearer <secret>`, or the secret as is
    /// (Harbor sends its "Auth Header" value verbatim).
    pub authorization: Option<&'a str>,
    /// GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    pub signature: Option<&'a str>,
    /// A `?token=<secret>` query parameter, for senders that can only be
    /// given a URL (Docker Hub, Quay).
    pub token: Option<&'a str>,
}

/// Whether `proof` shows knowledge of `secret` for `body`: a matching
/// token (compared in constant time) or a valid HMAC signature of the body.
/// An empty secret authenticates nothing.
pub fn authenticate(secret: &[u8], proof: &Proof<'_>, body: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    if let Some(signature) = proof.signature {
        return signature
            .trim()
            .strip_prefix("sha256=")
            .is_some_and(|hex| signature_matches(secret, body, hex));
    }
    let offered = proof.authorization.map(|value| {
        let value = value.trim();
        match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => value,
        }
    });
    offered
        .or(proof.token)
        .is_some_and(|token| bool::from(token.as_bytes().ct_eq(secret)))
}

/// Whether `hex` is the hex HMAC-SHA256 of `body` under `key`, checked by
/// RustCrypto's `verify_slice` (constant time); text that is not hex of
/// the right length matches nothing.
fn signature_matches(key: &[u8], body: &[u8], hex: &str) -> bool {
    let Ok(given) = hex::decode(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISTRIBUTION: &str = r#"{"events":[
      {"id":"e1","timestamp":"2026-11-21T10:00:00Z","action":"push",
       "target":{"mediaType":"application/octet-stream","digest":"sha256:aa","repository":"demo/app","url":"http://127.0.0.1:5000/v2/demo/app/blobs/sha256:aa"},
       "request":{"host":"127.0.0.1:5000","method":"PUT"}},
      {"id":"e2","timestamp":"2026-11-21T10:00:00Z","action":"push",
       "target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","repository":"demo/app","url":"http://127.0.0.1:5000/v2/demo/app/manifests/sha256:bb","tag":"1.2.0"},
       "request":{"host":"127.0.0.1:5000","method":"PUT"}},
      {"id":"e3","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"demo/app","tag":"1.2.0"}},
      {"id":"e4","action":"delete","target":{"digest":"sha256:cc","repository":"demo/other","url":"http://reg.example/v2/demo/other/manifests/sha256:cc"}}
    ]}"#;

    #[test]
    fn distribution_manifest_pushes_and_deletes_only() {
        let pushes = parse(Provider::Distribution, DISTRIBUTION.as_bytes()).unwrap();
        assert_eq!(
            pushes,
            vec![
                Push {
                    registry: Some("127.0.0.1:5000".into()),
                    repository: "demo/app".into(),
                    tag: Some("1.2.0".into()),
                    id: "e2".into(),
                },
                Push {
                    registry: Some("reg.example".into()),
                    repository: "demo/other".into(),
                    tag: None,
                    id: "e4".into(),
                },
            ]
        );
    }

    #[test]
    fn dockerhub_harbor_quay_and_ghcr_payloads() {
        let hub = r#"{"callback_url":"https://registry.hub.docker.com/u/org/app/hook/x/","push_data":{"pushed_at":1,"pusher":"me","tag":"latest"},"repository":{"repo_name":"org/app","namespace":"org","name":"app"}}"#;
        let push = &parse(Provider::DockerHub, hub.as_bytes()).unwrap()[0];
        assert_eq!(
            (
                push.registry.as_deref(),
                push.repository.as_str(),
                push.tag.as_deref()
            ),
            (Some("docker.io"), "org/app", Some("latest"))
        );
        let official = r#"{"push_data":{"tag":"1"},"repository":{"repo_name":"nginx"}}"#;
        assert_eq!(
            parse(Provider::DockerHub, official.as_bytes()).unwrap()[0].repository,
            "library/nginx"
        );

        let harbor = r#"{"type":"PUSH_ARTIFACT","occur_at":1,"operator":"admin","event_data":{"resources":[{"digest":"sha256:x","tag":"v1.0","resource_url":"harbor.example.com/library/app:v1.0"}],"repository":{"name":"app","namespace":"library","repo_full_name":"library/app","repo_type":"private"}}}"#;
        let push = &parse(Provider::Harbor, harbor.as_bytes()).unwrap()[0];
        assert_eq!(
            (
                push.registry.as_deref(),
                push.repository.as_str(),
                push.tag.as_deref()
            ),
            (Some("harbor.example.com"), "library/app", Some("v1.0"))
        );
        let pulled = harbor.replace("PUSH_ARTIFACT", "PULL_ARTIFACT");
        assert!(parse(Provider::Harbor, pulled.as_bytes())
            .unwrap()
            .is_empty());

        let quay = r#"{"repository":"org/app","namespace":"org","name":"app","docker_url":"quay.io/org/app","homepage":"https://quay.io/repository/org/app","updated_tags":["v2"]}"#;
        let push = &parse(Provider::Quay, quay.as_bytes()).unwrap()[0];
        assert_eq!(
            (
                push.registry.as_deref(),
                push.repository.as_str(),
                push.tag.as_deref()
            ),
            (Some("quay.io"), "org/app", Some("v2"))
        );

        let ghcr = r#"{"action":"published","package":{"id":1,"name":"App","namespace":"Org","package_type":"CONTAINER","owner":{"login":"Org"},"package_version":{"id":2,"container_metadata":{"tag":{"name":"1.0.1","digest":"sha256:x"}},"package_url":"ghcr.io/org/app:1.0.1"}},"repository":{"full_name":"Org/app"}}"#;
        let push = &parse(Provider::Ghcr, ghcr.as_bytes()).unwrap()[0];
        assert_eq!(
            (
                push.registry.as_deref(),
                push.repository.as_str(),
                push.tag.as_deref()
            ),
            (Some("ghcr.io"), "org/app", Some("1.0.1"))
        );
        let no_url = ghcr.replace(r#","package_url":"ghcr.io/org/app:1.0.1""#, "");
        assert_eq!(
            parse(Provider::Ghcr, no_url.as_bytes()).unwrap()[0].repository,
            "org/app"
        );
        let npm = ghcr.replace("CONTAINER", "npm");
        assert!(parse(Provider::Ghcr, npm.as_bytes()).unwrap().is_empty());
        let ping = r#"{"zen":"Keep it logically awesome.","hook_id":1}"#;
        assert!(parse(Provider::Ghcr, ping.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn malformed_payloads_are_errors() {
        for (provider, body) in [
            (Provider::Distribution, "not json"),
            (Provider::Distribution, r#"{"events":[{"action":"push"}]}"#),
            (Provider::DockerHub, r#"{"push_data":{}}"#),
            (Provider::Harbor, "[]"),
            (Provider::Quay, r#"{"repository":5}"#),
            (Provider::Ghcr, "\u{0}"),
        ] {
            assert!(
                matches!(
                    parse(provider, body.as_bytes()),
                    Err(PayloadError::Shape { .. })
                ),
                "{provider:?} {body}"
            );
        }
        let bad_name = r#"{"events":[{"id":"1","action":"push","target":{"repository":"../../Etc","tag":"x"}}]}"#;
        assert!(matches!(
            parse(Provider::Distribution, bad_name.as_bytes()),
            Err(PayloadError::BadRepository(_))
        ));
    }

    /// The hex HMAC-SHA256 of `body` under `key`, as GitHub sends it.
    fn sign(key: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    /// RFC 4231 test cases 2 (short key) and 6 (key longer than the block),
    /// checked through the path a GitHub signature takes.
    const RFC_4231: [(&[u8], &[u8], &str); 2] = [
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ];

    #[test]
    fn hmac_matches_rfc_4231() {
        for (key, message, expected) in RFC_4231 {
            assert_eq!(sign(key, message), expected);
            assert!(signature_matches(key, message, expected));
            assert!(signature_matches(key, message, &expected.to_uppercase()));
            let header = format!("sha256={expected}");
            let proof = Proof {
                signature: Some(&header),
                ..Default::default()
            };
            assert!(authenticate(key, &proof, message));
        }
    }

    #[test]
    fn signatures_that_are_not_the_mac_in_hex_match_nothing() {
        let (key, message, expected) = RFC_4231[0];
        let mut flipped = expected.to_string();
        flipped.replace_range(63.., "2");
        for bad in [
            flipped.as_str(),
            &expected[..62],
            &expected[..63],
            "",
            "zz",
            &format!("{expected}00"),
            &format!("+{}", &expected[1..]),
        ] {
            assert!(!signature_matches(key, message, bad), "{bad:?}");
        }
    }

    #[test]
    fn authentication_by_token_header_query_or_signature() {
        let secret = b"s3cret";
        let body = b"{}";
        let ok = |proof: Proof<'_>| authenticate(secret, &proof, body);
        assert!(ok(Proof {
            authorization: Some("Bearer s3cret"),
            ..Default::default()
        }));
        assert!(ok(Proof {
            authorization: Some("s3cret"),
            ..Default::default()
        }));
        assert!(ok(Proof {
            token: Some("s3cret"),
            ..Default::default()
        }));
        let header = format!("sha256={}", sign(secret, body));
        assert!(ok(Proof {
            signature: Some(&header),
            ..Default::default()
        }));
        for bad in [
            Proof::default(),
            Proof {
                authorization: Some("Bearer s3cre"),
                ..Default::default()
            },
            Proof {
                authorization: Some("Bearer s3cret2"),
                ..Default::default()
            },
            Proof {
                signature: Some("sha256=00"),
                token: Some("s3cret"),
                ..Default::default()
            },
            Proof {
                signature: Some("sha1=abc"),
                ..Default::default()
            },
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        assert!(!authenticate(
            b"",
            &Proof {
                token: Some(""),
                ..Default::default()
            },
            body
        ));
        let tampered = authenticate(
            secret,
            &Proof {
                signature: Some(&header),
                ..Default::default()
            },
            b"{\"x\":1}",
        );
        assert!(!tampered, "a signature covers the body");
    }
}
