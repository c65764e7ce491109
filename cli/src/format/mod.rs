//! `--format` as Docker's CLI reads it. List commands (`ps`, `images`, `network ls`,
//! `volume ls`): `table [TEMPLATE]` (a header row of Docker's column names, aligned by Go's
//! tabwriter), `json` (one object per line, Docker 23+) or a template per row. Inspect
//! commands: the indented JSON array, `json` (the array on one line) or a template per object.
//! Templates are Go's (`gotemplate`) over values shaped as Docker's types (`schema`); `\t`
//! and `\n` written literally are expanded first, as Docker does.

pub mod schema;

use anyhow::{anyhow, Result};
use gotemplate::{Funcs, Schema, Template, Value};
use serde_json::Value as Json;

use crate::Exit;

/// Docker's `preFormat`: literal `\t` and `\n` become tab and newline.
fn expand(format: &str) -> String {
    format.replace("\\t", "\t").replace("\\n", "\n")
}

fn parse(format: &str) -> Result<Template> {
    Template::parse(format, &Funcs::docker()).map_err(|e| anyhow!("template parsing error: {e}"))
}

/// One row of a list command: the JSON `--format json` prints (keys sorted, as Docker's
/// formatter contexts marshal) and the value templates see.
pub struct Row {
    json: Json,
    value: Value,
}

impl Row {
    /// A row from its fields (all strings in Docker's contexts), as the Go type `type_name`;
    /// `labels` back the context's `.Label "KEY"` method.
    pub fn new(
        type_name: &str,
        fields: serde_json::Map<String, Json>,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Row {
        let mut sorted: Vec<(String, Json)> = fields.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let json = Json::Object(sorted.into_iter().collect());
        let mut value = Value::from_json(
            &json,
            &Schema {
                type_name: Some(type_name),
                ..Default::default()
            },
        );
        if let Value::Struct(s) = &mut value {
            s.fields.push((
                "Label".into(),
                Value::Map(Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::str(v)))
                        .collect(),
                )),
            ));
        }
        Row { json, value }
    }
}

/// A list command's output format.
pub enum ListFormat {
    Table(Template),
    Json,
    Lines(Template),
}

impl ListFormat {
    /// Docker's formatter: `table ...` (also `tableX`: Docker only checks the prefix),
    /// `json`, or a template per row. `default` replaces an empty format and bare `table`.
    pub fn parse(format: Option<&str>, default: &str) -> Result<ListFormat> {
        let format = match format {
            None | Some("" | "table") => default,
            Some(f) => f,
        };
        if format == "json" {
            return Ok(ListFormat::Json);
        }
        match format.strip_prefix("table") {
            Some(body) => Ok(ListFormat::Table(parse(&expand(body.trim_matches(' ')))?)),
            None => Ok(ListFormat::Lines(parse(&expand(format))?)),
        }
    }

    /// True when the template names `field` (Docker asks for sizes only when `.Size` is
    /// used).
    pub fn uses(format: Option<&str>, field: &str) -> bool {
        format.is_some_and(|f| f.contains(&format!(".{field}")))
    }

    /// The whole output for `rows`; `header` maps a context's fields to Docker's column names.
    pub fn render(&self, rows: &[Row], header: &[(&str, &str)]) -> Result<String> {
        let exec = |t: &Template, v: &Value| {
            t.execute(v, &Funcs::docker())
                .map_err(|e| anyhow!("template parsing error: {e}"))
        };
        let mut out = String::new();
        match self {
            ListFormat::Json => {
                for r in rows {
                    out.push_str(&serde_json::to_string(&r.json)?);
                    out.push('\n');
                }
            }
            ListFormat::Lines(t) => {
                for r in rows {
                    out.push_str(&exec(t, &r.value)?);
                    out.push('\n');
                }
            }
            ListFormat::Table(t) => {
                let names = Value::Map(Some(
                    header
                        .iter()
                        .map(|(k, v)| (k.to_string(), Value::str(*v)))
                        .collect(),
                ));
                out.push_str(&t.execute_lossy(&names, &Funcs::docker_header()));
                out.push('\n');
                for r in rows {
                    out.push_str(&exec(t, &r.value)?);
                    out.push('\n');
                }
                out = gotemplate::align(&out, 10, 3);
            }
        }
        Ok(out)
    }
}

