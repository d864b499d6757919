//! Setters markers: `# {"$imagepolicy": "NS:NAME[:tag|:name|:digest]"}`.
//!
//! This is the `Setters` update strategy of Flux's image-automation-controller
//! (`internal/update/setters.go`, `filter.go`, `filereader.go`), which reads
//! markers through kyaml's `fieldmeta`: a scalar's line comment, or failing
//! that its head comment, minus its leading `#`s, must be a JSON object of
//! strings whose `"$imagepolicy"` member names a setter that exists. The
//! setters that exist are, for each policy the automation may use, `NS:NAME`
//! (the whole reference), `NS:NAME:tag`, `NS:NAME:name` and `NS:NAME:digest`.
//! Markers naming anything else are comments like any other and are left
//! alone.

use std::collections::BTreeMap;
use std::fmt;

use tagrelay_reference::{is_valid_digest, is_valid_tag, ImageReference};

use super::yaml::{Node, Parsed, Scalar};
use super::{Cause, Plan, RefusalReason};

/// The text Flux screens files for before parsing them: only files that
/// contain it are considered for Setters markers.
pub const SETTER_TOKEN: &str = "\"$imagepolicy\"";

/// Whether a file's bytes may hold a Setters marker, as Flux's screening
/// reader decides: files without the quoted token are not even parsed, which
/// keeps Helm templates and other non-YAML out of the way.
pub fn may_contain_markers(content: &[u8]) -> bool {
    content
        .windows(SETTER_TOKEN.len())
        .any(|w| w == SETTER_TOKEN.as_bytes())
}

/// Whether a file is one Flux reads for Setters markers: its name ends in
/// `.yaml` or `.yml`, or is exactly `Kustomization`. `path` uses `/`.
pub fn is_setters_candidate(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".yaml") || name.ends_with(".yml") || name == "Kustomization"
}

/// Which part of a policy's latest image a marker writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetterField {
    /// `NS:NAME`: the whole reference, `name:tag`, with `@digest` when the
    /// policy reflects digests.
    Image,
    /// `NS:NAME:tag`: the tag alone, as in a Kustomize `newTag`.
    Tag,
    /// `NS:NAME:name`: the repository alone, as in a Kustomize `newName`.
    Name,
    /// `NS:NAME:digest`: the digest alone, as in a Kustomize `newDigest`.
    Digest,
}

impl SetterField {
    fn suffix(self) -> &'static str {
        match self {
            SetterField::Image => "",
            SetterField::Tag => ":tag",
            SetterField::Name => ":name",
            SetterField::Digest => ":digest",
        }
    }
}

/// The setter named in a marker: a policy (`NS:NAME`) and a field. Displays
/// as Flux names setters, e.g. `apps:podinfo:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Setter {
    /// The policy, `NS:NAME`.
    pub policy: String,
    /// The part of its latest image the marker writes.
    pub field: SetterField,
}

impl fmt::Display for Setter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.policy, self.field.suffix())
    }
}

/// Plans the edits for every marked scalar in the file.
pub(crate) fn plan(
    parsed: &Parsed<'_>,
    policies: &BTreeMap<String, ImageReference>,
    plan: &mut Plan,
) {
    let mut marked = Vec::new();
    for doc in &parsed.docs {
        visit(doc, false, &mut |scalar, seq_entry| {
            if let Some(setter) = marker_of(parsed, scalar, seq_entry, policies) {
                marked.push((scalar, setter));
            }
        });
    }
    for (scalar, setter) in marked {
        let Some(latest) = policies.get(&setter.policy) else {
            continue;
        };
        let cause = Cause::Setter(setter.clone());
        match value_for(latest, setter.field) {
            Ok(value) => plan.write(parsed, scalar, &value, cause),
            Err(reason) => plan.refuse(parsed, scalar, cause, reason),
        }
    }
}

/// Calls `f` for every scalar that is a value (not a key), telling whether it
/// is an entry of a block sequence, which is where head comments count.
pub(crate) fn visit<'n>(node: &'n Node, seq_entry: bool, f: &mut impl FnMut(&'n Scalar, bool)) {
    match node {
        Node::Scalar(s) => f(s, seq_entry),
        Node::Map { entries } => entries.iter().for_each(|(_, v)| visit(v, false, f)),
        Node::Seq { items, flow } => items.iter().for_each(|i| visit(i, !flow, f)),
        Node::Alias => {}
    }
}

/// The setter marking `scalar`: its line comment first, then (for a block
/// sequence entry) its head comment, as kyaml's `FieldMeta.Read` does.
fn marker_of(
    parsed: &Parsed<'_>,
    scalar: &Scalar,
    seq_entry: bool,
    policies: &BTreeMap<String, ImageReference>,
) -> Option<Setter> {
    marker_comments(parsed, scalar, seq_entry).find_map(|comment| parse_marker(comment, policies))
}

