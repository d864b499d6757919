//! A YAML tree that knows where every scalar's bytes are.
//!
//! The rewriting engine edits files in place, so it needs more than values: it
//! needs the exact byte range of each scalar, the comment on its line, and
//! whether it sits in a flow collection. `saphyr-parser` gives events with
//! spans, but its spans are counted in characters (not bytes), start at the
//! node's properties (`&anchor !!tag`) rather than at the scalar, and for some
//! nodes run on into the trailing comment. So this module only trusts a span's
//! start, and finds each scalar's extent itself from the raw text, checking it
//! against the decoded value; a scalar it cannot pin down is left without a
//! range and is never rewritten.
//!
//! Comments are not in the event stream either; [`Parsed::line_comment`] and
//! [`Parsed::head_comment`] read them from the raw text, with the attachment
//! rules of go-yaml v3 (which Flux's kyaml uses).

use std::collections::HashSet;
use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};

use super::RewriteError;

/// Deepest nesting accepted. Kubernetes manifests are far shallower; the limit
/// keeps tree walks and drops from exhausting the stack on hostile input.
pub(crate) const MAX_DEPTH: usize = 128;

/// How a scalar is written, which decides how a new value must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Single,
    Double,
    Literal,
    Folded,
}

impl Style {
    fn from_parser(style: ScalarStyle) -> Self {
        match style {
            ScalarStyle::Plain => Style::Plain,
            ScalarStyle::SingleQuoted => Style::Single,
            ScalarStyle::DoubleQuoted => Style::Double,
            ScalarStyle::Literal => Style::Literal,
            ScalarStyle::Folded => Style::Folded,
        }
    }

    /// Whether this is a `|` or `>` block scalar.
    pub(crate) fn is_block(self) -> bool {
        matches!(self, Style::Literal | Style::Folded)
    }
}

/// A scalar with what the rewriter needs to replace it byte-exactly.
#[derive(Debug)]
pub(crate) struct Scalar {
    /// The decoded value.
    pub value: String,
    pub style: Style,
    /// Index of this scalar's event in [`Parsed::signatures`].
    pub event: usize,
    /// The bytes to replace: quotes included, properties excluded; for a
    /// block scalar, its single content line. `None` when the scalar cannot
    /// be pinned down (multi-line plain or block scalars, empty values).
    pub range: Option<Range<usize>>,
    /// Where this scalar's line comment may start (after the scalar, or after
    /// a block scalar's header indicator).
    pub comment_from: Option<usize>,
    /// Byte offset where the scalar's own text starts (after properties).
    pub start: usize,
    /// Whether the scalar sits inside a flow collection, where `,[]{}` would
    /// end a plain scalar.
    pub in_flow: bool,
}

impl Scalar {
    /// Whether this scalar is written as a string, not read as a null, bool
    /// or number. Annotation values must be strings for Kubernetes.
    pub(crate) fn is_string(&self) -> bool {
        self.style != Style::Plain || !super::scalar::resolves_to_non_string(&self.value)
    }

    /// Whether the scalar is an empty plain scalar, which YAML reads as null.
    pub(crate) fn is_null(&self) -> bool {
        self.style == Style::Plain
            && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }

    /// The value with a block scalar's trailing line breaks removed (they are
    /// chomping, not content the user wrote on the line).
    pub(crate) fn content(&self) -> &str {
        if self.style.is_block() {
            self.value.trim_end_matches('\n')
        } else {
            &self.value
        }
    }
}

/// A node of the tree.
#[derive(Debug)]
pub(crate) enum Node {
    Scalar(Scalar),
    Map { entries: Vec<(Node, Node)> },
    Seq { items: Vec<Node>, flow: bool },
    Alias,
}

impl Node {
    /// The value under `key` when this node is a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries } => entries.iter().find_map(|(k, v)| match k {
                Node::Scalar(s) if s.value == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The scalar under `key` when this node is a mapping and the value is a
    /// non-null scalar.
    pub(crate) fn scalar(&self, key: &str) -> Option<&Scalar> {
        match self.get(key) {
            Some(Node::Scalar(s)) if !s.is_null() => Some(s),
            _ => None,
        }
    }

