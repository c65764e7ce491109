//! Go's `text/template` and `text/tabwriter`, as Docker's CLI uses them for `--format`: the
//! same syntax, the same printing of values (`[a b]`, `map[k:v]`, `{…}`, `<nil>`), maps in key
//! order, the same errors, Docker's template functions and its `table` alignment.
//!
//! Data is a `Value`, usually built from the JSON a command prints with a `Schema` naming
//! which objects are Go maps and which nulls are slices or maps, so that templates see
//! Docker's types:
//!
//! ```
//! use gotemplate::{Funcs, Schema, Template, Value};
//! let data = Value::from_json(
//!     &serde_json::json!({"Config": {"Cmd": ["sh", "-c", "true"], "Labels": {}}}),
//!     &Schema { maps: &["Config.Labels"], ..Default::default() },
//! );
//! let funcs = Funcs::docker();
//! let t = Template::parse("{{.Config.Cmd}} {{.Config.Labels}}", &funcs).unwrap();
//! assert_eq!(t.execute(&data, &funcs).unwrap(), "[sh -c true] map[]");
//! ```

mod exec;
mod funcs;
mod parse;
mod tabwriter;
mod value;

use std::collections::HashSet;

pub use funcs::{quote, sprintf, CallError, Func, Funcs};
pub use tabwriter::align;
pub use value::{Schema, Struct, Value};

/// A template error, worded as Go's (`template: :1: unclosed action`, `template: :1:2:
/// executing "" at <.X>: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    root: Vec<parse::Node>,
}

impl Template {
    /// Parses `src`; it may call the functions of `funcs`.
    pub fn parse(src: &str, funcs: &Funcs) -> Result<Template, Error> {
        let names: HashSet<&str> = funcs.names().copied().collect();
        Ok(Template {
            src: src.to_string(),
            root: parse::parse(src, &names)?,
        })
    }

    /// Runs the template on `data` with `funcs` (the ones it was parsed with, or a set with
    /// the same names, such as Docker's header functions).
    pub fn execute(&self, data: &Value, funcs: &Funcs) -> Result<String, Error> {
        let mut s = exec::State::new(&self.src, funcs, data);
        s.walk(&self.root, data)?;
        Ok(s.out)
    }

    /// `execute`, keeping what was written before an error (Docker renders `table` headers
    /// so and ignores their errors).
    pub fn execute_lossy(&self, data: &Value, funcs: &Funcs) -> String {
        let mut s = exec::State::new(&self.src, funcs, data);
        let _ = s.walk(&self.root, data);
        s.out
    }
}

#[cfg(test)]
mod tests;
