//! Executing a parsed template over a `Value`, with Go's semantics: fields of structs and
//! maps, missing map keys as `<no value>`, ranges over maps in key order, variables scoped to
//! their control structure, `and`/`or` short-circuiting, errors located as Go locates them
//! ("template: :1:2: executing \"\" at <.Nope>: ...").

use crate::funcs::Funcs;
use crate::parse::{Arg, Branch, Command, Node, Pipe};
use crate::value::Value;
use crate::Error;

static NO_VALUE: Value = Value::NoValue;

/// What the walk of a list asks its enclosing `range` to do.
enum Flow {
    Normal,
    Break,
    Continue,
}

pub struct State<'a> {
    src: &'a str,
    funcs: &'a Funcs,
    vars: Vec<(String, Value)>,
    pub out: String,
}

/// An error at `pos` about the node written `ctx`.
fn located(src: &str, pos: usize, ctx: &str, msg: impl std::fmt::Display) -> Error {
    let before = &src[..pos.min(src.len())];
    let line = 1 + before.matches('\n').count();
    let col = match before.rfind('\n') {
        Some(nl) => pos - nl - 1,
        None => pos,
    };
    Error(format!(
        "template: :{line}:{col}: executing \"\" at <{ctx}>: {msg}"
    ))
}

impl<'a> State<'a> {
    pub fn new(src: &'a str, funcs: &'a Funcs, data: &Value) -> State<'a> {
        State {
            src,
            funcs,
            vars: vec![("$".into(), data.clone())],
            out: String::new(),
        }
    }

    fn err(&self, pos: usize, ctx: &dyn std::fmt::Display, msg: impl std::fmt::Display) -> Error {
        located(self.src, pos, &ctx.to_string(), msg)
    }

    pub fn walk(&mut self, list: &[Node], dot: &Value) -> Result<(), Error> {
        self.walk_list(list, dot).map(|_| ())
    }

    fn walk_list(&mut self, list: &[Node], dot: &Value) -> Result<Flow, Error> {
        for n in list {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipeline(p, dot)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&v.go_string());
                    }
                }
                Node::If(b) | Node::With(b) => {
                    let mark = self.vars.len();
                    let v = self.pipeline(&b.pipe, dot)?;
                    let flow = if v.truth() {
                        let inner = if matches!(n, Node::With(_)) { &v } else { dot };
                        self.walk_list(&b.list, inner)?
                    } else if let Some(e) = &b.else_list {
                        self.walk_list(e, dot)?
                    } else {
                        Flow::Normal
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => self.range(b, dot)?,
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(&mut self, b: &Branch, dot: &Value) -> Result<(), Error> {
        let mark = self.vars.len();
        let v = self.pipe_value(&b.pipe, dot)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::List(l) => l
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, x)| (Value::Int(i as i64), x.clone()))
                .collect(),
            Value::Map(m) => m
                .iter()
                .flatten()
                .map(|(k, x)| (Value::str(k), x.clone()))
                .collect(),
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            other => {
                return Err(self.err(
                    b.pipe.pos,
                    &b.pipe,
                    format!("range can't iterate over {}", other.go_string()),
                ))
            }
        };
        if items.is_empty() {
            if let Some(e) = &b.else_list {
                self.walk_list(e, dot)?;
            }
            return Ok(());
        }
        for (k, x) in items {
            match b.pipe.decl.as_slice() {
                [] => {}
                [e] => self.set(e, x.clone(), b.pipe.assign, mark),
                [i, e, ..] => {
                    self.set(i, k, b.pipe.assign, mark);
                    self.set(e, x.clone(), b.pipe.assign, mark);
                }
            }
            let inner = self.vars.len();
            let flow = self.walk_list(&b.list, &x)?;
            self.vars.truncate(inner);
            if let Flow::Break = flow {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    /// Declares `name` (above `mark`, once per range) or assigns it.
    fn set(&mut self, name: &str, v: Value, assign: bool, mark: usize) {
        let scope = if assign { 0 } else { mark };
        match self.vars[scope..].iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => self.vars.push((name.to_string(), v)),
        }
    }

    /// The pipeline's value, with its variables declared or assigned.
    fn pipeline(&mut self, p: &Pipe, dot: &Value) -> Result<Value, Error> {
        let v = self.pipe_value(p, dot)?;
        for d in &p.decl {
            if p.assign {
                self.set(d, v.clone(), true, 0);
            } else {
                self.vars.push((d.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn pipe_value(&mut self, p: &Pipe, dot: &Value) -> Result<Value, Error> {
        let mut last = None;
        for c in &p.cmds {
            last = Some(self.command(c, dot, last)?);
        }
        Ok(last.unwrap_or(Value::NoValue))
    }

    fn command(&mut self, c: &Command, dot: &Value, last: Option<Value>) -> Result<Value, Error> {
        let first = &c.args[0];
        let has_args = c.args.len() > 1 || last.is_some();
        match first {
            Arg::Field(pos, ids) => {
                if !has_args {
                    return self.fields(*pos, first, dot, ids);
                }
                // A map-valued field called with one key stands for a Go method that looks
                // the key up, as Docker's `{{.Label "com.example"}}` on list rows.
                let v = self.fields(*pos, first, dot, ids)?;
                let mut args = Vec::new();
                for a in &c.args[1..] {
                    args.push(self.arg(a, dot)?);
                }
                args.extend(last);
                match (&v, args.as_slice()) {
                    (Value::Map(m), [Value::Str(k)]) => Ok(m
                        .as_ref()
                        .and_then(|m| m.get(k))
                        .cloned()
                        .unwrap_or_else(|| Value::str(""))),
                    _ => Err(self.err(
                        *pos,
                        first,
                        format!("{} is not a method but has arguments", ids[ids.len() - 1]),
                    )),
                }
            }
            Arg::Ident(pos, name) => self.call(*pos, c, name, dot, last),
            _ => {
                if has_args {
                    return Err(self.err(
                        first.pos(),
                        first,
                        "can't give argument to non-function",
                    ));
                }
                self.arg(first, dot)
            }
        }
    }

    /// Walks `ids` from `recv`; the value at the end.
    fn fields(&self, pos: usize, node: &Arg, recv: &Value, ids: &[String]) -> Result<Value, Error> {
        let mut cur = recv;
        for id in ids {
            cur = self.field(pos, node, cur, id)?;
        }
        Ok(cur.clone())
    }

    fn field<'v>(
        &self,
        pos: usize,
        node: &Arg,
        recv: &'v Value,
        id: &str,
    ) -> Result<&'v Value, Error> {
        match recv {
            Value::Struct(s) => match s.field(id) {
                Some(v) => Ok(v),
                None => Err(self.err(
                    pos,
                    node,
                    match &s.type_name {
                        Some(t) => format!("can't evaluate field {id} in type {t}"),
                        None => format!("map has no entry for key {id:?}"),
                    },
                )),
            },
            Value::Map(m) => Ok(m.as_ref().and_then(|m| m.get(id)).unwrap_or(&NO_VALUE)),
            Value::Nil => Err(self.err(
                pos,
                node,
                format!("nil pointer evaluating interface {{}}.{id}"),
            )),
            Value::NoValue => {
                Err(self.err(pos, node, format!("nil data; no entry for key {id:?}")))
            }
            other => Err(self.err(
                pos,
                node,
                format!("can't evaluate field {id} in type {}", other.type_name()),
            )),
        }
    }

    fn var(&self, name: &str) -> Value {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map_or(Value::NoValue, |(_, v)| v.clone())
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, Error> {
        Ok(match a {
            Arg::Field(pos, ids) => self.fields(*pos, a, dot, ids)?,
            Arg::Var(pos, name, ids) => {
                let v = self.var(name);
                self.fields(*pos, a, &v, ids)?
            }
            Arg::Chain(pos, pipe, ids) => {
                let v = self.pipe_value(pipe, dot)?;
                self.fields(*pos, a, &v, ids)?
            }
            Arg::Dot(_) => dot.clone(),
            Arg::Nil(_) => Value::Nil,
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Number(_, Some(i), _) => Value::Int(*i),
            Arg::Number(_, None, f) => Value::Float(*f),
            Arg::Str(s, _) => Value::Str(s.clone()),
            // A function as an operand is called without arguments.
            Arg::Ident(pos, name) => {
                let c = Command {
                    args: vec![a.clone()],
                };
                self.call(*pos, &c, name, dot, None)?
            }
        })
    }

    fn call(
        &mut self,
        pos: usize,
        c: &Command,
        name: &str,
        dot: &Value,
        last: Option<Value>,
    ) -> Result<Value, Error> {
        // Go's `and` and `or` evaluate their arguments only as far as needed.
        if name == "and" || name == "or" {
            if c.args.len() < 2 && last.is_none() {
                return Err(self.err(
                    pos,
                    c,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut v = Value::NoValue;
            for a in &c.args[1..] {
                v = self.arg(a, dot)?;
                if v.truth() == (name == "or") {
                    return Ok(v);
                }
            }
            return Ok(last.unwrap_or(v));
        }
        let mut args = Vec::with_capacity(c.args.len());
        for a in &c.args[1..] {
            args.push(self.arg(a, dot)?);
        }
        args.extend(last);
        let f = self
            .funcs
            .get(name)
            .ok_or_else(|| self.err(pos, c, format!("{name:?} is not a defined function")))?;
        f(&args).map_err(|e| match e {
            crate::funcs::CallError::Args(msg) => self.err(pos, c, msg),
            crate::funcs::CallError::Failed(msg) => {
                self.err(pos, c, format!("error calling {name}: {msg}"))
            }
        })
    }
}
