//! Flux's notification kinds, `Provider` and `Alert`
//! (`notification.toolkit.fluxcd.io/v1beta3`, and `v1beta2`, whose fields
//! these are a superset of), so the alerting YAML a Flux user has applies
//! unchanged and routes tagrelay's events to the same receivers.
//!
//! Like the image kinds they refuse unknown fields; fields tagrelay cannot
//! honour are refused by [`super::validate`] with the reason, never stored
//! and ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// The `apiVersion`s accepted for `Provider` and `Alert`.
pub const NOTIFICATION_API_VERSIONS: [&str; 2] = [
    "notification.toolkit.fluxcd.io/v1beta3",
    "notification.toolkit.fluxcd.io/v1beta2",
];

/// The provider types the notifier delivers to, as Flux names them.
pub const PROVIDER_TYPES: [&str; 11] = [
    "generic",
    "generic-hmac",
    "slack",
    "msteams",
    "discord",
    "googlechat",
    "alertmanager",
    "github",
    "gitlab",
    "gitea",
    "nats",
];

/// Provider types that set a commit status on the pushed commit.
pub const COMMIT_STATUS_PROVIDERS: [&str; 3] = ["github", "gitlab", "gitea"];

/// `Provider.spec`: where and how notifications are delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderSpec {
    /// One of [`PROVIDER_TYPES`].
    #[serde(rename = "type")]
    pub provider_type: String,
    /// Deprecated by Flux and without effect there; refused here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Slack channel, or the NATS subject of the `nats` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The bot name Slack and Discord show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The receiver's URL (or the Git repository's URL for commit status,
    /// or the NATS server for `nats`); the Secret's `address` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Time limit of one delivery, a Go duration; 15 s when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// An HTTP proxy; refused (the notifier honours `HTTPS_PROXY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// A Secret with the proxy; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// The Secret with `address`, `token`, `username`, `password`,
    /// `headers`: files in the notifier's secrets directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Workload identity for cloud providers; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// A Secret with a CA for the receiver; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalObjectReference>,
    /// Stops delivering while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// A CEL expression naming the commit status; refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status_expr: Option<String>,
}

/// One `eventSources` entry of an Alert: which objects' events it routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventSource {
    /// `group/version` of the kind; optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `ImageRepository`, `ImagePolicy` or `ImageUpdateAutomation`.
    pub kind: String,
    /// The object's name, or `*` for every object of the kind.
    pub name: String,
    /// Its namespace; the Alert's own when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels the object must carry (with `name: "*"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// `Alert.spec`: which events go to which Provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AlertSpec {
    /// The Provider, in the Alert's namespace.
    pub provider_ref: LocalObjectReference,
    /// `info` (every event) or `error` (errors only); `info` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_severity: Option<String>,
    /// The objects whose events are routed.
    pub event_sources: Vec<EventSource>,
    /// Regexes: when set, only events whose message matches one are routed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inclusion_list: Vec<String>,
    /// Regexes: events whose message matches one are not routed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclusion_list: Vec<String>,
    /// Added to every event's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_metadata: BTreeMap<String, String>,
    /// Added as metadata `summary` (deprecated by Flux in favour of
    /// `eventMetadata.summary`, still honoured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Stops routing while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl AlertSpec {
    /// The severity the Alert routes from: `info` takes every event.
    pub fn severity(&self) -> &str {
        self.event_severity.as_deref().unwrap_or("info")
    }
}
