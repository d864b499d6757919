//! Choosing one tag: exclusion list, OCI grammar, tag filter, then ranking.
//!
//! One pass over the candidates, keeping only the best so far; nothing is
//! allocated per tag (the best's strings reuse their buffers).

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use tagrelay_reference::{is_valid_tag, MAX_TAG_LEN};

use super::filter::{Exclusions, FilterScratch, TagFilter};
use super::numeric::Decimal;
use super::range::Range;
use super::v1::Glob;
use super::version::{cmp_prerelease, TagVersion};
use super::{CompiledPolicy, Order, Ranking, SelectError, TagMatcher};

/// A tag offered to a policy, with its image's creation time when known.
///
/// Only Flux v1 filters and newest-build policies read `created`; see
/// [`CompiledPolicy::needs_created`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// The tag exactly as the registry spelled it.
    pub tag: &'a str,
    /// The `created` time of the image's config, if the scanner read it.
    pub created: Option<DateTime<Utc>>,
}

impl<'a> From<&'a str> for Candidate<'a> {
    /// A candidate without a creation time.
    fn from(tag: &'a str) -> Self {
        Self { tag, created: None }
    }
}

/// The chosen tag, and how the candidates fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected<'a> {
    /// The tag exactly as the registry spelled it (never the extracted
    /// value): this is what gets written into Git.
    pub tag: &'a str,
    /// The chosen candidate's creation time, as given.
    pub created: Option<DateTime<Utc>>,
    /// The value the policy ordered by, when `filterTags.extract` is set.
    pub extracted: Option<String>,
}

/// How many tags each stage of a selection set aside, in stage order: what
/// [`SelectError::NoneQualify`] reports, and what
/// [`CompiledPolicy::funnel`] tells about any selection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    /// Tags offered.
    pub total: usize,
    /// Matched `spec.exclusionList` (default: cosign `.sig` tags).
    pub excluded: usize,
    /// Not in the OCI tag grammar, so never selectable.
    pub invalid: usize,
    /// Named `latest` under a Flux v1 filter other than `glob:latest`.
    pub latest: usize,
    /// Did not match `spec.filterTags.pattern` or the v1 glob / regex.
    pub unmatched: usize,
    /// Not read as versions by a semver policy.
    pub not_version: usize,
    /// Versions outside the semver range.
    pub out_of_range: usize,
    /// Not numbers, under a numerical policy.
    pub not_number: usize,
    /// Ranked by the policy.
    pub qualified: usize,
}

