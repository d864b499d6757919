//! What each Provider type sends, byte for byte as Flux's
//! notification-controller sends it, so receivers written for Flux (a
//! Slack channel, a Teams workflow, an HMAC-checking webhook, Alertmanager)
//! keep working. Where Flux's order is Go map order (random), ours is sorted.
//!
//! Pure: a Flux event and the Provider's settings in, a request out.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::flux_event::FluxEvent;

/// The header Flux's generic providers name the reporting controller in.
pub const COMPONENT_HEADER: &str = "gotk-component";
/// The header carrying `sha256=<hex HMAC>` of the body (generic-hmac).
pub const SIGNATURE_HEADER: &str = "X-Signature";
/// The header carrying the tagrelay event id, so a receiver can drop the
/// duplicate an at-least-once delivery may bring.
pub const EVENT_ID_HEADER: &str = "X-Tagrelay-Event-Id";

/// A Provider's settings with its Secret's values: what a delivery needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The provider type (`generic`, `slack`, …).
    pub provider_type: String,
    /// The receiver: the Secret's `address`, else `spec.address`.
    pub address: String,
    /// `spec.channel`.
    pub channel: Option<String>,
    /// `spec.username`.
    pub username: Option<String>,
    /// The Secret's `token`.
    pub token: Option<String>,
    /// The Secret's `username` (basic auth).
    pub basic_username: Option<String>,
    /// The Secret's `password` (basic auth).
    pub basic_password: Option<String>,
    /// The Secret's `headers` (a YAML map).
    pub headers: BTreeMap<String, String>,
    /// The commit status name (`<kind>/<name>/<provider>`, lower-case).
    pub commit_status: String,
}

/// One delivery, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An HTTP POST.
    Http {
        /// Where to.
        url: String,
        /// Headers, in order.
        headers: Vec<(String, String)>,
        /// The JSON body.
        body: Vec<u8>,
    },
    /// A NATS publication (the `nats` provider).
    Nats {
        /// The server URL.
        server: String,
        /// The subject.
        subject: String,
        /// The event JSON.
        body: Vec<u8>,
        /// User and password, from the Secret.
        credentials: Option<(String, String)>,
    },
}

/// Why a request cannot be built: the configuration is wrong, and no
/// retry would help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The address cannot be used by the provider.
    #[error("address {address:?}: {reason}")]
    Address {
        /// The address (never a Secret's token).
        address: String,
        /// Why.
        reason: String,
    },
    /// A key the provider needs is missing from its Secret.
    #[error("the Secret has no '{0}'")]
    MissingSecret(&'static str),
    /// A type this build does not deliver to.
    #[error("provider type {0:?} is not supported")]
    UnsupportedType(String),
}

/// The request delivering `event` with `settings`.
pub fn request(settings: &Settings, event: &FluxEvent) -> Result<Request, PayloadError> {
    let address = settings.address.trim().to_string();
    match settings.provider_type.as_str() {
        "generic" | "generic-hmac" => generic(settings, &address, event),
        "slack" => Ok(http(
            &address,
            bearer(settings),
            &slack(event, settings, true),
        )),
        "discord" => {
            let url = if address.ends_with("/slack") {
                address
            } else {
                format!("{}/slack", address.trim_end_matches('/'))
            };
            Ok(http(&url, Vec::new(), &slack(event, settings, false)))
        }
        "msteams" => {
            let legacy = url::Url::parse(&address)
                .ok()
                .and_then(|u| u.host_str().map(|h| h.ends_with(".webhook.office.com")))
                .unwrap_or(false);
            let body = if legacy {
                teams_connector(event)
            } else {
                teams_adaptive_card(event)
            };
            Ok(http(&address, Vec::new(), &body))
        }
        "googlechat" => Ok(http(&address, Vec::new(), &google_chat(event))),
        "alertmanager" => {
            let mut headers = bearer(settings);
            if let (Some(user), Some(password)) =
                (&settings.basic_username, &settings.basic_password)
            {
                use base64::Engine as _;
                let pair =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                headers.push(("Authorization".into(), format!("Basic {pair}")));
            }
            Ok(http(&address, headers, &alertmanager(event)))
        }
        "github" | "gitlab" | "gitea" => commit_status(settings, &address, event),
        "nats" => Ok(Request::Nats {
            server: address,
            subject: settings.channel.clone().unwrap_or_default(),
            body: go_json(event),
            credentials: settings
                .basic_username
                .clone()
                .zip(settings.basic_password.clone()),
        }),
        other => Err(PayloadError::UnsupportedType(other.to_string())),
    }
}

