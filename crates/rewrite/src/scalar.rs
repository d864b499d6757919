//! Byte-exact scalar replacement and quoting.
//!
//! A rewritten file must differ from the original only in the bytes of the
//! values that changed. This module decides how a new value is written (keep
//! the scalar's quotes; quote a plain scalar only when the new value would not
//! read back as the same string) and splices the edits into the text. It then
//! re-parses the result and checks that the parser sees exactly the original
//! events with only the edited values changed: whatever the input, the engine
//! never hands back a file that means something else.

use std::collections::BTreeMap;
use std::ops::Range;

use super::yaml::{self, Scalar, Signature, Style};
use super::RewriteError;

/// One replacement of a scalar's bytes.
#[derive(Debug)]
pub(crate) struct Edit {
    pub range: Range<usize>,
    pub replacement: String,
    /// The scalar's event index, to check the rewritten file.
    pub event: usize,
    /// The decoded value the parser must read back.
    pub expected: String,
}

/// Builds the edit that writes `new` into `scalar`, in the scalar's style;
/// `None` when the scalar's bytes are not known precisely enough to replace.
pub(crate) fn edit(scalar: &Scalar, new: &str, preferred_quote: Style) -> Option<Edit> {
    let range = scalar.range.clone()?;
    let (replacement, expected) = match scalar.style {
        Style::Literal | Style::Folded => {
            if new.is_empty() || new.contains(['\n', '\r']) || new.starts_with([' ', '\t']) {
                return None;
            }
            // The chomped line breaks stay where they are.
            let breaks = &scalar.value[scalar.value.trim_end_matches('\n').len()..];
            (new.to_string(), format!("{new}{breaks}"))
        }
        Style::Single => (single_quoted(new), new.to_string()),
        Style::Double => (double_quoted(new), new.to_string()),
        Style::Plain => {
            // In a flow collection, whether a `:` may stay plain depends on
            // what surrounds it; trust it only where a plain `:` already was.
            let colon_ok = !scalar.in_flow || !new.contains(':') || scalar.value.contains(':');
            let text = if colon_ok && is_plain_safe(new, scalar.in_flow) {
                new.to_string()
            } else if preferred_quote == Style::Single {
                single_quoted(new)
            } else {
                double_quoted(new)
            };
            (text, new.to_string())
        }
    };
    Some(Edit {
        range,
        replacement,
        event: scalar.event,
        expected,
    })
}