    /// The string under `key`, for identity fields such as `kind` or `name`.
    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        self.scalar(key).map(|s| s.value.as_str())
    }
}

/// What the verifier compares between the original and the rewritten file:
/// everything the parser reports except positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signature {
    DocumentStart(bool),
    DocumentEnd,
    Alias(usize),
    Scalar {
        value: String,
        style: Style,
        anchor: usize,
        tag: Option<Tag>,
    },
    SequenceStart(usize, Option<Tag>),
    SequenceEnd,
    MappingStart(usize, Option<Tag>),
    MappingEnd,
}

/// A parsed file: documents, event signatures and the raw text.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub text: &'a str,
    pub docs: Vec<Node>,
    pub signatures: Vec<Signature>,
    /// The quote character the file mostly uses for quoted scalars.
    pub preferred_quote: Style,
    line_starts: Vec<usize>,
}

impl<'a> Parsed<'a> {
    /// The 1-based line holding byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset)
            .max(1)
    }

    /// The text of line `line` (1-based) without its line break.
    fn line_text(&self, line: usize) -> Option<&'a str> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let rest = self.text.get(start..)?;
        let end = rest.find('\n').unwrap_or(rest.len());
        let text = &rest[..end];
        Some(text.strip_suffix('\r').unwrap_or(text))
    }

    /// The comment ending the line after byte `from`: only blanks (and, in a
    /// flow collection, the entry's `,`) may come between. A comment after a
    /// closing `]` or `}` belongs to the collection, as in go-yaml, so it is not
    /// returned. The text starts at `#`.
    pub(crate) fn line_comment(&self, from: usize) -> Option<&'a str> {
        let rest = self.text.get(from..)?;
        let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut seen_comma = false;
        let mut prev_blank = false;
        for (i, c) in line.char_indices() {
            match c {
                ' ' | '\t' => prev_blank = true,
                ',' if !seen_comma => {
                    seen_comma = true;
                    prev_blank = false;
                }
                '#' if prev_blank => return Some(&line[i..]),
                _ => return None,
            }
        }
        None
    }

    /// The comment block directly above the block-sequence entry whose scalar
    /// starts at `start`, when it is exactly one line: go-yaml makes that the
    /// entry's head comment, and kyaml reads setters from head comments too.
    /// Entries written `- - x` or `-` alone on a line have no such comment.
    pub(crate) fn head_comment(&self, start: usize) -> Option<&'a str> {
        let line = self.line_of(start);
        let line_start = *self.line_starts.get(line - 1)?;
        let prefix = self.text.get(line_start..start)?;
        if !is_single_entry_prefix(prefix) {
            return None;
        }
        let above = self.line_text(line.checked_sub(1)?)?.trim();
        if !above.starts_with('#') {
            return None;
        }
        let further = line.checked_sub(2).and_then(|l| self.line_text(l));
        if further.is_some_and(|t| t.trim_start().starts_with('#')) {
            return None;
        }
        Some(above)
    }
}

/// Whether the text before a scalar on its line is `- ` once, optionally
/// followed by node properties.
fn is_single_entry_prefix(prefix: &str) -> bool {
    let rest = prefix.trim_start_matches([' ', '\t']);
    let Some(rest) = rest.strip_prefix('-') else {
        return false;
    };
    if !rest.starts_with([' ', '\t']) {
        return false;
    }
    rest.split([' ', '\t'])
        .filter(|t| !t.is_empty())
        .all(|t| t.starts_with('&') || t.starts_with('!'))
}

/// Converts the parser's character indices to byte offsets.
struct Offsets<'a> {
    text: &'a str,
    /// Byte offset of each character, plus the end; `None` for ASCII text,
    /// where the two agree.
    bytes: Option<Vec<usize>>,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str) -> Self {
        let bytes = (!text.is_ascii()).then(|| {
            text.char_indices()
                .map(|(b, _)| b)
                .chain(std::iter::once(text.len()))
                .collect()
        });
        Self { text, bytes }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.bytes {
            None => char_index.min(self.text.len()),
            Some(map) => map.get(char_index).copied().unwrap_or(self.text.len()),
        }
    }
}