fn http(url: &str, mut headers: Vec<(String, String)>, body: &impl Serialize) -> Request {
    headers.insert(0, ("Content-Type".into(), "application/json".into()));
    Request::Http {
        url: url.to_string(),
        headers,
        body: go_json(body),
    }
}

/// JSON as Go's `encoding/json` writes it: compact, and with `<`, `>`, `&`,
/// U+2028 and U+2029 escaped (they only occur inside strings, so the
/// replacement never touches structure). Receivers that compare bodies or
/// signatures with Flux's see the same bytes.
pub fn go_json(value: &impl Serialize) -> Vec<u8> {
    let text = serde_json::to_string(value).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

fn bearer(settings: &Settings) -> Vec<(String, String)> {
    settings
        .token
        .iter()
        .filter(|t| !t.is_empty())
        .map(|t| ("Authorization".to_string(), format!("Bearer {t}")))
        .collect()
}

/// Flux's `Forwarder`: the event JSON, `gotk-component`, the Secret's
/// headers and, for generic-hmac, `X-Signature: sha256=<hex>` over the
/// exact body.
fn generic(settings: &Settings, address: &str, event: &FluxEvent) -> Result<Request, PayloadError> {
    let Request::Http {
        url,
        mut headers,
        body,
    } = http(address, Vec::new(), event)
    else {
        return Err(PayloadError::UnsupportedType(
            settings.provider_type.clone(),
        ));
    };
    headers.push((COMPONENT_HEADER.into(), event.reporting_controller.clone()));
    for (name, value) in &settings.headers {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    if settings.provider_type == "generic-hmac" {
        let key = settings
            .token
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or(PayloadError::MissingSecret("token"))?;
        headers.push((
            SIGNATURE_HEADER.into(),
            format!("sha256={}", hmac_sha256(key.as_bytes(), &body)),
        ));
    }
    Ok(Request::Http { url, headers, body })
}

/// Hex HMAC-SHA256 of `body` under `key`, as Flux signs.
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn sorted_metadata(event: &FluxEvent) -> impl Iterator<Item = (&String, &String)> {
    event.metadata.iter()
}

/// Slack's payload, in Flux's field order.
#[derive(Serialize)]
struct SlackPayload {
    channel: String,
    username: String,
    icon_url: String,
    icon_emoji: String,
    attachments: Vec<SlackAttachment>,
}

/// One Slack attachment, in Flux's field order.
#[derive(Serialize)]
struct SlackAttachment {
    fallback: String,
    color: &'static str,
    author_name: String,
    text: String,
    mrkdwn_in: [&'static str; 1],
    fields: Vec<SlackField>,
}

/// One Slack attachment field: a metadata entry.
#[derive(Serialize)]
struct SlackField {
    title: String,
    value: String,
    short: bool,
}

/// Slack's attachment payload (Discord's Slack-compatible endpoint takes
/// the same, without channel or fallback).
fn slack(event: &FluxEvent, settings: &Settings, is_slack: bool) -> SlackPayload {
    let username = settings
        .username
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| event.reporting_controller.clone());
    let author = event.object_name();
    let fallback = if is_slack {
        format!(
            "{author}: {}",
            event.message.split('\n').next().unwrap_or_default()
        )
    } else {
        String::new()
    };
    let fields = sorted_metadata(event)
        .map(|(k, v)| SlackField {
            title: k.clone(),
            value: v.clone(),
            short: false,
        })
        .collect();
    let channel = if is_slack {
        settings.channel.clone().unwrap_or_default()
    } else {
        String::new()
    };
    SlackPayload {
        channel,
        username,
        icon_url: String::new(),
        icon_emoji: String::new(),
        attachments: vec![SlackAttachment {
            fallback,
            color: if event.is_error() { "danger" } else { "good" },
            author_name: author,
            text: event.message.clone(),
            mrkdwn_in: ["text"],
            fields,
        }],
    }
}

/// The Office 365 connector card, for `*.webhook.office.com` addresses.
fn teams_connector(event: &FluxEvent) -> Value {
    let name = event.object_name();
    let facts: Vec<Value> = sorted_metadata(event)
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": if event.is_error() { "FF0000" } else { "0076D7" },
        "summary": name,
        "sections": [{
            "activityTitle": event.message,
            "activitySubtitle": name,
            "facts": facts,
        }]
    })
}

