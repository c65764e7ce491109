//! Restart policies (`--restart`) with Docker's rules: parsing and validation as docker's CLI
//! and daemon do, and the decision after each exit with its backoff (moby's restartmanager:
//! 100 ms doubling to at most 1 min, back to 100 ms after a run of 10 s or more).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Docker's restart policy names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::No => "no",
            Mode::Always => "always",
            Mode::UnlessStopped => "unless-stopped",
            Mode::OnFailure => "on-failure",
        }
    }
}

/// HostConfig.RestartPolicy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub mode: Mode,
    /// on-failure only; 0 = no limit.
    pub maximum_retry_count: u32,
}

impl RestartPolicy {
    /// `--restart no|always|unless-stopped|on-failure[:N]`, with Docker's messages.
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        let bad = |m: String| Error::Invalid(m);
        let (name, count) = match s.split_once(':') {
            Some(("", _)) => {
                return Err(bad(
                    "invalid restart policy format: no policy provided before colon".into(),
                ))
            }
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let count: i64 = match count.filter(|c| !c.is_empty()) {
            Some(c) => c.parse().map_err(|_| {
                bad("invalid restart policy format: maximum retry count must be an integer".into())
            })?,
            None => 0,
        };
        let mode = match name {
            "" | "no" => Mode::No,
            "always" => Mode::Always,
            "unless-stopped" => Mode::UnlessStopped,
            "on-failure" => Mode::OnFailure,
            other => {
                return Err(bad(format!(
                    "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                )))
            }
        };
        match mode {
            Mode::OnFailure if count < 0 => Err(bad(
                "invalid restart policy: maximum retry count cannot be negative".into(),
            )),
            Mode::OnFailure => Ok(RestartPolicy {
                mode,
                maximum_retry_count: u32::try_from(count)
                    .map_err(|_| bad(format!("invalid restart policy: {count} retries")))?,
            }),
            _ if count != 0 => {
                Err(bad(format!(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'{}",
                if count < 0 { " and cannot be negative" } else { "" }
            )))
            }
            _ => Ok(RestartPolicy {
                mode,
                maximum_retry_count: 0,
            }),
        }
    }

    pub fn is_none(&self) -> bool {
        self.mode == Mode::No
    }

    /// Docker's rule at daemon start (`rbox system boot`): `always` comes back even after a
    /// manual stop, `unless-stopped` unless stopped by hand; `no` and `on-failure` stay down.
    pub fn starts_at_boot(&self, manually_stopped: bool) -> bool {
        match self.mode {
            Mode::Always => true,
            Mode::UnlessStopped => !manually_stopped,
            Mode::No | Mode::OnFailure => false,
        }
    }
}

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay to the first one.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// The restart manager of one monitor: how many restarts so far and the next delay.
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: RestartPolicy,
    /// RestartCount: restarts since the last manual start.
    pub count: u32,
    delay: Option<Duration>,
}

impl Restarts {
    pub fn new(policy: RestartPolicy, count: u32) -> Restarts {
        Restarts {
            policy,
            count,
            delay: None,
        }
    }

    /// The state a previous program of this monitor had: the count and the last delay.
    pub fn resume(policy: RestartPolicy, count: u32, delay: Option<Duration>) -> Restarts {
        Restarts {
            policy,
            count,
            delay,
        }
    }

    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// After a run of `ran` that exited with `code`: the delay before the next run, or `None`
    /// when the container stays down. Counts the restart when there is one.
    pub fn after_exit(
        &mut self,
        code: i32,
        manually_stopped: bool,
        ran: Duration,
    ) -> Option<Duration> {
        if self.policy.is_none() {
            return None;
        }
        if ran >= RESET_AFTER {
            self.delay = None;
        }
        let delay = match self.delay {
            None => FIRST_DELAY,
            Some(d) => (d * 2).min(MAX_DELAY),
        };
        self.delay = Some(delay);
        let restart = match self.policy.mode {
            Mode::No => false,
            Mode::Always => true,
            Mode::UnlessStopped => !manually_stopped,
            Mode::OnFailure => {
                let max = self.policy.maximum_retry_count;
                code != 0 && (max == 0 || self.count < max)
            }
        };
        if !restart {
            return None;
        }
        self.count += 1;
        Some(delay)
    }

    /// A manual restart: the count and the delay start over (Docker resets both).
    pub fn reset(&mut self) {
        self.count = 0;
        self.delay = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> std::result::Result<RestartPolicy, String> {
        RestartPolicy::parse(s).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_as_docker() {
        assert_eq!(p("no").unwrap(), RestartPolicy::default());
        assert_eq!(p("always").unwrap().mode, Mode::Always);
        assert_eq!(p("unless-stopped").unwrap().mode, Mode::UnlessStopped);
        let f = p("on-failure:3").unwrap();
        assert_eq!((f.mode, f.maximum_retry_count), (Mode::OnFailure, 3));
        assert_eq!(p("on-failure").unwrap().maximum_retry_count, 0);
        assert!(p("sometimes")
            .unwrap_err()
            .contains("unknown policy 'sometimes'"));
        assert!(p("on-failure:-1")
            .unwrap_err()
            .contains("cannot be negative"));
        assert!(p("on-failure:x")
            .unwrap_err()
            .contains("must be an integer"));
        assert!(p("always:2")
            .unwrap_err()
            .contains("only be used with 'on-failure'"));
        assert!(p(":2").unwrap_err().contains("no policy provided"));
    }

    #[test]
    fn backoff_doubles_to_a_minute_and_resets_after_ten_seconds() {
        let mut r = Restarts::new(p("always").unwrap(), 0);
        let quick = Duration::from_millis(5);
        let delays: Vec<u128> = (0..12)
            .map(|_| r.after_exit(1, false, quick).unwrap().as_millis())
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000]
        );
        assert_eq!(r.count, 12);
        assert_eq!(r.after_exit(0, false, RESET_AFTER), Some(FIRST_DELAY));
    }

    #[test]
    fn policies_decide_as_docker() {
        let quick = Duration::ZERO;
        let mut no = Restarts::new(RestartPolicy::default(), 0);
        assert_eq!(no.after_exit(1, false, quick), None);
        let mut unless = Restarts::new(p("unless-stopped").unwrap(), 0);
        assert!(unless.after_exit(0, false, quick).is_some());
        assert_eq!(unless.after_exit(0, true, quick), None);
        let mut f = Restarts::new(p("on-failure:2").unwrap(), 0);
        assert_eq!(f.after_exit(0, false, quick), None);
        assert!(f.after_exit(1, false, quick).is_some());
        assert!(f.after_exit(1, false, quick).is_some());
        assert_eq!(f.after_exit(1, false, quick), None);
        assert_eq!(f.count, 2);
        f.reset();
        assert!(f.after_exit(3, false, quick).is_some());
        let at_boot = |s: &str, stopped| p(s).unwrap().starts_at_boot(stopped);
        assert!(at_boot("always", true));
        assert!(at_boot("unless-stopped", false));
        assert!(!at_boot("unless-stopped", true));
        assert!(!at_boot("on-failure", false));
        assert!(!at_boot("no", false));
    }
}
