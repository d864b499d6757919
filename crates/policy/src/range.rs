//! Flux's semver range grammar, which is Masterminds/semver v3's (3.4), not
//! Cargo's.
//!
//! ```text
//! range      := branch ( "||" branch )*
//! branch     := ws* term ( sep term )* ws*        sep := ws+ | ws* "," ws*
//! term       := version ws+ "-" ws+ version        (hyphen range: >= a, <= b)
//!             | op? ws* version
//! op         := "=" | "!=" | ">" | "<" | ">=" | "=>" | "<=" | "=<" | "~" | "~>" | "^"
//! version    := "v"? part ( "." part ( "." part )? )? ( "-" pre )? ( "+" build )?
//! part       := digits | "x" | "X" | "*"
//! ```
//!
//! Whitespace is Go's `\s` (space, tab, CR, LF, form feed). A missing or
//! wildcard part makes the comparator a wildcard from that part on, which
//! changes what each operator means exactly as in Masterminds' `constraint*`
//! functions (ported here, quirks included). A prerelease version matches a
//! branch only when some comparator of that branch names a prerelease
//! (Masterminds 3.4: the rule is per AND group, with no requirement that
//! major.minor.patch be shared).

use std::cmp::Ordering;

use super::version::{valid_build, valid_prerelease, TagVersion};

/// A compiled range: alternatives (`||`) of comparator groups.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    branches: Vec<Branch>,
}

/// Why a range did not parse, naming the offending part of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeError {
    /// The offending part of the range, as written.
    pub(crate) part: String,
    /// What is wrong with it.
    pub(crate) reason: &'static str,
}

#[derive(Debug, Clone)]
struct Branch {
    comparators: Vec<Comparator>,
    /// Some comparator names a prerelease, so prerelease versions may match.
    allows_prerelease: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Tilde,
    Caret,
}

/// Where a comparator's version stops being exact (Masterminds' `dirty`,
/// `minorDirty`, `patchDirty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wildcard {
    /// `1.2.3`: exact.
    None,
    /// `*`, `x`, `x.2.3`: the major is a wildcard (`dirty` alone).
    Major,
    /// `1`, `1.x`: the minor is missing or a wildcard.
    Minor,
    /// `1.2`, `1.2.x`: the patch is missing or a wildcard.
    Patch,
}

#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    /// Missing and wildcard parts are zero; build metadata is dropped.
    version: semver::Version,
    wildcard: Wildcard,
}

impl Range {
    /// Parses Flux's range syntax.
    pub(crate) fn parse(text: &str) -> Result<Self, RangeError> {
        if text.bytes().all(is_space) {
            return Err(RangeError {
                part: text.to_string(),
                reason: "the range is empty",
            });
        }
        let branches = text
            .split("||")
            .map(parse_branch)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { branches })
    }

    /// Whether `version` satisfies the range.
    #[inline]
    pub(crate) fn matches(&self, version: &TagVersion<'_>) -> bool {
        self.branches.iter().any(|branch| {
            (version.pre.is_empty() || branch.allows_prerelease)
                && branch.comparators.iter().all(|c| c.matches(version))
        })
    }
}

fn is_space(b: u8) -> bool {
    // Go's \s: [\t\n\f\r ]; the same set as u8::is_ascii_whitespace.
    b.is_ascii_whitespace()
}

fn is_boundary(b: u8) -> bool {
    is_space(b) || b == b','
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<u8> {
        self.text.as_bytes().get(self.at + offset).copied()
    }

    /// Skips whitespace, returning how much was skipped.
    fn skip_space(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(is_space) {
            self.at += 1;
        }
        self.at - start
    }

    /// The word starting at `from`: its first character, then up to the
    /// next whitespace or comma.
    fn word(&self, from: usize) -> String {
        let rest = &self.text[from..];
        let end = rest
            .bytes()
            .skip(1)
            .position(is_boundary)
            .map_or(rest.len(), |p| p + 1);
        rest[..end].to_string()
    }

    fn error(&self, from: usize, reason: &'static str) -> RangeError {
        RangeError {
            part: self.word(from),
            reason,
        }
    }
}

fn parse_branch(text: &str) -> Result<Branch, RangeError> {
    let mut cursor = Cursor { text, at: 0 };
    cursor.skip_space();
    if cursor.peek().is_none() {
        return Err(RangeError {
            part: "||".to_string(),
            reason: "an alternative on one side of || is empty",
        });
    }
    let mut comparators = Vec::new();
    loop {
        parse_term(&mut cursor, &mut comparators)?;
        let before_space = cursor.at;
        let spaced = cursor.skip_space() > 0;
        match cursor.peek() {
            None => break,
            Some(b',') => {
                cursor.at += 1;
                cursor.skip_space();
                if cursor.peek().is_none() {
                    return Err(RangeError {
                        part: text[before_space..].trim().to_string(),
                        reason: "a comma must be followed by another constraint",
                    });
                }
            }
            Some(_) if spaced => {}
            Some(_) => {
                return Err(cursor.error(
                    before_space,
                    "constraints must be separated by whitespace or a comma",
                ))
            }
        }
    }
    let allows_prerelease = comparators.iter().any(|c| !c.version.pre.is_empty());
    Ok(Branch {
        comparators,
        allows_prerelease,
    })
}