impl fmt::Display for Funnel {
    /// `"12 tags, of which 2 excluded by exclusionList, 10 outside the range"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tag{}",
            self.total,
            if self.total == 1 { "" } else { "s" }
        )?;
        let stages = [
            (self.excluded, "excluded by exclusionList"),
            (self.invalid, "not valid OCI tags"),
            (self.latest, "named latest"),
            (self.unmatched, "did not match the tag filter"),
            (self.not_version, "not versions"),
            (self.out_of_range, "outside the range"),
            (self.not_number, "not numbers"),
            (self.qualified, "qualified"),
        ];
        let mut first = true;
        for (count, what) in stages {
            if count > 0 {
                f.write_str(if first { ", of which " } else { ", " })?;
                write!(f, "{count} {what}")?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The tag-matching stage, with its scratch space.
enum Stage<'p> {
    All,
    Glob(&'p Glob),
    Filter(&'p TagFilter, FilterScratch),
}

/// The best candidate so far: the parts every ranking keeps.
struct Top<'a> {
    tag: &'a str,
    created: Option<DateTime<Utc>>,
    /// The ordering value when it must outlive the filter's scratch space
    /// (extracted, or compared as text / number); empty otherwise.
    value: String,
}

impl<'a> Top<'a> {
    fn new(candidate: Candidate<'a>, value: Option<&str>) -> Self {
        Self {
            tag: candidate.tag,
            created: candidate.created,
            value: value.map(str::to_string).unwrap_or_default(),
        }
    }

    fn set(&mut self, candidate: Candidate<'a>, value: Option<&str>) {
        self.tag = candidate.tag;
        self.created = candidate.created;
        self.value.clear();
        if let Some(value) = value {
            self.value.push_str(value);
        }
    }
}

/// Per-ranking state.
enum Ranker<'p, 'a> {
    Semver {
        range: &'p Range,
        lenient: bool,
        best: Option<(Top<'a>, SemverKey)>,
    },
    Text {
        order: Order,
        best: Option<Top<'a>>,
    },
    Number {
        order: Order,
        best: Option<(Top<'a>, Decimal)>,
        first_bad: Option<(&'a str, String)>,
    },
    Newest {
        best: Option<Top<'a>>,
    },
}

/// An owned version key: major.minor.patch and the prerelease.
struct SemverKey {
    triple: (u64, u64, u64),
    pre: String,
}

impl SemverKey {
    fn cmp_version(&self, v: &TagVersion<'_>) -> Ordering {
        (v.major, v.minor, v.patch)
            .cmp(&self.triple)
            .then_with(|| cmp_prerelease(v.pre, &self.pre))
    }

    fn set(&mut self, v: &TagVersion<'_>) {
        self.triple = (v.major, v.minor, v.patch);
        self.pre.clear();
        self.pre.push_str(v.pre);
    }
}

impl<'p, 'a> Ranker<'p, 'a> {
    fn new(ranking: &'p Ranking) -> Self {
        match ranking {
            Ranking::Semver { range, lenient } => Self::Semver {
                range,
                lenient: *lenient,
                best: None,
            },
            Ranking::Alphabetical(order) => Self::Text {
                order: *order,
                best: None,
            },
            Ranking::Numerical(order) => Self::Number {
                order: *order,
                best: None,
                first_bad: None,
            },
            Ranking::Newest => Self::Newest { best: None },
        }
    }

    /// Ranks one candidate whose ordering value is `value` (the tag, or the
    /// extracted value when `extracted`).
    fn offer(
        &mut self,
        candidate: Candidate<'a>,
        value: &str,
        extracted: bool,
        funnel: &mut Funnel,
    ) {
        let keep = extracted.then_some(value);
        match self {
            Self::Semver {
                range,
                lenient,
                best,
            } => {
                let parsed = if *lenient {
                    TagVersion::parse_lenient(value)
                } else {
                    TagVersion::parse_flux(value)
                };
                let Some(version) = parsed else {
                    funnel.not_version += 1;
                    return;
                };
                offer_version(range, best, candidate, &version, keep, funnel);
            }
            Self::Text { order, best } => {
                funnel.qualified += 1;
                let wins = best.as_ref().is_none_or(|top| {
                    order
                        .prefer(value.cmp(&top.value))
                        .then_with(|| candidate.tag.cmp(top.tag))
                        == Ordering::Greater
                });
                if wins {
                    set_top(best, candidate, Some(value));
                }
            }
            Self::Number {
                order,
                best,
                first_bad,
            } => {
                let Some(number) = Decimal::parse(value) else {
                    funnel.not_number += 1;
                    if first_bad.is_none() {
                        *first_bad = Some((candidate.tag, value.to_string()));
                    }
                    return;
                };
                funnel.qualified += 1;
                let wins = best.as_ref().is_none_or(|(top, top_number)| {
                    order
                        .prefer(number.cmp(value, top_number, &top.value))
                        .then_with(|| candidate.tag.cmp(top.tag))
                        == Ordering::Greater
                });
                if wins {
                    match best {
                        Some((top, top_number)) => {
                            top.set(candidate, Some(value));
                            *top_number = number;
                        }
                        None => *best = Some((Top::new(candidate, Some(value)), number)),
                    }
                }
            }
            Self::Newest { best } => {
                funnel.qualified += 1;
                // Newest first; a missing time is older than any; equal
                // times go to the tag first in byte order (Flux v1).
                let wins = best.as_ref().is_none_or(|top| {
                    candidate
                        .created
                        .cmp(&top.created)
                        .then_with(|| top.tag.cmp(candidate.tag))
                        == Ordering::Greater
                });
                if wins {
                    set_top(best, candidate, keep);
                }
            }
        }
    }

    /// The winner, or why there is none.
    fn finish(
        self,
        policy: &CompiledPolicy,
        funnel: Funnel,
        extracted: bool,
    ) -> Result<Selected<'a>, SelectError> {
        if funnel.total == 0 {
            return Err(SelectError::NoTags);
        }
        let top = match self {
            Self::Semver { best, .. } => best.map(|(top, _)| top),
            Self::Text { best, .. } => best,
            Self::Number {
                first_bad: Some((tag, value)),
                ..
            } => {
                return Err(SelectError::NotANumber {
                    tag: tag.to_string(),
                    extracted: extracted.then_some(value),
                    others: funnel.not_number - 1,
                })
            }
            Self::Number { best, .. } => best.map(|(top, _)| top),
            Self::Newest { best } => {
                if funnel.qualified > 1 && best.as_ref().is_some_and(|top| top.created.is_none()) {
                    return Err(SelectError::NoCreationTime {
                        candidates: funnel.qualified,
                    });
                }
                best
            }
        };
        let Some(top) = top else {
            return Err(SelectError::NoneQualify {
                policy: policy.description.clone(),
                funnel,
            });
        };
        Ok(Selected {
            tag: top.tag,
            created: top.created,
            extracted: extracted.then_some(top.value),
        })
    }
}

/// Ranks a candidate read as `version` under a semver `range`.
#[inline]
fn offer_version<'a>(
    range: &Range,
    best: &mut Option<(Top<'a>, SemverKey)>,
    candidate: Candidate<'a>,
    version: &TagVersion<'_>,
    keep: Option<&str>,
    funnel: &mut Funnel,
) {
    if !range.matches(version) {
        funnel.out_of_range += 1;
        return;
    }
    funnel.qualified += 1;
    match best {
        // Equal versions (`1.0.0`, `v1.0.0`, `1.0.0+b`): the tag last in
        // byte order wins, as in Flux v1.
        Some((top, key)) => {
            let wins = key
                .cmp_version(version)
                .then_with(|| candidate.tag.cmp(top.tag))
                == Ordering::Greater;
            if wins {
                top.set(candidate, keep);
                key.set(version);
            }
        }
        None => {
            let key = SemverKey {
                triple: (version.major, version.minor, version.patch),
                pre: version.pre.to_string(),
            };
            *best = Some((Top::new(candidate, keep), key));
        }
    }
}

/// A plain semver policy's choice (no tag filter, Flux's two-dot reading):
/// the resolver's commonest selection, over tens of thousands of tags, so
/// each tag costs as little as its fate allows. A tag that does not read
/// as a version is dropped after the read, whatever else is wrong with it;
/// a version that does not beat the best so far is dropped before the range
/// or the exclusion list is consulted. A version without build metadata (`+`
/// is outside the OCI grammar) and of at most 128 bytes is a valid OCI tag,
/// so the grammar needs no second pass. Chooses exactly what the counting
/// pass in [`CompiledPolicy::select`] chooses; `None` when nothing
/// qualifies, which that pass then explains.
fn choose_plain_semver<'a>(
    range: &Range,
    exclusions: &Exclusions,
    candidates: impl Iterator<Item = Candidate<'a>>,
) -> Option<Candidate<'a>> {
    let mut best: Option<(Candidate<'a>, TagVersion<'a>)> = None;
    for candidate in candidates {
        let tag = candidate.tag;
        let Some((version, false)) = TagVersion::parse_flux_tag(tag) else {
            continue;
        };
        if tag.len() > MAX_TAG_LEN {
            continue;
        }
        // Equal versions (`1.0.0`, `v1.0.0`): the tag last in byte order
        // wins, as in the counting pass.
        let beats_best = best.as_ref().is_none_or(|(top, top_version)| {
            version
                .cmp_precedence(top_version)
                .then_with(|| tag.cmp(top.tag))
                == Ordering::Greater
        });
        if beats_best && range.matches(&version) && !exclusions.excludes(tag) {
            best = Some((candidate, version));
        }
    }
    best.map(|(candidate, _)| candidate)
}

/// Makes `candidate` the best so far, reusing the old best's buffer.
fn set_top<'a>(best: &mut Option<Top<'a>>, candidate: Candidate<'a>, value: Option<&str>) {
    match best {
        Some(top) => top.set(candidate, value),
        None => *best = Some(Top::new(candidate, value)),
    }
}

impl Order {
    /// Turns a value comparison into "how much the candidate is preferred":
    /// ascending prefers the greatest, descending the least.
    fn prefer(self, candidate_vs_top: Ordering) -> Ordering {
        match self {
            Order::Asc => candidate_vs_top,
            Order::Desc => candidate_vs_top.reverse(),
        }
    }
}

impl CompiledPolicy {
    /// Chooses the latest tag among `candidates`.
    ///
    /// Stages, in order: `exclusionList` (default: `^.*\.sig$`), the OCI tag
    /// grammar (a tag outside it is never chosen), `latest` (Flux v1 filters
    /// only), the tag filter (`filterTags.pattern` or the v1 glob / regex),
    /// then the ranking. Ties under the ranking resolve without regard to
    /// the order candidates are given in:
    ///
    /// - semver (v2 and v1): equal precedence (`1.0.0`, `v1.0.0`,
    ///   `1.0.0+build`) goes to the tag last in byte order;
    /// - alphabetical and numerical: equal values (tags that extract to the
    ///   same value, `1` and `1.0`) go to the tag last in byte order;
    /// - newest build / v1 glob and regex: equal creation times go to the tag
    ///   first in byte order (Flux v1's rule); a missing time ranks below any.
    ///
    /// A plain semver policy (no tag filter) first takes a pass that counts
    /// nothing (see `choose_plain_semver`); only when it finds nothing does
    /// the counting pass run, to say why. Hence `candidates` must be cheap
    /// to iterate twice.
    ///
    /// # Errors
    ///
    /// [`SelectError::NoTags`] for no candidates; [`SelectError::NoneQualify`]
    /// (with the [`Funnel`]) when every tag was set aside;
    /// [`SelectError::NotANumber`] when a numerical policy meets a
    /// non-number; [`SelectError::NoCreationTime`] when several tags tie for
    /// newest with no creation times at all.
    pub fn select<'a, I>(&self, candidates: I) -> Result<Selected<'a>, SelectError>
    where
        I: IntoIterator<Item = Candidate<'a>>,
        I::IntoIter: Clone,
    {
        let candidates = candidates.into_iter();
        if let (
            None,
            false,
            Ranking::Semver {
                range,
                lenient: false,
            },
        ) = (&self.matcher, self.skip_latest, &self.ranking)
        {
            if let Some(chosen) = choose_plain_semver(range, &self.exclusions, candidates.clone()) {
                return Ok(Selected {
                    tag: chosen.tag,
                    created: chosen.created,
                    extracted: None,
                });
            }
        }
        self.select_counting(candidates).0
    }

    /// How many of `candidates` each stage of [`CompiledPolicy::select`]
    /// sets aside: what explains a choice, or the lack of one.
    pub fn funnel<'a>(&self, candidates: impl IntoIterator<Item = Candidate<'a>>) -> Funnel {
        self.select_counting(candidates).1
    }

    /// The selection with every stage counted: the general pass, and the
    /// explanation when the plain semver pass finds nothing.
    fn select_counting<'a>(
        &self,
        candidates: impl IntoIterator<Item = Candidate<'a>>,
    ) -> (Result<Selected<'a>, SelectError>, Funnel) {
        let mut funnel = Funnel::default();
        let mut stage = match &self.matcher {
            None => Stage::All,
            Some(TagMatcher::Glob(glob)) => Stage::Glob(glob),
            Some(TagMatcher::Regex(filter)) => Stage::Filter(filter, filter.scratch()),
        };
        let extracted = matches!(&stage, Stage::Filter(filter, _) if filter.extracts());
        let mut ranker = Ranker::new(&self.ranking);
        for candidate in candidates {
            funnel.total += 1;
            let tag = candidate.tag;
            if self.exclusions.excludes(tag) {
                funnel.excluded += 1;
                continue;
            }
            if !is_valid_tag(tag) {
                funnel.invalid += 1;
                continue;
            }
            if self.skip_latest && tag.eq_ignore_ascii_case("latest") {
                funnel.latest += 1;
                continue;
            }
            let value = match &mut stage {
                Stage::All => Some(tag),
                Stage::Glob(glob) => glob.matches(tag).then_some(tag),
                Stage::Filter(filter, scratch) => filter.apply(tag, scratch),
            };
            let Some(value) = value else {
                funnel.unmatched += 1;
                continue;
            };
            ranker.offer(candidate, value, extracted, &mut funnel);
        }
        (ranker.finish(self, funnel, extracted), funnel)
    }

    /// [`CompiledPolicy::select`] over bare tags (no creation times), for
    /// the policies that do not need them.
    ///
    /// # Errors
    ///
    /// As [`CompiledPolicy::select`].
    pub fn select_tags<'a, S, I>(&self, tags: I) -> Result<Selected<'a>, SelectError>
    where
        S: AsRef<str> + ?Sized + 'a,
        I: IntoIterator<Item = &'a S>,
        I::IntoIter: Clone,
    {
        self.select(tags.into_iter().map(|tag| Candidate::from(tag.as_ref())))
    }
}