/// A collection being built.
enum Frame {
    Map {
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        seen: HashSet<(String, bool)>,
        flow: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
}

impl Frame {
    fn flow(&self) -> bool {
        match self {
            Frame::Map { flow, .. } | Frame::Seq { flow, .. } => *flow,
        }
    }
}

/// Parses `text` into documents with byte-exact scalar ranges.
pub(crate) fn parse(text: &str) -> Result<Parsed<'_>, RewriteError> {
    let offsets = Offsets::new(text);
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut parsed = Parsed {
        text,
        docs: Vec::new(),
        signatures: Vec::new(),
        preferred_quote: Style::Double,
        line_starts,
    };
    let (mut singles, mut doubles) = (0usize, 0usize);
    let mut frames: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;

    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| RewriteError::Syntax {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let start = offsets.byte(span.start.index());
        let index = parsed.signatures.len();
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => continue,
            Event::DocumentStart(explicit) => {
                parsed.signatures.push(Signature::DocumentStart(explicit));
                continue;
            }
            Event::DocumentEnd => {
                parsed.signatures.push(Signature::DocumentEnd);
                parsed.docs.extend(root.take());
                continue;
            }
            Event::Alias(id) => {
                parsed.signatures.push(Signature::Alias(id));
                Node::Alias
            }
            Event::Scalar(value, style, anchor, tag) => {
                let style = Style::from_parser(style);
                match style {
                    Style::Single => singles += 1,
                    Style::Double => doubles += 1,
                    _ => {}
                }
                parsed.signatures.push(Signature::Scalar {
                    value: value.to_string(),
                    style,
                    anchor,
                    tag: tag.map(|t| t.into_owned()),
                });
                let in_flow = frames.last().is_some_and(Frame::flow);
                Node::Scalar(locate_scalar(
                    &parsed,
                    value.into_owned(),
                    style,
                    index,
                    start,
                    in_flow,
                    &frames,
                ))
            }
            Event::SequenceStart(..) | Event::MappingStart(..) if frames.len() >= MAX_DEPTH => {
                return Err(RewriteError::TooDeep {
                    line: parsed.line_of(start),
                    limit: MAX_DEPTH,
                });
            }
            Event::SequenceStart(anchor, tag) => {
                parsed.signatures.push(Signature::SequenceStart(
                    anchor,
                    tag.map(|t| t.into_owned()),
                ));
                let flow = frames.last().is_some_and(Frame::flow)
                    || text
                        .get(skip_properties(text, start)..)
                        .is_some_and(|t| t.starts_with('['));
                frames.push(Frame::Seq {
                    items: Vec::new(),
                    flow,
                });
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                parsed
                    .signatures
                    .push(Signature::MappingStart(anchor, tag.map(|t| t.into_owned())));
                // Inside a flow collection everything is flow, including
                // implicit `[key: value]` pairs, whose span is empty.
                let flow = frames.last().is_some_and(Frame::flow)
                    || text
                        .get(skip_properties(text, start)..)
                        .is_some_and(|t| t.starts_with('{'));
                frames.push(Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    seen: HashSet::new(),
                    flow,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                parsed
                    .signatures
                    .push(if matches!(event, Event::SequenceEnd) {
                        Signature::SequenceEnd
                    } else {
                        Signature::MappingEnd
                    });
                match frames.pop() {
                    Some(Frame::Seq { items, flow }) => Node::Seq { items, flow },
                    Some(Frame::Map { entries, .. }) => Node::Map { entries },
                    None => continue,
                }
            }
        };
        attach(&parsed, &mut frames, &mut root, node)?;
    }
    parsed.docs.extend(root.take());
    if singles > doubles {
        parsed.preferred_quote = Style::Single;
    }
    Ok(parsed)
}

