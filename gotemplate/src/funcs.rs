//! Template functions: Go's builtins (`len`, `index`, `slice`, `not`, comparisons, `print`,
//! `printf`, `println`, `html`, `js`, `urlquery`) and Docker's (`json`, `join`, `split`,
//! `lower`, `upper`, `title`, `pad`, `truncate`, and their header variants for `table`).

use std::collections::HashMap;

use crate::value::{format_float_g, Value};

/// Why a call failed: bad arguments (reported as Go's argument errors) or the function's own
/// error (reported as "error calling f: ...").
#[derive(Debug)]
pub enum CallError {
    Args(String),
    Failed(String),
}

pub type Func = fn(&[Value]) -> Result<Value, CallError>;

/// A set of functions by name.
#[derive(Clone)]
pub struct Funcs(HashMap<&'static str, Func>);

impl Funcs {
    /// Go's builtin functions.
    pub fn builtins() -> Funcs {
        let mut m: HashMap<&'static str, Func> = HashMap::new();
        m.insert("and", |a| Ok(a.last().cloned().unwrap_or(Value::NoValue)));
        m.insert("or", |a| Ok(a.last().cloned().unwrap_or(Value::NoValue)));
        m.insert("not", |a| Ok(Value::Bool(!one(a, "not")?.truth())));
        m.insert("len", len);
        m.insert("index", index);
        m.insert("slice", slice);
        m.insert("eq", eq);
        m.insert("ne", |a| Ok(Value::Bool(!compare(a, "ne")?.is_eq())));
        m.insert("lt", |a| Ok(Value::Bool(compare(a, "lt")?.is_lt())));
        m.insert("le", |a| Ok(Value::Bool(compare(a, "le")?.is_le())));
        m.insert("gt", |a| Ok(Value::Bool(compare(a, "gt")?.is_gt())));
        m.insert("ge", |a| Ok(Value::Bool(compare(a, "ge")?.is_ge())));
        m.insert("print", |a| Ok(Value::Str(sprint(a))));
        m.insert("println", |a| Ok(Value::Str(sprintln(a))));
        m.insert("printf", printf_fn);
        m.insert("html", |a| Ok(Value::Str(html(&sprint(a)))));
        m.insert("js", |a| Ok(Value::Str(js(&sprint(a)))));
        m.insert("urlquery", |a| Ok(Value::Str(urlquery(&sprint(a)))));
        Funcs(m)
    }

    /// Go's builtins and the functions of Docker's CLI templates (docker/cli `templates`).
    pub fn docker() -> Funcs {
        let mut f = Funcs::builtins();
        f.0.insert("json", json);
        f.0.insert("split", |a| {
            let (s, sep) = (string(a, 0, 2)?, string(a, 1, 2)?);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::Str(c.to_string())).collect()
            } else {
                s.split(sep.as_str()).map(Value::str).collect()
            };
            Ok(Value::List(Some(parts)))
        });
        f.0.insert("join", |a| {
            arity(a, 2)?;
            let items = strings(&a[0])?;
            Ok(Value::Str(items.join(&string(a, 1, 2)?)))
        });
        f.0.insert("title", |a| Ok(Value::Str(title(&string(a, 0, 1)?))));
        f.0.insert("lower", |a| Ok(Value::Str(string(a, 0, 1)?.to_lowercase())));
        f.0.insert("upper", |a| Ok(Value::Str(string(a, 0, 1)?.to_uppercase())));
        f.0.insert("pad", |a| {
            let s = string(a, 0, 3)?;
            let (pre, post) = (int(a, 1, 3)?.max(0) as usize, int(a, 2, 3)?.max(0) as usize);
            Ok(Value::Str(format!(
                "{}{s}{}",
                " ".repeat(pre),
                " ".repeat(post)
            )))
        });
        f.0.insert("truncate", |a| {
            let s = string(a, 0, 2)?;
            let n = int(a, 1, 2)?.max(0) as usize;
            Ok(Value::Str(match s.char_indices().nth(n) {
                Some((i, _)) => s[..i].to_string(),
                None => s,
            }))
        });
        f
    }

    /// Docker's functions for rendering a `table` header: each returns its first argument,
    /// the column's name (docker/cli `templates.HeaderFunctions`).
    pub fn docker_header() -> Funcs {
        let mut f = Funcs::docker();
        for name in [
            "json", "split", "join", "title", "lower", "upper", "pad", "truncate",
        ] {
            f.0.insert(name, |a| Ok(a.first().cloned().unwrap_or(Value::NoValue)));
        }
        f
    }

    pub fn get(&self, name: &str) -> Option<&Func> {
        self.0.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &&'static str> {
        self.0.keys()
    }
}

