//! `spec.filterTags` (pattern + extract) and `spec.exclusionList`.
//!
//! Both are Go regular expressions in Flux, matched unanchored; the `regex`
//! crate reads the same syntax for everything a tag can contain (tags are
//! ASCII by the time they get here). `extract` is expanded with Go's
//! `Regexp.Expand` rules, implemented here over reusable capture locations so
//! that filtering allocates nothing per tag.

use regex::{CaptureLocations, Regex, RegexSet};

use super::PolicyError;

/// The exclusion Flux's ImageRepository applies when `spec.exclusionList` is
/// absent (cosign signature tags); one definition, shared with configuration
/// defaulting, because only this exact pattern gets the fast `.sig` check.
pub use tagrelay_proto::config::DEFAULT_EXCLUSION;

/// The compiled exclusion list.
#[derive(Debug, Clone)]
pub(crate) struct Exclusions {
    /// [`DEFAULT_EXCLUSION`] is in the list: checked without the regex
    /// engine, since it is the only one nearly everybody has.
    signature_suffix: bool,
    /// Every other pattern.
    others: Option<RegexSet>,
}

impl Exclusions {
    /// Compiles `patterns`; an error names `spec.exclusionList[i]`.
    pub(crate) fn compile(patterns: &[String]) -> Result<Self, PolicyError> {
        let mut signature_suffix = false;
        let mut others = Vec::new();
        for (i, pattern) in patterns.iter().enumerate() {
            if pattern == DEFAULT_EXCLUSION {
                signature_suffix = true;
                continue;
            }
            // Compiled alone first so that an error can say which one.
            Regex::new(pattern).map_err(|e| PolicyError::Regex {
                field: format!("spec.exclusionList[{i}]"),
                pattern: pattern.clone(),
                message: e.to_string(),
            })?;
            others.push(pattern.as_str());
        }
        let others = if others.is_empty() {
            None
        } else {
            Some(RegexSet::new(&others).map_err(|e| PolicyError::Regex {
                field: "spec.exclusionList".to_string(),
                pattern: others.join(" | "),
                message: e.to_string(),
            })?)
        };
        Ok(Self {
            signature_suffix,
            others,
        })
    }

    /// Whether some pattern matches `tag`.
    #[inline]
    pub(crate) fn excludes(&self, tag: &str) -> bool {
        (self.signature_suffix && is_signature_tag(tag))
            || self.others.as_ref().is_some_and(|set| set.is_match(tag))
    }
}

/// Exactly what `^.*\.sig$` matches: ends in `.sig`, and `.` (which never
/// matches a newline) covers everything before it.
#[inline]
fn is_signature_tag(tag: &str) -> bool {
    tag.strip_suffix(".sig")
        .is_some_and(|stem| !stem.as_bytes().contains(&b'\n'))
}

/// One piece of a compiled `extract` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// A capture group by index; unmatched groups expand to nothing.
    Group(usize),
}

/// `spec.filterTags`, compiled.
#[derive(Debug, Clone)]
pub(crate) struct TagFilter {
    regex: Regex,
    /// `None` when `extract` is absent or empty: the tag itself is the value.
    extract: Option<Vec<Piece>>,
}

/// Per-selection scratch space, so that filtering allocates nothing per tag.
#[derive(Debug)]
pub(crate) struct FilterScratch {
    locations: CaptureLocations,
    value: String,
}

impl TagFilter {
    /// Compiles `pattern` (errors name `field`) and `extract`. A reference
    /// in `extract` to a group the pattern does not have is refused (Flux
    /// silently expands it to nothing, which makes every value empty).
    pub(crate) fn compile(
        field: &str,
        pattern: &str,
        extract: Option<&str>,
    ) -> Result<Self, PolicyError> {
        let regex = Regex::new(pattern).map_err(|e| PolicyError::Regex {
            field: field.to_string(),
            pattern: pattern.to_string(),
            message: e.to_string(),
        })?;
        let extract = match extract {
            None | Some("") => None,
            Some(template) => Some(parse_template(&regex, template)?),
        };
        Ok(Self { regex, extract })
    }

