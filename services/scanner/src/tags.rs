//! What a scan makes of the registry's raw tag list, pure:
//! the OCI tag grammar (a tag that fails it is dropped and reported, never
//! passed on), the repository's `exclusionList` (applied here, at scan time,
//! as Flux's image-reflector-controller does before it stores the tags, so
//! excluded tags never reach a policy), sorting and de-duplication, and the
//! the status sample.

use std::collections::BTreeSet;

use regex::Regex;
use tagrelay_proto::reference::is_valid_tag;

/// How many tags a status shows: Flux's `lastScanResult.latestTags` holds
/// the first ten in descending order.
pub const LATEST_TAGS: usize = 10;

/// How many refused tags are quoted in a report.
const QUOTED_INVALID: usize = 3;

/// The outcome of filtering one listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filtered {
    /// The tags kept: valid, not excluded, sorted, unique.
    pub tags: Vec<String>,
    /// Tags refused because they fail the OCI tag grammar, sorted, unique.
    pub invalid: Vec<String>,
    /// How many distinct tags the exclusion list removed.
    pub excluded: usize,
}

impl Filtered {
    /// A one-line report of the refused tags, quoted with escapes (a
    /// refused tag may hold control characters), or `None` when none were.
    pub fn invalid_report(&self) -> Option<String> {
        if self.invalid.is_empty() {
            return None;
        }
        let quoted: Vec<String> = self
            .invalid
            .iter()
            .take(QUOTED_INVALID)
            .map(|t| format!("{t:?}"))
            .collect();
        let more = self.invalid.len().saturating_sub(QUOTED_INVALID);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        Some(format!(
            "{} tag(s) dropped for not matching the OCI tag grammar: {}{tail}",
            self.invalid.len(),
            quoted.join(", ")
        ))
    }
}

/// Compiles an `exclusionList` (Go-compatible, unanchored regexes).
pub fn compile_exclusions(list: &[String]) -> Result<Vec<Regex>, regex::Error> {
    list.iter().map(|pattern| Regex::new(pattern)).collect()
}

/// Filters a raw listing: grammar first, then exclusions, then sorted and
/// de-duplicated.
pub fn filter_tags(raw: impl IntoIterator<Item = String>, exclusions: &[Regex]) -> Filtered {
    let mut kept = BTreeSet::new();
    let mut invalid = BTreeSet::new();
    let mut excluded = BTreeSet::new();
    for tag in raw {
        if !is_valid_tag(&tag) {
            invalid.insert(tag);
        } else if exclusions.iter().any(|r| r.is_match(&tag)) {
            excluded.insert(tag);
        } else {
            kept.insert(tag);
        }
    }
    Filtered {
        tags: kept.into_iter().collect(),
        invalid: invalid.into_iter().collect(),
        excluded: excluded.len(),
    }
}

/// The first [`LATEST_TAGS`] tags in descending order, for the status.
pub fn latest_tags(sorted: &[String]) -> Vec<String> {
    sorted.iter().rev().take(LATEST_TAGS).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn grammar_exclusions_sorting_and_duplicates() {
        let exclusions = compile_exclusions(&strings(&["^.*\\.sig$", "^dev-"])).unwrap();
        let raw = strings(&[
            "2.0.0",
            "1.0.0",
            "2.0.0",
            "sha256-abc.sig",
            "dev-123",
            "bad tag",
            ".hidden",
            "ok-dev-1",
            "bad tag",
        ]);
        let filtered = filter_tags(raw, &exclusions);
        assert_eq!(filtered.tags, strings(&["1.0.0", "2.0.0", "ok-dev-1"]));
        assert_eq!(filtered.invalid, strings(&[".hidden", "bad tag"]));
        assert_eq!(filtered.excluded, 2);
    }

    #[test]
    fn flux_default_exclusion_drops_signatures_only() {
        let exclusions =
            compile_exclusions(&[tagrelay_proto::config::DEFAULT_EXCLUSION.to_string()]).unwrap();
        let filtered = filter_tags(
            strings(&["v1", "sha256-x.sig", "sig", "a.sig.b"]),
            &exclusions,
        );
        assert_eq!(filtered.tags, strings(&["a.sig.b", "sig", "v1"]));
    }

    #[test]
    fn the_report_quotes_a_few_refused_tags_escaped() {
        let filtered = filter_tags(strings(&["a\nb", "-x", "é", ".y", "ok"]), &[]);
        let report = filtered.invalid_report().unwrap();
        assert!(report.starts_with("4 tag(s) dropped"), "{report}");
        assert!(report.contains("\"-x\""), "{report}");
        assert!(report.contains("and 1 more"), "{report}");
        assert!(!report.contains('\n'), "escaped: {report}");
        assert_eq!(filter_tags(strings(&["ok"]), &[]).invalid_report(), None);
    }

    #[test]
    fn latest_tags_are_the_last_ten_descending() {
        let sorted: Vec<String> = (0..15).map(|i| format!("t{i:02}")).collect();
        let latest = latest_tags(&sorted);
        assert_eq!(latest.len(), LATEST_TAGS);
        assert_eq!(latest[0], "t14");
        assert_eq!(latest[9], "t05");
    }

    #[test]
    fn a_bad_exclusion_is_an_error() {
        assert!(compile_exclusions(&strings(&["("])).is_err());
    }
}
