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

mod exec;
mod funcs;
mod lex;
mod parse;

/// How deep blocks and parentheses may nest: far beyond any commit message,
/// and shallow enough that parsing and running never exhaust the stack.
const MAX_NESTING: usize = 64;

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
    nodes: Vec<parse::Node>,
}

impl Template {
    /// Parses `text`, refusing syntax errors and unknown functions.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let nodes = parse::parse(lex::lex(text)?)?;
        Ok(Self { nodes })
    }

    /// Renders the template with `data` as `.`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        exec::render(&self.nodes, data)
    }
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