fn arity(a: &[Value], n: usize) -> Result<(), CallError> {
    if a.len() != n {
        return Err(CallError::Args(format!(
            "wrong number of args: want {n} got {}",
            a.len()
        )));
    }
    Ok(())
}

fn one<'a>(a: &'a [Value], name: &str) -> Result<&'a Value, CallError> {
    match a {
        [v] => Ok(v),
        _ => Err(CallError::Args(format!(
            "wrong number of args for {name}: want 1 got {}",
            a.len()
        ))),
    }
}

fn type_error(want: &str, got: &Value) -> CallError {
    match got {
        Value::NoValue | Value::Nil => CallError::Args(format!("invalid value; expected {want}")),
        v => CallError::Args(format!(
            "wrong type for value; expected {want}; got {}",
            v.type_name()
        )),
    }
}

fn string(a: &[Value], i: usize, n: usize) -> Result<String, CallError> {
    arity(a, n)?;
    match &a[i] {
        Value::Str(s) => Ok(s.clone()),
        v => Err(type_error("string", v)),
    }
}

fn int(a: &[Value], i: usize, n: usize) -> Result<i64, CallError> {
    arity(a, n)?;
    match &a[i] {
        Value::Int(v) => Ok(*v),
        v => Err(type_error("int", v)),
    }
}

fn strings(v: &Value) -> Result<Vec<String>, CallError> {
    match v {
        Value::List(l) => l
            .iter()
            .flatten()
            .map(|x| match x {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(type_error("[]string", v)),
            })
            .collect(),
        v => Err(type_error("[]string", v)),
    }
}

fn len(a: &[Value]) -> Result<Value, CallError> {
    let n = match one(a, "len")? {
        Value::Str(s) => s.len(),
        Value::List(l) => l.as_ref().map_or(0, Vec::len),
        Value::Map(m) => m.as_ref().map_or(0, |m| m.len()),
        v => return Err(CallError::Failed(format!("len of type {}", v.type_name()))),
    };
    Ok(Value::Int(n as i64))
}

fn index(a: &[Value]) -> Result<Value, CallError> {
    let Some((item, keys)) = a.split_first() else {
        return Err(CallError::Args(
            "wrong number of args for index: want at least 1 got 0".into(),
        ));
    };
    let mut cur = item.clone();
    for k in keys {
        cur = match (&cur, k) {
            (Value::List(l), Value::Int(i)) => {
                let l = l.as_deref().unwrap_or_default();
                match usize::try_from(*i).ok().and_then(|i| l.get(i)) {
                    Some(v) => v.clone(),
                    None => return Err(CallError::Failed(format!("index out of range: {i}"))),
                }
            }
            (Value::Str(s), Value::Int(i)) => {
                match usize::try_from(*i).ok().and_then(|i| s.as_bytes().get(i)) {
                    Some(b) => Value::Int(*b as i64),
                    None => return Err(CallError::Failed(format!("index out of range: {i}"))),
                }
            }
            (Value::Map(m), Value::Str(key)) => match m.as_ref().and_then(|m| m.get(key)) {
                Some(v) => v.clone(),
                // The zero value of the map's element type: "" for Docker's string maps.
                None => match m {
                    Some(m) if !m.values().all(|v| matches!(v, Value::Str(_))) => Value::Nil,
                    _ => Value::str(""),
                },
            },
            (Value::Map(_), k) | (Value::List(_), k) => {
                return Err(CallError::Failed(format!(
                    "cannot index slice/array with type {}",
                    k.type_name()
                )))
            }
            (Value::Nil | Value::NoValue, _) => {
                return Err(CallError::Failed("index of untyped nil".into()))
            }
            (v, _) => {
                return Err(CallError::Failed(format!(
                    "can't index item of type {}",
                    v.type_name()
                )))
            }
        };
    }
    Ok(cur)
}

fn slice(a: &[Value]) -> Result<Value, CallError> {
    let Some((item, idx)) = a.split_first() else {
        return Err(CallError::Args(
            "wrong number of args for slice: want at least 1 got 0".into(),
        ));
    };
    let bounds: Vec<usize> = idx
        .iter()
        .map(|v| match v {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            v => Err(CallError::Failed(format!(
                "cannot index slice/array with type {}",
                v.type_name()
            ))),
        })
        .collect::<Result<_, _>>()?;
    let cut = |len: usize| -> Result<(usize, usize), CallError> {
        let lo = bounds.first().copied().unwrap_or(0);
        let hi = bounds.get(1).copied().unwrap_or(len);
        if lo > hi || hi > len {
            return Err(CallError::Failed(format!("index out of range: {hi}")));
        }
        Ok((lo, hi))
    };
    match item {
        Value::Str(s) => {
            let (lo, hi) = cut(s.len())?;
            Ok(Value::Str(s.get(lo..hi).unwrap_or_default().to_string()))
        }
        Value::List(l) => {
            let l = l.as_deref().unwrap_or_default();
            let (lo, hi) = cut(l.len())?;
            Ok(Value::List(Some(l[lo..hi].to_vec())))
        }
        v => Err(CallError::Failed(format!(
            "can't slice item of type {}",
            v.type_name()
        ))),
    }
}