/// How `inspect` prints what it found.
enum InspectKind {
    Indented,
    Json,
    Template(Template),
}

/// Docker's inspector: collects the objects, then prints them at once.
pub struct Inspector {
    kind: InspectKind,
    items: Vec<Json>,
    text: String,
}

impl Inspector {
    /// A bad template is Docker's exit 64.
    pub fn new(format: Option<&str>) -> Result<Inspector> {
        let kind = match format {
            None | Some("") => InspectKind::Indented,
            Some("json") => InspectKind::Json,
            Some(f) => InspectKind::Template(
                parse(&expand(f)).map_err(|e| anyhow!(Exit::new(64, e.to_string())))?,
            ),
        };
        Ok(Inspector {
            kind,
            items: Vec::new(),
            text: String::new(),
        })
    }

    /// Adds one object (its inspect JSON and Docker's type shape); a template that fails on
    /// it is an error for this object only.
    pub fn add(&mut self, json: Json, schema: &Schema) -> Result<()> {
        if let InspectKind::Template(t) = &self.kind {
            let v = Value::from_json(&json, schema);
            let s = t
                .execute(&v, &Funcs::docker())
                .map_err(|e| anyhow!("template parsing error: {e}"))?;
            self.text.push_str(&s);
            self.text.push('\n');
        }
        self.items.push(json);
        Ok(())
    }

    /// The output: the JSON array (`[]` when nothing was found), or the template's lines (a
    /// lone newline when none).
    pub fn finish(self) -> Result<String> {
        Ok(match self.kind {
            InspectKind::Indented => pretty(&Json::Array(self.items))? + "\n",
            InspectKind::Json => serde_json::to_string(&self.items)? + "\n",
            InspectKind::Template(_) if self.text.is_empty() => "\n".into(),
            InspectKind::Template(_) => self.text,
        })
    }
}

/// Go's `%.{p}g`: `p` significant digits, trailing zeros dropped, exponent form when the
/// exponent is below -4 or at least `p`.
pub fn go_g(v: f64, p: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let p = p.max(1);
    let e = format!("{:.*e}", p - 1, v);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        match s.contains('.') {
            true => s.trim_end_matches('0').trim_end_matches('.').to_string(),
            false => s.to_string(),
        }
    };
    if exp < -4 || exp >= p as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mant), exp.abs());
    }
    trim(&format!("{:.*}", (p as i32 - 1 - exp).max(0) as usize, v))
}

/// Docker's `units.HumanSizeWithPrecision`: decimal units (`kB`, `MB`, ...), `precision`
/// significant digits: `0B`, `4.26MB`, `1.23kB`.
pub fn human_size(bytes: f64, precision: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g(v, precision), UNITS[i])
}

/// Docker's `units.BytesSize`: binary units, four significant digits (`3.828GiB`).
pub fn bytes_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{}{}", go_g(v, 4), units[i])
}

