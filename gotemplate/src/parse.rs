//! Lexing and parsing of Go's text/template syntax into a tree: text, actions with pipelines,
//! `if`/`else if`/`range`/`with`/`else with`/`end`, `break`/`continue`, variables, trim
//! markers (`{{-`, `-}}`) and comments. Errors are Go's ("template: :1: unclosed action").

use std::collections::HashSet;

use crate::Error;

/// A node of the template body.
#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Break,
    Continue,
}

/// `if`/`with`/`range`: the pipeline, the body and the `else` part.
#[derive(Debug, Clone)]
pub struct Branch {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

/// `[$x :=] cmd | cmd ...`.
#[derive(Debug, Clone)]
pub struct Pipe {
    pub pos: usize,
    /// Declared (`:=`) or assigned (`=`) variables, with their `$`.
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Command>,
}

/// One command of a pipeline: an operand, or a function and its arguments.
#[derive(Debug, Clone)]
pub struct Command {
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B`
    Field(usize, Vec<String>),
    /// `$x.A.B` (`$` alone is the data the template was run on).
    Var(usize, String, Vec<String>),
    /// `(pipeline).A.B` or `(pipeline)`
    Chain(usize, Box<Pipe>, Vec<String>),
    Dot(usize),
    Nil(usize),
    Bool(bool),
    /// The literal's text, its value as an int if it is one, else as a float.
    Number(String, Option<i64>, f64),
    /// The unquoted value and the literal as written.
    Str(String, String),
    /// A function name.
    Ident(usize, String),
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field(p, _)
            | Arg::Var(p, _, _)
            | Arg::Chain(p, _, _)
            | Arg::Dot(p)
            | Arg::Nil(p)
            | Arg::Ident(p, _) => *p,
            _ => 0,
        }
    }
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Field(_, ids) => {
                for i in ids {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Var(_, name, ids) => {
                write!(f, "{name}")?;
                for i in ids {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Chain(_, p, ids) => {
                write!(f, "({p})")?;
                for i in ids {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Dot(_) => f.write_str("."),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Number(t, _, _) => f.write_str(t),
            Arg::Str(_, raw) => f.write_str(raw),
            Arg::Ident(_, n) => f.write_str(n),
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.args.iter().map(|a| a.to_string()).collect();
        f.write_str(&parts.join(" "))
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            write!(
                f,
                "{} {} ",
                self.decl.join(", "),
                if self.assign { "=" } else { ":=" }
            )?;
        }
        let parts: Vec<String> = self.cmds.iter().map(|c| c.to_string()).collect();
        f.write_str(&parts.join(" | "))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Var(String),
    Dot,
    Str(String, String),
    Char(i64, String),
    Number(String),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Space,
    Keyword(&'static str),
    /// The end of the action (`}}`).
    Close,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// One lexed piece of the template: text, or an action's tokens.
enum Piece {
    Text(String),
    Action(Vec<(usize, Tok)>),
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, msg: impl Into<String>) -> Error {
        let line = 1 + self.src[..self.pos.min(self.src.len())]
            .matches('\n')
            .count();
        Error(format!("template: :{line}: {}", msg.into()))
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    /// Splits the template into text and actions, applying trim markers.
    fn pieces(mut self) -> Result<Vec<Piece>, Error> {
        let mut out = Vec::new();
        let mut trim_next = false;
        loop {
            let (text, found) = match self.rest().find("{{") {
                Some(i) => (&self.rest()[..i], true),
                None => (self.rest(), false),
            };
            let mut text = text.to_string();
            if trim_next {
                text = text.trim_start().to_string();
            }
            self.pos += if found {
                self.rest().find("{{").unwrap()
            } else {
                self.rest().len()
            };
            if !found {
                if !text.is_empty() {
                    out.push(Piece::Text(text));
                }
                return Ok(out);
            }
            self.pos += 2;
            let trim_left = self.rest().starts_with('-')
                && self.rest()[1..].starts_with(|c: char| c.is_ascii_whitespace());
            if trim_left {
                text = text.trim_end().to_string();
                self.pos += 2;
            }
            if !text.is_empty() {
                out.push(Piece::Text(text));
            }
            // A comment: {{/* ... */}}
            let save = self.pos;
            let ws = self.rest().len() - self.rest().trim_start().len();
            if self.rest()[ws..].starts_with("/*") {
                self.pos += ws + 2;
                let Some(end) = self.rest().find("*/") else {
                    return Err(self.err("unclosed comment"));
                };
                self.pos += end + 2;
                let rest = self.rest();
                let trimmed = rest.trim_start();
                let (t, skip) = if trimmed.starts_with("-}}") && rest.len() != trimmed.len() {
                    (true, rest.len() - trimmed.len() + 3)
                } else if rest.starts_with("}}") {
                    (false, 2)
                } else {
                    return Err(self.err("comment ends before closing delimiter"));
                };
                self.pos += skip;
                trim_next = t;
                continue;
            }
            self.pos = save;
            let (toks, t) = self.action()?;
            trim_next = t;
            out.push(Piece::Action(toks));
        }
    }

    /// The tokens of one action up to its `}}`; true if it ended with ` -}}`.
    fn action(&mut self) -> Result<(Vec<(usize, Tok)>, bool), Error> {
        let mut toks = Vec::new();
        let mut paren = 0;
        loop {
            let r = self.rest();
            let start = self.pos;
            let Some(c) = r.chars().next() else {
                return Err(self.err("unclosed action"));
            };
            if r.starts_with("}}") {
                self.pos += 2;
                toks.push((start, Tok::Close));
                return Ok((toks, false));
            }
            if c.is_ascii_whitespace() {
                let n = r.len() - r.trim_start().len();
                let after = &r[n..];
                if after.starts_with("-}}") {
                    self.pos += n + 3;
                    toks.push((start, Tok::Close));
                    return Ok((toks, true));
                }
                self.pos += n;
                toks.push((start, Tok::Space));
                continue;
            }
            let tok = match c {
                '|' => {
                    self.pos += 1;
                    Tok::Pipe
                }
                '(' => {
                    self.pos += 1;
                    paren += 1;
                    Tok::LParen
                }
                ')' => {
                    self.pos += 1;
                    if paren == 0 {
                        return Err(self.err("unexpected right paren U+0029 ')'"));
                    }
                    paren -= 1;
                    Tok::RParen
                }
                ',' => {
                    self.pos += 1;
                    Tok::Comma
                }
                ':' if r.starts_with(":=") => {
                    self.pos += 2;
                    Tok::Declare
                }
                '=' => {
                    self.pos += 1;
                    Tok::Assign
                }
                '"' => self.quoted('"')?,
                '`' => {
                    let Some(end) = r[1..].find('`') else {
                        return Err(self.err("unterminated raw quoted string"));
                    };
                    self.pos += end + 2;
                    Tok::Str(r[1..end + 1].to_string(), r[..end + 2].to_string())
                }
                '\'' => self.quoted('\'')?,
                '$' => {
                    let n = 1 + ident_len(&r[1..]);
                    self.pos += n;
                    Tok::Var(r[..n].to_string())
                }
                '.' => {
                    let n = ident_len(&r[1..]);
                    if n == 0 {
                        if r[1..].starts_with(|c: char| c.is_ascii_digit()) {
                            let n = number_len(r);
                            self.pos += n;
                            Tok::Number(r[..n].to_string())
                        } else {
                            self.pos += 1;
                            Tok::Dot
                        }
                    } else {
                        self.pos += n + 1;
                        Tok::Field(r[1..n + 1].to_string())
                    }
                }
                c if c.is_ascii_digit()
                    || ((c == '-' || c == '+')
                        && r[1..].starts_with(|c: char| c.is_ascii_digit())) =>
                {
                    let n = number_len(r);
                    self.pos += n;
                    Tok::Number(r[..n].to_string())
                }
                c if c.is_alphabetic() || c == '_' => {
                    let n = ident_len(r);
                    self.pos += n;
                    let word = &r[..n];
                    match word {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        w => match KEYWORDS.iter().find(|k| **k == w) {
                            Some(k) => Tok::Keyword(k),
                            None => Tok::Ident(w.to_string()),
                        },
                    }
                }
                c => return Err(self.err(format!("unexpected {c:?} in command"))),
            };
            toks.push((start, tok));
        }
    }

    fn quoted(&mut self, q: char) -> Result<Tok, Error> {
        let r = self.rest();
        let mut out = String::new();
        let mut chars = r.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                c if c == q => {
                    self.pos += i + 1;
                    let raw = r[..i + 1].to_string();
                    if q == '\'' {
                        let n = out.chars().next().map_or(0, |c| c as i64);
                        return Ok(Tok::Char(n, raw));
                    }
                    return Ok(Tok::Str(out, raw));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 'a')) => out.push('\u{7}'),
                    Some((_, 'b')) => out.push('\u{8}'),
                    Some((_, 'f')) => out.push('\u{c}'),
                    Some((_, 'v')) => out.push('\u{b}'),
                    Some((_, '0')) => out.push('\0'),
                    Some((_, 'x')) => {
                        let h: String = (0..2).filter_map(|_| chars.next().map(|x| x.1)).collect();
                        let v = u32::from_str_radix(&h, 16)
                            .map_err(|_| self.err("invalid syntax in quoted string"))?;
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    Some((_, 'u')) => {
                        let h: String = (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                        let v = u32::from_str_radix(&h, 16)
                            .map_err(|_| self.err("invalid syntax in quoted string"))?;
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    Some((_, c)) => out.push(c),
                    None => break,
                },
                '\n' => break,
                c => out.push(c),
            }
        }
        Err(self.err("unterminated quoted string"))
    }
}

fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    while i < b.len() {
        let c = b[i];
        let exp_sign = (c == b'-' || c == b'+') && i > 0 && matches!(b[i - 1], b'e' | b'E');
        if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

fn parse_number(text: &str) -> Option<(Option<i64>, f64)> {
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let int = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(bin) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        i64::from_str_radix(bin, 2).ok()
    } else {
        digits.parse::<i64>().ok()
    };
    let int = int.map(|i| if neg { -i } else { i });
    match int {
        Some(i) => Some((Some(i), i as f64)),
        None => {
            let f: f64 = clean.parse().ok()?;
            // An integral float literal (1e3) is also an int constant in Go.
            let as_int = (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64);
            Some((as_int, f))
        }
    }
}

/// Parses a template; `funcs` are the names of the functions it may call.
pub fn parse(src: &str, funcs: &HashSet<&str>) -> Result<Vec<Node>, Error> {
    let pieces = Lexer { src, pos: 0 }.pieces()?;
    let mut p = Parser {
        src,
        pieces: pieces.into_iter(),
        toks: Vec::new(),
        at: 0,
        funcs,
        vars: vec!["$".to_string()],
        range_depth: 0,
    };
    let (list, end) = p.list()?;
    match end {
        Stop::Eof => Ok(list),
        Stop::End => Err(p.err_at(0, "unexpected {{end}}")),
        Stop::Else(..) => Err(p.err_at(0, "unexpected {{else}}")),
    }
}

