//! State records the stages keep in KV buckets (as opposed to events, which
//! are facts). Shared because one stage writes what another reads: the
//! resolver writes each policy's selection, the committer reads it to know
//! what the files should hold.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::SelectedImage;

/// The latest selection of one ImagePolicy, in the policy-state bucket.
///
/// Written with compare-and-set; `source_sequence` (the stream sequence of
/// the `TagsDiscovered` it was computed from) only ever grows, which is what
/// keeps a redelivered or out-of-order event from moving a policy back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySelection {
    /// The image repository (`ghcr.io/org/app`).
    pub image: String,
    /// The selected tag (and digest).
    pub selected: SelectedImage,
    /// Stream sequence of the `TagsDiscovered` the selection was computed from.
    pub source_sequence: u64,
    /// Hash of the policy rules it was computed with; a changed policy is
    /// re-evaluated even against an already seen tag set.
    pub rules_hash: String,
    /// Stream sequence of the `PolicyResolved` that announced the selection.
    pub resolved_sequence: u64,
    /// When it was written.
    pub updated_at: DateTime<Utc>,
    /// The tag the policy would select but for its release-age gate
    /// (`tagrelay.dev/minimum-age`), and until when it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<HeldBack>,
    /// When a tag held back by the gate comes of age: the resolver
    /// evaluates the policy again then, without a new scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recheck_at: Option<DateTime<Utc>>,
}

/// A tag a release-age gate keeps from being selected yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    /// The tag (and digest) that waits.
    #[serde(flatten)]
    pub image: SelectedImage,
    /// When it comes of age; `None` when its age is unknown (no `created`
    /// time under `tagrelay.dev/minimum-age-from: created`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl PolicySelection {
    /// `image:tag[@digest]`, the reference Setters markers write.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.image, self.selected)
    }
}
