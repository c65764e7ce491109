//! Running a firewall tool (`iptables-restore`, `nft`) with a batch on stdin: its failure is an
//! `Error::Firewall` of the backend, with the tool's own message on one line.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{io, Error, Result};

pub(crate) fn run(
    backend: &'static str,
    prog: &str,
    args: &[&str],
    input: Option<&str>,
) -> Result<String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Firewall {
            backend,
            message: format!("running {prog}: {e}"),
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(io(format!("writing to {prog}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io(format!("running {prog}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Firewall {
            backend,
            message: format!("{prog} failed: {}", err.trim().replace('\n', " ")),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
