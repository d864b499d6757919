//! The resolver's policy engine: given a repository's tags, choose the one a
//! Flux ImagePolicy (or a Flux v1 `fluxcd.io/tag.<container>` filter) would
//! choose. Pure: no I/O, no async, no configuration types.
//!
//! A policy is described by [`PolicyRules`], compiled once by [`compile`]
//! (regular expressions, ranges) and evaluated many times by
//! [`CompiledPolicy::select`]. Mapping Flux YAML onto the description:
//!
//! | Flux | here |
//! |---|---|
//! | `ImagePolicy.spec.policy.semver.range: R` | `Choice::Semver { range: R }` |
//! | `ImagePolicy.spec.policy.alphabetical.order: O` | `Choice::Alphabetical { order: Order::parse(ALPHABETICAL_ORDER_FIELD, O)? }` |
//! | `ImagePolicy.spec.policy.numerical.order: O` | `Choice::Numerical { order: Order::parse(NUMERICAL_ORDER_FIELD, O)? }` |
//! | `ImagePolicy.spec.filterTags: {pattern: P, extract: E}` | `filter_tags: Some(FilterTags { pattern: P, extract: Some(E) })` |
//! | `ImageRepository.spec.exclusionList: L` (absent) | `exclusion_list: Some(L)` (`None`: [`DEFAULT_EXCLUSION`]) |
//! | `fluxcd.io/tag.<container>: F`, CLI `--filter F` | `Choice::FluxV1(V1Filter::parse(F))` |
//! | `fluxcd.io/automated` without a tag filter | `Choice::NewestBuild` |
//! | ImagePolicy without `spec.policy` (`filterTags` allowed) | `Choice::NewestBuild` |

pub mod age;
mod error;
mod filter;
mod numeric;
mod range;
pub mod rules;
mod select;
mod v1;
mod version;

pub use error::{PolicyError, SelectError};
pub use filter::DEFAULT_EXCLUSION;
pub use select::{Candidate, Funnel, Selected};
pub use v1::V1Filter;
pub use version::parse_tag_version;

use filter::{Exclusions, TagFilter};
use range::Range;
use v1::Glob;

/// The field an invalid semver range is reported against.
pub const SEMVER_RANGE_FIELD: &str = "spec.policy.semver.range";
/// The field an invalid alphabetical order is reported against.
pub const ALPHABETICAL_ORDER_FIELD: &str = "spec.policy.alphabetical.order";
/// The field an invalid numerical order is reported against.
pub const NUMERICAL_ORDER_FIELD: &str = "spec.policy.numerical.order";
/// The field Flux v1 filter errors are reported against (the annotation is
/// `fluxcd.io/tag.<container>`).
pub const V1_FILTER_FIELD: &str = "fluxcd.io/tag";

/// Everything that decides which tag a policy chooses, independent of where
/// it was written (Flux YAML, v1 annotations, CLI flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRules {
    /// How candidates are ranked.
    pub choice: Choice,
    /// `ImagePolicy.spec.filterTags`; Flux v2 choices only.
    pub filter_tags: Option<FilterTags>,
    /// `ImageRepository.spec.exclusionList`: `None` when the field is absent
    /// (Flux then defaults it to [`DEFAULT_EXCLUSION`]); `Some(vec![])`
    /// excludes nothing.
    pub exclusion_list: Option<Vec<String>>,
}

impl PolicyRules {
    /// Rules with only a choice: no tag filter, the default exclusion list.
    #[must_use]
    pub fn new(choice: Choice) -> Self {
        Self {
            choice,
            filter_tags: None,
            exclusion_list: None,
        }
    }
}

/// How candidates are ranked (`ImagePolicy.spec.policy`, or Flux v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Highest version in Flux's (Masterminds') range syntax; a tag counts
    /// when it has two dots and reads as a version (`v2025.07.03` does,
    /// `1.2` does not).
    Semver {
        /// The range, as written.
        range: String,
    },
    /// Byte-wise order: `asc` chooses the greatest, `desc` the least.
    Alphabetical {
        /// Which end wins.
        order: Order,
    },
    /// Numeric order: `asc` chooses the greatest, `desc` the least. One
    /// candidate that is not a number fails the whole policy, as in Flux.
    Numerical {
        /// Which end wins.
        order: Order,
    },
    /// Flux v1 automation without a tag filter: the newest image by its
    /// `created` time; `latest` is never chosen.
    NewestBuild,
    /// Flux v1 automation with a `glob:`, `regex:` or `semver:` filter.
    FluxV1(V1Filter),
}

/// Which end of an order wins (`asc`: the greatest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The greatest value wins (Flux's default).
    #[default]
    Asc,
    /// The least value wins.
    Desc,
}

impl Order {
    /// Reads a Flux order field: `asc` or `desc` in any case (Flux
    /// upper-cases it), empty meaning `asc`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Order`] naming `field` for anything else.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, PolicyError> {
        if value.is_empty() || value.eq_ignore_ascii_case("asc") {
            Ok(Self::Asc)
        } else if value.eq_ignore_ascii_case("desc") {
            Ok(Self::Desc)
        } else {
            Err(PolicyError::Order {
                field,
                value: value.to_string(),
            })
        }
    }
}

