//! Exit codes as Docker's CLI gives them: an error of `run`/`create` is 125, of any other
//! command 1 (Docker's "daemon-side" errors), with one line on stderr; a bad flag is 125 and a
//! missing argument 1 for every command (cobra's flag errors vs. its argument checks).

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

/// Prints the error as one line and returns the exit code for it: its own, or `default`
/// (125 for `run`/`create`, 1 for the other commands).
pub fn report(e: &anyhow::Error, default: i32) -> i32 {
    let (code, msg) = match e.downcast_ref::<Exit>() {
        Some(x) => (x.code, x.message.clone()),
        None => (default, format!("{e:#}")),
    };
    if !msg.is_empty() {
        eprintln!("Error: {}", msg.replace('\n', " "));
    }
    code
}

/// A command line clap cannot parse: help and version print and exit 0; a missing argument
/// or an unknown command exits 1, as Docker's argument checks (plain errors, docker/cli
/// `cli/required.go`); a bad flag or flag value exits 125, as Docker's flag errors (clap's own
/// default is 2).
pub fn usage(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let code = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        // Docker prints the usage for `docker` or `docker network` alone, and exits 0.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => 0,
        ErrorKind::MissingRequiredArgument | ErrorKind::InvalidSubcommand => 1,
        _ => 125,
    };
    let _ = e.print();
    std::process::exit(code)
}

/// Ends the process as Docker's CLI ends when its reader went away: killed by SIGPIPE, after
/// a command that had to clean up first (it ignored SIGPIPE to do so).
pub fn die_of_sigpipe() -> ! {
    // SAFETY: restoring the default disposition and raising the signal on ourselves.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(141)
}
