//! The healthcheck flags of `run` and `create`, turned into Docker CLI's HealthConfig: only
//! what is given, the rest comes from the image's HEALTHCHECK (merged at create).

use anyhow::{anyhow, bail, Result};
use clap::Args;
use runtime::health::Healthcheck;

#[derive(Args, Debug, Default)]
pub struct HealthFlags {
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", allow_hyphen_values = true)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", allow_hyphen_values = true)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", allow_hyphen_values = true)]
    pub health_retries: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown
    /// (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", allow_hyphen_values = true)]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", allow_hyphen_values = true)]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Action when the container turns unhealthy: none, kill, restart, stop
    #[arg(long = "health-on-failure", default_value = "none")]
    pub health_on_failure: String,
}

/// A Go duration flag, as Docker's CLI parses it; `flag` names it in the error.
fn duration(v: &Option<String>, flag: &str) -> Result<i64> {
    let Some(v) = v else { return Ok(0) };
    let ns = images::parse_go_duration(v).ok_or_else(|| {
        anyhow!("invalid argument \"{v}\" for \"--{flag}\" flag: time: invalid duration \"{v}\"")
    })?;
    if ns < 0 {
        bail!("--{flag} cannot be negative");
    }
    Ok(ns)
}

impl HealthFlags {
    /// Docker CLI's rules: `--no-healthcheck` alone, else the given settings (none given: the
    /// image's healthcheck as it is).
    pub fn healthcheck(&self) -> Result<Option<Healthcheck>> {
        let retries = match &self.health_retries {
            Some(r) => {
                let n: i64 = r.parse().map_err(|_| {
                    anyhow!("invalid argument \"{r}\" for \"--health-retries\" flag: strconv.ParseInt: parsing \"{r}\": invalid syntax")
                })?;
                if n < 0 {
                    bail!("--health-retries cannot be negative");
                }
                n
            }
            None => 0,
        };
        let h = Healthcheck {
            test: match &self.health_cmd {
                Some(c) if !c.is_empty() => vec!["CMD-SHELL".into(), c.clone()],
                _ => Vec::new(),
            },
            interval: duration(&self.health_interval, "health-interval")?,
            timeout: duration(&self.health_timeout, "health-timeout")?,
            start_period: duration(&self.health_start_period, "health-start-period")?,
            start_interval: duration(&self.health_start_interval, "health-start-interval")?,
            retries,
        };
        if self.no_healthcheck {
            if h != Healthcheck::default() {
                bail!("--no-healthcheck conflicts with --health-* options");
            }
            return Ok(Some(Healthcheck::none()));
        }
        Ok((h != Healthcheck::default()).then_some(h))
    }
}
