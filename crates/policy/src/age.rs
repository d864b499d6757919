//! The release-age gate's two pure parts: when tagrelay first saw each tag
//! with its digest ([`FirstSeen`], folded from the repository's
//! `TagsDiscovered` history in log order), and which tags are old enough
//! ([`Ages`], given "now" by the caller, so the resolver, `tagrelay replay`
//! and the tests decide alike).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use tagrelay_proto::config::{AgeClock, AgeGate};
use tagrelay_proto::event::ImageMetadata;

/// When a tag was first listed with the digest it has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The digest it was listed with, when the scan recorded one.
    pub digest: Option<String>,
    /// The scan time of the first tag set that listed it so.
    pub at: DateTime<Utc>,
}

/// First sightings of a repository's tags, folded from its tag sets in
/// log order with [`FirstSeen::observe`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirstSeen {
    tags: BTreeMap<String, Sighting>,
}

impl FirstSeen {
    /// Folds one tag set scanned at `at`: a tag not seen before starts its
    /// age now; a tag listed with a different digest than before (pushed
    /// again) starts it again; a tag whose digest was unknown keeps its age
    /// and learns the digest; a tag gone from the set is forgotten, so a
    /// tag deleted and pushed again is new.
    pub fn observe(
        &mut self,
        tags: &[String],
        images: &BTreeMap<String, ImageMetadata>,
        at: DateTime<Utc>,
    ) {
        let mut next = BTreeMap::new();
        for tag in tags {
            let digest = images.get(tag).and_then(|m| m.digest.clone());
            let sighting = match self.tags.remove(tag) {
                Some(seen) => match (&seen.digest, &digest) {
                    (Some(before), Some(now)) if before != now => Sighting { digest, at },
                    (None, Some(_)) => Sighting {
                        digest,
                        at: seen.at,
                    },
                    _ => seen,
                },
                None => Sighting { digest, at },
            };
            next.insert(tag.clone(), sighting);
        }
        self.tags = next;
    }

    /// The sighting of `tag`, if it is in the last set observed.
    #[must_use]
    pub fn get(&self, tag: &str) -> Option<&Sighting> {
        self.tags.get(tag)
    }
}

/// What a gate needs to know about each tag's age.
pub struct Ages<'a> {
    /// The gate.
    pub gate: AgeGate,
    /// First sightings (read with [`AgeClock::FirstSeen`]).
    pub first_seen: &'a FirstSeen,
    /// Image metadata of the tag set (read with [`AgeClock::Created`]).
    pub images: &'a BTreeMap<String, ImageMetadata>,
    /// The tag the policy selects now: it has shipped already, so a gate
    /// (added later, or a tag pushed again) never takes the policy back.
    pub selected: Option<&'a str>,
    /// The time the decision is made at.
    pub now: DateTime<Utc>,
}

impl Ages<'_> {
    /// When `tag` may be selected: its birth on the gate's clock plus the
    /// minimum age. `None` when its birth is unknown (an image without a
    /// `created` time under the `created` clock), which never comes of age.
    #[must_use]
    pub fn of_age_at(&self, tag: &str) -> Option<DateTime<Utc>> {
        let born = match self.gate.clock {
            AgeClock::FirstSeen => self.first_seen.get(tag).map(|s| s.at),
            AgeClock::Created => self.images.get(tag).and_then(|m| m.created),
        }?;
        let minimum = chrono::Duration::from_std(self.gate.minimum_age).ok()?;
        born.checked_add_signed(minimum)
    }

    /// Whether `tag` is old enough now.
    #[must_use]
    pub fn is_of_age(&self, tag: &str) -> bool {
        self.selected == Some(tag) || self.of_age_at(tag).is_some_and(|at| at <= self.now)
    }
}
