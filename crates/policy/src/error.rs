//! Why a policy does not compile, and why a selection found nothing.

use super::select::Funnel;

/// A policy that cannot be compiled. Each message starts with the field at
/// fault (as written in Flux YAML) and names the offending part, so that
/// `tagrelay apply` and the resolver's `ResolveFailed` events can say what to
/// fix without the reader knowing our code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A semver range does not parse.
    #[error("{field}: invalid range {range:?} at {part:?}: {reason}")]
    Range {
        /// `spec.policy.semver.range`, or `fluxcd.io/tag` for a v1 filter.
        field: &'static str,
        /// The whole range, as written.
        range: String,
        /// The offending part of it.
        part: String,
        /// What is wrong with that part.
        reason: &'static str,
    },
    /// A regular expression does not compile.
    #[error("{field}: invalid regular expression {pattern:?}: {message}")]
    Regex {
        /// `spec.filterTags.pattern`, `spec.exclusionList[i]`, or
        /// `fluxcd.io/tag` for a v1 `regex:` filter.
        field: String,
        /// The pattern, as written.
        pattern: String,
        /// The regex engine's explanation.
        message: String,
    },
    /// `spec.filterTags.extract` refers to a group the pattern lacks (Flux
    /// would silently expand it to an empty value for every tag).
    #[error(
        "spec.filterTags.extract: {reference} names no capture group of spec.filterTags.pattern {pattern:?}"
    )]
    Extract {
        /// The reference, as `${name}`.
        reference: String,
        /// The pattern.
        pattern: String,
    },
    /// An order is neither `asc` nor `desc`.
    #[error("{field}: invalid order {value:?}: must be asc or desc")]
    Order {
        /// `spec.policy.alphabetical.order` or `spec.policy.numerical.order`.
        field: &'static str,
        /// The value, as written.
        value: String,
    },
    /// `spec.filterTags` was given with a Flux v1 filter or a newest-build
    /// policy, which order by creation time or lenient version and have no
    /// notion of an extracted value.
    #[error("spec.filterTags: cannot be combined with a Flux v1 filter or a newest-build policy")]
    FilterTagsWithV1,
}

/// Why [`super::CompiledPolicy::select`] chose nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// There were no tags at all.
    #[error("no tags to choose from")]
    NoTags,
    /// Tags were given but none survived every stage.
    #[error("no tag qualifies for {policy}: {funnel}")]
    NoneQualify {
        /// The policy, described (`semver range ">=1.0"`).
        policy: String,
        /// How many tags each stage set aside.
        funnel: Funnel,
    },
    /// A `numerical` policy met a candidate that is not a number; like Flux
    /// we fail the whole policy rather than guess.
    #[error("{}", not_a_number(.tag, .extracted.as_deref(), *.others))]
    NotANumber {
        /// The first such tag (in the order given).
        tag: String,
        /// Its value after `filterTags.extract`, when one is configured.
        extracted: Option<String>,
        /// How many other candidates are not numbers either.
        others: usize,
    },
    /// Several candidates qualify for a newest-by-creation-time choice but
    /// none has a creation time, so any pick would be arbitrary.
    #[error("{candidates} tags qualify but none has an image creation time to order them by")]
    NoCreationTime {
        /// How many candidates qualified.
        candidates: usize,
    },
}

fn not_a_number(tag: &str, extracted: Option<&str>, others: usize) -> String {
    let what = match extracted {
        Some(value) => format!("tag {tag:?} (extracted value {value:?})"),
        None => format!("tag {tag:?}"),
    };
    let more = match others {
        0 => String::new(),
        1 => " (and 1 other tag)".to_string(),
        n => format!(" (and {n} other tags)"),
    };
    format!(
        "numerical policy: {what} is not a number{more}; use spec.filterTags to keep only numeric tags"
    )
}
