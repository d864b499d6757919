//! The functions a template may call: Go's built-ins and the hermetic Sprig
//! functions commit templates use, in one table. The parser looks names up
//! in it (an unknown function is refused at parse time, as Go refuses it) and
//! the executor calls through it, so the two can never disagree.

use std::cmp::Ordering;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::{format_value, to_display, Value};

/// What a function does with its evaluated arguments, or the message Go
/// would give for them.
type Call = fn(&str, &[Value]) -> Result<Value, String>;

/// How many arguments a function takes, checked before it is called so each
/// implementation can rely on it, with Go's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arity {
    /// Exactly this many: `wrong number of args for f: want n got m`.
    Exactly(usize),
    /// One or more: `wrong number of args for f`.
    AtLeastOne,
    /// Any number, none included.
    Any,
    /// `and` / `or`: one or more operands when called as a command. Named
    /// as an operand of another command (`{{ print and }}`) the function is
    /// reported undefined, as this engine always has (Go would report the
    /// argument count instead).
    Operands,
}

/// One entry of the table: a name templates may call, its arity and its
/// implementation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Function {
    /// The name templates use.
    pub(super) name: &'static str,
    /// How many arguments it takes.
    pub(super) arity: Arity,
    /// The implementation, called once the arity is checked.
    call: Call,
}

/// Every function a template may call, and nothing else.
static FUNCTIONS: &[Function] = &[
    f("and", Arity::Operands, |_, args| Ok(decisive(args, false))),
    f("or", Arity::Operands, |_, args| Ok(decisive(args, true))),
    f("not", Arity::Exactly(1), |name, args| {
        Ok(Value::Bool(!nth(name, args, 0)?.truth()))
    }),
    f("len", Arity::Exactly(1), len),
    f("index", Arity::AtLeastOne, index),
    f("print", Arity::Any, |_, args| Ok(Value::Str(sprint(args)))),
    f("printf", Arity::AtLeastOne, |name, args| {
        let format = string_arg(name, nth(name, args, 0)?)?;
        Ok(Value::Str(sprintf(
            &format,
            args.get(1..).unwrap_or_default(),
        )?))
    }),
    f("println", Arity::Any, |_, args| {
        let parts: Vec<String> = args.iter().map(to_display).collect();
        Ok(Value::Str(format!("{}\n", parts.join(" "))))
    }),
    f("eq", Arity::AtLeastOne, eq),
    f("ne", Arity::Exactly(2), |name, args| {
        ordered(name, args, |o| o != Ordering::Equal)
    }),
    f("lt", Arity::Exactly(2), |name, args| {
        ordered(name, args, |o| o == Ordering::Less)
    }),
    f("le", Arity::Exactly(2), |name, args| {
        ordered(name, args, |o| o != Ordering::Greater)
    }),
    f("gt", Arity::Exactly(2), |name, args| {
        ordered(name, args, |o| o == Ordering::Greater)
    }),
    f("ge", Arity::Exactly(2), |name, args| {
        ordered(name, args, |o| o != Ordering::Less)
    }),
    f("lower", Arity::Exactly(1), |name, args| {
        Ok(Value::Str(string_at(name, args, 0)?.to_lowercase()))
    }),
    f("upper", Arity::Exactly(1), |name, args| {
        Ok(Value::Str(string_at(name, args, 0)?.to_uppercase()))
    }),
    f("title", Arity::Exactly(1), |name, args| {
        Ok(Value::Str(title(&string_at(name, args, 0)?)))
    }),
    f("trim", Arity::Exactly(1), |name, args| {
        Ok(Value::Str(string_at(name, args, 0)?.trim().to_string()))
    }),
    f("trimPrefix", Arity::Exactly(2), |name, args| {
        let (prefix, v) = (string_at(name, args, 0)?, string_at(name, args, 1)?);
        Ok(Value::Str(
            v.strip_prefix(prefix.as_str()).unwrap_or(&v).to_string(),
        ))
    }),
    f("trimSuffix", Arity::Exactly(2), |name, args| {
        let (suffix, v) = (string_at(name, args, 0)?, string_at(name, args, 1)?);
        Ok(Value::Str(
            v.strip_suffix(suffix.as_str()).unwrap_or(&v).to_string(),
        ))
    }),
    f("contains", Arity::Exactly(2), |name, args| {
        let (part, v) = (string_at(name, args, 0)?, string_at(name, args, 1)?);
        Ok(Value::Bool(v.contains(part.as_str())))
    }),
    f("hasPrefix", Arity::Exactly(2), |name, args| {
        let (prefix, v) = (string_at(name, args, 0)?, string_at(name, args, 1)?);
        Ok(Value::Bool(v.starts_with(prefix.as_str())))
    }),
    f("hasSuffix", Arity::Exactly(2), |name, args| {
        let (suffix, v) = (string_at(name, args, 0)?, string_at(name, args, 1)?);
        Ok(Value::Bool(v.ends_with(suffix.as_str())))
    }),
    f("replace", Arity::Exactly(3), |name, args| {
        // Sprig's argument order (old, new, text); the text is checked first.
        let text = string_at(name, args, 2)?;
        Ok(Value::Str(text.replace(
            string_at(name, args, 0)?.as_str(),
            &string_at(name, args, 1)?,
        )))
    }),
    f("trunc", Arity::Exactly(2), trunc),
    f("join", Arity::Exactly(2), |name, args| {
        let sep = string_at(name, args, 0)?;
        let items: Vec<String> = match nth(name, args, 1)? {
            Value::List(l) => l.iter().map(to_display).collect(),
            other => vec![to_display(other)],
        };
        Ok(Value::Str(items.join(&sep)))
    }),
    f("quote", Arity::Any, |_, args| {
        Ok(quoted(args, |text| format!("{text:?}")))
    }),
    f("squote", Arity::Any, |_, args| {
        Ok(quoted(args, |text| format!("'{text}'")))
    }),
    f("default", Arity::AtLeastOne, |name, args| {
        let fallback = nth(name, args, 0)?;
        Ok(match args.get(1) {
            Some(v) if v.truth() => v.clone(),
            _ => fallback.clone(),
        })
    }),
    f("repeat", Arity::Exactly(2), repeat),
    f("nospace", Arity::Exactly(1), |name, args| {
        let v = string_at(name, args, 0)?;
        Ok(Value::Str(
            v.chars().filter(|c| !c.is_whitespace()).collect(),
        ))
    }),
    f("toString", Arity::Exactly(1), |name, args| {
        Ok(Value::Str(to_display(nth(name, args, 0)?)))
    }),
    f("sha256sum", Arity::Exactly(1), |name, args| {
        let v = string_at(name, args, 0)?;
        Ok(Value::Str(format!("{:x}", Sha256::digest(v.as_bytes()))))
    }),
];