/// Adds a finished node to the collection being built, or makes it the root.
fn attach(
    parsed: &Parsed<'_>,
    frames: &mut [Frame],
    root: &mut Option<Node>,
    node: Node,
) -> Result<(), RewriteError> {
    match frames.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq { items, .. }) => items.push(node),
        Some(Frame::Map {
            entries, key, seen, ..
        }) => match key.take() {
            Some(k) => entries.push((k, node)),
            None => {
                if let Node::Scalar(s) = &node {
                    // kyaml (go-yaml v3) refuses a mapping with a repeated key,
                    // so Flux skips such a file; so do we, rather than guess
                    // which of the two values the cluster would get. (`1` and
                    // `"1"` are different keys; `<<` merges may repeat.)
                    let merge = s.style == Style::Plain && s.value == "<<";
                    if !merge && !seen.insert((s.value.clone(), s.is_string())) {
                        return Err(RewriteError::DuplicateKey {
                            line: parsed.line_of(s.start),
                            key: s.value.clone(),
                        });
                    }
                }
                *key = Some(node);
            }
        },
    }
    Ok(())
}

/// Skips node properties (`&anchor`, `!tag`) and blanks from `at`.
fn skip_properties(text: &str, mut at: usize) -> usize {
    loop {
        let Some(rest) = text.get(at..) else {
            return at;
        };
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        at += rest.len() - trimmed.len();
        if trimmed.starts_with(['&', '!']) {
            let token = trimmed
                .find([' ', '\t', '\r', '\n'])
                .unwrap_or(trimmed.len());
            at += token;
        } else {
            return at;
        }
    }
}

/// Finds a scalar's exact bytes from the start of its span.
fn locate_scalar(
    parsed: &Parsed<'_>,
    value: String,
    style: Style,
    event: usize,
    span_start: usize,
    in_flow: bool,
    frames: &[Frame],
) -> Scalar {
    let text = parsed.text;
    // Block scalars' spans start at their content; others at their properties.
    let start = if style.is_block() {
        span_start
    } else {
        skip_properties(text, span_start)
    };
    let range = match style {
        Style::Plain => (!value.is_empty()
            && text
                .get(start..)
                .is_some_and(|t| t.starts_with(value.as_str())))
        .then(|| start..start + value.len()),
        Style::Double => quoted_end(text, start, '"').map(|end| start..end),
        Style::Single => quoted_end(text, start, '\'').map(|end| start..end),
        Style::Literal | Style::Folded => {
            let content = value.trim_end_matches('\n');
            (!content.is_empty()
                && !content.contains('\n')
                && text.get(start..).is_some_and(|t| {
                    t.starts_with(content)
                        && (t.len() == content.len()
                            || t[content.len()..].starts_with(['\r', '\n']))
                }))
            .then(|| start..start + content.len())
        }
    };
    let comment_from = if style.is_block() {
        block_header_end(parsed, start, frames)
    } else {
        range.as_ref().map(|r| r.end)
    };
    // A quoted scalar folded over several lines is found (its marker is
    // reported) but never rewritten: replacing it would change the file's
    // line structure, not just the value's bytes.
    let range = range.filter(|r| {
        style.is_block()
            || !text
                .get(r.clone())
                .is_some_and(|bytes| bytes.contains(['\n', '\r']))
    });
    Scalar {
        value,
        style,
        event,
        range,
        comment_from,
        start,
        in_flow,
    }
}

/// The end of a quoted scalar opening at `start`, closing quote included.
fn quoted_end(text: &str, start: usize, quote: char) -> Option<usize> {
    let rest = text.get(start..)?;
    let mut chars = rest.char_indices();
    if chars.next()?.1 != quote {
        return None;
    }
    while let Some((i, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            chars.next();
        } else if c == quote {
            if quote == '\'' && rest[i + 1..].starts_with('\'') {
                chars.next();
            } else {
                return Some(start + i + 1);
            }
        }
    }
    None
}

