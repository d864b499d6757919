//! Scan requests: the work items of the `TAGRELAY_SCAN_REQUESTS` work-queue
//! stream, put there by the scanners' schedulers, `tagrelay reconcile` and
//! the registry webhook, and taken by whichever scanner instance is free.
//!
//! A request is not an event (it is work, deleted once done, and not part of
//! the audit log): the `TagsDiscovered` or `ScanFailed` it leads to is. Its
//! `Nats-Msg-Id` comes from [`ScanRequest::msg_id`], so the many schedulers
//! asking for the same interval slot, or a registry re-sending the same
//! notification, put one request on the queue.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{ObjectRef, ScanTrigger};
use crate::names;

/// A request to scan one ImageRepository now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRequest {
    /// The ImageRepository to scan.
    pub repository: ObjectRef,
    /// Who asked, carried into the resulting `TagsDiscovered`.
    pub trigger: ScanTrigger,
    /// What makes two requests the same work: the interval slot for a
    /// scheduled scan, the notification id for a webhook, the spec's hash for
    /// a configuration change, a fresh id for `tagrelay reconcile`.
    pub dedup: String,
    /// For a scheduled scan, the interval slot it is for (see
    /// [`interval_slot`]); a scanner skips a slot already scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// When it was asked.
    pub requested_at: DateTime<Utc>,
}

impl ScanRequest {
    /// A request for `repository` from `trigger`, deduplicated on `dedup`.
    pub fn new(repository: ObjectRef, trigger: ScanTrigger, dedup: impl Into<String>) -> Self {
        Self {
            repository,
            trigger,
            dedup: dedup.into(),
            slot: None,
            requested_at: Utc::now(),
        }
    }

    /// The scheduled request for interval slot `slot`.
    pub fn scheduled(repository: ObjectRef, slot: u64) -> Self {
        let mut request = Self::new(repository, ScanTrigger::Schedule, format!("slot-{slot}"));
        request.slot = Some(slot);
        request
    }

    /// `tagrelay.scan.<ns>.<repository>`.
    pub fn subject(&self) -> String {
        names::scan_request_subject(&self.repository.namespace, &self.repository.name)
    }

    /// The `Nats-Msg-Id`: a hash of repository, trigger and `dedup`, so the
    /// same work asked twice within the duplicate window is queued once.
    pub fn msg_id(&self) -> String {
        let trigger = serde_json::to_string(&self.trigger).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(format!("{}|{trigger}|{}", self.repository, self.dedup).as_bytes());
        let digest = format!("{:x}", hasher.finalize());
        format!("ScanRequest-{}", &digest[..40])
    }
}

/// The interval slot `now` falls in for a repository scanned every
/// `interval` with phase `offset` (both in seconds): slot `k` covers
/// `[k * interval + offset, (k + 1) * interval + offset)`. The offset
/// spreads repositories with the same interval over it, instead of scanning
/// them all at the same instant; every instance computes the same slots.
pub fn interval_slot(now_secs: u64, interval_secs: u64, offset_secs: u64) -> u64 {
    let interval = interval_secs.max(1);
    now_secs.saturating_sub(offset_secs % interval) / interval
}

/// When slot `slot` starts, in seconds since the epoch.
pub fn slot_start(slot: u64, interval_secs: u64, offset_secs: u64) -> u64 {
    let interval = interval_secs.max(1);
    slot.saturating_mul(interval)
        .saturating_add(offset_secs % interval)
}

/// A repository's phase within its interval, from its name: stable across
/// instances and restarts.
pub fn slot_offset(repository: &ObjectRef, interval_secs: u64) -> u64 {
    let digest = Sha256::digest(repository.to_string().as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % interval_secs.max(1)
}

#[cfg(feature = "bus")]
mod publish {
    use super::ScanRequest;
    use crate::bus::{Bus, BusError, Published, MSG_ID_HEADER};

    impl Bus {
        /// Puts a scan request on the work queue with its `Nats-Msg-Id` and
        /// waits for the stream's acknowledgement; `duplicate` tells whether the
        /// same request was already queued.
        pub async fn request_scan(&self, request: &ScanRequest) -> Result<Published, BusError> {
            let subject = request.subject();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(MSG_ID_HEADER, request.msg_id().as_str());
            let payload = serde_json::to_vec(request)?;
            let fail = |e: &dyn std::fmt::Display| BusError::Publish {
                subject: subject.clone(),
                reason: e.to_string(),
            };
            let ack = self
                .jetstream()
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await
                .map_err(|e| fail(&e))?
                .await
                .map_err(|e| fail(&e))?;
            Ok(Published {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cover_time_without_gaps_and_respect_the_offset() {
        assert_eq!(interval_slot(0, 60, 0), 0);
        assert_eq!(interval_slot(59, 60, 0), 0);
        assert_eq!(interval_slot(60, 60, 0), 1);
        assert_eq!(interval_slot(69, 60, 10), 0);
        assert_eq!(interval_slot(70, 60, 10), 1);
        for now in [0u64, 1, 59, 60, 61, 1_000_000] {
            let slot = interval_slot(now, 60, 25);
            assert!(slot_start(slot, 60, 25) <= now.max(25), "{now}");
            assert!(now < slot_start(slot + 1, 60, 25), "{now}");
        }
        assert_eq!(
            interval_slot(100, 0, 0),
            100,
            "a zero interval is one second"
        );
    }

    #[test]
    fn offsets_are_stable_and_within_the_interval() {
        let a = ObjectRef::new("apps", "a");
        assert_eq!(slot_offset(&a, 300), slot_offset(&a, 300));
        assert!(slot_offset(&a, 300) < 300);
        let spread: std::collections::BTreeSet<u64> = (0..50)
            .map(|i| slot_offset(&ObjectRef::new("apps", format!("r{i}")), 300))
            .collect();
        assert!(spread.len() > 40, "offsets should spread: {spread:?}");
    }

    #[test]
    fn msg_id_is_the_same_for_the_same_work_only() {
        let repo = ObjectRef::new("apps", "app");
        let a = ScanRequest::scheduled(repo.clone(), 7);
        let mut b = ScanRequest::scheduled(repo.clone(), 7);
        b.requested_at = a.requested_at + chrono::Duration::seconds(30);
        assert_eq!(a.msg_id(), b.msg_id());
        assert_ne!(a.msg_id(), ScanRequest::scheduled(repo.clone(), 8).msg_id());
        let webhook = ScanRequest::new(repo.clone(), ScanTrigger::Webhook, "slot-7");
        assert_ne!(a.msg_id(), webhook.msg_id());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<ScanRequest>(&json).unwrap(), a);
    }
}
