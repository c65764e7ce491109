//! `--format` templates: Go template syntax (gtmpl) over the same JSON `inspect` prints, with
//! Docker's helpers (`json`, `join`, `upper`, `lower`, `title`, `split`, `index`, `len`) and its
//! `table` prefix, which adds a header row.

use std::collections::HashMap;

use anyhow::{anyhow, Result};
use gtmpl::{Context, Template};
use gtmpl_value::{FuncError, Number, Value};

/// A parsed `--format` argument.
pub struct Format {
    template: Template,
    header: Option<String>,
}

impl Format {
    /// Parses a Docker-style format string. `\t` and `\n` written literally are expanded, as the
    /// docker CLI does, so `--format '{{.ID}}\t{{.Names}}'` prints a tab.
    pub fn parse(format: &str) -> Result<Format> {
        let expanded = format.replace("\\t", "\t").replace("\\n", "\n");
        let (body, header) = match expanded.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                let body = rest.trim_start().to_string();
                let header = header_for(&body);
                (body, Some(header))
            }
            _ => (expanded, None),
        };
        let mut template = Template::default();
        template.add_funcs(&[
            ("json", json as gtmpl_value::Func),
            ("join", join as gtmpl_value::Func),
            ("upper", upper as gtmpl_value::Func),
            ("lower", lower as gtmpl_value::Func),
            ("title", title as gtmpl_value::Func),
            ("split", split as gtmpl_value::Func),
            ("println", println as gtmpl_value::Func),
            ("len", len as gtmpl_value::Func),
        ]);
        template
            .parse(body)
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Format { template, header })
    }

    /// The header line of a `table` format, if any.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// Renders one item (the JSON value `inspect` would print for it).
    pub fn render(&self, item: &serde_json::Value) -> Result<String> {
        self.template
            .render(&Context::from(to_gtmpl(item)))
            .map_err(|e| anyhow!("template: {e}"))
    }
}

/// Header of a `table` format: each `{{.Field}}` becomes `FIELD` (Docker's column names, e.g.
/// `.ID` -> `CONTAINER ID` are left to the callers' default formats).
fn header_for(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let action = rest[start + 2..start + end].trim();
        let name = action
            .trim_start_matches('.')
            .split(['.', ' '])
            .next()
            .unwrap_or("");
        out.push_str(&upper_snake(name));
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn upper_snake(name: &str) -> String {
    let mut s = String::new();
    let mut prev_upper = true;
    for c in name.chars() {
        if c.is_uppercase() && !prev_upper {
            s.push(' ');
        }
        prev_upper = c.is_uppercase();
        s.push(c.to_ascii_uppercase());
    }
    s
}

/// Converts JSON into the template's value type.
pub fn to_gtmpl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                Value::Number(Number::from(n.as_f64().unwrap_or(0.0)))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_gtmpl).collect()),
        serde_json::Value::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), to_gtmpl(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            let sorted: std::collections::BTreeMap<_, _> =
                m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
    }
}

fn arg_str(args: &[Value], i: usize, name: &str) -> Result<String, FuncError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Nil) | Some(Value::NoValue) => Ok(String::new()),
        Some(other) => Ok(other.to_string()),
        None => Err(FuncError::AtLeastXArgs(name.into(), i + 1)),
    }
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let v = args
        .first()
        .ok_or_else(|| FuncError::ExactlyXArgs("json".into(), 1))?;
    let s = serde_json::to_string(&to_json(v)).map_err(|e| FuncError::Generic(e.to_string()))?;
    Ok(Value::String(s))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = arg_str(args, 1, "join")?;
    let items: Vec<String> = match args.first() {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Value::Nil) | Some(Value::NoValue) => Vec::new(),
        _ => {
            return Err(FuncError::Generic(
                "join: first argument must be a list".into(),
            ))
        }
    };
    Ok(Value::String(items.join(&sep)))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "upper")?.to_uppercase()))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(arg_str(args, 0, "lower")?.to_lowercase()))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "title")?;
    let mut c = s.chars();
    Ok(Value::String(match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }))
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let s = arg_str(args, 0, "split")?;
    let sep = arg_str(args, 1, "split")?;
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

/// gtmpl's own `len` refuses maps, which Docker's `{{len .Containers}}` needs.
fn len(args: &[Value]) -> Result<Value, FuncError> {
    let n = match args {
        [Value::String(s)] => s.len(),
        [Value::Array(a)] => a.len(),
        [Value::Map(m)] | [Value::Object(m)] => m.len(),
        [Value::Nil] | [Value::NoValue] => 0,
        [other] => return Err(FuncError::Generic(format!("len of {other}"))),
        _ => return Err(FuncError::ExactlyXArgs("len".into(), 1)),
    };
    Ok(Value::Number(Number::from(n)))
}

fn println(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    Ok(Value::String(parts.join(" ") + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(f: &str, v: serde_json::Value) -> String {
        Format::parse(f).unwrap().render(&v).unwrap()
    }

    #[test]
    fn fields_and_helpers() {
        let v = json!({"State": {"Pid": 42, "Status": "running"}, "Args": ["a", "b"], "Config": {"Env": ["K=V"]}});
        assert_eq!(render("{{.State.Pid}}", v.clone()), "42");
        assert_eq!(render("{{upper .State.Status}}", v.clone()), "RUNNING");
        assert_eq!(render("{{join .Args \",\"}}", v.clone()), "a,b");
        assert_eq!(render("{{json .Config}}", v.clone()), r#"{"Env":["K=V"]}"#);
        assert_eq!(render("{{range .Args}}[{{.}}]{{end}}", v.clone()), "[a][b]");
        assert_eq!(render("{{index .Args 1}}", v.clone()), "b");
        assert_eq!(render("{{index .State \"Status\"}}", v.clone()), "running");
        assert_eq!(render("{{.State.Pid}}\\t{{len .Args}}", v.clone()), "42\t2");
        assert_eq!(render("{{len .State}}", v), "2");
    }

    #[test]
    fn table_header() {
        let f = Format::parse("table {{.ID}}\\t{{.RepoTags}}").unwrap();
        assert_eq!(f.header(), Some("ID\tREPO TAGS"));
    }

    #[test]
    fn bad_template_is_an_error() {
        assert!(Format::parse("{{.Foo").is_err());
    }
}