/// The byte after a block scalar's header (`|`, `>` and their indicators),
/// found from the key it is the value of or the `-` that introduces it. Its
/// line comment (where a setter marker may sit) starts there.
fn block_header_end(parsed: &Parsed<'_>, content_start: usize, frames: &[Frame]) -> Option<usize> {
    let text = parsed.text;
    let mut at = match frames.last()? {
        Frame::Map {
            key: Some(Node::Scalar(key)),
            ..
        } => {
            let after_key = key.range.as_ref()?.end;
            let rest = text.get(after_key..content_start)?;
            let trimmed = rest.trim_start_matches([' ', '\t']);
            after_key + (rest.len() - trimmed.len()) + trimmed.strip_prefix(':').map(|_| 1)?
        }
        Frame::Seq { flow: false, .. } => {
            // The header is on the last non-blank line before the content.
            let before = text.get(..content_start)?;
            let header_line_end = before.trim_end_matches([' ', '\t', '\r', '\n']).len();
            let header_start = before[..header_line_end].rfind('\n').map_or(0, |i| i + 1);
            let header = &before[header_start..header_line_end];
            let trimmed = header.trim_start_matches([' ', '\t']);
            let after_dash = trimmed.strip_prefix('-')?;
            if !after_dash.starts_with([' ', '\t']) {
                return None;
            }
            header_start + (header.len() - after_dash.len())
        }
        _ => return None,
    };
    at = skip_properties(text, at);
    let rest = text.get(at..content_start)?;
    let indicators = rest.strip_prefix(['|', '>'])?;
    let modifiers = indicators
        .chars()
        .take_while(|c| matches!(c, '+' | '-' | '1'..='9'))
        .take(2)
        .count();
    let end = at + 1 + modifiers;
    text.get(end..)
        .is_some_and(|t| t.is_empty() || t.starts_with([' ', '\t', '\r', '\n']))
        .then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_value(text: &str) -> Scalar {
        let parsed = parse(text).unwrap();
        let mut docs = parsed.docs;
        match docs.remove(0) {
            Node::Map { mut entries } => match entries.remove(0).1 {
                Node::Scalar(s) => s,
                other => panic!("not a scalar: {other:?}"),
            },
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn ranges_are_bytes_even_after_non_ascii() {
        let text = "é: \"ü\" # x\n";
        let s = first_value(text);
        assert_eq!(&text[s.range.unwrap()], "\"ü\"");
    }

    #[test]
    fn properties_are_not_part_of_the_range() {
        let text = "a: &x !!str 'q' # m\n";
        let s = first_value(text);
        assert_eq!(&text[s.range.clone().unwrap()], "'q'");
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.line_comment(s.comment_from.unwrap()), Some("# m"));
    }

    #[test]
    fn multi_line_plain_scalars_have_no_range() {
        assert!(first_value("a: first\n  second\n").range.is_none());
    }

    #[test]
    fn block_scalar_header_comment_and_single_line_content() {
        let text = "a: |-  # c\n  bar\n";
        let s = first_value(text);
        assert_eq!(&text[s.range.clone().unwrap()], "bar");
        let parsed = parse(text).unwrap();
        assert_eq!(parsed.line_comment(s.comment_from.unwrap()), Some("# c"));
        assert!(first_value("a: |\n  bar\n  baz\n").range.is_none());
    }

    #[test]
    fn comment_after_a_closing_bracket_is_not_the_scalars() {
        let parsed = parse("a: [x] # m\n").unwrap();
        let Node::Map { entries } = &parsed.docs[0] else {
            panic!()
        };
        let Node::Seq { items, flow: true } = &entries[0].1 else {
            panic!()
        };
        let Node::Scalar(x) = &items[0] else { panic!() };
        assert_eq!(parsed.line_comment(x.comment_from.unwrap()), None);
    }

    #[test]
    fn duplicate_keys_and_depth_are_refused() {
        assert!(parse("1: a\n\"1\": b\n<<: {}\n<<: {}\n").is_ok());
        assert!(matches!(
            parse("a: 1\na: 2\n"),
            Err(RewriteError::DuplicateKey { line: 2, .. })
        ));
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(&deep), Err(RewriteError::TooDeep { .. })));
    }
}