/// The Adaptive Card Teams workflows take: the object, the message (red
/// for errors), then the metadata as facts, `summary` first.
fn teams_adaptive_card(event: &FluxEvent) -> Value {
    let mut message = json!({"type": "TextBlock", "text": event.message, "wrap": true});
    if event.is_error() {
        message["color"] = json!("attention");
    }
    let mut facts: Vec<Value> = event
        .metadata
        .get("summary")
        .map(|s| json!({"title": "summary", "value": s}))
        .into_iter()
        .collect();
    facts.extend(
        sorted_metadata(event)
            .filter(|(k, _)| k.as_str() != "summary")
            .map(|(k, v)| json!({"title": k, "value": v})),
    );
    let mut items = vec![
        json!({"type": "TextBlock", "text": event.object_name(), "size": "large", "weight": "bolder", "wrap": true}),
        message,
    ];
    if !facts.is_empty() {
        items.push(json!({"type": "FactSet", "facts": facts}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{"type": "Container", "items": items}],
                "msteams": {"width": "Full"},
            }
        }]
    })
}

/// Google Chat's card: the object and the controller, the message (red for
/// errors), the metadata as key-value widgets.
fn google_chat(event: &FluxEvent) -> Value {
    let text = if event.is_error() {
        format!("<font color=\"#ff0000\">{}</font>", event.message)
    } else {
        event.message.clone()
    };
    let mut sections = vec![json!({
        "header": "",
        "widgets": [{"textParagraph": {"text": text}, "keyValue": null}],
    })];
    if !event.metadata.is_empty() {
        let widgets: Vec<Value> = sorted_metadata(event)
            .map(|(k, v)| {
                json!({"textParagraph": null, "keyValue": {
                    "topLabel": k, "content": v, "contentMultiline": false,
                    "bottomLabel": null, "icon": null,
                }})
            })
            .collect();
        sections.push(json!({"header": "", "widgets": widgets}));
    }
    json!({"cards": [{
        "header": {
            "title": event.object_name(),
            "subtitle": event.reporting_controller,
            "imageUrl": null,
            "imageStyle": null,
        },
        "sections": sections,
    }]})
}

/// One firing alert for Alertmanager's `/api/v2/alerts`: the metadata as
/// labels (`summary` as an annotation), plus Flux's fixed labels.
fn alertmanager(event: &FluxEvent) -> Value {
    let mut labels = event.metadata.clone();
    let mut annotations = BTreeMap::from([("message".to_string(), event.message.clone())]);
    if let Some(summary) = labels.remove("summary") {
        annotations.insert("summary".to_string(), summary);
    }
    let object = &event.involved_object;
    labels.insert(
        "alertname".into(),
        format!("Flux{}{}", object.kind, go_title(&event.reason)),
    );
    labels.insert("severity".into(), event.severity.clone());
    labels.insert("reason".into(), event.reason.clone());
    labels.insert("kind".into(), object.kind.clone());
    labels.insert("name".into(), object.name.clone());
    labels.insert("namespace".into(), object.namespace.clone());
    labels.insert(
        "reportingcontroller".into(),
        event.reporting_controller.clone(),
    );
    json!([{
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": event.timestamp,
        "endsAt": "0001-01-01T00:00:00Z",
    }])
}

