//! Docker's `--filter key=value` lists: values of one key are alternatives (any may match),
//! different keys must all match; label filters are the exception, all of them must match
//! (moby `api/types/filters`).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Parsed `--filter` arguments.
#[derive(Debug, Clone, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses `key=value` arguments; a key outside `allowed` is Docker's "invalid filter".
    pub fn parse(args: &[String], allowed: &[&str]) -> Result<Filters> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in args {
            let Some((k, v)) = a.split_once('=') else {
                return Err(Error::Invalid(
                    "bad format of filter (expected name=value)".into(),
                ));
            };
            let k = k.trim().to_ascii_lowercase();
            if !allowed.contains(&k.as_str()) {
                return Err(Error::Invalid(format!("invalid filter '{k}'")));
            }
            m.entry(k).or_default().push(v.to_string());
        }
        Ok(Filters(m))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn values(&self, key: &str) -> &[String] {
        self.0.get(key).map_or(&[], Vec::as_slice)
    }

    /// True when `key` is not given or one of its values satisfies `f`.
    pub fn any(&self, key: &str, f: impl Fn(&str) -> bool) -> bool {
        let v = self.values(key);
        v.is_empty() || v.iter().any(|x| f(x))
    }

    /// A boolean filter (`dangling=true`): not given, or given with the value `actual` has;
    /// a value other than true/false/1/0 is an error.
    pub fn bool_matches(&self, key: &str, actual: bool) -> Result<bool> {
        let mut ok = self.values(key).is_empty();
        for v in self.values(key) {
            let want = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(Error::Invalid(format!("invalid filter '{key}={v}'"))),
            };
            ok |= want == actual;
        }
        Ok(ok)
    }

    /// `label=KEY` / `label=KEY=VALUE`: every one given must be among `labels`.
    pub fn labels_match(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.values(key).iter().all(|l| match l.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(l.as_str()),
        })
    }
}

/// Docker's `Args.Match`: the value equals `s` or, as a regular expression, matches part of
/// it (a bad expression matches nothing).
pub fn regex_match(pattern: &str, s: &str) -> bool {
    pattern == s || regex::Regex::new(pattern).is_ok_and(|r| r.is_match(s))
}

/// Go's `path.Match`: `*` any run of characters but `/`, `?` one such character, `[...]`
/// a class (`[^...]` negated, ranges `a-z`), `\` escapes.
pub fn glob(pattern: &str, s: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // Returns (matched, length of the class in the pattern).
        let mut i = 1;
        let negate = p.get(1) == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let lo = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            let mut hi = lo;
            if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|x| *x != ']') {
                hi = p[i + 2];
                i += 2;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
            i += 1;
        }
        None
    }
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(&p[1..], &s[i..])),
            Some('?') => s.first().is_some_and(|c| *c != '/') && go(&p[1..], &s[1..]),
            Some('[') => match (s.first(), class(p, *s.first().unwrap_or(&'\0'))) {
                (Some(c), Some((true, n))) if *c != '/' => go(&p[n..], &s[1..]),
                _ => false,
            },
            Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && go(&p[2..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_labels() {
        let f = Filters::parse(
            &[
                "label=a".into(),
                "label=b=2".into(),
                "status=running".into(),
                "status=exited".into(),
            ],
            &["label", "status"],
        )
        .unwrap();
        assert!(f.any("status", |s| s == "exited"));
        assert!(!f.any("status", |s| s == "created"));
        assert!(f.any("name", |_| false), "a key not given matches");
        let mut labels = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert!(!f.labels_match("label", &labels), "all labels must match");
        labels.insert("b".into(), "2".into());
        assert!(f.labels_match("label", &labels));
        assert_eq!(
            Filters::parse(&["nope=1".into()], &["label"])
                .unwrap_err()
                .to_string(),
            "invalid filter 'nope'"
        );
        assert!(Filters::parse(&["x".into()], &["x"]).is_err());
        let d = Filters::parse(&["dangling=maybe".into()], &["dangling"]).unwrap();
        assert!(d.bool_matches("dangling", true).is_err());
    }

    #[test]
    fn globs_as_go_path_match() {
        assert!(glob("busy*", "busybox:latest"));
        assert!(glob("busybox:lat*", "busybox:latest"));
        assert!(!glob("*", "library/busybox"));
        assert!(glob("*/*", "library/busybox"));
        assert!(glob("b?sybox", "busybox"));
        assert!(glob("[a-c]usybox", "busybox"));
        assert!(!glob("[^a-c]usybox", "busybox"));
        assert!(!glob("busy", "busybox"));
    }
}
