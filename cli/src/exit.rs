//! Exit codes as Docker's: an error from rbox itself is 125 with one line on stderr.

use std::fmt;

/// An error that carries its own exit code (126/127 for a command that cannot run or is not
/// found; a container's own code is returned as `Ok(code)`, not as an error).
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

impl Exit {
    pub fn new(code: i32, message: impl Into<String>) -> Exit {
        Exit {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Prints the error as one line and returns the exit code for it.
pub fn report(e: &anyhow::Error) -> i32 {
    let (code, msg) = match e.downcast_ref::<Exit>() {
        Some(x) => (x.code, x.message.clone()),
        None => (125, format!("{e:#}")),
    };
    if !msg.is_empty() {
        eprintln!("Error: {}", msg.replace('\n', " "));
    }
    code
}

/// A command line clap cannot parse: help and version print and exit 0; anything else is a
/// usage error, which Docker reports with exit 125 (clap's own default is 2).
pub fn usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        // Docker prints the usage for `docker` or `docker network` alone, and exits 0.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            let _ = e.print();
            std::process::exit(0)
        }
        _ => {
            let _ = e.print();
            std::process::exit(125)
        }
    }
}