fn parse_op(cursor: &mut Cursor<'_>) -> Option<Op> {
    let two = match (cursor.peek(), cursor.peek_at(1)) {
        (Some(b'!'), Some(b'=')) => Some(Op::Ne),
        (Some(b'>'), Some(b'=')) | (Some(b'='), Some(b'>')) => Some(Op::Ge),
        (Some(b'<'), Some(b'=')) | (Some(b'='), Some(b'<')) => Some(Op::Le),
        (Some(b'~'), Some(b'>')) => Some(Op::Tilde),
        _ => None,
    };
    if two.is_some() {
        cursor.at += 2;
        return two;
    }
    let one = match cursor.peek() {
        Some(b'=') => Some(Op::Eq),
        Some(b'>') => Some(Op::Gt),
        Some(b'<') => Some(Op::Lt),
        Some(b'~') => Some(Op::Tilde),
        Some(b'^') => Some(Op::Caret),
        _ => None,
    };
    if one.is_some() {
        cursor.at += 1;
    }
    one
}

fn parse_term(cursor: &mut Cursor<'_>, out: &mut Vec<Comparator>) -> Result<(), RangeError> {
    let start = cursor.at;
    let op = parse_op(cursor);
    cursor.skip_space();
    let (version, wildcard) = parse_version(cursor, start)?;
    // A hyphen range: whitespace, "-", whitespace, a second bare version.
    let after_first = cursor.at;
    if cursor.skip_space() > 0
        && cursor.peek() == Some(b'-')
        && cursor.peek_at(1).is_some_and(is_space)
    {
        if op.is_some() {
            return Err(RangeError {
                part: cursor.text[start..after_first].to_string(),
                reason: "a hyphen range takes bare versions, without an operator",
            });
        }
        cursor.at += 1;
        cursor.skip_space();
        let upper_start = cursor.at;
        if parse_op(cursor).is_some() {
            return Err(cursor.error(
                upper_start,
                "a hyphen range takes bare versions, without an operator",
            ));
        }
        let (upper, upper_wildcard) = parse_version(cursor, upper_start)?;
        out.push(Comparator {
            op: Op::Ge,
            version,
            wildcard,
        });
        out.push(Comparator {
            op: Op::Le,
            version: upper,
            wildcard: upper_wildcard,
        });
        return Ok(());
    }
    cursor.at = after_first;
    out.push(Comparator {
        op: op.unwrap_or(Op::Eq),
        version,
        wildcard,
    });
    Ok(())
}

enum Part {
    Number(u64),
    Wildcard,
}

fn parse_part(cursor: &mut Cursor<'_>, start: usize) -> Result<Part, RangeError> {
    let rest = &cursor.text.as_bytes()[cursor.at..];
    let len = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'*' || *b == b'|'))
        .unwrap_or(rest.len());
    let token = &cursor.text[cursor.at..cursor.at + len];
    let part = match token {
        "" => return Err(cursor.error(start, "is not a version")),
        "x" | "X" | "*" => Part::Wildcard,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => match digits.parse::<u64>() {
            Ok(n) => Part::Number(n),
            Err(_) => return Err(cursor.error(start, "has a number too large")),
        },
        _ => {
            return Err(cursor.error(
                start,
                "is not a version: each part must be a number or x, X, *",
            ))
        }
    };
    cursor.at += len;
    Ok(part)
}

/// Identifiers after `-` or `+`: the run of `[0-9A-Za-z.-]` (a `-` inside
/// a prerelease is part of it), stopping before `+`.
fn identifiers<'a>(cursor: &mut Cursor<'a>) -> &'a str {
    let rest = &cursor.text.as_bytes()[cursor.at..];
    let len = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.'))
        .unwrap_or(rest.len());
    let text = &cursor.text[cursor.at..cursor.at + len];
    cursor.at += len;
    text
}

