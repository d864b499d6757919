//! The lexer: template text into literal text and the words of each
//! action, with Go's trim markers (`{{-`, `-}}`) and comments applied here so
//! the parser never sees them.

use super::{TemplateError, MAX_NESTING};

/// A piece of template text: literal text, or one action's words.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// Text outside actions, after trimming.
    Text(String),
    /// The words of one action, with its line.
    Action(usize, Vec<Word>),
}

/// One word of an action, as the parser reads it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Word {
    /// `.A.B` (empty for `.`).
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    /// A function name or keyword.
    Ident(String),
    Str(String),
    Int(i64),
    Pipe,
    Open,
    /// `)` followed by a field chain (`(…).A.B`).
    Close(Vec<String>),
    Declare,
    Assign,
    Comma,
}

/// Splits `text` into literal text and actions, applying trim markers and
/// dropping comments, so the parser sees only what renders.
pub(super) fn lex(text: &str) -> Result<Vec<Tok>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    let mut line = 1usize;
    let mut trim_next = false;
    while !rest.is_empty() {
        let (before, after) = match rest.find("{{") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let mut literal = before;
        if trim_next {
            literal = literal.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        let Some(after) = after else {
            push_text(&mut tokens, literal);
            break;
        };
        line += before.matches('\n').count();
        let (trim_left, body) = match after.strip_prefix('-') {
            Some(b) if b.starts_with([' ', '\t', '\r', '\n']) => (true, b),
            _ => (false, after),
        };
        if trim_left {
            literal = literal.trim_end_matches([' ', '\t', '\r', '\n']);
        }
        push_text(&mut tokens, literal);
        let body_trimmed = body.trim_start_matches([' ', '\t', '\r', '\n']);
        let (inner, consumed, trim_right) = if body_trimmed.starts_with("/*") {
            let close = body_trimmed
                .find("*/")
                .ok_or_else(|| TemplateError::Parse {
                    line,
                    message: "unclosed comment".into(),
                })?;
            let tail = &body_trimmed[close + 2..];
            let (trim, tail2) = match tail.strip_prefix(" -}}") {
                Some(t) => (true, t),
                None => match tail.strip_prefix("}}") {
                    Some(t) => (false, t),
                    None => {
                        return Err(TemplateError::Parse {
                            line,
                            message: "comment ends before closing delimiter".into(),
                        })
                    }
                },
            };
            (None, body.len() - tail2.len(), trim)
        } else {
            let (words, used, trim) = lex_action(body, line)?;
            (Some(words), used, trim)
        };
        line += body[..consumed].matches('\n').count();
        if let Some(words) = inner {
            tokens.push(Tok::Action(line, words));
        }
        trim_next = trim_right;
        rest = &body[consumed..];
    }
    Ok(tokens)
}

fn push_text(tokens: &mut Vec<Tok>, text: &str) {
    if !text.is_empty() {
        tokens.push(Tok::Text(text.to_string()));
    }
}

/// Lexes one action's body up to `}}`; returns the words, the bytes used
/// (including the delimiter) and whether it ended with ` -}}`.
fn lex_action(body: &str, line: usize) -> Result<(Vec<Word>, usize, bool), TemplateError> {
    let err = |message: String| TemplateError::Parse { line, message };
    let bytes = body.as_bytes();
    let mut words = Vec::new();
    let mut parens = 0usize;
    let mut i = 0;
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err(err("unclosed action".into()));
        };
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                if body[i..]
                    .trim_start_matches([' ', '\t', '\r', '\n'])
                    .starts_with("-}}")
                {
                    let at = body[i..]
                        .find("-}}")
                        .map(|p| i + p + 3)
                        .ok_or_else(|| err("unclosed action".into()))?;
                    return Ok((words, at, true));
                }
                i += 1;
            }
            b'}' if body[i..].starts_with("}}") => return Ok((words, i + 2, false)),
            b'|' => {
                words.push(Word::Pipe);
                i += 1;
            }
            b'(' => {
                words.push(Word::Open);
                parens += 1;
                if parens > MAX_NESTING {
                    return Err(err(format!("parentheses nested deeper than {MAX_NESTING}")));
                }
                i += 1;
            }
            b')' => {
                parens = parens.saturating_sub(1);
                i += 1;
                let (chain, used) = field_chain(&body[i..]);
                i += used;
                words.push(Word::Close(chain));
            }
            b',' => {
                words.push(Word::Comma);
                i += 1;
            }
            b':' if body[i..].starts_with(":=") => {
                words.push(Word::Declare);
                i += 2;
            }
            b'=' => {
                words.push(Word::Assign);
                i += 1;
            }
            b'"' => {
                let (s, used) = lex_quoted(&body[i..])
                    .ok_or_else(|| err("unterminated quoted string".into()))?;
                words.push(Word::Str(s));
                i += used;
            }
            b'`' => {
                let end = body[i + 1..]
                    .find('`')
                    .ok_or_else(|| err("unterminated raw quoted string".into()))?;
                words.push(Word::Str(body[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'.' => {
                let (chain, used) = field_chain(&body[i..]);
                if used == 0 {
                    words.push(Word::Field(Vec::new()));
                    i += 1;
                } else {
                    words.push(Word::Field(chain));
                    i += used;
                }
            }
            b'$' => {
                let name_len = body[i + 1..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(body.len() - i - 1);
                let name = format!("${}", &body[i + 1..i + 1 + name_len]);
                i += 1 + name_len;
                let (chain, used) = field_chain(&body[i..]);
                i += used;
                words.push(Word::Var(name, chain));
            }
            b'-' | b'0'..=b'9' => {
                let len = body[i + 1..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(body.len() - i - 1)
                    + 1;
                let number = &body[i..i + len];
                let value = number
                    .parse::<i64>()
                    .map_err(|_| err(format!("bad number syntax: {number:?}")))?;
                words.push(Word::Int(value));
                i += len;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let len = body[i..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(body.len() - i);
                words.push(Word::Ident(body[i..i + len].to_string()));
                i += len;
            }
            _ => {
                let ch = body[i..].chars().next().unwrap_or('?');
                return Err(err(format!("unexpected {ch:?} in command")));
            }
        }
    }
}

/// Reads `.A.B.C` at the start of `text`; returns the names and bytes used.
fn field_chain(text: &str) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut used = 0;
    while let Some(rest) = text[used..].strip_prefix('.') {
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 {
            break;
        }
        names.push(rest[..len].to_string());
        used += 1 + len;
    }
    (names, used)
}

/// A Go interpreted string literal at the start of `text`.
fn lex_quoted(text: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\n' => return None,
            '\\' => {
                let (_, e) = chars.next()?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    None
}
