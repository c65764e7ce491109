//! Values as Go's text/template sees Docker's types: structs with ordered fields, maps with
//! sorted keys, slices, and the three nils Go prints differently (`<nil>`, `[]`, `map[]`).
//! Built from JSON with a `Schema` that says which objects are maps and which nulls are
//! slices or maps.

use std::collections::BTreeMap;
use std::fmt::Write;

/// A value a template walks and prints.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's invalid `reflect.Value`: what a missing map key gives; prints `<no value>`.
    NoValue,
    /// A nil pointer or interface; prints `<nil>`.
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A slice; `None` is a nil slice (prints `[]`, encodes as JSON null).
    List(Option<Vec<Value>>),
    /// A map with string keys, iterated and printed in key order as Go does; `None` is a nil
    /// map (prints `map[]`, encodes as JSON null).
    Map(Option<BTreeMap<String, Value>>),
    /// A struct: fields in declaration order.
    Struct(Struct),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Struct {
    /// Go's name of the type for "can't evaluate field X in type T"; `None` for inspect
    /// output, where Docker's CLI re-runs a failing template on the raw JSON map and so
    /// reports a missing field as `map has no entry for key "X"`.
    pub type_name: Option<String>,
    pub fields: Vec<(String, Value)>,
}

impl Struct {
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// Go's truth: false for the zero value of its type and for empty slices and maps.
    pub fn truth(&self) -> bool {
        match self {
            Value::NoValue | Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => l.as_ref().is_some_and(|l| !l.is_empty()),
            Value::Map(m) => m.as_ref().is_some_and(|m| !m.is_empty()),
            Value::Struct(_) => true,
        }
    }

    /// The Go type name, for error messages and `%T`.
    pub fn type_name(&self) -> String {
        match self {
            Value::NoValue => "<no value>".into(),
            Value::Nil => "<nil>".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float64".into(),
            Value::Str(_) => "string".into(),
            Value::List(l) => match l {
                Some(l) if l.iter().all(|v| matches!(v, Value::Str(_))) => "[]string".into(),
                None => "[]string".into(),
                _ => "[]interface {}".into(),
            },
            Value::Map(m) => match m {
                Some(m) if m.values().all(|v| matches!(v, Value::Str(_))) => {
                    "map[string]string".into()
                }
                None => "map[string]string".into(),
                _ => "map[string]interface {}".into(),
            },
            Value::Struct(s) => s.type_name.clone().unwrap_or_else(|| "struct".into()),
        }
    }

    /// The text `{{.}}` prints for this value: Go's `fmt.Print` (`%v`).
    pub fn go_string(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out);
        out
    }

    fn write_go(&self, out: &mut String) {
        match self {
            Value::NoValue => out.push_str("<no value>"),
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&format_float_g(*f)),
            Value::Str(s) => out.push_str(s),
            Value::List(l) => {
                out.push('[');
                for (i, v) in l.iter().flatten().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out);
                }
                out.push(']');
            }
            Value::Map(m) => {
                out.push_str("map[");
                for (i, (k, v)) in m.iter().flatten().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push(':');
                    v.write_go(out);
                }
                out.push(']');
            }
            Value::Struct(s) => {
                out.push('{');
                for (i, (_, v)) in s.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    v.write_go(out);
                }
                out.push('}');
            }
        }
    }

    /// `%+v`: structs with their field names (`{Name:x Driver:local}`).
    pub fn go_string_plus(&self) -> String {
        match self {
            Value::Struct(s) => {
                let parts: Vec<String> = s
                    .fields
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.go_string_plus()))
                    .collect();
                format!("{{{}}}", parts.join(" "))
            }
            Value::List(Some(l)) => {
                let parts: Vec<String> = l.iter().map(Value::go_string_plus).collect();
                format!("[{}]", parts.join(" "))
            }
            Value::Map(Some(m)) => {
                let parts: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.go_string_plus()))
                    .collect();
                format!("map[{}]", parts.join(" "))
            }
            v => v.go_string(),
        }
    }

    /// Go's `encoding/json` of the value (struct fields in order, map keys sorted, nils null).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::NoValue | Value::Nil | Value::List(None) | Value::Map(None) => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::List(Some(l)) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(Some(m)) => {
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Struct(s) => J::Object(
                s.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Converts JSON as Docker's typed structs would hold it (see `Schema`).
    pub fn from_json(v: &serde_json::Value, schema: &Schema) -> Value {
        let mut path = Vec::new();
        convert(v, schema, &mut path, true)
    }
}

