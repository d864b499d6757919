//! The parser: the lexer's words into nodes and pipelines. Functions are
//! resolved here against the one table in `funcs`, so an unknown function is
//! refused at parse time, as Go refuses it.

use super::funcs;
use super::lex::{Tok, Word};
use super::{TemplateError, Value, MAX_NESTING};

/// A node of the parsed template: text, an action, or a block.
#[derive(Debug, Clone)]
pub(super) enum Node {
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

/// `$x := a | b`: the variables it declares (or assigns) and its commands.
#[derive(Debug, Clone)]
pub(super) struct Pipeline {
    /// Variables declared or assigned, in order.
    pub(super) vars: Vec<String>,
    /// `=` rather than `:=`.
    pub(super) assign: bool,
    /// The commands, each a function or value and its arguments.
    pub(super) commands: Vec<Vec<Arg>>,
}

/// One operand of a command.
#[derive(Debug, Clone)]
pub(super) enum Arg {
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

/// Parses the lexer's tokens into nodes, refusing a stray `{{end}}` or
/// `{{else}}` at the top level.
pub(super) fn parse(tokens: Vec<Tok>) -> Result<Vec<Node>, TemplateError> {
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
    Ok(nodes)
}

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
                _ if funcs::lookup(name).is_some() => current.push(Arg::Func(name.clone())),
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