fn parse_version(
    cursor: &mut Cursor<'_>,
    term_start: usize,
) -> Result<(semver::Version, Wildcard), RangeError> {
    // Errors name the version, or the whole term when the version is absent.
    let start = if cursor.peek().is_some_and(|b| !is_space(b)) {
        cursor.at
    } else {
        term_start
    };
    if cursor.peek() == Some(b'v') {
        cursor.at += 1;
    }
    let mut parts = vec![parse_part(cursor, start)?];
    while cursor.peek() == Some(b'.') {
        if parts.len() == 3 {
            return Err(cursor.error(start, "has more than three version parts"));
        }
        cursor.at += 1;
        parts.push(parse_part(cursor, start)?);
    }
    let mut pre = "";
    if cursor.peek() == Some(b'-') {
        cursor.at += 1;
        pre = identifiers(cursor);
        if !valid_prerelease(pre) {
            return Err(cursor.error(
                start,
                "has an invalid prerelease: dot-separated [0-9A-Za-z-] identifiers, no leading zeros",
            ));
        }
    }
    if cursor.peek() == Some(b'+') {
        cursor.at += 1;
        if !valid_build(identifiers(cursor)) {
            return Err(cursor.error(
                start,
                "has invalid build metadata: dot-separated [0-9A-Za-z-] identifiers",
            ));
        }
    }
    match cursor.peek() {
        Some(b'=' | b'!' | b'<' | b'>' | b'~' | b'^') => {
            return Err(cursor.error(
                cursor.at,
                "constraints must be separated by whitespace or a comma",
            ))
        }
        Some(b) if !is_boundary(b) => return Err(cursor.error(start, "is not a version")),
        _ => {}
    }
    let number = |i: usize| match parts.get(i) {
        Some(Part::Number(n)) => Some(*n),
        _ => None,
    };
    let (major, minor, patch, wildcard) = match (number(0), number(1), number(2)) {
        (None, _, _) => (0, 0, 0, Wildcard::Major),
        (Some(major), None, _) => (major, 0, 0, Wildcard::Minor),
        (Some(major), Some(minor), None) => (major, minor, 0, Wildcard::Patch),
        (Some(major), Some(minor), Some(patch)) => (major, minor, patch, Wildcard::None),
    };
    let pre = semver::Prerelease::new(pre)
        .map_err(|_| cursor.error(start, "has an invalid prerelease"))?;
    Ok((
        semver::Version {
            major,
            minor,
            patch,
            pre,
            build: semver::BuildMetadata::EMPTY,
        },
        wildcard,
    ))
}

impl Comparator {
    /// Masterminds' constraint functions, after the group-level prerelease
    /// gate (which [`Range::matches`] applies).
    #[inline]
    fn matches(&self, v: &TagVersion<'_>) -> bool {
        let c = &self.version;
        match self.op {
            Op::Eq if self.wildcard == Wildcard::None => v.cmp_semver(c) == Ordering::Equal,
            Op::Eq | Op::Tilde => self.tilde(v),
            Op::Ne => self.not_equal(v),
            Op::Gt => self.greater(v),
            Op::Lt => v.cmp_semver(c) == Ordering::Less,
            Op::Ge => v.cmp_semver(c) != Ordering::Less,
            Op::Le => self.less_or_equal(v),
            Op::Caret => self.caret(v),
        }
    }

    /// `~1.2.3` is `>=1.2.3 <1.3.0`; `~1` and `~1.x` are `>=1.0.0 <2.0.0`;
    /// `~*` and `~0.0.0` match anything.
    fn tilde(&self, v: &TagVersion<'_>) -> bool {
        let c = &self.version;
        if v.cmp_semver(c) == Ordering::Less {
            return false;
        }
        let partial = matches!(self.wildcard, Wildcard::Minor | Wildcard::Patch);
        if c.major == 0 && c.minor == 0 && c.patch == 0 && !partial {
            return true;
        }
        v.major == c.major && (v.minor == c.minor || self.wildcard == Wildcard::Minor)
    }

