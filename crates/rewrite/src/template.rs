//! Commit message templates: the subset of Go's `text/template` that Flux
//! users write in `spec.git.commit.messageTemplate`.
//!
//! Flux renders the message with Go's `text/template` and Sprig's hermetic
//! functions over `.AutomationObject`, `.Changed` (`.FileChanges`,
//! `.Objects`, `.Changes`) and `.Values`. Its documented templates range over
//! maps keyed by structs (`range $resource, $changes := .Changed.Objects`),
//! print structs and maps the way Go's `fmt` does (`{{ .AutomationObject }}`
//! is `ns/name`; `.Changed.Objects | toString` is `map[{{{…}}}:[…]]`), and
//! rely on Go's exact whitespace trimming (`{{-`, `-}}`). No Rust crate does
//! all of that: `gtmpl` keys maps by strings only and formats values its own
//! way, and a translation to Jinja changes trimming and cannot range over
//! struct keys. So this is a small, self-contained interpreter of the part of
//! the language commit messages use:
//!
//! - text, `{{ pipeline }}`, comments, trim markers;
//! - `if` / `else if` / `else`, `range` (lists and maps, sorted keys, one or
//!   two variables, `else`), `with` / `else`, `end`;
//! - fields (`.A.B`), methods without arguments (`.Changed.Changes`),
//!   variables (`$`, `$x := …`, `$x = …`), pipelines (`a | b`), parentheses;
//! - Go's functions `and or not len index print printf println eq ne lt le
//!   gt ge`, and the Sprig functions commit templates use (`lower`, `upper`,
//!   `title`, `trim`, `trimPrefix`, `trimSuffix`, `contains`, `hasPrefix`,
//!   `hasSuffix`, `replace`, `trunc`, `join`, `quote`, `squote`, `default`,
//!   `repeat`, `nospace`, `toString`, `sha256sum`).
//!
//! Anything else is refused with an error naming it, the way Go refuses an
//! undefined function at parse time, so a template either renders exactly as
//! Flux would or is reported; it never renders something else.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// Why a template could not be parsed or run, in Go's terms where it has
/// them, so a Flux user recognises the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is not valid.
    #[error("template: line {line}: {message}")]
    Parse {
        /// 1-based line of the action.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The template is valid but failed on the data.
    #[error("template: line {line}: {message}")]
    Exec {
        /// 1-based line of the action.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// A value the template works on, modelled on the Go values Flux passes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's `nil`.
    Nil,
    /// A missing map entry: printed `<no value>` like Go's invalid value.
    Missing,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A slice.
    List(Vec<Value>),
    /// A map; ranged and printed in key order, as Go does.
    Map(Vec<(Value, Value)>),
    /// A struct.
    Struct(Rc<Struct>),
}

/// A Go struct: named fields in declaration order (embedded ones promote
/// their fields), argument-less methods, and an optional `String()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Struct {
    /// Fields in declaration order; `true` marks an embedded field.
    pub fields: Vec<(String, Value, bool)>,
    /// Methods callable without arguments, by name.
    pub methods: Vec<(String, Value)>,
    /// What `String()` returns, for types that implement `fmt.Stringer`.
    pub stringer: Option<String>,
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Self {
        Value::Str(s.into())
    }

    /// A map, sorted by key as Go's `range` and `fmt` visit it.
    pub fn map(mut entries: Vec<(Value, Value)>) -> Self {
        entries.sort_by(|(a, _), (b, _)| compare_keys(a, b));
        Value::Map(entries)
    }

    /// A struct value.
    pub fn record(s: Struct) -> Self {
        Value::Struct(Rc::new(s))
    }

    fn truth(&self) -> bool {
        match self {
            Value::Nil | Value::Missing => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Struct(_) => true,
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil | Value::Missing => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Struct(_) => "struct",
        }
    }
}

/// Go's ordering of map keys (`internal/fmtsort`): numbers and strings in
/// their order, structs field by field.
fn compare_keys(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Struct(x), Value::Struct(y)) => x
            .fields
            .iter()
            .zip(y.fields.iter())
            .map(|((_, p, _), (_, q, _))| compare_keys(p, q))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    }
}

/// Go's `fmt` `%v` of a value.
fn format_value(value: &Value, out: &mut String) {
    match value {
        Value::Nil => out.push_str("<nil>"),
        Value::Missing => out.push_str("<no value>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Str(s) => out.push_str(s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_value(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push_str("map[");
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                format_value(k, out);
                out.push(':');
                format_value(v, out);
            }
            out.push(']');
        }
        Value::Struct(s) => match &s.stringer {
            Some(text) => out.push_str(text),
            None => {
                out.push('{');
                for (i, (_, v, _)) in s.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    format_value(v, out);
                }
                out.push('}');
            }
        },
    }
}