/// Docker's `units.HumanDuration` of `secs` seconds (hours rounded, as Docker's).
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (minutes, hours) = (s / 60, (s as f64 / 3600.0 + 0.5) as i64);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// JSON indented with 4 spaces, as `docker inspect` prints.
pub fn pretty(v: &Json) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// Runs an inspect command: `find` gives each reference's JSON and type shape, or the error
/// to print. Prints the output, then one `Error:` line per failure; exit 1 if any failed.
pub fn inspect_each(
    format: Option<&str>,
    refs: &[String],
    mut find: impl FnMut(&str) -> Result<(Json, &'static Schema<'static>)>,
) -> Result<i32> {
    use std::io::Write;
    let mut ins = Inspector::new(format)?;
    let mut errors = Vec::new();
    for r in refs {
        match find(r).and_then(|(j, s)| ins.add(j, s)) {
            Ok(()) => {}
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    std::io::stdout().write_all(ins.finish()?.as_bytes())?;
    for e in &errors {
        eprintln!("Error: {e}");
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// Renders one object with a `--format` template for commands such as `version` and `info`
/// (Docker's template inspector over one value).
pub fn render_one(format: &str, json: &Json, schema: &Schema) -> Result<String> {
    let t = parse(&expand(format))?;
    t.execute(&Value::from_json(json, schema), &Funcs::docker())
        .map_err(|e| anyhow!("template parsing error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(fields: Json) -> Row {
        let Json::Object(m) = fields else { panic!() };
        Row::new("*formatter.ContainerContext", m, &Default::default())
    }

    #[test]
    fn table_json_and_lines_as_docker() {
        let rows = [
            row(json!({"ID": "abc", "Names": "web", "Ports": ""})),
            row(json!({"ID": "defgh", "Names": "db", "Ports": "80/tcp"})),
        ];
        let header = [
            ("ID", "CONTAINER ID"),
            ("Names", "NAMES"),
            ("Ports", "PORTS"),
        ];
        let t = ListFormat::parse(Some("table {{.ID}}\\t{{.Ports}}\\t{{.Names}}"), "").unwrap();
        assert_eq!(
            t.render(&rows, &header).unwrap(),
            "CONTAINER ID   PORTS     NAMES\nabc                      web\ndefgh          80/tcp    db\n"
        );
        let j = ListFormat::parse(Some("json"), "").unwrap();
        assert_eq!(
            j.render(&rows[..1], &header).unwrap(),
            "{\"ID\":\"abc\",\"Names\":\"web\",\"Ports\":\"\"}\n"
        );
        let l = ListFormat::parse(Some("{{.Names}}\\t{{.ID}}"), "").unwrap();
        assert_eq!(l.render(&rows, &header).unwrap(), "web\tabc\ndb\tdefgh\n");
        let e = ListFormat::parse(Some("{{.Nope}}"), "")
            .unwrap()
            .render(&rows, &header)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "template parsing error: template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.ContainerContext");
    }

    #[test]
    fn durations_as_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(3), "3 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(5000), "About an hour");
        assert_eq!(human_duration(5400), "2 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
    }

    #[test]
    fn sizes_as_docker() {
        assert_eq!(human_size(0.0, 3), "0B");
        assert_eq!(human_size(12.0, 3), "12B");
        assert_eq!(human_size(1000.0, 3), "1kB");
        assert_eq!(human_size(1234.0, 3), "1.23kB");
        assert_eq!(human_size(4_260_000.0, 3), "4.26MB");
        assert_eq!(human_size(187_654_321.0, 3), "188MB");
    }

    #[test]
    fn inspect_outputs() {
        let s = Schema::default();
        let mut i = Inspector::new(None).unwrap();
        i.add(json!({"Id": "a", "Args": []}), &s).unwrap();
        assert_eq!(
            i.finish().unwrap(),
            "[\n    {\n        \"Id\": \"a\",\n        \"Args\": []\n    }\n]\n"
        );
        let mut i = Inspector::new(Some("json")).unwrap();
        i.add(json!({"Id": "a"}), &s).unwrap();
        assert_eq!(i.finish().unwrap(), "[{\"Id\":\"a\"}]\n");
        assert_eq!(
            Inspector::new(Some("{{.Id}}")).unwrap().finish().unwrap(),
            "\n"
        );
        let e = Inspector::new(Some("{{.Id")).err().unwrap();
        assert_eq!(e.downcast_ref::<Exit>().unwrap().code, 64);
    }
}
