//! Docker's `HealthConfig` (an image config's `config.Healthcheck`, a container's
//! `Config.Healthcheck`), Go's duration syntax its options use, and the Dockerfile
//! `HEALTHCHECK` instruction `import --change` takes.

use serde::{Deserialize, Serialize};

/// Durations in nanoseconds, 0 = the default; fields Docker leaves out when zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `[]` inherit, `["NONE"]` disabled, `["CMD", args...]`, `["CMD-SHELL", command]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Healthcheck {
    /// `--no-healthcheck` / `HEALTHCHECK NONE`.
    pub fn none() -> Healthcheck {
        Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        }
    }

    /// The settings given here, the rest from `base` (dockerd's merge of a container's
    /// healthcheck with its image's).
    pub fn over(mut self, base: &Healthcheck) -> Healthcheck {
        if self.test.is_empty() {
            self.test = base.test.clone();
        }
        for (mine, theirs) in [
            (&mut self.interval, base.interval),
            (&mut self.timeout, base.timeout),
            (&mut self.start_period, base.start_period),
            (&mut self.start_interval, base.start_interval),
            (&mut self.retries, base.retries),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
        self
    }

    /// It runs a probe (not disabled, not empty).
    pub fn probes(&self) -> bool {
        matches!(
            self.test.first().map(String::as_str),
            Some("CMD" | "CMD-SHELL")
        )
    }
}

/// Go's `time.ParseDuration` in nanoseconds: decimal numbers with units ns, us (µs), ms, s,
/// m, h, optionally signed (`1m30s`, `-1.5h`, `300ms`); `0` alone needs no unit.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(n);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let u = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let unit: i128 = match &after[..u] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part: i128 = 0;
        let mut scale: i128 = 1;
        for d in frac.bytes() {
            if !d.is_ascii_digit() {
                return None;
            }
            if scale < 1_000_000_000_000_000 {
                part = part * 10 + (d - b'0') as i128;
                scale *= 10;
            }
        }
        total += whole * unit + part * unit / scale;
        if total > i64::MAX as i128 {
            return None;
        }
        rest = &after[u..];
    }
    Some(if neg { -total } else { total } as i64)
}

/// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D]
/// [--retries=N] CMD command` or `HEALTHCHECK NONE`, after the instruction word.
pub(crate) fn parse_instruction(rest: &str) -> Result<Healthcheck, String> {
    let mut h = Healthcheck::default();
    let mut rest = rest.trim_start();
    while let Some(opt) = rest.strip_prefix("--") {
        let end = opt.find(char::is_whitespace).unwrap_or(opt.len());
        let (flag, after) = opt.split_at(end);
        rest = after.trim_start();
        let (name, value) = flag
            .split_once('=')
            .ok_or_else(|| format!("missing value for --{flag}"))?;
        let duration = |v: &str| -> Result<i64, String> {
            let d = parse_go_duration(v).ok_or_else(|| format!("time: invalid duration {v:?}"))?;
            if d != 0 && d < 1_000_000 {
                return Err(format!("{name} cannot be less than 1ms"));
            }
            Ok(d)
        };
        match name {
            "interval" => h.interval = duration(value)?,
            "timeout" => h.timeout = duration(value)?,
            "start-period" => h.start_period = duration(value)?,
            "start-interval" => h.start_interval = duration(value)?,
            "retries" => {
                h.retries = value
                    .parse::<i64>()
                    .ok()
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| format!("invalid retries {value:?}"))?;
            }
            _ => return Err(format!("unknown flag: --{name}")),
        }
    }
    let (word, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    match word.to_ascii_uppercase().as_str() {
        "NONE" if cmd.trim().is_empty() && h == Healthcheck::default() => Ok(Healthcheck::none()),
        "NONE" => Err("HEALTHCHECK NONE takes no arguments".into()),
        "CMD" => {
            let cmd = cmd.trim();
            if cmd.starts_with('[') {
                let argv: Vec<String> =
                    serde_json::from_str(cmd).map_err(|e| format!("invalid exec form: {e}"))?;
                if argv.is_empty() {
                    return Err("missing command after HEALTHCHECK CMD".into());
                }
                h.test = std::iter::once("CMD".to_string()).chain(argv).collect();
            } else if cmd.is_empty() {
                return Err("missing command after HEALTHCHECK CMD".into());
            } else {
                h.test = vec!["CMD-SHELL".into(), cmd.to_string()];
            }
            Ok(h)
        }
        _ => Err("Unknown type in HEALTHCHECK (try CMD)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s"), Some(30_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_go_duration(".5s"), Some(500_000_000));
        assert_eq!(parse_go_duration("-2s"), Some(-2_000_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        for bad in ["", "5", "s", "1x", "1.2.3s", "--1s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn instructions_as_a_dockerfile_has_them() {
        let h = parse_instruction("--interval=5s --retries=2 CMD wget -q -O- http://localhost/")
            .unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "wget -q -O- http://localhost/"]);
        assert_eq!((h.interval, h.retries), (5_000_000_000, 2));
        let h = parse_instruction(r#"CMD ["true"]"#).unwrap();
        assert_eq!(h.test, ["CMD", "true"]);
        assert_eq!(parse_instruction("NONE").unwrap(), Healthcheck::none());
        for bad in [
            "",
            "CMD",
            "--interval=5 CMD true",
            "--timeout=1us CMD true",
            "--retries=-1 CMD x",
            "--color=1 CMD x",
            "RUN x",
            "NONE x",
        ] {
            assert!(parse_instruction(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_images_field_by_field() {
        let image = parse_instruction("--interval=5s --timeout=2s CMD true").unwrap();
        let mine = Healthcheck {
            timeout: 9,
            ..Default::default()
        };
        let m = mine.over(&image);
        assert_eq!((m.test.len(), m.interval, m.timeout), (2, 5_000_000_000, 9));
        assert!(m.probes() && !Healthcheck::none().probes());
        let json = serde_json::to_string(&Healthcheck::none()).unwrap();
        assert_eq!(json, r#"{"Test":["NONE"]}"#);
    }
}