fn basic_cmp(a: &Value, b: &Value) -> Result<std::cmp::Ordering, CallError> {
    use Value::*;
    match (a, b) {
        (Int(x), Int(y)) => Ok(x.cmp(y)),
        (Float(x), Float(y)) => x
            .partial_cmp(y)
            .ok_or_else(|| CallError::Failed("incompatible types for comparison".into())),
        (Str(x), Str(y)) => Ok(x.cmp(y)),
        (Bool(x), Bool(y)) => Ok(x.cmp(y)),
        (Nil, Nil) => Ok(std::cmp::Ordering::Equal),
        (NoValue, _) | (_, NoValue) => Err(CallError::Failed("invalid type for comparison".into())),
        (List(_) | Map(_) | Struct(_), _) | (_, List(_) | Map(_) | Struct(_)) => {
            Err(CallError::Failed("non-comparable types".into()))
        }
        _ => Err(CallError::Failed(
            "incompatible types for comparison".into(),
        )),
    }
}

fn eq(a: &[Value]) -> Result<Value, CallError> {
    let Some((first, rest)) = a.split_first() else {
        return Err(CallError::Args(
            "wrong number of args for eq: want at least 1 got 0".into(),
        ));
    };
    if rest.is_empty() {
        return Err(CallError::Failed("missing argument for comparison".into()));
    }
    for b in rest {
        if matches!((first, b), (Value::Nil, _) | (_, Value::Nil)) {
            if first == b {
                return Ok(Value::Bool(true));
            }
            continue;
        }
        if basic_cmp(first, b)?.is_eq() {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn compare(a: &[Value], name: &str) -> Result<std::cmp::Ordering, CallError> {
    match a {
        [x, y] => basic_cmp(x, y),
        _ => Err(CallError::Args(format!(
            "wrong number of args for {name}: want 2 got {}",
            a.len()
        ))),
    }
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub fn sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&v.go_string());
    }
    out
}

fn sprintln(a: &[Value]) -> String {
    let parts: Vec<String> = a.iter().map(Value::go_string).collect();
    parts.join(" ") + "\n"
}

fn json(a: &[Value]) -> Result<Value, CallError> {
    let v = one(a, "json")?;
    serde_json::to_string(&v.to_json())
        .map(Value::Str)
        .map_err(|e| CallError::Failed(e.to_string()))
}

/// Go's `strings.Title`: the first letter of each word in upper case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

fn html(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn js(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn urlquery(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn printf_fn(a: &[Value]) -> Result<Value, CallError> {
    let Some((Value::Str(f), args)) = a.split_first() else {
        return match a.first() {
            None => Err(CallError::Args(
                "wrong number of args for printf: want at least 1 got 0".into(),
            )),
            Some(v) => Err(type_error("string", v)),
        };
    };
    Ok(Value::Str(sprintf(f, args)))
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A `%` directive: flags, width, precision.
#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    fn pad(&self, s: String, numeric: bool) -> String {
        let w = self.width.unwrap_or(0);
        let n = s.chars().count();
        if n >= w {
            return s;
        }
        let fill = w - n;
        if self.minus {
            s + &" ".repeat(fill)
        } else if self.zero && numeric {
            match s.strip_prefix('-') {
                Some(rest) => format!("-{}{rest}", "0".repeat(fill)),
                None => format!("{}{s}", "0".repeat(fill)),
            }
        } else {
            " ".repeat(fill) + &s
        }
    }
}

fn bad_verb(verb: char, v: &Value) -> String {
    match v {
        Value::Nil | Value::NoValue => format!("%!{verb}(<nil>)"),
        v => format!("%!{verb}({}={})", v.type_name(), v.go_string()),
    }
}

fn fmt_one(verb: char, spec: &Spec, v: &Value) -> String {
    match (verb, v) {
        ('v', v) => spec.pad(
            if spec.plus {
                v.go_string_plus()
            } else {
                v.go_string()
            },
            false,
        ),
        ('T', v) => spec.pad(v.type_name(), false),
        ('s', Value::Str(s)) => {
            let s = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            spec.pad(s, false)
        }
        ('s' | 'q' | 'd' | 'x' | 'X', Value::List(l)) => {
            let parts: Vec<String> = l
                .iter()
                .flatten()
                .map(|x| {
                    fmt_one(
                        verb,
                        &Spec {
                            prec: spec.prec,
                            ..Default::default()
                        },
                        x,
                    )
                })
                .collect();
            spec.pad(format!("[{}]", parts.join(" ")), false)
        }
        ('s', Value::Map(_) | Value::Struct(_)) => spec.pad(v.go_string(), false),
        ('q', Value::Str(s)) => spec.pad(quote(s), false),
        ('q', Value::Int(i)) => spec.pad(
            format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{fffd}')),
            false,
        ),
        ('t', Value::Bool(b)) => spec.pad(b.to_string(), false),
        ('d', Value::Int(i)) => {
            let s = if spec.plus && *i >= 0 {
                format!("+{i}")
            } else if spec.space && *i >= 0 {
                format!(" {i}")
            } else {
                i.to_string()
            };
            spec.pad(s, true)
        }
        ('c', Value::Int(i)) => spec.pad(
            char::from_u32(*i as u32).unwrap_or('\u{fffd}').to_string(),
            false,
        ),
        ('b', Value::Int(i)) => spec.pad(format!("{i:b}"), true),
        ('o', Value::Int(i)) => spec.pad(
            if spec.sharp {
                format!("0{i:o}")
            } else {
                format!("{i:o}")
            },
            true,
        ),
        ('x', Value::Int(i)) => spec.pad(
            if spec.sharp {
                format!("0x{i:x}")
            } else {
                format!("{i:x}")
            },
            true,
        ),
        ('X', Value::Int(i)) => spec.pad(
            if spec.sharp {
                format!("0X{i:X}")
            } else {
                format!("{i:X}")
            },
            true,
        ),
        ('x', Value::Str(s)) => spec.pad(s.bytes().map(|b| format!("{b:02x}")).collect(), false),
        ('X', Value::Str(s)) => spec.pad(s.bytes().map(|b| format!("{b:02X}")).collect(), false),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Float(f)) => {
            let s = match verb {
                'f' | 'F' => format!("{:.*}", spec.prec.unwrap_or(6), f),
                'e' | 'E' => {
                    let s = format!("{:.*e}", spec.prec.unwrap_or(6), f);
                    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                    let e: i32 = e.parse().unwrap_or(0);
                    let s = format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
                    if verb == 'E' {
                        s.to_uppercase()
                    } else {
                        s
                    }
                }
                _ => format_float_g(*f),
            };
            let s = if spec.plus && *f >= 0.0 {
                format!("+{s}")
            } else {
                s
            };
            spec.pad(s, true)
        }
        (verb, v) => bad_verb(verb, v),
    }
}

/// Go's `fmt.Sprintf` for the verbs templates use (`%v %+v %s %q %d %x %X %o %b %c %t %f %e
/// %g %T %%`, flags `-+0 #`, width and precision), with Go's `%!d(string=x)` for a mismatch
/// and `%!d(MISSING)` / `%!(EXTRA ...)` for a wrong number of arguments.
pub fn sprintf(f: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = f.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = true,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => out.push_str(&fmt_one(verb, &spec, v)),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|v| format!("{}={}", v.type_name(), v.go_string()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_as_go() {
        let s = |f: &str, a: &[Value]| sprintf(f, a);
        assert_eq!(
            s("%.12s", &[Value::str("0123456789abcdef")]),
            "0123456789ab"
        );
        assert_eq!(s("%q", &[Value::str("a\"b")]), r#""a\"b""#);
        assert_eq!(
            s(
                "%5d|%-5d|%05d",
                &[Value::Int(42), Value::Int(42), Value::Int(42)]
            ),
            "   42|42   |00042"
        );
        assert_eq!(s("%d", &[Value::str("x")]), "%!d(string=x)");
        assert_eq!(s("%s %s", &[Value::str("x")]), "x %!s(MISSING)");
        assert_eq!(
            s("%s", &[Value::str("x"), Value::Int(1)]),
            "x%!(EXTRA int=1)"
        );
        assert_eq!(
            s(
                "%v%%",
                &[Value::List(Some(vec![Value::str("a"), Value::str("b")]))]
            ),
            "[a b]%"
        );
        assert_eq!(s("%.2f", &[Value::Float(1.005)]), "1.00");
        assert_eq!(s("%x", &[Value::Int(255)]), "ff");
    }

    #[test]
    fn sprint_spaces_between_non_strings() {
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2)]), "1 2");
        assert_eq!(sprint(&[Value::str("a"), Value::Int(2)]), "a2");
        assert_eq!(title("hello world-x"), "Hello World-X");
    }
}
