//! A container's healthcheck: what `create` records (the image's `HEALTHCHECK` with the
//! `--health-*` flags over it, as dockerd merges them, checked as dockerd checks them), what
//! `--health-on-failure` does, the probe the monitor runs (`probe_main`: `rbox
//! container-health ID`, an `exec` of the test in the container), and the state the monitor
//! publishes in `<dir>/health.json` (`shim::health`), which `inspect` shows as
//! `State.Health` and `ps` as `(healthy)`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::Record;
use crate::store::Paths;

pub use images::Healthcheck;

/// The healthcheck a container gets: the user's settings over the image's, field by field;
/// `None` when neither has one.
pub fn resolve(
    user: Option<Healthcheck>,
    image: Option<&Healthcheck>,
) -> Result<Option<Healthcheck>> {
    let h = match (user, image) {
        (None, None) => return Ok(None),
        (None, Some(i)) => i.clone(),
        (Some(u), None) => u,
        (Some(u), Some(i)) => u.over(i),
    };
    // dockerd's checks (daemon/container.go translateHealthcheck / verifyContainerSettings).
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if v != 0 && v < 1_000_000 {
            return Err(Error::Invalid(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if h.retries < 0 {
        return Err(Error::Invalid(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    if let Some(t) = h.test.first() {
        if !["NONE", "CMD", "CMD-SHELL"].contains(&t.as_str()) {
            return Err(Error::Invalid(format!(
                "unknown healthcheck type '{t}' (expected 'CMD' or 'CMD-SHELL')"
            )));
        }
        if t != "NONE" && h.test.len() < 2 {
            return Err(Error::Invalid(format!("{t} healthcheck without a command")));
        }
    }
    Ok(Some(h))
}

/// The command the probe runs: the test, through `/bin/sh -c` for CMD-SHELL (Docker's shell
/// on Linux); `None` when the container has no probe.
pub fn probe_argv(h: &Healthcheck) -> Option<Vec<String>> {
    match h.test.first().map(String::as_str) {
        Some("CMD") => Some(h.test[1..].to_vec()),
        Some("CMD-SHELL") => Some(vec!["/bin/sh".into(), "-c".into(), h.test[1..].join(" ")]),
        _ => None,
    }
}

/// When and how often the monitor probes `rec`, if it has a probe.
pub fn check_of(rec: &Record) -> Option<shim::health::Check> {
    let h = rec.settings.healthcheck.as_ref().filter(|h| h.probes())?;
    Some(shim::health::Check::new(
        h.interval,
        h.timeout,
        h.start_period,
        h.start_interval,
        h.retries,
    ))
}

pub use shim::health::OnFailure;

/// `--health-on-failure`, checked.
pub fn on_failure(s: &str) -> Result<OnFailure> {
    OnFailure::parse(s).map_err(Error::Invalid)
}

/// Docker's `State.Health` as `inspect` shows it, read from what the monitor publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: u32,
    #[serde(default)]
    pub log: Vec<ProbeResult>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProbeResult {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// The monitor's prober for `rec`, if it has a probe: its state goes on from what an earlier
/// run published (the results are kept, as dockerd keeps them).
pub(crate) fn prober(paths: &Paths, rec: &Record) -> Option<shim::health::Prober> {
    let check = check_of(rec)?;
    let mut p = shim::health::Prober::new(
        check,
        OnFailure::parse(&rec.settings.health_on_failure).unwrap_or_default(),
        paths.health(),
        "/proc/self/exe".into(),
        vec![
            "--root".into(),
            paths.root.clone().into_os_string(),
            "container-health".into(),
            paths.id.clone().into(),
        ],
    );
    if let Some((log, start)) = crate::events::container_line_start(&paths.root, rec) {
        p = p.with_events(log, start);
    }
    if let Some(h) = read(paths) {
        p.state = h.to_shim();
    }
    Some(p)
}

impl Health {
    fn to_shim(&self) -> shim::health::Health {
        use shim::time::Timestamp;
        shim::health::Health {
            status: shim::health::Status::from_name(&self.status)
                .unwrap_or(shim::health::Status::Starting),
            failing_streak: self.failing_streak,
            log: self
                .log
                .iter()
                .map(|p| shim::health::Probe {
                    start: Timestamp::parse_rfc3339(&p.start).unwrap_or_default(),
                    end: Timestamp::parse_rfc3339(&p.end).unwrap_or_default(),
                    exit_code: p.exit_code,
                    output: p.output.clone(),
                })
                .collect(),
        }
    }
}

/// The published state of a container with a probe that has started at least once.
pub fn read(paths: &Paths) -> Option<Health> {
    statefile::read_json_opt(&paths.health()).ok().flatten()
}

/// Body of the hidden `container-health ID`: runs the container's probe in it with this
/// process's stdout and stderr (the monitor's pipe), killed with this process (the monitor
/// kills it at its timeout); returns the probe's exit code.
pub fn probe_main(root: &std::path::Path, id: &str) -> Result<i32> {
    let rec = crate::store::load(&Paths::new(root, id))?;
    let argv = rec
        .settings
        .healthcheck
        .as_ref()
        .and_then(probe_argv)
        .ok_or_else(|| Error::Invalid(format!("container {id} has no healthcheck")))?;
    crate::exec::exec(
        root,
        id,
        &crate::exec::ExecOptions {
            cmd: argv,
            die_with_parent: true,
            ..Default::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(test: &[&str], interval: i64) -> Healthcheck {
        Healthcheck {
            test: test.iter().map(|s| s.to_string()).collect(),
            interval,
            ..Default::default()
        }
    }

    #[test]
    fn the_users_settings_go_over_the_images() {
        let image = hc(&["CMD-SHELL", "wget -q localhost"], 5_000_000_000);
        assert_eq!(resolve(None, None).unwrap(), None);
        assert_eq!(resolve(None, Some(&image)).unwrap(), Some(image.clone()));
        let r = resolve(Some(hc(&[], 2_000_000_000)), Some(&image))
            .unwrap()
            .unwrap();
        assert_eq!((r.test.len(), r.interval), (2, 2_000_000_000));
        let off = resolve(Some(Healthcheck::none()), Some(&image))
            .unwrap()
            .unwrap();
        assert!(!off.probes());
        assert!(resolve(Some(hc(&["CMD", "true"], 1)), None).is_err());
        assert!(resolve(Some(hc(&["RUN", "true"], 0)), None).is_err());
        assert!(resolve(Some(hc(&["CMD"], 0)), None).is_err());
        assert_eq!(
            probe_argv(&image).unwrap(),
            ["/bin/sh", "-c", "wget -q localhost"]
        );
        assert_eq!(
            probe_argv(&hc(&["CMD", "true", "x"], 0)).unwrap(),
            ["true", "x"]
        );
        assert_eq!(probe_argv(&Healthcheck::none()), None);
    }

    #[test]
    fn the_published_state_reads_back() {
        let mut h = shim::health::Health::default();
        let check = shim::health::Check::new(0, 0, 0, 0, 0);
        h.record(
            shim::health::Probe {
                start: shim::time::Timestamp(1),
                end: shim::time::Timestamp(2),
                exit_code: 0,
                output: "fine\n".into(),
            },
            &check,
            shim::time::Timestamp(0),
        );
        let back: Health = serde_json::from_slice(&h.to_json()).unwrap();
        assert_eq!(back.status, "healthy");
        assert_eq!(back.log[0].output, "fine\n");
        assert_eq!(back.log[0].exit_code, 0);
        assert_eq!(on_failure("restart").unwrap(), OnFailure::Restart);
        assert!(on_failure("reboot").is_err());
    }
}