struct Parser<'a, 'f> {
    src: &'a str,
    pieces: std::vec::IntoIter<Piece>,
    toks: Vec<(usize, Tok)>,
    at: usize,
    funcs: &'f HashSet<&'f str>,
    vars: Vec<String>,
    range_depth: usize,
}

/// How a list ended.
enum Stop {
    Eof,
    End,
    /// `{{else}}`, or `{{else if ...}}` / `{{else with ...}}` with the keyword.
    Else(usize, Option<&'static str>),
}

impl Parser<'_, '_> {
    fn err_at(&self, pos: usize, msg: impl Into<String>) -> Error {
        let line = 1 + self.src[..pos.min(self.src.len())].matches('\n').count();
        Error(format!("template: :{line}: {}", msg.into()))
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.at).map_or(&Tok::Close, |t| &t.1)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.src.len(), |t| t.0)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        self.at += 1;
        t
    }

    fn skip_space(&mut self) {
        while *self.peek() == Tok::Space {
            self.at += 1;
        }
    }

    fn list(&mut self) -> Result<(Vec<Node>, Stop), Error> {
        let mut out = Vec::new();
        loop {
            let Some(piece) = self.pieces.next() else {
                return Ok((out, Stop::Eof));
            };
            match piece {
                Piece::Text(t) => out.push(Node::Text(t)),
                Piece::Action(toks) => {
                    self.toks = toks;
                    self.at = 0;
                    self.skip_space();
                    let pos = self.pos();
                    match self.peek().clone() {
                        Tok::Keyword("end") => {
                            self.next();
                            self.close("end")?;
                            return Ok((out, Stop::End));
                        }
                        Tok::Keyword("else") => {
                            self.next();
                            self.skip_space();
                            match self.peek().clone() {
                                Tok::Keyword(k @ ("if" | "with")) => {
                                    self.next();
                                    return Ok((out, Stop::Else(pos, Some(k))));
                                }
                                _ => {
                                    self.close("else")?;
                                    return Ok((out, Stop::Else(pos, None)));
                                }
                            }
                        }
                        Tok::Keyword(k @ ("if" | "with" | "range")) => {
                            self.next();
                            out.push(self.control(k)?);
                        }
                        Tok::Keyword(k @ ("break" | "continue")) => {
                            self.next();
                            if self.range_depth == 0 {
                                return Err(
                                    self.err_at(pos, format!("{{{{{k}}}}} outside {{{{range}}}}"))
                                );
                            }
                            self.close(k)?;
                            out.push(if k == "break" {
                                Node::Break
                            } else {
                                Node::Continue
                            });
                        }
                        Tok::Keyword(k) => {
                            return Err(self.err_at(pos, format!("{{{{{k}}}}} is not supported")));
                        }
                        _ => {
                            let pipe = self.pipeline("command", true)?;
                            out.push(Node::Action(pipe));
                        }
                    }
                }
            }
        }
    }

    fn close(&mut self, what: &str) -> Result<(), Error> {
        self.skip_space();
        match self.next() {
            Tok::Close => Ok(()),
            t => Err(self.err_at(self.pos(), format!("unexpected {t:?} in {what}"))),
        }
    }

    /// `if`, `with` or `range` after its keyword: pipeline, body, optional else, end.
    fn control(&mut self, kind: &'static str) -> Result<Node, Error> {
        let mark = self.vars.len();
        let pipe = self.pipeline(kind, true)?;
        if kind == "range" {
            self.range_depth += 1;
        }
        let body = self.list();
        if kind == "range" {
            self.range_depth -= 1;
        }
        let (list, end) = body?;
        let else_list = match end {
            Stop::Eof => return Err(self.err_at(self.src.len(), "unexpected EOF")),
            Stop::End => None,
            Stop::Else(pos, chained) => match chained {
                // {{else if ...}} is {{else}}{{if ...}}...{{end}}{{end}} with one end.
                Some(k) if k == kind => Some(vec![self.control(k)?]),
                Some(k) => {
                    return Err(self.err_at(pos, format!("unexpected {{{{else {k}}}}}")));
                }
                None => {
                    let (else_list, end) = self.list()?;
                    match end {
                        Stop::End => Some(else_list),
                        Stop::Eof => return Err(self.err_at(self.src.len(), "unexpected EOF")),
                        Stop::Else(p, _) => {
                            return Err(self.err_at(p, "expected end; found {{else}}"))
                        }
                    }
                }
            },
        };
        self.vars.truncate(mark);
        let b = Branch {
            pipe,
            list,
            else_list,
        };
        Ok(match kind {
            "if" => Node::If(b),
            "with" => Node::With(b),
            _ => Node::Range(b),
        })
    }

    /// A pipeline up to `}}` (or `)` when `!top`), with its declarations.
    fn pipeline(&mut self, ctx: &str, top: bool) -> Result<Pipe, Error> {
        self.skip_space();
        let pos = self.pos();
        let mut decl = Vec::new();
        let mut assign = false;
        // $x := / $x = / $i, $e :=
        let save = self.at;
        if let Tok::Var(v) = self.peek().clone() {
            self.next();
            self.skip_space();
            match self.peek().clone() {
                Tok::Declare | Tok::Assign => {
                    assign = *self.peek() == Tok::Assign;
                    self.next();
                    decl.push(v);
                }
                Tok::Comma if ctx == "range" => {
                    self.next();
                    self.skip_space();
                    if let Tok::Var(v2) = self.next() {
                        self.skip_space();
                        match self.next() {
                            Tok::Declare => decl.extend([v, v2]),
                            Tok::Assign => {
                                assign = true;
                                decl.extend([v, v2]);
                            }
                            _ => {
                                return Err(self.err_at(pos, "range can only initialize variables"))
                            }
                        }
                    } else {
                        return Err(self.err_at(pos, "range can only initialize variables"));
                    }
                }
                _ => self.at = save,
            }
        }
        if !assign {
            for d in &decl {
                self.vars.push(d.clone());
            }
        } else {
            for d in &decl {
                if !self.vars.contains(d) {
                    return Err(self.err_at(pos, format!("undefined variable {d:?}")));
                }
            }
        }
        let mut cmds = Vec::new();
        loop {
            self.skip_space();
            let cmd = self.command()?;
            if cmd.args.is_empty() {
                return Err(self.err_at(pos, "missing value for command"));
            }
            cmds.push(cmd);
            self.skip_space();
            match self.peek() {
                Tok::Pipe => {
                    self.next();
                }
                Tok::Close if top => {
                    self.next();
                    break;
                }
                Tok::RParen if !top => {
                    self.next();
                    break;
                }
                t => {
                    let t = t.clone();
                    return Err(
                        self.err_at(self.pos(), format!("unexpected {} in {ctx}", tok_text(&t)))
                    );
                }
            }
        }
        Ok(Pipe {
            pos,
            decl,
            assign,
            cmds,
        })
    }

    fn command(&mut self) -> Result<Command, Error> {
        let mut args = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Tok::Pipe | Tok::Close | Tok::RParen => break,
                _ => {}
            }
            args.push(self.operand()?);
            // Operands are separated by spaces.
            match self.peek() {
                Tok::Space | Tok::Pipe | Tok::Close | Tok::RParen => {}
                t => {
                    let t = t.clone();
                    return Err(self.err_at(
                        self.pos(),
                        format!("unexpected {} in operand", tok_text(&t)),
                    ));
                }
            }
        }
        Ok(Command { args })
    }

    fn operand(&mut self) -> Result<Arg, Error> {
        let pos = self.pos();
        let term = match self.next() {
            Tok::Field(f) => {
                let mut ids = vec![f];
                while let Tok::Field(f) = self.peek().clone() {
                    self.next();
                    ids.push(f);
                }
                return Ok(Arg::Field(pos, ids));
            }
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err_at(pos, format!("undefined variable {v:?}")));
                }
                let mut ids = Vec::new();
                while let Tok::Field(f) = self.peek().clone() {
                    self.next();
                    ids.push(f);
                }
                return Ok(Arg::Var(pos, v, ids));
            }
            Tok::Dot => Arg::Dot(pos),
            Tok::Nil => Arg::Nil(pos),
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Str(s, raw) => Arg::Str(s, raw),
            // A char constant ('a') is its code point, as Go's rune constants.
            Tok::Char(n, raw) => Arg::Number(raw, Some(n), n as f64),
            Tok::Number(n) => {
                let Some((i, f)) = parse_number(&n) else {
                    return Err(self.err_at(pos, format!("bad number syntax: {n:?}")));
                };
                Arg::Number(n, i, f)
            }
            Tok::Ident(name) => {
                if !self.funcs.contains(name.as_str()) {
                    return Err(self.err_at(pos, format!("function {name:?} not defined")));
                }
                Arg::Ident(pos, name)
            }
            Tok::LParen => {
                let pipe = self.pipeline("parenthesized pipeline", false)?;
                Arg::Chain(pos, Box::new(pipe), Vec::new())
            }
            t => {
                return Err(self.err_at(pos, format!("unexpected {} in operand", tok_text(&t))));
            }
        };
        // A field chain on a term: (pipeline).A.B
        let mut ids = Vec::new();
        while let Tok::Field(f) = self.peek().clone() {
            self.next();
            ids.push(f);
        }
        if ids.is_empty() {
            return Ok(term);
        }
        match term {
            Arg::Chain(p, pipe, _) => Ok(Arg::Chain(p, pipe, ids)),
            Arg::Dot(_) => Ok(Arg::Field(pos, ids)),
            t => Err(self.err_at(pos, format!("unexpected . after term {:?}", t.to_string()))),
        }
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Close => "\"}}\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::Pipe => "\"|\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Keyword(k) => format!("<{k}>"),
        Tok::Ident(i) => format!("{i:?}"),
        Tok::Field(f) => format!("<.{f}>"),
        Tok::Var(v) => format!("{v:?}"),
        Tok::Str(_, raw) => format!("quoted string {raw}"),
        Tok::Number(n) => format!("number {n}"),
        t => format!("{t:?}"),
    }
}