    /// Whether the filter rewrites tags (`extract` is set).
    pub(crate) fn extracts(&self) -> bool {
        self.extract.is_some()
    }

    /// Scratch space for [`TagFilter::apply`].
    pub(crate) fn scratch(&self) -> FilterScratch {
        FilterScratch {
            locations: self.regex.capture_locations(),
            value: String::new(),
        }
    }

    /// The value to order `tag` by, or `None` when the pattern does not
    /// match: the tag itself, or the expansion of `extract`.
    pub(crate) fn apply<'s>(
        &self,
        tag: &'s str,
        scratch: &'s mut FilterScratch,
    ) -> Option<&'s str> {
        let Some(pieces) = &self.extract else {
            return self.regex.is_match(tag).then_some(tag);
        };
        self.regex.captures_read(&mut scratch.locations, tag)?;
        scratch.value.clear();
        for piece in pieces {
            match piece {
                Piece::Literal(text) => scratch.value.push_str(text),
                Piece::Group(i) => {
                    if let Some((start, end)) = scratch.locations.get(*i) {
                        scratch.value.push_str(&tag[start..end]);
                    }
                }
            }
        }
        Some(&scratch.value)
    }
}

/// Compiles a Go `Regexp.Expand` template: `$1`, `${1}`, `$name`,
/// `${name}`, `$$` for a dollar; a name is the longest run of letters,
/// digits and `_`; a malformed `$` is literal text; a purely numeric name
/// with a leading zero is looked up as a name (Go's rules).
fn parse_template(regex: &Regex, template: &str) -> Result<Vec<Piece>, PolicyError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        literal.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            literal.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = template_name(rest) else {
            literal.push('$');
            continue;
        };
        rest = after;
        let group = group_index(regex, name).ok_or_else(|| PolicyError::Extract {
            reference: format!("${{{name}}}"),
            pattern: regex.as_str().to_string(),
        })?;
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Group(group));
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// The name after a `$` (braced or not) and the text after it, or `None`
/// when malformed (empty name, missing `}`).
fn template_name(text: &str) -> Option<(&str, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    if braced {
        let after = body[len..].strip_prefix('}')?;
        Some((name, after))
    } else {
        Some((name, &body[len..]))
    }
}

