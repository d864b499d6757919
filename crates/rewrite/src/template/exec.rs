//! The executor: runs parsed nodes over a value, writing the output the way
//! Go's `text/template` does (fields, methods, variables and their scopes,
//! `if` / `with` / `range`), calling functions through the table in `funcs`.

use super::funcs;
use super::parse::{Arg, Node, Pipeline};
use super::{format_value, to_display, TemplateError, Value};

/// Renders `nodes` with `data` as both `.` and `$`.
pub(super) fn render(nodes: &[Node], data: &Value) -> Result<String, TemplateError> {
    let mut exec = Exec {
        out: String::new(),
        vars: vec![("$".to_string(), data.clone())],
    };
    exec.run(nodes, data)?;
    Ok(exec.out)
}

/// The state of one rendering: the output so far and the variables in scope.
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
            for arg in &args[1..] {
                values.push(self.arg(line, arg, dot)?);
            }
            values.extend(piped);
            return funcs::call_command(name, &values).map_err(|m| exec_err(line, m));
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
            Arg::Func(name) => funcs::call_operand(name).map_err(|m| exec_err(line, m)),
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
