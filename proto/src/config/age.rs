//! The release-age gate: an opt-in tagrelay extension on an ImagePolicy,
//! written as annotations so the same YAML stays valid for Flux (which
//! ignores them). A tag younger than the gate is not selected; the resolver
//! re-evaluates the policy when it comes of age.

use std::time::Duration;

use super::{parse_go_duration, FieldError, ImagePolicy};

/// `tagrelay.dev/minimum-age: 2h`: how old a tag must be before the policy
/// may select it (a Go duration, as Flux's intervals).
pub const MINIMUM_AGE_ANNOTATION: &str = "tagrelay.dev/minimum-age";
/// `tagrelay.dev/minimum-age-from: first-seen | created`: what a tag's age
/// is counted from (default `first-seen`).
pub const MINIMUM_AGE_FROM_ANNOTATION: &str = "tagrelay.dev/minimum-age-from";

/// Where a tag's age starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgeClock {
    /// The first scan in tagrelay's own event log that listed the tag with
    /// its current digest: works on every registry.
    FirstSeen,
    /// The `created` time of the image's config, as the image builder wrote
    /// it (a registry clock is not involved; a builder may lie).
    Created,
}

impl AgeClock {
    /// The annotation value that names this clock.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeClock::FirstSeen => "first-seen",
            AgeClock::Created => "created",
        }
    }
}

/// A policy's release-age gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AgeGate {
    /// How old a tag must be to be selected.
    pub minimum_age: Duration,
    /// What its age counts from.
    pub clock: AgeClock,
}

impl ImagePolicy {
    /// The policy's release-age gate, `None` when it has none.
    ///
    /// # Errors
    ///
    /// Every annotation at fault, with its field path and the reason (what
    /// `apply` refuses).
    pub fn age_gate(&self) -> Result<Option<AgeGate>, Vec<FieldError>> {
        let annotations = &self.metadata.annotations;
        let field = |name: &str| format!("metadata.annotations[{name}]");
        let mut errors = Vec::new();
        let minimum_age = match annotations.get(MINIMUM_AGE_ANNOTATION) {
            Some(text) => match parse_go_duration(text.trim()) {
                Ok(age) if age.is_zero() => {
                    errors.push(FieldError::new(
                        field(MINIMUM_AGE_ANNOTATION),
                        "must be longer than zero (remove the annotation to turn the gate off)",
                    ));
                    None
                }
                Ok(age) => Some(age),
                Err(e) => {
                    errors.push(FieldError::new(
                        field(MINIMUM_AGE_ANNOTATION),
                        e.to_string(),
                    ));
                    None
                }
            },
            None => None,
        };
        let clock = match annotations
            .get(MINIMUM_AGE_FROM_ANNOTATION)
            .map(|v| v.trim())
        {
            None | Some("first-seen") => AgeClock::FirstSeen,
            Some("created") => AgeClock::Created,
            Some(other) => {
                errors.push(FieldError::new(
                    field(MINIMUM_AGE_FROM_ANNOTATION),
                    format!("{other:?} is not one of first-seen, created"),
                ));
                AgeClock::FirstSeen
            }
        };
        if annotations.contains_key(MINIMUM_AGE_FROM_ANNOTATION)
            && !annotations.contains_key(MINIMUM_AGE_ANNOTATION)
        {
            errors.push(FieldError::new(
                field(MINIMUM_AGE_FROM_ANNOTATION),
                format!("has no effect without {MINIMUM_AGE_ANNOTATION}"),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(minimum_age.map(|minimum_age| AgeGate { minimum_age, clock }))
    }
}