/// Go's `cases.Title(language.Und)`: each word's first letter upper case,
/// the rest lower case (`ScansFailing` → `Scansfailing`, as Flux names
/// its alerts).
fn go_title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_start = true;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if at_start {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            at_start = false;
        } else {
            out.push(c);
            at_start = true;
        }
    }
    out
}

/// Flux's description of a commit status: the reason's words, lower case
/// (`PushRejected` → `push rejected`).
fn status_description(reason: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let chars: Vec<char> = reason.chars().collect();
    let mut current = String::new();
    for (i, c) in chars.iter().enumerate() {
        let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
        let prev_lower = i > 0 && chars[i - 1].is_lowercase();
        if c.is_uppercase() && !current.is_empty() && (prev_lower || next_lower) {
            words.push(std::mem::take(&mut current));
        }
        current.push(*c);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.join(" ").to_lowercase()
}

/// `(base, owner/repo)` of a Git address, as Flux parses it: an SSH
/// address becomes HTTPS, `.git` is dropped.
fn git_address(address: &str) -> Result<(String, String), PayloadError> {
    let bad = |reason: &str| PayloadError::Address {
        address: address.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = if let Some((scheme, rest)) = address.split_once("://") {
        (if scheme == "ssh" { "https" } else { scheme }, rest)
    } else if let Some((user_host, path)) = address.split_once(':') {
        // scp-like `git@host:owner/repo`.
        let host = user_host.rsplit('@').next().unwrap_or(user_host);
        return Ok((
            format!("https://{host}"),
            path.trim_matches('/').trim_end_matches(".git").to_string(),
        ));
    } else {
        return Err(bad("not a URL"));
    };
    let (host, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("no repository path"))?;
    let host = host.rsplit('@').next().unwrap_or(host);
    let id = path.trim_matches('/').trim_end_matches(".git").to_string();
    if id.is_empty() {
        return Err(bad("no repository path"));
    }
    Ok((format!("{scheme}://{host}"), id))
}

/// A commit status on the event's commit: GitHub (`api.github.com`, or
/// `/api/v3` of an Enterprise host), GitLab (`/api/v4`), Gitea (`/api/v1`).
fn commit_status(
    settings: &Settings,
    address: &str,
    event: &FluxEvent,
) -> Result<Request, PayloadError> {
    let commit = event.commit().ok_or_else(|| PayloadError::Address {
        address: address.to_string(),
        reason: "the event names no commit".into(),
    })?;
    let token = settings
        .token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(PayloadError::MissingSecret("token"))?;
    let (base, id) = git_address(address)?;
    let description = status_description(&event.reason);
    let failed = event.is_error();
    let context = settings.commit_status.clone();
    let request = match settings.provider_type.as_str() {
        "github" => {
            let api = if base == "https://github.com" {
                "https://api.github.com".to_string()
            } else {
                format!("{base}/api/v3")
            };
            http(
                &format!("{api}/repos/{id}/statuses/{commit}"),
                vec![
                    ("Accept".into(), "application/json".into()),
                    ("Authorization".into(), format!("Bearer {token}")),
                    ("User-Agent".into(), "tagrelay-notifier".into()),
                ],
                &json!({
                    "state": if failed { "failure" } else { "success" },
                    "context": context,
                    "description": description,
                }),
            )
        }
        "gitlab" => http(
            &format!(
                "{base}/api/v4/projects/{}/statuses/{commit}",
                id.replace('/', "%2F")
            ),
            vec![("PRIVATE-TOKEN".into(), token.to_string())],
            &json!({
                "state": if failed { "failed" } else { "success" },
                "name": context,
                "description": description,
            }),
        ),
        _ => http(
            &format!("{base}/api/v1/repos/{id}/statuses/{commit}"),
            vec![("Authorization".into(), format!("token {token}"))],
            &json!({
                "state": if failed { "failure" } else { "success" },
                "context": context,
                "description": description,
                "target_url": "",
            }),
        ),
    };
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flux_event::{InvolvedObject, ERROR, INFO};

    fn event(severity: &str) -> FluxEvent {
        FluxEvent {
            involved_object: InvolvedObject {
                kind: "ImagePolicy".into(),
                namespace: "apps".into(),
                name: "app".into(),
                api_version: "image.toolkit.fluxcd.io/v1".into(),
            },
            severity: severity.into(),
            timestamp: "2026-12-05T10:00:00Z".into(),
            message: "Latest image tag for 'app' resolved to 1.0.1\nsecond line".into(),
            reason: "Succeeded".into(),
            metadata: BTreeMap::from([
                ("summary".to_string(), "prod".to_string()),
                ("env".to_string(), "eu".to_string()),
            ]),
            reporting_controller: "tagrelay-resolver".into(),
            reporting_instance: "resolver/a".into(),
        }
    }

    fn settings(provider_type: &str, address: &str) -> Settings {
        Settings {
            provider_type: provider_type.into(),
            address: address.into(),
            token: Some("s3cret".into()),
            commit_status: "imageupdateautomation/fleet/status".into(),
            ..Default::default()
        }
    }

    fn http_parts(request: Request) -> (String, Vec<(String, String)>, Value) {
        match request {
            Request::Http { url, headers, body } => {
                (url, headers, serde_json::from_slice(&body).unwrap())
            }
            Request::Nats { .. } => panic!("not HTTP"),
        }
    }

    #[test]
    fn generic_hmac_signs_the_exact_body_sent() {
        let mut s = settings("generic-hmac", "http://127.0.0.1:9/hook");
        s.headers.insert("X-Team".into(), "web".into());
        let Request::Http { headers, body, .. } = request(&s, &event(INFO)).unwrap() else {
            panic!()
        };
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(
            header(SIGNATURE_HEADER).unwrap(),
            format!("sha256={}", hmac_sha256(b"s3cret", &body))
        );
        assert_eq!(
            header("gotk-component").as_deref(),
            Some("tagrelay-resolver")
        );
        assert_eq!(header("X-Team").as_deref(), Some("web"));
        assert_eq!(body, serde_json::to_vec(&event(INFO)).unwrap());
        s.token = None;
        assert_eq!(
            request(&s, &event(INFO)),
            Err(PayloadError::MissingSecret("token"))
        );
    }

    #[test]
    fn bodies_escape_html_characters_as_go_does() {
        let mut e = event(INFO);
        e.message = "a -> b & <c>\u{2028}".into();
        let body = String::from_utf8(go_json(&e)).unwrap();
        assert!(
            body.contains(r#""message":"a -\u003e b \u0026 \u003cc\u003e\u2028""#),
            "{body}"
        );
        let back: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(back["message"], e.message.as_str());
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn slack_discord_teams_and_chat_carry_the_object_message_and_colour() {
        let mut s = settings("slack", "https://hooks.slack.invalid/x");
        s.channel = Some("#deploys".into());
        let (_, headers, slack) = http_parts(request(&s, &event(ERROR)).unwrap());
        assert!(headers.contains(&("Authorization".into(), "Bearer s3cret".into())));
        assert_eq!(slack["channel"], "#deploys");
        assert_eq!(slack["username"], "tagrelay-resolver");
        let attachment = &slack["attachments"][0];
        assert_eq!(attachment["color"], "danger");
        assert_eq!(attachment["author_name"], "imagepolicy/app.apps");
        assert_eq!(
            attachment["fallback"],
            "imagepolicy/app.apps: Latest image tag for 'app' resolved to 1.0.1"
        );
        assert_eq!(attachment["fields"][0]["title"], "env");

        let (url, _, discord) = http_parts(
            request(
                &settings("discord", "https://d.invalid/api/webhooks/1/t"),
                &event(INFO),
            )
            .unwrap(),
        );
        assert_eq!(url, "https://d.invalid/api/webhooks/1/t/slack");
        assert_eq!(discord["attachments"][0]["color"], "good");
        assert_eq!(discord["attachments"][0]["fallback"], "");

        let (_, _, teams) = http_parts(
            request(
                &settings("msteams", "https://x.invalid/workflow"),
                &event(ERROR),
            )
            .unwrap(),
        );
        let content = &teams["attachments"][0]["content"];
        assert_eq!(content["type"], "AdaptiveCard");
        let items = &content["body"][0]["items"];
        assert_eq!(items[1]["color"], "attention");
        assert_eq!(items[2]["facts"][0]["title"], "summary");
        let (_, _, legacy) = http_parts(
            request(
                &settings("msteams", "https://org.webhook.office.com/x"),
                &event(ERROR),
            )
            .unwrap(),
        );
        assert_eq!(legacy["@type"], "MessageCard");
        assert_eq!(legacy["themeColor"], "FF0000");

        let (_, _, chat) = http_parts(
            request(
                &settings("googlechat", "https://chat.invalid/x"),
                &event(ERROR),
            )
            .unwrap(),
        );
        assert_eq!(chat["cards"][0]["header"]["title"], "imagepolicy/app.apps");
        assert!(
            chat["cards"][0]["sections"][0]["widgets"][0]["textParagraph"]["text"]
                .as_str()
                .unwrap()
                .starts_with("<font color=\"#ff0000\">")
        );
    }

    #[test]
    fn alertmanager_alerts_are_named_as_flux_names_them() {
        let mut e = event(ERROR);
        e.reason = "ScansFailing".into();
        let (_, _, alerts) = http_parts(
            request(
                &settings("alertmanager", "http://127.0.0.1:9/api/v2/alerts"),
                &e,
            )
            .unwrap(),
        );
        let alert = &alerts[0];
        assert_eq!(alert["labels"]["alertname"], "FluxImagePolicyScansfailing");
        assert_eq!(alert["labels"]["env"], "eu");
        assert!(alert["labels"].get("summary").is_none());
        assert_eq!(alert["annotations"]["summary"], "prod");
        assert_eq!(alert["status"], "firing");
        assert_eq!(alert["startsAt"], "2026-12-05T10:00:00Z");
    }

    #[test]
    fn commit_statuses_go_to_each_forges_endpoint() {
        let mut e = event(INFO);
        e.metadata
            .insert("revision".into(), "main@sha1:abc123".into());
        let (url, headers, body) = http_parts(
            request(&settings("github", "https://github.com/org/fleet.git"), &e).unwrap(),
        );
        assert_eq!(
            url,
            "https://api.github.com/repos/org/fleet/statuses/abc123"
        );
        assert!(headers.contains(&("Authorization".into(), "Bearer s3cret".into())));
        assert_eq!(body["state"], "success");
        assert_eq!(body["context"], "imageupdateautomation/fleet/status");
        assert_eq!(body["description"], "succeeded");
        let (url, _, _) = http_parts(
            request(&settings("github", "ssh://git@ghe.invalid/org/fleet"), &e).unwrap(),
        );
        assert_eq!(
            url,
            "https://ghe.invalid/api/v3/repos/org/fleet/statuses/abc123"
        );
        e.severity = ERROR.into();
        e.reason = "PushRejected".into();
        let (url, headers, body) = http_parts(
            request(
                &settings("gitlab", "git@gitlab.invalid:group/sub/fleet.git"),
                &e,
            )
            .unwrap(),
        );
        assert_eq!(
            url,
            "https://gitlab.invalid/api/v4/projects/group%2Fsub%2Ffleet/statuses/abc123"
        );
        assert!(headers.contains(&("PRIVATE-TOKEN".into(), "s3cret".into())));
        assert_eq!(body["state"], "failed");
        assert_eq!(body["description"], "push rejected");
        let (url, headers, body) =
            http_parts(request(&settings("gitea", "http://127.0.0.1:3000/org/fleet"), &e).unwrap());
        assert_eq!(
            url,
            "http://127.0.0.1:3000/api/v1/repos/org/fleet/statuses/abc123"
        );
        assert!(headers.contains(&("Authorization".into(), "token s3cret".into())));
        assert_eq!(body["state"], "failure");
    }

    #[test]
    fn descriptions_split_camel_case_as_flux_does() {
        assert_eq!(status_description("Succeeded"), "succeeded");
        assert_eq!(status_description("PushRejected"), "push rejected");
        assert_eq!(status_description("HTTPError"), "http error");
        assert_eq!(go_title("ScansFailing"), "Scansfailing");
    }
}