fn to_display(value: &Value) -> String {
    let mut out = String::new();
    format_value(value, &mut out);
    out
}

/// A parsed template, ready to render any number of times.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses `text`, refusing syntax errors and unknown functions.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let tokens = lex(text)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            depth: 0,
        };
        let (nodes, end) = parser.parse_list()?;
        if let Some((line, word)) = end {
            return Err(TemplateError::Parse {
                line,
                message: format!("unexpected {{{{{word}}}}}"),
            });
        }
        Ok(Self { nodes })
    }

    /// Renders the template with `data` as `.`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut exec = Exec {
            out: String::new(),
            vars: vec![("$".to_string(), data.clone())],
        };
        exec.run(&self.nodes, data)?;
        Ok(exec.out)
    }
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    /// The words of one action, with its line.
    Action(usize, Vec<Word>),
}

#[derive(Debug, Clone, PartialEq)]
enum Word {
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

fn lex(text: &str) -> Result<Vec<Tok>, TemplateError> {
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

// --------------------------------------------------------------- parsing

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(usize, Pipeline),
    If {
        branches: Vec<(usize, Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    With {
        line: usize,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        line: usize,
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

#[derive(Debug, Clone)]
struct Pipeline {
    vars: Vec<String>,
    assign: bool,
    commands: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Lit(Value),
    Sub(Box<Pipeline>, Vec<String>),
}

/// How a list of nodes ended: `{{end}}`, `{{else …}}`, or end of input.
type End = Option<(usize, String)>;

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    depth: usize,
}

/// How deep blocks and parentheses may nest: far beyond any commit message,
/// and shallow enough that parsing and running never exhaust the stack.
const MAX_NESTING: usize = 64;

const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "lower",
    "upper",
    "title",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "replace",
    "trunc",
    "join",
    "quote",
    "squote",
    "default",
    "repeat",
    "nospace",
    "toString",
    "sha256sum",
];

impl Parser {
    /// Parses nodes until `{{end}}` / `{{else…}}` (returned) or the end.
    fn parse_list(&mut self) -> Result<(Vec<Node>, End), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(token) = self.tokens.get(self.pos).cloned() {
            self.pos += 1;
            match token {
                Tok::Text(t) => nodes.push(Node::Text(t)),
                Tok::Action(line, words) => match words.first() {
                    Some(Word::Ident(k)) if k == "end" => {
                        if words.len() > 1 {
                            return Err(parse_err(line, "unexpected words after end"));
                        }
                        return Ok((nodes, Some((line, "end".into()))));
                    }
                    Some(Word::Ident(k)) if k == "else" => {
                        return Ok((nodes, Some((line, "else".into()))));
                    }
                    Some(Word::Ident(k)) if k == "if" || k == "with" || k == "range" => {
                        let k = k.clone();
                        nodes.push(self.parse_block(&k, line, &words[1..])?);
                    }
                    Some(Word::Ident(k))
                        if ["define", "template", "block", "break", "continue"]
                            .contains(&k.as_str()) =>
                    {
                        return Err(parse_err(
                            line,
                            &format!("{{{{{k}}}}} is not supported in commit message templates"),
                        ));
                    }
                    _ => nodes.push(Node::Action(line, parse_pipeline(line, &words)?)),
                },
            }
        }
        Ok((nodes, None))
    }

    fn parse_block(
        &mut self,
        keyword: &str,
        line: usize,
        words: &[Word],
    ) -> Result<Node, TemplateError> {
        let pipe = parse_pipeline(line, words)?;
        if pipe.commands.is_empty() {
            return Err(parse_err(line, &format!("missing value for {keyword}")));
        }
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(parse_err(
                line,
                &format!("blocks nested deeper than {MAX_NESTING}"),
            ));
        }
        let node = self.parse_block_body(keyword, line, pipe);
        self.depth -= 1;
        node
    }

    fn parse_block_body(
        &mut self,
        keyword: &str,
        line: usize,
        pipe: Pipeline,
    ) -> Result<Node, TemplateError> {
        let (body, end) = self.parse_list()?;
        let mut branches = vec![(line, pipe, body)];
        let mut otherwise = Vec::new();
        let mut end = end;
        loop {
            match end {
                None => return Err(parse_err(line, &format!("unexpected EOF in {keyword}"))),
                Some((_, ref w)) if w == "end" => break,
                Some((else_line, _)) => {
                    // The `{{else …}}` action: plain, or `else if` in an if.
                    let Some(Tok::Action(_, words)) = self.tokens.get(self.pos - 1).cloned() else {
                        return Err(parse_err(else_line, "malformed else"));
                    };
                    match words.get(1) {
                        None => {
                            let (body, e) = self.parse_list()?;
                            otherwise = body;
                            match e {
                                Some((_, ref w)) if w == "end" => break,
                                _ => return Err(parse_err(else_line, "expected end after else")),
                            }
                        }
                        Some(Word::Ident(k)) if k == "if" && keyword == "if" => {
                            let pipe = parse_pipeline(else_line, &words[2..])?;
                            let (body, e) = self.parse_list()?;
                            branches.push((else_line, pipe, body));
                            end = e;
                        }
                        _ => return Err(parse_err(else_line, "unsupported else clause")),
                    }
                }
            }
        }
        Ok(match keyword {
            "if" => Node::If {
                branches,
                otherwise,
            },
            _ => {
                let Some((line, pipe, body)) = branches.pop() else {
                    return Err(parse_err(line, "empty block"));
                };
                if keyword == "with" {
                    Node::With {
                        line,
                        pipe,
                        body,
                        otherwise,
                    }
                } else {
                    if pipe.vars.len() > 2 || pipe.assign {
                        return Err(parse_err(line, "range can only initialize variables"));
                    }
                    Node::Range {
                        line,
                        pipe,
                        body,
                        otherwise,
                    }
                }
            }
        })
    }
}

fn parse_err(line: usize, message: &str) -> TemplateError {
    TemplateError::Parse {
        line,
        message: message.to_string(),
    }
}

fn parse_pipeline(line: usize, words: &[Word]) -> Result<Pipeline, TemplateError> {
    let mut vars = Vec::new();
    let mut assign = false;
    let mut rest = words;
    // Declarations: `$x :=`, `$x =`, `$k, $v :=`.
    let decl_end = words
        .iter()
        .position(|w| matches!(w, Word::Declare | Word::Assign));
    if let Some(end) = decl_end {
        for (i, word) in words[..end].iter().enumerate() {
            match word {
                Word::Var(name, chain) if chain.is_empty() && i % 2 == 0 => vars.push(name.clone()),
                Word::Comma if i % 2 == 1 => {}
                _ => return Err(parse_err(line, "bad variable declaration")),
            }
        }
        assign = matches!(words[end], Word::Assign);
        rest = &words[end + 1..];
    }
    let mut commands = Vec::new();
    let mut current = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        match &rest[i] {
            Word::Pipe => {
                if current.is_empty() {
                    return Err(parse_err(line, "missing command before |"));
                }
                commands.push(std::mem::take(&mut current));
            }
            Word::Open => {
                let mut depth = 1;
                let start = i + 1;
                let mut j = start;
                let mut chain = Vec::new();
                while j < rest.len() {
                    match &rest[j] {
                        Word::Open => depth += 1,
                        Word::Close(c) => {
                            depth -= 1;
                            if depth == 0 {
                                chain = c.clone();
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if depth != 0 {
                    return Err(parse_err(line, "unclosed left paren"));
                }
                let inner = parse_pipeline(line, &rest[start..j])?;
                current.push(Arg::Sub(Box::new(inner), chain));
                i = j;
            }
            Word::Close(_) => return Err(parse_err(line, "unexpected right paren")),
            Word::Field(chain) => current.push(Arg::Field(chain.clone())),
            Word::Var(name, chain) => current.push(Arg::Var(name.clone(), chain.clone())),
            Word::Str(s) => current.push(Arg::Lit(Value::Str(s.clone()))),
            Word::Int(n) => current.push(Arg::Lit(Value::Int(*n))),
            Word::Ident(name) => match name.as_str() {
                "true" => current.push(Arg::Lit(Value::Bool(true))),
                "false" => current.push(Arg::Lit(Value::Bool(false))),
                "nil" => current.push(Arg::Lit(Value::Nil)),
                _ if FUNCTIONS.contains(&name.as_str()) => current.push(Arg::Func(name.clone())),
                _ => return Err(parse_err(line, &format!("function {name:?} not defined"))),
            },
            Word::Declare | Word::Assign | Word::Comma => {
                return Err(parse_err(line, "unexpected declaration"))
            }
        }
        i += 1;
    }
    if !current.is_empty() {
        commands.push(current);
    }
    if commands.is_empty() && !vars.is_empty() {
        return Err(parse_err(line, "missing value for declaration"));
    }
    Ok(Pipeline {
        vars,
        assign,
        commands,
    })
}

// ------------------------------------------------------------- execution

struct Exec {
    out: String,
    vars: Vec<(String, Value)>,
}

impl Exec {
    fn run(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(line, pipe) => {
                    let value = self.pipeline(*line, pipe, dot)?;
                    if pipe.vars.is_empty() {
                        format_value(&value, &mut self.out);
                    }
                }
                Node::If {
                    branches,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut taken = false;
                    for (line, pipe, body) in branches {
                        if self.pipeline(*line, pipe, dot)?.truth() {
                            self.run(body, dot)?;
                            taken = true;
                            break;
                        }
                    }
                    if !taken {
                        self.run(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::With {
                    line,
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let value = self.pipeline(*line, pipe, dot)?;
                    if value.truth() {
                        self.run(body, &value)?;
                    } else {
                        self.run(otherwise, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range {
                    line,
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let bare = Pipeline {
                        vars: Vec::new(),
                        assign: false,
                        commands: pipe.commands.clone(),
                    };
                    let value = self.pipeline(*line, &bare, dot)?;
                    let items: Vec<(Value, Value)> = match value {
                        Value::List(items) => items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::Int(i as i64), v))
                            .collect(),
                        Value::Map(entries) => entries,
                        Value::Nil | Value::Missing => Vec::new(),
                        other => {
                            return Err(TemplateError::Exec {
                                line: *line,
                                message: format!("range can't iterate over {}", to_display(&other)),
                            })
                        }
                    };
                    if items.is_empty() {
                        self.run(otherwise, dot)?;
                    }
                    for (key, item) in items {
                        let inner = self.vars.len();
                        match pipe.vars.as_slice() {
                            [v] => self.vars.push((v.clone(), item.clone())),
                            [k, v] => {
                                self.vars.push((k.clone(), key));
                                self.vars.push((v.clone(), item.clone()));
                            }
                            _ => {}
                        }
                        self.run(body, &item)?;
                        self.vars.truncate(inner);
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn pipeline(
        &mut self,
        line: usize,
        pipe: &Pipeline,
        dot: &Value,
    ) -> Result<Value, TemplateError> {
        let mut value: Option<Value> = None;
        for command in &pipe.commands {
            value = Some(self.command(line, command, dot, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        if let Some(name) = pipe.vars.last() {
            if pipe.assign {
                let slot = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| exec_err(line, format!("undefined variable: {name}")))?;
                slot.1 = value.clone();
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn command(
        &mut self,
        line: usize,
        args: &[Arg],
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let Some(first) = args.first() else {
            return Err(exec_err(line, "empty command".into()));
        };
        if let Arg::Func(name) = first {
            let mut values = Vec::with_capacity(args.len());
            // `and` / `or` stop at the first decisive operand, as Go's do.
            if name == "and" || name == "or" {
                let want = name == "or";
                let mut last = Value::Nil;
                let mut operands: Vec<Value> = Vec::new();
                for arg in &args[1..] {
                    operands.push(self.arg(line, arg, dot)?);
                }
                operands.extend(piped);
                if operands.is_empty() {
                    return Err(exec_err(line, format!("wrong number of args for {name}")));
                }
                for v in operands {
                    let decisive = v.truth() == want;
                    last = v;
                    if decisive {
                        break;
                    }
                }
                return Ok(last);
            }
            for arg in &args[1..] {
                values.push(self.arg(line, arg, dot)?);
            }
            values.extend(piped);
            return call(name, values).map_err(|m| exec_err(line, m));
        }
        if args.len() > 1 || piped.is_some() {
            return Err(exec_err(line, "can't give argument to non-function".into()));
        }
        self.arg(line, first, dot)
    }

    fn arg(&mut self, line: usize, arg: &Arg, dot: &Value) -> Result<Value, TemplateError> {
        match arg {
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Field(chain) => fields(line, dot.clone(), chain),
            Arg::Var(name, chain) => {
                let value = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| exec_err(line, format!("undefined variable: {name}")))?;
                fields(line, value, chain)
            }
            Arg::Func(name) => call(name, Vec::new()).map_err(|m| exec_err(line, m)),
            Arg::Sub(pipe, chain) => {
                let value = self.pipeline(line, pipe, dot)?;
                fields(line, value, chain)
            }
        }
    }
}

fn exec_err(line: usize, message: String) -> TemplateError {
    TemplateError::Exec { line, message }
}

fn fields(line: usize, mut value: Value, chain: &[String]) -> Result<Value, TemplateError> {
    for name in chain {
        value = field(&value, name).ok_or_else(|| {
            exec_err(
                line,
                format!("can't evaluate field {name} in type {}", value.type_name()),
            )
        })?;
    }
    Ok(value)
}

fn field(value: &Value, name: &str) -> Option<Value> {
    match value {
        Value::Struct(s) => {
            if let Some((_, v, _)) = s.fields.iter().find(|(n, _, _)| n == name) {
                return Some(v.clone());
            }
            if let Some((_, v)) = s.methods.iter().find(|(n, _)| n == name) {
                return Some(v.clone());
            }
            s.fields
                .iter()
                .filter(|(_, _, embedded)| *embedded)
                .find_map(|(_, v, _)| field(v, name))
        }
        Value::Map(entries) => Some(
            entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == name))
                .map_or(Value::Missing, |(_, v)| v.clone()),
        ),
        _ => None,
    }
}

fn string_arg(name: &str, value: &Value) -> Result<String, String> {
    match value {
        Value::Str(s) => Ok(s.clone()),
        other => Err(format!(
            "error calling {name}: expected string; found {}",
            to_display(other)
        )),
    }
}

fn int_arg(name: &str, value: &Value) -> Result<i64, String> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(format!(
            "error calling {name}: expected integer; found {}",
            to_display(other)
        )),
    }
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ))
    }
}

/// Go's `fmt.Sprint`: spaces only between operands that are not strings.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        let is_str = matches!(arg, Value::Str(_));
        let prev_str = i > 0 && matches!(args[i - 1], Value::Str(_));
        if i > 0 && !is_str && !prev_str {
            out.push(' ');
        }
        format_value(arg, &mut out);
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%s %v %d %q %x %%`.
fn sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        match verb {
            's' | 'v' => format_value(arg, &mut out),
            'd' => match arg {
                Value::Int(i) => {
                    let _ = write!(out, "{i}");
                }
                other => {
                    let _ = write!(out, "%!d({}={})", other.type_name(), to_display(other));
                }
            },
            'q' => {
                let _ = write!(out, "{:?}", to_display(arg));
            }
            'x' => match arg {
                Value::Int(i) => {
                    let _ = write!(out, "{i:x}");
                }
                other => out.push_str(&hex::encode(to_display(other))),
            },
            other => return Err(format!("printf verb %{other} is not supported")),
        }
    }
    let extra: Vec<String> = args.map(to_display).collect();
    if !extra.is_empty() {
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    Ok(out)
}

fn compare(name: &str, a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) if name == "eq" || name == "ne" => Ok(x.cmp(y)),
        (Value::Nil, Value::Nil) if name == "eq" || name == "ne" => Ok(std::cmp::Ordering::Equal),
        _ => Err(format!(
            "error calling {name}: incompatible types for comparison"
        )),
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
    use std::cmp::Ordering;
    let s = |i: usize| string_arg(name, &args[i]);
    Ok(match name {
        "not" => {
            arity(name, &args, 1)?;
            Value::Bool(!args[0].truth())
        }
        "len" => {
            arity(name, &args, 1)?;
            Value::Int(match &args[0] {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.len(),
                other => return Err(format!("error calling len: len of {}", other.type_name())),
            } as i64)
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                return Err("wrong number of args for index".into());
            };
            let mut value = first.clone();
            for key in keys {
                value = match (&value, key) {
                    (Value::List(l), Value::Int(i)) => usize::try_from(*i)
                        .ok()
                        .and_then(|i| l.get(i).cloned())
                        .ok_or_else(|| format!("error calling index: index out of range: {i}"))?,
                    (Value::Map(m), k) => m
                        .iter()
                        .find(|(mk, _)| mk == k)
                        .map_or(Value::Missing, |(_, v)| v.clone()),
                    _ => {
                        return Err(format!(
                            "error calling index: can't index item of type {}",
                            value.type_name()
                        ))
                    }
                };
            }
            value
        }
        "print" => Value::Str(sprint(&args)),
        "println" => {
            let parts: Vec<String> = args.iter().map(to_display).collect();
            Value::Str(format!("{}\n", parts.join(" ")))
        }
        "printf" => {
            let Some((format, rest)) = args.split_first() else {
                return Err("wrong number of args for printf".into());
            };
            Value::Str(sprintf(&string_arg(name, format)?, rest)?)
        }
        "eq" => {
            let Some((first, rest)) = args.split_first() else {
                return Err("wrong number of args for eq".into());
            };
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            let mut equal = false;
            for other in rest {
                if compare(name, first, other)? == Ordering::Equal {
                    equal = true;
                }
            }
            Value::Bool(equal)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            let o = compare(name, &args[0], &args[1])?;
            Value::Bool(match name {
                "ne" => o != Ordering::Equal,
                "lt" => o == Ordering::Less,
                "le" => o != Ordering::Greater,
                "gt" => o == Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
        "lower" | "upper" | "title" | "trim" | "nospace" | "sha256sum" => {
            arity(name, &args, 1)?;
            let v = s(0)?;
            Value::Str(match name {
                "lower" => v.to_lowercase(),
                "upper" => v.to_uppercase(),
                "title" => title(&v),
                "trim" => v.trim().to_string(),
                "nospace" => v.chars().filter(|c| !c.is_whitespace()).collect(),
                _ => format!("{:x}", Sha256::digest(v.as_bytes())),
            })
        }
        "toString" => {
            arity(name, &args, 1)?;
            Value::Str(to_display(&args[0]))
        }
        "trimPrefix" | "trimSuffix" | "contains" | "hasPrefix" | "hasSuffix" => {
            arity(name, &args, 2)?;
            let (a, v) = (s(0)?, s(1)?);
            match name {
                "trimPrefix" => Value::Str(v.strip_prefix(a.as_str()).unwrap_or(&v).to_string()),
                "trimSuffix" => Value::Str(v.strip_suffix(a.as_str()).unwrap_or(&v).to_string()),
                "contains" => Value::Bool(v.contains(a.as_str())),
                "hasPrefix" => Value::Bool(v.starts_with(a.as_str())),
                _ => Value::Bool(v.ends_with(a.as_str())),
            }
        }
        "replace" => {
            arity(name, &args, 3)?;
            Value::Str(s(2)?.replace(s(0)?.as_str(), &s(1)?))
        }
        "trunc" => {
            arity(name, &args, 2)?;
            let n = int_arg(name, &args[0])?;
            let v = s(1)?;
            let len = v.chars().count() as i64;
            Value::Str(if n < 0 {
                v.chars().skip((len + n).max(0) as usize).collect()
            } else {
                v.chars().take(n as usize).collect()
            })
        }
        "repeat" => {
            arity(name, &args, 2)?;
            let n = usize::try_from(int_arg(name, &args[0])?).unwrap_or(0);
            let text = s(1)?;
            if n.saturating_mul(text.len()) > MAX_REPEAT_BYTES {
                return Err(format!(
                    "error calling repeat: result longer than {MAX_REPEAT_BYTES} bytes"
                ));
            }
            Value::Str(text.repeat(n))
        }
        "join" => {
            arity(name, &args, 2)?;
            let sep = s(0)?;
            let items: Vec<String> = match &args[1] {
                Value::List(l) => l.iter().map(to_display).collect(),
                other => vec![to_display(other)],
            };
            Value::Str(items.join(&sep))
        }
        "quote" | "squote" => {
            let parts: Vec<String> = args
                .iter()
                .filter(|a| !matches!(a, Value::Nil))
                .map(|a| {
                    if name == "quote" {
                        format!("{:?}", to_display(a))
                    } else {
                        format!("'{}'", to_display(a))
                    }
                })
                .collect();
            Value::Str(parts.join(" "))
        }
        "default" => {
            let Some((fallback, given)) = args.split_first() else {
                return Err("wrong number of args for default".into());
            };
            match given.first() {
                Some(v) if v.truth() => v.clone(),
                _ => fallback.clone(),
            }
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

/// The longest string `repeat` builds: a commit message has no use for
/// more, and a template must not be able to exhaust memory.
const MAX_REPEAT_BYTES: usize = 1 << 20;

/// Sprig's `title` (Go's deprecated `strings.Title`): upper-cases the first
/// letter of every word.
fn title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at_start = true;
    for c in text.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

/// A `map[string]string` (`.Values`).
pub fn string_map(values: &BTreeMap<String, String>) -> Value {
    Value::map(
        values
            .iter()
            .map(|(k, v)| (Value::str(k), Value::str(v)))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