/// The comments of `scalar` Flux reads markers from, in the order it reads
/// them: its line comment, then (for a block sequence entry) its head
/// comment.
fn marker_comments<'a>(
    parsed: &Parsed<'a>,
    scalar: &Scalar,
    seq_entry: bool,
) -> impl Iterator<Item = &'a str> {
    let line = scalar
        .comment_from
        .and_then(|from| parsed.line_comment(from));
    let head = seq_entry
        .then(|| parsed.head_comment(scalar.start))
        .flatten();
    [line, head].into_iter().flatten()
}

/// Reads a marker comment (starting at `#`) and resolves it against the
/// allowed policies.
pub(crate) fn parse_marker(
    comment: &str,
    policies: &BTreeMap<String, ImageReference>,
) -> Option<Setter> {
    let name = marker_value(comment)?;
    let name = name.as_str();
    if policies.contains_key(name) {
        return Some(Setter {
            policy: name.to_string(),
            field: SetterField::Image,
        });
    }
    let (policy, suffix) = name.rsplit_once(':')?;
    let field = match suffix {
        "tag" => SetterField::Tag,
        "name" => SetterField::Name,
        "digest" => SetterField::Digest,
        _ => return None,
    };
    policies.contains_key(policy).then(|| Setter {
        policy: policy.to_string(),
        field,
    })
}

/// The setter a well-formed marker comment (starting at `#`) names,
/// without its `${…}` wrapping, whether or not such a setter exists.
pub(crate) fn marker_value(comment: &str) -> Option<String> {
    let json = comment.trim_start_matches('#');
    let members = parse_string_object(json)?;
    let name = members
        .into_iter()
        .rev()
        .find(|(k, _)| k == "$imagepolicy")
        .map(|(_, v)| v)?;
    let name = name.strip_prefix("${").unwrap_or(&name);
    Some(name.strip_suffix('}').unwrap_or(name).to_string())
}

/// Splits a setter name into the policy (`NS:NAME`) and the field, as
/// Flux names setters; `None` when it cannot name one.
pub(crate) fn split_setter(name: &str) -> Option<Setter> {
    let (policy, field) = match name.rsplit_once(':') {
        Some((policy, "tag")) if policy.contains(':') => (policy, SetterField::Tag),
        Some((policy, "name")) if policy.contains(':') => (policy, SetterField::Name),
        Some((policy, "digest")) if policy.contains(':') => (policy, SetterField::Digest),
        _ => (name, SetterField::Image),
    };
    let (namespace, policy_name) = policy.split_once(':')?;
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    (valid(namespace) && valid(policy_name)).then(|| Setter {
        policy: policy.to_string(),
        field,
    })
}

/// Whether `scalar` carries a well-formed marker in a place Flux reads
/// (its line comment, or a sequence entry's head comment), naming any
/// setter.
pub(crate) fn has_marker(parsed: &Parsed<'_>, scalar: &Scalar, seq_entry: bool) -> bool {
    marker_comments(parsed, scalar, seq_entry).any(|comment| marker_value(comment).is_some())
}

/// The value a setter writes, checked against the OCI grammar.
fn value_for(latest: &ImageReference, field: SetterField) -> Result<String, RefusalReason> {
    let tag = || match &latest.tag {
        None => Err(RefusalReason::MissingTag),
        Some(t) if !is_valid_tag(t) => Err(RefusalReason::InvalidTag(t.clone())),
        Some(t) => Ok(t.clone()),
    };
    let digest = || match &latest.digest {
        None => Err(RefusalReason::MissingDigest),
        Some(d) if !is_valid_digest(d) => Err(RefusalReason::InvalidDigest(d.clone())),
        Some(d) => Ok(d.clone()),
    };
    match field {
        SetterField::Tag => tag(),
        SetterField::Digest => digest(),
        SetterField::Name => Ok(latest.repository.as_written().to_string()),
        SetterField::Image => {
            tag()?;
            if latest.digest.is_some() {
                digest()?;
            }
            Ok(latest.to_string())
        }
    }
}

/// Parses what Go's `json.Unmarshal` accepts into a `map[string]string`: an
/// object whose members are strings (or `null`, read as empty), or `null`.
/// Anything else, including trailing text, is not a marker.
fn parse_string_object(text: &str) -> Option<Vec<(String, String)>> {
    let mut p = Json {
        s: text.as_bytes(),
        at: 0,
    };
    p.ws();
    let members = if p.eat_literal(b"null") {
        Vec::new()
    } else {
        p.object()?
    };
    p.ws();
    (p.at == p.s.len()).then_some(members)
}