/// A table entry; a `const fn` so the table can be a `static`.
const fn f(name: &'static str, arity: Arity, call: Call) -> Function {
    Function { name, arity, call }
}

/// The function templates call `name`, if there is one.
pub(super) fn lookup(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Calls `name` as a command (`{{ name a b }}`, `… | name`) with its
/// evaluated arguments, the piped value last.
pub(super) fn call_command(name: &str, args: &[Value]) -> Result<Value, String> {
    let function = lookup(name).ok_or_else(|| undefined(name))?;
    match function.arity {
        Arity::Exactly(n) if args.len() != n => {
            return Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
        Arity::AtLeastOne | Arity::Operands if args.is_empty() => {
            return Err(format!("wrong number of args for {name}"))
        }
        _ => {}
    }
    (function.call)(name, args)
}

/// Calls `name` named as an operand of another command (`{{ print upper }}`):
/// with no arguments.
pub(super) fn call_operand(name: &str) -> Result<Value, String> {
    match lookup(name) {
        Some(function) if function.arity != Arity::Operands => call_command(name, &[]),
        _ => Err(undefined(name)),
    }
}

/// Go's message for a function it does not know.
fn undefined(name: &str) -> String {
    format!("function {name:?} not defined")
}

/// Argument `i`, which the arity check guarantees.
fn nth<'a>(name: &str, args: &'a [Value], i: usize) -> Result<&'a Value, String> {
    args.get(i)
        .ok_or_else(|| format!("wrong number of args for {name}"))
}

/// Argument `i` as a string.
fn string_at(name: &str, args: &[Value], i: usize) -> Result<String, String> {
    string_arg(name, nth(name, args, i)?)
}

/// `and` (`want` false) / `or` (`want` true): the first operand whose truth
/// is `want`, else the last, as Go's stop at the first decisive operand.
fn decisive(operands: &[Value], want: bool) -> Value {
    let mut last = Value::Nil;
    for v in operands {
        last = v.clone();
        if v.truth() == want {
            break;
        }
    }
    last
}

fn len(name: &str, args: &[Value]) -> Result<Value, String> {
    Ok(Value::Int(match nth(name, args, 0)? {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        other => return Err(format!("error calling len: len of {}", other.type_name())),
    } as i64))
}

fn index(name: &str, args: &[Value]) -> Result<Value, String> {
    let Some((first, keys)) = args.split_first() else {
        return Err(format!("wrong number of args for {name}"));
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
    Ok(value)
}

fn eq(name: &str, args: &[Value]) -> Result<Value, String> {
    let Some((first, rest)) = args.split_first() else {
        return Err(format!("wrong number of args for {name}"));
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
    Ok(Value::Bool(equal))
}

/// `ne lt le gt ge`: whether the two arguments' order satisfies `holds`.
fn ordered(name: &str, args: &[Value], holds: fn(Ordering) -> bool) -> Result<Value, String> {
    let o = compare(name, nth(name, args, 0)?, nth(name, args, 1)?)?;
    Ok(Value::Bool(holds(o)))
}

fn trunc(name: &str, args: &[Value]) -> Result<Value, String> {
    let n = int_arg(name, nth(name, args, 0)?)?;
    let v = string_at(name, args, 1)?;
    let len = v.chars().count() as i64;
    Ok(Value::Str(if n < 0 {
        v.chars().skip((len + n).max(0) as usize).collect()
    } else {
        v.chars().take(n as usize).collect()
    }))
}

fn repeat(name: &str, args: &[Value]) -> Result<Value, String> {
    let n = usize::try_from(int_arg(name, nth(name, args, 0)?)?).unwrap_or(0);
    let text = string_at(name, args, 1)?;
    if n.saturating_mul(text.len()) > MAX_REPEAT_BYTES {
        return Err(format!(
            "error calling repeat: result longer than {MAX_REPEAT_BYTES} bytes"
        ));
    }
    Ok(Value::Str(text.repeat(n)))
}

/// Sprig's `quote` / `squote`: each non-nil argument quoted, space-separated.
fn quoted(args: &[Value], quote: fn(String) -> String) -> Value {
    let parts: Vec<String> = args
        .iter()
        .filter(|a| !matches!(a, Value::Nil))
        .map(|a| quote(to_display(a)))
        .collect();
    Value::Str(parts.join(" "))
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
