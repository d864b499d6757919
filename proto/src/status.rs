//! Status records, one per configuration object, in the status bucket.
//!
//! Each stage writes the status of the objects it owns (scanner:
//! repositories, resolver: policies, committer: automations) and `tagrelay
//! get` reads them, the way Flux controllers write `.status` and `flux get`
//! prints it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The status of one object. Fields that do not apply to a kind stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectStatus {
    /// Whether the object's last reconciliation succeeded.
    pub ready: bool,
    /// What happened, in one line.
    pub message: String,
    /// When the status was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// ImageRepository: last scan time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<DateTime<Utc>>,
    /// ImageRepository: number of tags in the last good scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_count: Option<usize>,
    /// ImageRepository: a few of the latest tags, for a glance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_tags: Vec<String>,
    /// ImageRepository: the last scan error, kept after a later success is
    /// not (cleared on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// ImagePolicy: the selected image, `repo:tag[@digest]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_image: Option<String>,
    /// ImagePolicy: the tag its release-age gate holds back, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<crate::state::HeldBack>,
    /// ImageUpdateAutomation: the last commit pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_commit: Option<String>,
    /// ImageUpdateAutomation: when it was pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_push_time: Option<DateTime<Utc>>,
    /// When the object's stage last succeeded with it (a scan, a
    /// reconcile), kept through later failures: what stuck-policy
    /// detection measures from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<DateTime<Utc>>,
    /// How many times in a row the stage has failed with the object.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// When the current run of failures began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// ImageUpdateAutomation: what the lint checks find in its manifests
    /// now, each published once as a `ManifestWarning`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One lint finding in an automation's manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The finding's stable identity (file, check, problem).
    pub finding: String,
    /// `file:line: check: problem (fix: …)`.
    pub text: String,
}