/// Which parts of a JSON document are Go maps and slices. Paths are field names joined by
/// `.`, with `*` for any map key or list index: `Config.Labels` (a map),
/// `NetworkSettings.Networks.*.Aliases` (a slice). Every other object is a struct and every
/// other null a nil pointer.
#[derive(Debug, Clone, Default)]
pub struct Schema<'a> {
    /// The Go type of the top-level object (`*formatter.ContainerContext`), or `None` for
    /// inspect output (see `Struct::type_name`).
    pub type_name: Option<&'a str>,
    pub maps: &'a [&'a str],
    pub lists: &'a [&'a str],
}

fn matches(pattern: &str, path: &[String]) -> bool {
    let mut parts = pattern.split('.');
    for p in path {
        match parts.next() {
            Some("*") => {}
            Some(x) if x == p => {}
            _ => return false,
        }
    }
    parts.next().is_none()
}

fn convert(v: &serde_json::Value, schema: &Schema, path: &mut Vec<String>, top: bool) -> Value {
    use serde_json::Value as J;
    let is = |list: &[&str], path: &[String]| list.iter().any(|p| matches(p, path));
    match v {
        J::Null if is(schema.lists, path) => Value::List(None),
        J::Null if is(schema.maps, path) => Value::Map(None),
        J::Null => Value::Nil,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => Value::Str(s.clone()),
        J::Array(a) => Value::List(Some(
            a.iter()
                .enumerate()
                .map(|(i, x)| {
                    path.push(i.to_string());
                    let v = convert(x, schema, path, false);
                    path.pop();
                    v
                })
                .collect(),
        )),
        J::Object(o) => {
            let is_map = !top && is(schema.maps, path);
            let mut child = |k: &String, x: &serde_json::Value| {
                path.push(k.clone());
                let v = convert(x, schema, path, false);
                path.pop();
                v
            };
            if is_map {
                Value::Map(Some(
                    o.iter().map(|(k, x)| (k.clone(), child(k, x))).collect(),
                ))
            } else {
                Value::Struct(Struct {
                    type_name: schema.type_name.filter(|_| top).map(str::to_string),
                    fields: o.iter().map(|(k, x)| (k.clone(), child(k, x))).collect(),
                })
            }
        }
    }
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`: shortest digits, exponent
/// form below 1e-4 and from 1e6): `1.5`, `100000`, `1e+06`, `1e-05`.
pub fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..6).contains(&exp) {
        // Shortest digits in exponent form, Go style: 1e+21, 1.5e-07.
        let s = format!("{f:e}");
        let (mant, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", e.abs());
    }
    let s = format!("{f}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_printing() {
        let schema = Schema {
            maps: &["Labels", "Empty"],
            lists: &["Cmd", "Entrypoint"],
            ..Default::default()
        };
        let v = Value::from_json(
            &json!({
                "Cmd": ["nginx", "-g", "daemon off;"],
                "Entrypoint": null,
                "Labels": {"b": "2", "a": "1"},
                "Empty": {},
                "State": {"Status": "running", "Pid": 42, "Error": "", "Health": null},
                "Ptr": null,
            }),
            &schema,
        );
        let Value::Struct(s) = &v else { panic!() };
        let f = |k| s.field(k).unwrap().go_string();
        assert_eq!(f("Cmd"), "[nginx -g daemon off;]");
        assert_eq!(f("Entrypoint"), "[]");
        assert_eq!(f("Labels"), "map[a:1 b:2]");
        assert_eq!(f("Empty"), "map[]");
        assert_eq!(f("State"), "{running 42  <nil>}");
        assert_eq!(f("Ptr"), "<nil>");
        assert_eq!(
            s.field("State").unwrap().go_string_plus(),
            "{Status:running Pid:42 Error: Health:<nil>}"
        );
        assert_eq!(s.field("Entrypoint").unwrap().to_json(), json!(null));
    }

    #[test]
    fn floats_as_go() {
        assert_eq!(format_float_g(1.5), "1.5");
        assert_eq!(format_float_g(100000.0), "100000");
        assert_eq!(format_float_g(1e6), "1e+06");
        assert_eq!(format_float_g(1234567.0), "1.234567e+06");
        assert_eq!(format_float_g(0.00001), "1e-05");
        assert_eq!(format_float_g(0.25), "0.25");
    }
}
