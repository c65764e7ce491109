//! `--change` values of `rbox import`: the Dockerfile instructions Docker accepts there.

use crate::{Error, ImageConfig, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Expose(Vec<String>),
    Workdir(String),
    User(String),
    Label(Vec<(String, String)>),
    StopSignal(String),
    Healthcheck(crate::Healthcheck),
}

impl Change {
    /// Parses one instruction, e.g. `CMD ["sh"]`, `ENV A=1 B="x y"`, `EXPOSE 80 53/udp`.
    pub fn parse(s: &str) -> Result<Change> {
        let s = s.trim();
        let (word, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
        let rest = rest.trim();
        let bad = |why: &str| Error::InvalidChange(format!("{s:?}: {why}"));
        let change = match word.to_ascii_uppercase().as_str() {
            "CMD" => Change::Cmd(exec_or_shell(rest).map_err(|e| bad(&e))?),
            "ENTRYPOINT" => Change::Entrypoint(exec_or_shell(rest).map_err(|e| bad(&e))?),
            "ENV" => Change::Env(pairs(rest, true).map_err(|e| bad(&e))?),
            "LABEL" => Change::Label(pairs(rest, false).map_err(|e| bad(&e))?),
            "EXPOSE" => {
                let ports = words(rest).map_err(|e| bad(&e))?;
                if ports.is_empty() {
                    return Err(bad("EXPOSE needs at least one port"));
                }
                Change::Expose(
                    ports
                        .iter()
                        .map(|p| port(p))
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|e| bad(&e))?,
                )
            }
            "WORKDIR" if !rest.is_empty() => Change::Workdir(rest.to_string()),
            "USER" if !rest.is_empty() => Change::User(rest.to_string()),
            "STOPSIGNAL" if valid_signal(rest) => Change::StopSignal(rest.to_string()),
            "STOPSIGNAL" => return Err(bad(&format!("Invalid signal: {rest}"))),
            "HEALTHCHECK" => Change::Healthcheck(
                crate::healthcheck::parse_instruction(rest).map_err(|e| bad(&e))?,
            ),
            "WORKDIR" | "USER" => return Err(bad("missing argument")),
            _ => {
                return Err(Error::InvalidChange(format!(
                    "{word} is not a valid change command"
                )))
            }
        };
        Ok(change)
    }

    /// Applies the instruction to `config` as a Dockerfile would.
    pub fn apply(&self, config: &mut ImageConfig) {
        match self {
            Change::Cmd(v) => config.cmd = Some(v.clone()),
            Change::Entrypoint(v) => {
                config.entrypoint = Some(v.clone());
                // A Dockerfile ENTRYPOINT resets an inherited CMD.
                config.cmd = None;
            }
            Change::Env(kvs) => {
                for (k, v) in kvs {
                    config
                        .env
                        .retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    config.env.push(format!("{k}={v}"));
                }
            }
            Change::Expose(ports) => {
                for p in ports {
                    if !config.exposed_ports.contains(p) {
                        config.exposed_ports.push(p.clone());
                    }
                }
            }
            Change::Workdir(w) => config.working_dir = w.clone(),
            Change::User(u) => config.user = u.clone(),
            Change::Label(kvs) => {
                for (k, v) in kvs {
                    config.labels.insert(k.clone(), v.clone());
                }
            }
            Change::StopSignal(s) => config.stop_signal = s.clone(),
            Change::Healthcheck(h) => config.healthcheck = Some(h.clone()),
        }
    }
}

/// A signal as STOPSIGNAL takes it (Docker's `signal.ParseSignal`): a number, or a name with
/// or without `SIG` ("SIGQUIT", "quit", "RTMIN+3"). The runtime checks it again at create.
fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<i32>() {
        return n > 0 && n <= libc::SIGRTMAX();
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    name.starts_with("RTMIN")
        || name.starts_with("RTMAX")
        || format!("SIG{name}")
            .parse::<nix::sys::signal::Signal>()
            .is_ok()
}

/// JSON array (exec form) or a string run by `/bin/sh -c` (shell form).
fn exec_or_shell(rest: &str) -> std::result::Result<Vec<String>, String> {
    if rest.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(rest) {
            return Ok(v);
        }
    }
    if rest.is_empty() {
        return Err("missing argument".into());
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// `K=V K2="v 2"`, or the legacy `K value with spaces` form (ENV only).
fn pairs(rest: &str, legacy: bool) -> std::result::Result<Vec<(String, String)>, String> {
    let ws = words(rest)?;
    if ws.is_empty() {
        return Err("missing argument".into());
    }
    if legacy && !ws[0].contains('=') {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or("ENV needs a value")?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("{w:?} is not KEY=VALUE")),
        })
        .collect()
}

/// Splits on whitespace, honouring "double" and 'single' quotes and backslash escapes.
fn words(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                cur.push(chars.next().ok_or("trailing backslash")?);
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// "80" -> "80/tcp"; "53/udp" stays.
fn port(p: &str) -> std::result::Result<String, String> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let ok_num = |n: &str| n.parse::<u16>().is_ok_and(|n| n > 0);
    let ok_range = match num.split_once('-') {
        Some((a, b)) => ok_num(a) && ok_num(b),
        None => ok_num(num),
    };
    if !ok_range || !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid port {p:?}"));
    }
    Ok(format!("{num}/{proto}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(changes: &[&str]) -> ImageConfig {
        let mut c = ImageConfig::default();
        for s in changes {
            Change::parse(s).unwrap().apply(&mut c);
        }
        c
    }

    #[test]
    fn exec_and_shell_forms() {
        assert_eq!(
            Change::parse(r#"CMD ["sh"]"#).unwrap(),
            Change::Cmd(vec!["sh".into()])
        );
        assert_eq!(
            Change::parse(r#"cmd ["nginx", "-g", "daemon off;"]"#).unwrap(),
            Change::Cmd(vec!["nginx".into(), "-g".into(), "daemon off;".into()])
        );
        assert_eq!(
            Change::parse("ENTRYPOINT echo hi").unwrap(),
            Change::Entrypoint(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
        );
    }

    #[test]
    fn env_label_expose_workdir_user() {
        let c = applied(&[
            "ENV A=1 B=\"x y\"",
            "ENV LEGACY some value",
            "ENV A=2",
            "LABEL maintainer=me 'k 2'=v",
            "EXPOSE 80 53/udp 8000-8010",
            "EXPOSE 80",
            "WORKDIR /srv",
            "USER nobody",
            r#"CMD ["sh"]"#,
        ]);
        assert_eq!(c.env, vec!["B=x y", "LEGACY=some value", "A=2"]);
        assert_eq!(c.labels.get("maintainer").map(String::as_str), Some("me"));
        assert_eq!(c.labels.get("k 2").map(String::as_str), Some("v"));
        assert_eq!(c.exposed_ports, vec!["80/tcp", "53/udp", "8000-8010/tcp"]);
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.user, "nobody");
        assert_eq!(c.cmd, Some(vec!["sh".to_string()]));
    }

    #[test]
    fn bad_changes() {
        let e = Change::parse("RUN echo hi").unwrap_err().to_string();
        assert_eq!(e, "RUN is not a valid change command");
        for bad in [
            "CMD",
            "EXPOSE",
            "EXPOSE 0",
            "EXPOSE 70000",
            "EXPOSE 80/icmp",
            "ENV",
            "ENV =x",
            "LABEL a=\"b",
            "WORKDIR",
            "USER",
            "FROM busybox",
            "",
        ] {
            assert!(Change::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