/// The group `name` refers to: a number without a leading zero is an index,
/// anything else a group name.
fn group_index(regex: &Regex, name: &str) -> Option<usize> {
    let numeric =
        name.bytes().all(|b| b.is_ascii_digit()) && !(name.len() > 1 && name.starts_with('0'));
    if numeric {
        let index: usize = name.parse().ok()?;
        return (index < regex.captures_len()).then_some(index);
    }
    regex.capture_names().position(|group| group == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELD: &str = "spec.filterTags.pattern";

    fn values(pattern: &str, extract: Option<&str>, tags: &[&str]) -> Vec<String> {
        let filter = TagFilter::compile(FIELD, pattern, extract).unwrap();
        let mut scratch = filter.scratch();
        tags.iter()
            .filter_map(|tag| filter.apply(tag, &mut scratch).map(str::to_string))
            .collect()
    }

    #[test]
    fn flux_regex_filter_table() {
        // fluxcd image-reflector-controller filter_test.go TestRegexFilter.
        assert_eq!(values("", None, &["a"]), ["a"]);
        assert_eq!(
            values("^ver", None, &["ver1", "ver2", "ver3", "rel1"]),
            ["ver1", "ver2", "ver3"]
        );
        assert_eq!(
            values(r"ver(\d+)", Some("$1"), &["ver1", "ver2", "ver3", "rel1"]),
            ["1", "2", "3"]
        );
    }

    #[test]
    fn pattern_is_unanchored() {
        assert_eq!(values("main", None, &["x-main-y", "mai"]), ["x-main-y"]);
    }

    #[test]
    fn extract_forms() {
        let tags = ["main-abc1234-1700000000"];
        let pattern = r"^main-(?P<sha>[a-f0-9]+)-(?P<ts>[0-9]+)$";
        assert_eq!(values(pattern, Some("$2"), &tags), ["1700000000"]);
        assert_eq!(values(pattern, Some("${2}"), &tags), ["1700000000"]);
        assert_eq!(values(pattern, Some("$ts"), &tags), ["1700000000"]);
        assert_eq!(values(pattern, Some("${ts}"), &tags), ["1700000000"]);
        assert_eq!(
            values(pattern, Some("${ts}-$sha"), &tags),
            ["1700000000-abc1234"]
        );
        assert_eq!(values(pattern, Some("v$$${ts}"), &tags), ["v$1700000000"]);
        // $0 is the whole match.
        assert_eq!(values("[0-9]+", Some("$0"), &["build-42"]), ["42"]);
        // Empty extract means "the tag".
        assert_eq!(values("^b", Some(""), &["build-42"]), ["build-42"]);
    }

    #[test]
    fn extract_go_expand_corner_cases() {
        // The longest name wins: $1x is ${1x}, which does not exist.
        assert!(matches!(
            TagFilter::compile(FIELD, "(a)", Some("$1x")),
            Err(PolicyError::Extract { .. })
        ));
        // Malformed references are literal text.
        assert_eq!(values("(a)", Some("$-${1}"), &["a"]), ["$-a"]);
        assert_eq!(values("(a)", Some("${1"), &["a"]), ["${1"]);
        assert_eq!(values("(a)", Some("$"), &["a"]), ["$"]);
        // A leading zero makes it a name, as in Go: $01 is not group 1.
        assert!(matches!(
            TagFilter::compile(FIELD, "(a)", Some("$01")),
            Err(PolicyError::Extract { .. })
        ));
        // An optional group that did not take part expands to nothing.
        assert_eq!(values("a(b)?", Some("[$1]"), &["a", "ab"]), ["[]", "[b]"]);
    }

    #[test]
    fn extract_naming_a_missing_group_is_refused() {
        let err = TagFilter::compile(FIELD, r"ver(\d+)", Some("$ts")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"spec.filterTags.extract: ${ts} names no capture group of spec.filterTags.pattern "ver(\\d+)""#
        );
        assert!(TagFilter::compile(FIELD, r"ver(\d+)", Some("$2")).is_err());
        assert!(TagFilter::compile(FIELD, "", Some("$1")).is_err());
    }

    #[test]
    fn bad_pattern_names_the_field() {
        let err = TagFilter::compile(FIELD, "ver(", None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(r#"spec.filterTags.pattern: invalid regular expression "ver(""#),
            "{text}"
        );
    }

    #[test]
    fn default_exclusion_fast_path_agrees_with_the_regex() {
        let regex = Regex::new(DEFAULT_EXCLUSION).unwrap();
        for tag in [
            "sha256-abc.sig",
            ".sig",
            "sig",
            "a.sig.att",
            "a.SIG",
            "a\n.sig",
            "a\r.sig",
            "x.sigx",
            "a..sig",
            "",
            "\n.sig",
            "é.sig",
        ] {
            assert_eq!(is_signature_tag(tag), regex.is_match(tag), "{tag:?}");
        }
    }

    #[test]
    fn exclusion_list() {
        let list =
            Exclusions::compile(&[DEFAULT_EXCLUSION.to_string(), "^dev-".to_string()]).unwrap();
        assert!(list.excludes("sha256-1.sig"));
        assert!(list.excludes("dev-123"));
        assert!(!list.excludes("1.0.0"));
        let none = Exclusions::compile(&[]).unwrap();
        assert!(!none.excludes("sha256-1.sig"));
        let only_other = Exclusions::compile(&["att$".to_string()]).unwrap();
        assert!(only_other.excludes("sha256-1.att"));
        assert!(!only_other.excludes("sha256-1.sig"));
        let err = Exclusions::compile(&["ok".to_string(), "(".to_string()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"spec.exclusionList[1]: invalid regular expression "(""#),
            "{err}"
        );
    }
}
