//! Flux v1 tag filters (`fluxcd.io/tag.<container>` annotations, and the
//! CLI's `--filter`), as fluxcd/flux `pkg/policy/pattern.go` reads them.

use std::fmt;

/// A Flux v1 tag filter, as written after its prefix.
///
/// Flux v1 orders `glob:` and `regex:` candidates by image creation time
/// (newest first, ties to the tag first in byte order) and `semver:`
/// candidates by version (ties to the tag last in byte order, so `1.10.0`
/// beats `1.10`). The tag `latest` (any case) is never a candidate unless the
/// filter is exactly `glob:latest` (or `latest`, glob being the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum V1Filter {
    /// `glob:PATTERN`, or a filter with no known prefix: `*` matches any run
    /// of characters (none included); every other character is literal.
    Glob(String),
    /// `regex:PATTERN` or `regexp:PATTERN`: a Go regular expression,
    /// unanchored.
    Regex(String),
    /// `semver:RANGE`: Flux's range syntax; tags are read leniently (`1`,
    /// `v1.2` count, unlike Flux's ImagePolicy).
    Semver(String),
}

impl V1Filter {
    /// Splits the prefix off an annotation value, as Flux v1's `NewPattern`
    /// does: `semver:`, `regexp:`, `regex:`, then `glob:` or nothing (glob).
    /// Prefixes are case-sensitive. Errors in the pattern itself are
    /// reported by [`super::compile`].
    #[must_use]
    pub fn parse(filter: &str) -> Self {
        if let Some(range) = filter.strip_prefix("semver:") {
            Self::Semver(range.to_string())
        } else if let Some(pattern) = filter.strip_prefix("regexp:") {
            Self::Regex(pattern.to_string())
        } else if let Some(pattern) = filter.strip_prefix("regex:") {
            Self::Regex(pattern.to_string())
        } else {
            Self::Glob(filter.strip_prefix("glob:").unwrap_or(filter).to_string())
        }
    }
}

impl fmt::Display for V1Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Glob(pattern) => write!(f, "glob:{pattern}"),
            Self::Regex(pattern) => write!(f, "regex:{pattern}"),
            Self::Semver(range) => write!(f, "semver:{range}"),
        }
    }
}

/// A compiled glob: the pattern split at its `*`s (ryanuber/go-glob, which
/// Flux v1 uses).
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    /// The literal runs between `*`s; one run means no `*` at all.
    parts: Vec<String>,
}

impl Glob {
    /// Compiles a glob; every pattern is valid.
    pub(crate) fn new(pattern: &str) -> Self {
        Self {
            parts: pattern.split('*').map(str::to_string).collect(),
        }
    }

    /// Whether the glob matches `subject` entirely.
    pub(crate) fn matches(&self, subject: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return subject.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return subject == first;
        };
        let Some(mut remaining) = subject.strip_prefix(first.as_str()) else {
            return false;
        };
        // Placing each middle run as early as possible never loses a match.
        for part in middle {
            match remaining.find(part.as_str()) {
                Some(at) => remaining = &remaining[at + part.len()..],
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            V1Filter::parse("semver:~1.0"),
            V1Filter::Semver("~1.0".into())
        );
        assert_eq!(V1Filter::parse("regexp:^v"), V1Filter::Regex("^v".into()));
        assert_eq!(V1Filter::parse("regex:^v"), V1Filter::Regex("^v".into()));
        assert_eq!(V1Filter::parse("glob:1.*"), V1Filter::Glob("1.*".into()));
        assert_eq!(V1Filter::parse("1.*"), V1Filter::Glob("1.*".into()));
        assert_eq!(V1Filter::parse("*"), V1Filter::Glob("*".into()));
        assert_eq!(V1Filter::parse("latest"), V1Filter::Glob("latest".into()));
        assert_eq!(V1Filter::parse(""), V1Filter::Glob(String::new()));
        // Case-sensitive, like Flux v1: an unknown prefix is part of a glob.
        assert_eq!(
            V1Filter::parse("SEMVER:1"),
            V1Filter::Glob("SEMVER:1".into())
        );
        assert_eq!(V1Filter::parse("regexp:a").to_string(), "regex:a");
        assert_eq!(V1Filter::parse("x").to_string(), "glob:x");
        assert_eq!(V1Filter::parse("semver:1").to_string(), "semver:1");
    }

    #[test]
    fn glob_table_from_flux_v1() {
        // fluxcd/flux pkg/policy pattern_test.go TestGlobPattern_Matches.
        let all = Glob::new("*");
        for tag in ["", "1", "foo"] {
            assert!(all.matches(tag), "{tag:?}");
        }
        let prefix = Glob::new("master-*");
        assert!(prefix.matches("master-"));
        assert!(prefix.matches("master-foo"));
        assert!(!prefix.matches(""));
        assert!(!prefix.matches("foo-master"));
    }

    #[test]
    fn glob_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("", "", true),
            ("", "a", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*-rc*", "1.0-rc.1", true),
            ("**", "anything", true),
            ("1.?", "1.2", false),
            ("1.?", "1.?", true),
            ("[ab]", "a", false),
            ("ab*ab", "ab", false),
            ("ab*ab", "abab", true),
            ("*x*", "abc", false),
        ];
        for &(pattern, subject, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(subject),
                want,
                "{pattern:?} {subject:?}"
            );
        }
    }
}