fn single_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` can be written as a plain scalar and read back as the same
/// string by both YAML 1.1 readers (go-yaml v2, which Kubernetes tooling
/// uses) and YAML 1.2 core-schema readers.
pub(crate) fn is_plain_safe(value: &str, in_flow: bool) -> bool {
    let Some(first) = value.chars().next() else {
        return false;
    };
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace() {
        return false;
    }
    if value.ends_with(|c: char| c.is_whitespace() || c == ':') {
        return false;
    }
    if value.contains(": ")
        || value.contains(" #")
        || value.contains(":\t")
        || value.contains("\t#")
    {
        return false;
    }
    if value.chars().any(|c| c.is_control()) {
        return false;
    }
    if in_flow && value.contains([',', '[', ']', '{', '}']) {
        return false;
    }
    !resolves_to_non_string(value)
}

/// Whether a plain scalar with this text is read as something other than a
/// string (null, bool, int, float, timestamp) by a YAML 1.1 or 1.2 reader.
/// Tags such as `1.10`, `1e3`, `0x1`, `true` or `2024-01-15` are; `1.2.3`,
/// `v1.0` and `latest` are not.
pub(crate) fn resolves_to_non_string(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "yes",
        "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF", "y", "Y", "n", "N",
        "=", "<<",
    ];
    WORDS.contains(&value) || is_number(value) || is_timestamp(value)
}

fn is_number(value: &str) -> bool {
    let unsigned = value.strip_prefix(['+', '-']).unwrap_or(value);
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | ".nan") {
        return true;
    }
    for (prefix, digit) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(digits) = lower.strip_prefix(prefix) {
            return digits.chars().any(|c| c.is_digit(digit))
                && digits.chars().all(|c| c.is_digit(digit) || c == '_');
        }
    }
    // Decimal, octal with a leading zero, float and sexagesimal forms: digits
    // (with `_` separators and `:` groups), at most one dot, an exponent.
    let (mantissa, exponent) = match lower.find('e') {
        Some(i) => (&lower[..i], Some(&lower[i + 1..])),
        None => (lower.as_str(), None),
    };
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    let starts_well = mantissa.starts_with(|c: char| c.is_ascii_digit())
        || (mantissa.starts_with('.') && mantissa[1..].starts_with(|c: char| c.is_ascii_digit()));
    starts_well
        && mantissa.bytes().filter(|&b| b == b'.').count() <= 1
        && mantissa
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'_' | b':'))
}

fn is_timestamp(value: &str) -> bool {
    let b = value.as_bytes();
    let digits = |r: Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() < 8 || !digits(0..4) || b[4] != b'-' {
        return false;
    }
    let month = b[5..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(1..=2).contains(&month) || b.get(5 + month) != Some(&b'-') {
        return false;
    }
    let day_start = 6 + month;
    let day = b[day_start..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if !(1..=2).contains(&day) {
        return false;
    }
    matches!(
        b.get(day_start + day),
        None | Some(b'T' | b't' | b' ' | b'\t')
    )
}

/// Applies `edits` to `text` and checks the result. Edits must not overlap;
/// the caller resolves conflicts first.
pub(crate) fn apply(
    text: &str,
    original: &[Signature],
    edits: &[&Edit],
) -> Result<String, RewriteError> {
    let mut sorted: Vec<&Edit> = edits.to_vec();
    sorted.sort_by_key(|e| e.range.start);
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for e in &sorted {
        let piece = text
            .get(at..e.range.start)
            .ok_or_else(|| RewriteError::Verification("overlapping edits".into()))?;
        out.push_str(piece);
        out.push_str(&e.replacement);
        at = e.range.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    verify(&out, original, edits)?;
    Ok(out)
}

/// Re-parses the rewritten text and compares it with the original events:
/// only the edited scalars may differ, and only in value and quoting.
fn verify(rewritten: &str, original: &[Signature], edits: &[&Edit]) -> Result<(), RewriteError> {
    let reparsed = yaml::parse(rewritten)
        .map_err(|e| RewriteError::Verification(format!("rewritten file does not parse: {e}")))?;
    if reparsed.signatures.len() != original.len() {
        return Err(RewriteError::Verification(
            "rewritten file has a different structure".into(),
        ));
    }
    let expected: BTreeMap<usize, &str> = edits
        .iter()
        .map(|e| (e.event, e.expected.as_str()))
        .collect();
    for (i, (before, after)) in original.iter().zip(&reparsed.signatures).enumerate() {
        let ok = match (expected.get(&i), before, after) {
            (None, _, _) => before == after,
            (
                Some(value),
                Signature::Scalar {
                    style: s0,
                    anchor: a0,
                    tag: t0,
                    ..
                },
                Signature::Scalar {
                    value: v1,
                    style: s1,
                    anchor: a1,
                    tag: t1,
                },
            ) => {
                v1 == value
                    && a0 == a1
                    && t0 == t1
                    && (s0 == s1
                        || (*s0 == Style::Plain && matches!(s1, Style::Single | Style::Double)))
            }
            _ => false,
        };
        if !ok {
            return Err(RewriteError::Verification(format!(
                "rewritten file differs at event {i}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_must_be_quoted() {
        for v in [
            "1.10",
            "1e3",
            "1E3",
            "0x1",
            "0o7",
            "0b101",
            "true",
            "False",
            "yes",
            "on",
            "null",
            "~",
            "",
            "10",
            "010",
            "1_000",
            "1.",
            ".5",
            "20240115",
            "2024-01-15",
            "2024-1-5",
            "+1",
            "1.5e-3",
        ] {
            assert!(
                resolves_to_non_string(v),
                "{v:?} should not read back as a string"
            );
            assert!(!is_plain_safe(v, false), "{v:?} should be quoted");
        }
    }

    #[test]
    fn values_that_stay_plain() {
        for v in [
            "1.2.3",
            "v1.0",
            "latest",
            "1.0.0-rc.1",
            "1e",
            "0x",
            "2024-01-15-abc",
            "_1",
            "sha256:abc",
            "ghcr.io/org/app:1.0",
            "127.0.0.1:5000/app",
            "inf",
            "nan",
            "1.2-rc1",
        ] {
            assert!(is_plain_safe(v, false), "{v:?} should stay plain");
        }
        assert!(!is_plain_safe("a,b", true));
        assert!(is_plain_safe("a,b", false));
    }

    #[test]
    fn verifier_rejects_edits_that_change_more_than_the_value() {
        let text = "a: x\nb: y\n";
        let parsed = yaml::parse(text).unwrap();
        let edit = |replacement: &str, expected: &str| Edit {
            range: 3..4,
            replacement: replacement.to_string(),
            event: 3,
            expected: expected.to_string(),
        };
        let good = edit("'z'", "z");
        assert_eq!(
            apply(text, &parsed.signatures, &[&good]).unwrap(),
            "a: 'z'\nb: y\n"
        );
        for bad in [
            edit("z\nc: w", "z"),
            edit("[z]", "z"),
            edit("z", "w"),
            edit("z # x\nb: q", "z"),
        ] {
            assert!(
                matches!(
                    apply(text, &parsed.signatures, &[&bad]),
                    Err(RewriteError::Verification(_))
                ),
                "{:?} should be rejected",
                bad.replacement
            );
        }
    }

    #[test]
    fn quoting_helpers_escape() {
        assert_eq!(single_quoted("it's"), "'it''s'");
        assert_eq!(double_quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