/// `ImagePolicy.spec.filterTags`: keep tags matching `pattern` (unanchored)
/// and rank them by `extract` expanded from its groups (`$1`, `${1}`,
/// `$name`, `${name}`); the original tag is what gets chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterTags {
    /// A Go-syntax regular expression; empty matches every tag.
    pub pattern: String,
    /// The value to rank by; `None` or empty: the tag itself.
    pub extract: Option<String>,
}

/// A policy ready to evaluate: regular expressions and ranges compiled.
/// Cheap to share across threads (`Send + Sync`).
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    exclusions: Exclusions,
    /// Flux v1: drop `latest` (any case) before matching.
    skip_latest: bool,
    matcher: Option<TagMatcher>,
    ranking: Ranking,
    description: String,
}

/// Which tags a policy looks at.
#[derive(Debug, Clone)]
enum TagMatcher {
    Glob(Glob),
    Regex(TagFilter),
}

/// How a policy ranks the tags it looks at.
#[derive(Debug, Clone)]
enum Ranking {
    /// Highest version in range; `lenient` for Flux v1 (`1`, `1.2` count).
    Semver {
        range: Range,
        lenient: bool,
    },
    Alphabetical(Order),
    Numerical(Order),
    /// Newest image creation time.
    Newest,
}

/// Compiles `rules` once, so that selections do no parsing of their own.
///
/// # Errors
///
/// The first field at fault, with the offending part: a range that does not
/// parse, a regular expression that does not compile, an `extract` naming a
/// missing group, or `filterTags` combined with a Flux v1 choice.
pub fn compile(rules: &PolicyRules) -> Result<CompiledPolicy, PolicyError> {
    let exclusions = match &rules.exclusion_list {
        Some(list) => Exclusions::compile(list)?,
        None => Exclusions::compile(&[DEFAULT_EXCLUSION.to_string()])?,
    };
    if matches!(rules.choice, Choice::FluxV1(_)) && rules.filter_tags.is_some() {
        return Err(PolicyError::FilterTagsWithV1);
    }
    let filter = match &rules.filter_tags {
        Some(f) => Some(TagMatcher::Regex(TagFilter::compile(
            "spec.filterTags.pattern",
            &f.pattern,
            f.extract.as_deref(),
        )?)),
        None => None,
    };
    let (skip_latest, matcher, ranking, description) = match &rules.choice {
        Choice::Semver { range } => (
            false,
            filter,
            Ranking::Semver {
                range: parse_range(SEMVER_RANGE_FIELD, range)?,
                lenient: false,
            },
            format!("semver range {range:?}"),
        ),
        Choice::Alphabetical { order } => (
            false,
            filter,
            Ranking::Alphabetical(*order),
            format!("alphabetical order ({})", order_name(*order)),
        ),
        Choice::Numerical { order } => (
            false,
            filter,
            Ranking::Numerical(*order),
            format!("numerical order ({})", order_name(*order)),
        ),
        Choice::NewestBuild => (
            true,
            filter,
            Ranking::Newest,
            "newest image by creation time".to_string(),
        ),
        Choice::FluxV1(v1_filter) => {
            let (skip_latest, matcher, ranking) = match v1_filter {
                V1Filter::Glob(pattern) => (
                    pattern != "latest",
                    (pattern != "*").then(|| TagMatcher::Glob(Glob::new(pattern))),
                    Ranking::Newest,
                ),
                V1Filter::Regex(pattern) => (
                    true,
                    Some(TagMatcher::Regex(TagFilter::compile(
                        V1_FILTER_FIELD,
                        pattern,
                        None,
                    )?)),
                    Ranking::Newest,
                ),
                V1Filter::Semver(range) => (
                    true,
                    None,
                    Ranking::Semver {
                        range: parse_range(V1_FILTER_FIELD, range)?,
                        lenient: true,
                    },
                ),
            };
            (
                skip_latest,
                matcher,
                ranking,
                format!("Flux v1 filter {v1_filter}"),
            )
        }
    };
    Ok(CompiledPolicy {
        exclusions,
        skip_latest,
        matcher,
        ranking,
        description,
    })
}

fn parse_range(field: &'static str, range: &str) -> Result<Range, PolicyError> {
    Range::parse(range).map_err(|e| PolicyError::Range {
        field,
        range: range.to_string(),
        part: e.part,
        reason: e.reason,
    })
}

fn order_name(order: Order) -> &'static str {
    match order {
        Order::Asc => "asc",
        Order::Desc => "desc",
    }
}

impl CompiledPolicy {
    /// Whether ranking reads [`Candidate::created`], so the resolver knows
    /// when fetching image configs is worth it (Flux v1's
    /// `RequiresTimestamp`).
    #[must_use]
    pub fn needs_created(&self) -> bool {
        matches!(self.ranking, Ranking::Newest)
    }

    /// The policy in a few words (`semver range ">=1.0"`), for messages.
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }
}

#[cfg(test)]
mod tests;