struct Json<'a> {
    s: &'a [u8],
    at: usize,
}

impl Json<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.s.get(self.at) == Some(&b);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn eat_literal(&mut self, lit: &[u8]) -> bool {
        let hit = self.s.get(self.at..self.at + lit.len()) == Some(lit);
        if hit {
            self.at += lit.len();
        }
        hit
    }

    fn object(&mut self) -> Option<Vec<(String, String)>> {
        let mut members = Vec::new();
        if !self.eat(b'{') {
            return None;
        }
        self.ws();
        if self.eat(b'}') {
            return Some(members);
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            let value = if self.eat_literal(b"null") {
                String::new()
            } else {
                self.string()?
            };
            members.push((key, value));
            self.ws();
            if self.eat(b'}') {
                return Some(members);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut units: Vec<u16> = Vec::new();
        let mut out = String::new();
        loop {
            let b = *self.s.get(self.at)?;
            if b != b'\\' || !matches!(self.s.get(self.at + 1), Some(b'u')) {
                flush_utf16(&mut units, &mut out);
            }
            match b {
                b'"' => {
                    self.at += 1;
                    return Some(out);
                }
                0..=0x1f => return None,
                b'\\' => {
                    let esc = *self.s.get(self.at + 1)?;
                    self.at += 2;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hex =
                                std::str::from_utf8(self.s.get(self.at..self.at + 4)?).ok()?;
                            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                                return None;
                            }
                            units.push(u16::from_str_radix(hex, 16).ok()?);
                            self.at += 4;
                        }
                        _ => return None,
                    }
                }
                _ => {
                    // Copy one UTF-8 character (the input is a &str).
                    let len = match b {
                        0xf0..=0xff => 4,
                        0xe0..=0xef => 3,
                        0xc0..=0xdf => 2,
                        _ => 1,
                    };
                    let ch = std::str::from_utf8(self.s.get(self.at..self.at + len)?).ok()?;
                    out.push_str(ch);
                    self.at += len;
                }
            }
        }
    }
}

/// Decodes pending `\u` escapes, replacing unpaired surrogates as Go does.
fn flush_utf16(units: &mut Vec<u16>, out: &mut String) {
    out.extend(
        char::decode_utf16(units.drain(..)).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> BTreeMap<String, ImageReference> {
        let mut p = BTreeMap::new();
        p.insert(
            "apps:web".to_string(),
            ImageReference::parse("ghcr.io/org/web:1.2.3").unwrap(),
        );
        p
    }

    fn marker(comment: &str) -> Option<String> {
        parse_marker(comment, &policies()).map(|s| s.to_string())
    }

    #[test]
    fn marker_syntax_tolerance() {
        assert_eq!(
            marker(r#"# {"$imagepolicy": "apps:web"}"#).as_deref(),
            Some("apps:web")
        );
        assert_eq!(
            marker(r#"#{"$imagepolicy":"apps:web:tag"}"#).as_deref(),
            Some("apps:web:tag")
        );
        assert_eq!(
            marker("##  {\t\"$imagepolicy\" :  \"apps:web:name\" }  ").as_deref(),
            Some("apps:web:name")
        );
        assert_eq!(
            marker(r#"# {"$imagepolicy": "${apps:web:digest}"}"#).as_deref(),
            Some("apps:web:digest")
        );
        assert_eq!(
            marker(r#"# {"x": "y", "$imagepolicy": "apps:web"}"#).as_deref(),
            Some("apps:web")
        );
        assert_eq!(
            marker(r#"# {"$imagepolicy": "apps:\u0077eb"}"#).as_deref(),
            Some("apps:web")
        );
    }

    #[test]
    fn not_markers() {
        for c in [
            r#"# {"$imagepolicy": "apps:web"} trailing"#,
            r#"# {"$imagepolicy": "apps:web", "n": 1}"#,
            r#"# {"$imagepolicy": "other:web"}"#,
            r#"# {"$imagepolicy": "apps:web:foo"}"#,
            r#"# {"$imagepolicy": "apps:web:TAG"}"#,
            r#"# {"$imagepolicy": " apps:web"}"#,
            r#"# {"$ImagePolicy": "apps:web"}"#,
            r#"# {'$imagepolicy': 'apps:web'}"#,
            r#"# {"$imagepolicy": null}"#,
            "# null",
            "# $imagepolicy: apps:web",
            r#"# {"$imagepolicy": "apps:web""#,
        ] {
            assert_eq!(marker(c), None, "{c}");
        }
    }
}