    /// `^1.2.3` is `>=1.2.3 <2.0.0`, `^0.2.3` is `>=0.2.3 <0.3.0`, `^0.0.3`
    /// is `=0.0.3`, `^0.0` is `<0.1.0`, `^0` is `<1.0.0`. (Masterminds
    /// treats `^*` as `^0.0.0`, whatever its comment says; so do we.)
    fn caret(&self, v: &TagVersion<'_>) -> bool {
        let c = &self.version;
        if v.cmp_semver(c) == Ordering::Less {
            return false;
        }
        if c.major > 0 || self.wildcard == Wildcard::Minor {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.wildcard == Wildcard::Patch {
            return v.minor == c.minor;
        }
        v.minor == 0 && v.patch == c.patch
    }

    /// `>1` means major > 1, `>1.2` means above 1.2.x; exact otherwise.
    fn greater(&self, v: &TagVersion<'_>) -> bool {
        let c = &self.version;
        if self.wildcard != Wildcard::None {
            match v.major.cmp(&c.major) {
                Ordering::Greater => return true,
                Ordering::Less => return false,
                Ordering::Equal => {}
            }
            match self.wildcard {
                Wildcard::Minor => return false,
                Wildcard::Patch => return v.minor > c.minor,
                Wildcard::None | Wildcard::Major => {}
            }
        }
        v.cmp_semver(c) == Ordering::Greater
    }

    /// `<=1` allows all of 1.x, `<=1.2` all of 1.2.x; exact otherwise.
    fn less_or_equal(&self, v: &TagVersion<'_>) -> bool {
        let c = &self.version;
        if self.wildcard == Wildcard::None {
            return v.cmp_semver(c) != Ordering::Greater;
        }
        if v.major > c.major {
            return false;
        }
        !(v.major == c.major && v.minor > c.minor && self.wildcard != Wildcard::Minor)
    }

    /// `!=1.x` excludes all of 1.x, `!=1.2` all of 1.2.x (unless the
    /// prereleases differ); exact otherwise.
    fn not_equal(&self, v: &TagVersion<'_>) -> bool {
        let c = &self.version;
        if self.wildcard != Wildcard::None {
            if v.major != c.major {
                return true;
            }
            if self.wildcard == Wildcard::Minor {
                return false;
            }
            if v.minor != c.minor {
                return true;
            }
            if self.wildcard == Wildcard::Patch {
                return v.pre != c.pre.as_str();
            }
            if v.patch != c.patch {
                return true;
            }
        }
        v.cmp_semver(c) != Ordering::Equal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(range: &str, version: &str) -> bool {
        let r = Range::parse(range).unwrap_or_else(|e| panic!("{range:?}: {e:?}"));
        let v = TagVersion::parse_lenient(version).unwrap_or_else(|| panic!("{version:?}"));
        r.matches(&v)
    }

    fn err(range: &str) -> RangeError {
        match Range::parse(range) {
            Ok(r) => panic!("{range:?} parsed: {r:?}"),
            Err(e) => e,
        }
    }

    /// Masterminds constraints_test.go TestConstraintCheck (single
    /// constraints), with the group prerelease rule of 3.4 applied.
    #[test]
    fn masterminds_constraint_check_table() {
        let table: &[(&str, &str, bool)] = &[
            ("=2.0.0", "1.2.3", false),
            ("=2.0.0", "2.0.0", true),
            ("=2.0", "1.2.3", false),
            ("=2.0", "2.0.0", true),
            ("=2.0", "2.0.1", true),
            ("4.1", "4.1.0", true),
            ("!=4.1.0", "4.1.0", false),
            ("!=4.1.0", "4.1.1", true),
            ("!=4.1", "4.1.0", false),
            ("!=4.1", "4.1.1", false),
            ("!=4.1", "5.1.0-alpha.1", false),
            ("!=4.1-alpha", "4.1.0", true),
            ("!=4.1", "5.1.0", true),
            ("<11", "0.1.0", true),
            ("<11", "11.1.0", false),
            ("<1.1", "0.1.0", true),
            ("<1.1", "1.1.0", false),
            ("<1.1", "1.1.1", false),
            ("<=11", "1.2.3", true),
            ("<=11", "12.2.3", false),
            ("<=11", "11.2.3", true),
            ("<=1.1", "1.2.3", false),
            ("<=1.1", "0.1.0", true),
            ("<=1.1", "1.1.0", true),
            ("<=1.1", "1.1.1", true),
            (">1.1", "4.1.0", true),
            (">1.1", "1.1.0", false),
            (">0", "0", false),
            (">0", "1", true),
            (">0", "0.0.1-alpha", false),
            (">0.0", "0.0.1-alpha", false),
            (">0-0", "0.0.1-alpha", false),
            (">0.0-0", "0.0.1-alpha", false),
            (">0", "0.0.0-alpha", false),
            (">0-0", "0.0.0-alpha", false),
            (">0.0.0-0", "0.0.0-alpha", true),
            (">1.2.3-alpha.1", "1.2.3-alpha.2", true),
            (">1.2.3-alpha.1", "1.3.3-alpha.2", true),
            (">11", "11.1.0", false),
            (">11.1", "11.1.0", false),
            (">11.1", "11.1.1", false),
            (">11.1", "11.2.1", true),
            (">=11", "11.1.2", true),
            (">=11.1", "11.1.2", true),
            (">=11.1", "11.0.2", false),
            (">=1.1", "4.1.0", true),
            (">=1.1", "1.1.0", true),
            (">=1.1", "0.0.9", false),
            (">=0", "0.0.1-alpha", false),
            (">=0.0", "0.0.1-alpha", false),
            (">=0-0", "0.0.1-alpha", true),
            (">=0.0-0", "0.0.1-alpha", true),
            (">=0", "0.0.0-alpha", false),
            (">=0-0", "0.0.0-alpha", true),
            (">=0.0.0-0", "0.0.0-alpha", true),
            (">=0.0.0-0", "1.2.3", true),
            (">=0.0.0-0", "3.4.5-beta.1", true),
            ("<0", "0.0.0-alpha", false),
            ("<0-z", "0.0.0-alpha", true),
            (">=0", "0", true),
            ("=0", "1", false),
            ("*", "1", true),
            ("*", "4.5.6", true),
            ("*", "1.2.3-alpha.1", false),
            ("*-0", "1.2.3-alpha.1", true),
            ("2.*", "1", false),
            ("2.*", "3.4.5", false),
            ("2.*", "2.1.1", true),
            ("2.1.*", "2.1.1", true),
            ("2.1.*", "2.2.1", false),
            ("2", "1", false),
            ("2", "3.4.5", false),
            ("2", "2.1.1", true),
            ("2.1", "2.1.1", true),
            ("2.1", "2.2.1", false),
            ("~1.2.3", "1.2.4", true),
            ("~1.2.3", "1.3.4", false),
            ("~1.2", "1.2.4", true),
            ("~1.2", "1.3.4", false),
            ("~1", "1.2.4", true),
            ("~1", "2.3.4", false),
            ("~0.2.3", "0.2.5", true),
            ("~0.2.3", "0.3.5", false),
            ("~1.2.3-beta.2", "1.2.3-beta.4", true),
            ("~1.2.3-beta.2", "1.2.4-beta.2", true),
            ("~1.2.3-beta.2", "1.3.4-beta.2", false),
            ("^1.2.3", "1.8.9", true),
            ("^1.2.3", "2.8.9", false),
            ("^1.2.3", "1.2.1", false),
            ("^1.1.0", "2.1.0", false),
            ("^1.2.0", "2.2.1", false),
            ("^1.2.0", "1.2.1-alpha.1", false),
            ("^1.2.0-alpha.0", "1.2.1-alpha.1", true),
            ("^1.2.0-alpha.0", "1.2.1-alpha.0", true),
            ("^1.2.0-alpha.2", "1.2.0-alpha.1", false),
            ("^1.2", "1.8.9", true),
            ("^1.2", "2.8.9", false),
            ("^1", "1.8.9", true),
            ("^1", "2.8.9", false),
            ("^0.2.3", "0.2.5", true),
            ("^0.2.3", "0.5.6", false),
            ("^0.2", "0.2.5", true),
            ("^0.2", "0.5.6", false),
            ("^0.0.3", "0.0.3", true),
            ("^0.0.3", "0.0.4", false),
            ("^0.0", "0.0.3", true),
            ("^0.0", "0.1.4", false),
            ("^0.0", "1.0.4", false),
            ("^0", "0.2.3", true),
            ("^0", "1.1.4", false),
            ("^0.2.3-beta.2", "0.2.3-beta.4", true),
            ("^0.2.3-beta.2", "0.2.4-beta.2", true),
            ("^0.2.3-beta.2", "0.3.4-beta.2", false),
            ("^0.2.3-beta.2", "0.2.3-beta.2", true),
        ];
        for &(range, version, want) in table {
            assert_eq!(check(range, version), want, "{range:?} vs {version:?}");
        }
    }

    /// Masterminds constraints_test.go TestConstraintsCheck (groups, ORs,
    /// hyphen ranges, separators).
    #[test]
    fn masterminds_constraints_check_table() {
        let table: &[(&str, &str, bool)] = &[
            ("*", "1.2.3", true),
            ("~0.0.0", "1.2.3", true),
            ("0.x.x", "1.2.3", false),
            ("0.0.x", "1.2.3", false),
            ("0.0.0", "1.2.3", false),
            ("^0.0.0", "1.2.3", false),
            ("= 2.0", "1.2.3", false),
            ("= 2.0", "2.0.0", true),
            ("4.1.x", "4.1.3", true),
            ("1.x", "1.4", true),
            ("!=4.1-alpha", "4.1.0-alpha", false),
            ("!=4.1-alpha", "4.1.1-alpha", false),
            ("!=4.x", "5.1.0", true),
            ("!=4.x", "4.1.0", false),
            ("!=4.1.x", "4.2.0", true),
            ("!=4.2.x", "4.2.3", false),
            ("<1.x", "1.1.1", false),
            ("<1.x", "0.1.1", true),
            ("<1.x", "2.0.0", false),
            ("<1.1.x", "1.2.1", false),
            ("<1.1.x", "1.1.500", false),
            ("<1.1.x", "1.0.500", true),
            ("<1.2.x", "1.1.1", true),
            (">=1.1", "4.1.0-beta", false),
            ("<=1.1", "0.1.0-alpha", false),
            ("<=1.1-a", "0.1.0-alpha", true),
            ("<=1.x", "1.1.0", true),
            ("<=2.x", "3.0.0", false),
            ("<=1.1.x", "1.2.500", false),
            ("<=4.5", "3.4.0", true),
            ("<=4.5", "3.7.0", true),
            ("<=4.5", "4.6.3", false),
            (">1.1, <2", "1.1.1", false),
            (">1.1, <2", "1.2.1", true),
            (">1.1, <3", "4.3.2", false),
            (">=1.1, <2, !=1.2.3", "1.2.3", false),
            (">1.1 <2", "1.1.1", false),
            (">1.1 <2", "1.2.1", true),
            (">1.1    <3", "4.3.2", false),
            (">=1.1    <2    !=1.2.3", "1.2.3", false),
            (">=1.1, <2, !=1.2.3 || > 3", "4.1.2", true),
            (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", false),
            (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", true),
            (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
            (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
            (">=1.1 <2 !=1.2.3 || > 3", "4.1.2", true),
            ("> 1.1, <     2", "1.1.1", false),
            (">   1.1, <2", "1.2.1", true),
            (">= 1.1 <2 != 1.2.3 || >= 3", "3.0.0", true),
            ("1.1 - 2", "1.1.1", true),
            ("1.5.0 - 4.5", "3.7.0", true),
            ("1.1-3", "4.3.2", false),
            ("^1.1", "1.1.1", true),
            ("^1.1", "4.3.2", false),
            ("^1.x", "1.1.1", true),
            ("^2.x", "1.1.1", false),
            ("^1.x", "2.1.1", false),
            ("^1.x", "1.1.1-beta1", false),
            ("^1.1.2-alpha", "1.2.1-beta1", true),
            ("^1.2.x-alpha", "1.1.1-beta1", false),
            ("^0.0.1", "0.0.1", true),
            ("^0.0.1", "0.3.1", false),
            ("~*", "2.1.1", true),
            ("~1", "2.1.1", false),
            ("~1", "1.3.5", true),
            ("~1", "1.4", true),
            ("~1.x", "2.1.1", false),
            ("~1.x", "1.3.5", true),
            ("~1.1", "1.1.1-alpha", false),
            ("~1.1-alpha", "1.1.1-beta", true),
            ("~1.1.1-beta", "1.1.1-alpha", false),
            ("~1.1.1-beta", "1.1.1", true),
            ("~1.2.3", "1.2.2", false),
            ("~1.3", "2.4.5", false),
            ("1.0.0 - 2.0.0 <=2.0.0", "1.5.0", true),
            ("1.0.0 - 2.0.0, <=2.0.0", "1.5.0", true),
        ];
        for &(range, version, want) in table {
            assert_eq!(check(range, version), want, "{range:?} vs {version:?}");
        }
    }

    #[test]
    fn every_operator_spelling() {
        for (range, yes, no) in [
            ("=1.2.3", "1.2.3", "1.2.4"),
            ("1.2.3", "1.2.3", "1.2.4"),
            ("!=1.2.3", "1.2.4", "1.2.3"),
            (">1.2.3", "1.2.4", "1.2.3"),
            ("<1.2.3", "1.2.2", "1.2.3"),
            (">=1.2.3", "1.2.3", "1.2.2"),
            ("=>1.2.3", "1.2.3", "1.2.2"),
            ("<=1.2.3", "1.2.3", "1.2.4"),
            ("=<1.2.3", "1.2.3", "1.2.4"),
            ("~1.2.3", "1.2.9", "1.3.0"),
            ("~>1.2.3", "1.2.9", "1.3.0"),
            ("^1.2.3", "1.9.0", "2.0.0"),
        ] {
            assert!(check(range, yes), "{range} should match {yes}");
            assert!(!check(range, no), "{range} should not match {no}");
        }
    }

    #[test]
    fn bare_version_means_exactly_that_version() {
        assert!(check("1.2.3", "1.2.3"));
        assert!(check("1.2.3", "v1.2.3"));
        assert!(check("1.2.3", "1.2.3+build.9"));
        assert!(!check("1.2.3", "1.2.4"));
        assert!(!check("1.2.3", "1.3.0"));
        // Cargo would read this as ^1.2.3; Flux does not.
        assert!(!check("1.2.3", "1.9.9"));
    }

    #[test]
    fn wildcards_in_every_spelling() {
        for range in ["1.x", "1.X", "1.*", "1", "1.x.x", "1.*.*", "=1.x", "v1.x"] {
            assert!(check(range, "1.0.0"), "{range}");
            assert!(check(range, "1.9.9"), "{range}");
            assert!(!check(range, "2.0.0"), "{range}");
            assert!(!check(range, "0.9.9"), "{range}");
        }
        for range in ["1.2.x", "1.2.X", "1.2.*", "1.2"] {
            assert!(check(range, "1.2.0"), "{range}");
            assert!(check(range, "1.2.99"), "{range}");
            assert!(!check(range, "1.3.0"), "{range}");
        }
        for range in ["*", "x", "X", "x.x.x", "*.2.3"] {
            assert!(check(range, "0.0.0"), "{range}");
            assert!(check(range, "99.1.2"), "{range}");
            assert!(!check(range, "1.0.0-rc.1"), "{range}");
        }
        // A wildcard minor drops what follows it.
        assert!(check("1.x.3", "1.5.0"));
    }

    #[test]
    fn hyphen_ranges() {
        // Spaces required; bounds inclusive; partial upper bound covers its x.
        assert!(check("1.2 - 1.4.5", "1.2.0"));
        assert!(check("1.2 - 1.4.5", "1.4.5"));
        assert!(!check("1.2 - 1.4.5", "1.4.6"));
        assert!(!check("1.2 - 1.4.5", "1.1.9"));
        assert!(check("1.2 - 1.4", "1.4.99"));
        assert!(!check("1.2 - 1.4", "1.5.0"));
        assert!(check("1 - 2", "2.9.9"));
        assert!(check("v1.0.0 - v2.0.0", "1.5.0"));
        assert!(check("1.0.0\t-\t2.0.0", "1.5.0"));
        // Several, with ORs and commas.
        assert!(check("1 - 2 || 4 - 5", "4.5.0"));
        assert!(!check("1 - 2 || 4 - 5", "3.0.0"));
        assert!(check(">=0.5, 1.0 - 2.0", "1.5.0"));
        // A prerelease on either bound lets prereleases into the branch.
        assert!(check("1.0.0-alpha - 2.0.0", "1.5.0-beta"));
        assert!(!check("1.0.0 - 2.0.0", "1.5.0-beta"));
        // Without spaces it is a version with a prerelease, not a range.
        assert!(!check("1.0-2.0", "1.5.0"));
        assert!(check("1.0-2.0", "1.0.5-3"));
    }

    #[test]
    fn tilde_and_caret_zero_rules() {
        assert!(check("~0", "0.9.9"));
        assert!(!check("~0", "1.0.0"));
        assert!(check("~0.0", "0.0.9"));
        assert!(!check("~0.0", "0.1.0"));
        assert!(check("~0.0.0", "5.0.0"));
        assert!(check("~>0.2", "0.2.9"));
        assert!(!check("~>0.2", "0.3.0"));
        assert!(check("^0", "0.9.9"));
        assert!(!check("^0", "1.0.0"));
        assert!(check("^0.0", "0.0.9"));
        assert!(!check("^0.0", "0.1.0"));
        assert!(check("^0.0.3", "0.0.3"));
        assert!(!check("^0.0.3", "0.0.4"));
        assert!(!check("^0.0.3", "0.0.2"));
        assert!(check("^0.2.3", "0.2.9"));
        assert!(!check("^0.2.3", "0.3.0"));
        assert!(!check("^0.2.3", "0.2.2"));
        assert!(check("^1.2.3", "1.99.0"));
        assert!(!check("^1.2.3", "2.0.0"));
        assert!(check("^0.x", "0.5.0"));
        assert!(check("^0.0.x", "0.0.5"));
        assert!(!check("^0.0.x", "0.1.0"));
        // Masterminds quirk kept: ^* is ^0.0.0 in its code.
        assert!(check("^*", "0.0.0"));
        assert!(!check("^*", "1.0.0"));
    }

    #[test]
    fn v_prefix_and_lenient_versions_in_ranges() {
        assert!(check(">=v1.2", "1.2.0"));
        assert!(check("^v1", "1.9.0"));
        assert!(check(">=2025.01.01", "2025.07.03"));
        assert!(!check(">=2025.08", "2025.07.03"));
        assert!(check("=v1.2.3+build.1", "1.2.3+other"));
    }

    #[test]
    fn prerelease_rules_per_branch() {
        // A branch without a prerelease excludes prerelease versions.
        assert!(!check(">=1.0.0", "1.5.0-rc.1"));
        // Any comparator of the branch naming one opens the whole branch,
        // whatever its major.minor.patch (Masterminds 3.4).
        assert!(check(">=1.0.0-0 <2.0.0", "1.5.0-rc.1"));
        assert!(check(">1.0.0-beta.1 <2", "1.9.0-alpha"));
        assert!(check("<2.0.0, >=1.0.0-0", "1.5.0-rc.1"));
        // ...but not across ||.
        assert!(!check(">1.0.0-beta.1 <2 || >3", "4.5.0-rc.1"));
        assert!(check(">1.0.0-beta.1 <2 || >3", "1.5.0-rc.1"));
        assert!(check(">1.0.0-beta.1 <2 || >3", "4.0.0"));
        // (`>3` means a major above 3.)
        assert!(!check(">1.0.0-beta.1 <2 || >3", "3.5.0"));
        // Ordering of prereleases against the bound.
        assert!(check(">=1.0.0-rc.1", "1.0.0-rc.2"));
        assert!(!check(">=1.0.0-rc.2", "1.0.0-rc.1"));
        assert!(check(">=1.0.0-rc10", "1.0.0-rc9"));
    }

    #[test]
    fn separators() {
        for range in [
            ">=1 <2",
            ">=1,<2",
            ">=1, <2",
            ">=1 ,<2",
            ">=1 , <2",
            "  >=1\t<2  ",
            ">= 1 < 2",
        ] {
            assert!(check(range, "1.5.0"), "{range:?}");
            assert!(!check(range, "2.0.0"), "{range:?}");
        }
        assert!(check("1.0 || 2.0", "2.0.5"));
        assert!(check("1.0||2.0", "1.0.5"));
    }

    #[test]
    fn bad_ranges_name_the_offending_part() {
        // fluxcd image-reflector-controller TestNewSemVer invalid ranges.
        assert_eq!(err("1.0.0p").part, "1.0.0p");
        assert_eq!(err("1x").part, "1x");
        assert_eq!(err("x1").part, "x1");
        assert_eq!(err("-1").part, "-1");
        assert_eq!(err("a").part, "a");
        assert_eq!(err("").reason, "the range is empty");
        assert_eq!(err("   ").reason, "the range is empty");
        assert_eq!(err("*-*").part, "*-*");
        // Masterminds TestNewConstraint errors.
        assert_eq!(err(">= bar").part, "bar");
        assert_eq!(err(">=").part, ">=");
        assert_eq!(err("BAR >= 1.2.3").part, "BAR");
        assert_eq!(err("12.3.4.1234").part, "12.3.4.1234");
        assert_eq!(
            err("12.3.4.1234").reason,
            "has more than three version parts"
        );
        assert_eq!(err("12.3.34~ 1.2.3").part, "~");
        // Ours.
        assert_eq!(err(">=1.0 <2.x.q").part, "2.x.q");
        assert_eq!(err(">=1.0 ||").part, "||");
        assert_eq!(err("|| 1.0").part, "||");
        assert_eq!(err("1.0 | 2.0").part, "|");
        assert_eq!(err(">=1.0,").part, ",");
        assert_eq!(err(">=1.0,,<2").part, ",<2");
        assert_eq!(err(">=1.0<2.0").part, "<2.0");
        assert_eq!(
            err(">=1.0<2.0").reason,
            "constraints must be separated by whitespace or a comma"
        );
        assert_eq!(err(">1 - 2").part, ">1");
        assert_eq!(err("1 - >2").part, ">2");
        assert_eq!(err("1 - 2 - 3").part, "-");
        assert_eq!(err("1.0 -2.0").part, "-2.0");
        assert_eq!(err("1.0.0-01").part, "1.0.0-01");
        assert_eq!(err("1.0.0-a..b").part, "1.0.0-a..b");
        assert_eq!(err("1.0.0+").part, "1.0.0+");
        assert_eq!(err("1.0.0-").part, "1.0.0-");
        assert_eq!(
            err("99999999999999999999.0.0").reason,
            "has a number too large"
        );
        assert_eq!(err("V1.0").part, "V1.0");
        assert_eq!(err("> = 1.0").part, "=");
        assert_eq!(err("1.2.3 ~").part, "~");
        assert_eq!(err("1..2").part, "1..2");
    }

    #[test]
    fn flux_valid_ranges_parse() {
        // fluxcd image-reflector-controller TestNewSemVer valid ranges and
        // Masterminds TestNewConstraint valid ones.
        for range in [
            "1.0.x",
            "^1.0",
            "=1.0.0",
            "~1.0",
            ">=1.0",
            ">0,<2.0",
            ">= 1.1",
            ">40.50.60, < 50.70",
            "2.0",
            "v2.3.5-20161202202307-sha.e8fc5e5",
            ">= 1.2.3 < 2.0",
            ">= 1.2.3 < 2.0 || => 3.0 < 4",
            ">= 1.2.3, < 2.0 || => 3.0, < 4",
            "3 - 4 || => 3.0, < 4",
            "12.3.34 ~1.2.3",
            "1.0.0 - 2.0.0, <=2.0.0",
        ] {
            assert!(Range::parse(range).is_ok(), "{range:?}");
        }
        let r = Range::parse(">= 1.2.3 < 2.0 || => 3.0 < 4").unwrap();
        assert_eq!(r.branches.len(), 2);
        assert_eq!(r.branches[0].comparators.len(), 2);
        let r = Range::parse("1.0.0 - 2.0.0, <=2.0.0").unwrap();
        assert_eq!(r.branches[0].comparators.len(), 3);
    }
}
