//! Docker's `--filter key=value` lists: values of one key are alternatives (any may match),
//! different keys must all match; label filters are the exception, all of them must match
//! (moby `api/types/filters`).

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::record::Record;

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

/// The keys of `container|image|network|volume prune --filter` (`label!` excludes).
pub const PRUNE_KEYS: &[&str] = &["until", "label", "label!"];

impl Filters {
    /// Docker's prune filters: `until=` (created before it), `label=` (all present),
    /// `label!=` (excluded when all of them are present).
    pub fn prune_matches(
        &self,
        created: chrono::DateTime<chrono::Utc>,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool> {
        if let Some(u) = self.values("until").first() {
            let until = crate::timestamp::parse(u, chrono::Utc::now()).map_err(Error::Invalid)?;
            if created >= until {
                return Ok(false);
            }
        }
        if !self.labels_match("label", labels) {
            return Ok(false);
        }
        Ok(self.values("label!").is_empty() || !self.labels_match("label!", labels))
    }
}

/// The keys `ps --filter` accepts (moby `acceptedPsFilterTags`).
pub const PS_KEYS: &[&str] = &[
    "ancestor",
    "before",
    "expose",
    "exited",
    "health",
    "id",
    "isolation",
    "is-task",
    "label",
    "name",
    "network",
    "publish",
    "since",
    "status",
    "volume",
];

const STATES: &[&str] = &[
    "created",
    "restarting",
    "running",
    "removing",
    "paused",
    "exited",
    "dead",
];
const HEALTH: &[&str] = &["starting", "healthy", "unhealthy", "none"];

/// `80`, `80/udp`, `8000-8010/tcp` of `publish=`/`expose=` as (port, proto) pairs.
fn port_filter(key: &str, values: &[String]) -> Result<Vec<(u16, String)>> {
    let mut out = Vec::new();
    for v in values {
        if v.contains(':') {
            return Err(Error::Invalid(format!(
                "filter for '{key}' should not contain ':': {v}"
            )));
        }
        let (ports, proto) = v.split_once('/').unwrap_or((v, "tcp"));
        let bad = || {
            Error::Invalid(format!(
                "error while looking up for {key} {v}: invalid port"
            ))
        };
        let (lo, hi) = match ports.split_once('-') {
            Some((a, b)) => (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let p = ports.parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        out.extend((lo..=hi).map(|p| (p, proto.to_ascii_lowercase())));
    }
    Ok(out)
}

/// What container filters need to know beyond the records.
pub struct Lookup<'a> {
    /// An image reference to its id (`ancestor=`), `None` when there is no such image.
    pub image_id: &'a dyn Fn(&str) -> Option<String>,
    /// A network name to its id (`network=` on a container that is not running).
    pub network_id: &'a dyn Fn(&str) -> Option<String>,
}

/// Docker's `ps` listing: `recs` newest first, kept as moby's `includeContainerInList`
/// keeps them (before=/since= by position, stopped ones only with `all`, a `status` filter,
/// or a `limit`; at most `limit` of them).
pub fn containers(
    recs: Vec<Record>,
    f: &Filters,
    mut all: bool,
    limit: Option<usize>,
    lookup: &Lookup,
) -> Result<Vec<Record>> {
    let mut exited = Vec::new();
    for v in f.values("exited") {
        exited.push(
            v.parse::<i32>().map_err(|_| {
                Error::Invalid(format!("strconv.Atoi: parsing {v:?}: invalid syntax"))
            })?,
        );
    }
    for v in f.values("status") {
        if !STATES.contains(&v.as_str()) {
            return Err(Error::Invalid(format!("invalid filter 'status={v}'")));
        }
        all = true;
    }
    for v in f.values("health") {
        if !HEALTH.contains(&v.as_str()) {
            return Err(Error::Invalid(format!(
                "Unrecognised filter value for health: {v}"
            )));
        }
    }
    let by_key = |v: &str| -> Result<String> {
        let key = v.trim_start_matches('/');
        recs.iter()
            .find(|r| r.id == key)
            .or_else(|| recs.iter().find(|r| r.name == key))
            .or_else(|| {
                let mut hits = recs.iter().filter(|r| r.id.starts_with(key));
                match (hits.next(), hits.next()) {
                    (Some(r), None) => Some(r),
                    _ => None,
                }
            })
            .map(|r| r.id.clone())
            .ok_or_else(|| Error::NotFound(v.to_string()))
    };
    let mut before = f.values("before").last().map(|v| by_key(v)).transpose()?;
    let since = f.values("since").last().map(|v| by_key(v)).transpose()?;
    let images: Vec<String> = f
        .values("ancestor")
        .iter()
        .filter_map(|a| (lookup.image_id)(a))
        .collect();
    let publish = port_filter("publish", f.values("publish"))?;
    let expose = port_filter("expose", f.values("expose"))?;
    let mut out = Vec::new();
    for r in recs {
        if let Some(b) = &before {
            if *b == r.id {
                before = None;
            }
            continue;
        }
        if since.as_deref() == Some(r.id.as_str()) {
            break;
        }
        if !r.active() && !all && limit.is_none() {
            continue;
        }
        let name_ok = f.any("name", |v| {
            regex_match(v, &r.name) || regex_match(v, &format!("/{}", r.name))
        });
        if !name_ok
            || !f.any("id", |v| regex_match(v, &r.id))
            || !f.labels_match("label", &r.settings.labels)
        {
            continue;
        }
        if limit.is_some_and(|l| out.len() == l) {
            break;
        }
        let started = r.state.started_at.is_some();
        if !exited.is_empty()
            && !exited
                .iter()
                .any(|c| *c == r.state.exit_code && !r.running() && started)
        {
            continue;
        }
        if !f.any("status", |v| v == r.state_name()) || !f.any("health", |v| v == r.health_status())
        {
            continue;
        }
        let mounts = &r.settings.mounts;
        if !f.any("volume", |v| {
            mounts.iter().any(|m| m.target == v || m.source == v)
        }) {
            continue;
        }
        if !f.values("ancestor").is_empty() && !images.contains(&r.image_id) {
            continue;
        }
        let on_network = |v: &str| {
            if r.networks.contains_key(v)
                || r.networks.values().any(|e| e.network_id.starts_with(v))
            {
                return true;
            }
            // Docker keeps a stopped container's endpoints; rbox's record keeps its network.
            let mode = &r.settings.network_mode;
            mode == v || (lookup.network_id)(mode).is_some_and(|id| id.starts_with(v))
        };
        if !f.any("network", on_network) {
            continue;
        }
        if !publish.is_empty() || !expose.is_empty() {
            let published = r.ports.iter().any(|p| {
                publish.contains(&(p.host_port, p.proto.to_string()))
                    || expose.contains(&(p.container_port, p.proto.to_string()))
            });
            let exposed_only = r.running()
                && r.settings.exposed_ports.iter().any(|e| {
                    let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
                    port.parse::<u16>()
                        .is_ok_and(|n| expose.contains(&(n, proto.to_string())))
                });
            if !published && !exposed_only {
                continue;
            }
        }
        out.push(r);
    }
    Ok(out)
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
