use std::io;

/// Errors of the container lifecycle. `exit_code()` maps them to Docker's CLI codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("multiple containers match {0:?}: be more specific")]
    Ambiguous(String),
    #[error("Conflict. The container name \"/{0}\" is already in use by container \"{1}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse(String, String),
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("{0}")]
    Invalid(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("cannot remove container \"/{0}\": container is running: stop the container before removing or force remove")]
    RunningRemove(String),
    #[error("cannot remove container \"/{0}\": container is restarting: stop the container before removing or force remove")]
    RestartingRemove(String),
    #[error("You cannot attach to a stopped container, start it first")]
    AttachStopped,
    #[error("You cannot attach to a paused container, unpause it first")]
    AttachPaused,
    #[error("You cannot attach to a restarting container, wait until it is running")]
    AttachRestarting,
    /// A `--detach-keys` value moby's `term.ToBytes` refuses (run, start, attach).
    #[error("Invalid detach keys ({0}) provided")]
    DetachKeys(String),
    /// The same for `exec`, in dockerd's exec wording.
    #[error("Invalid escape keys ({0}) provided")]
    EscapeKeys(String),
    /// Attaching a tty container's stdin from something that is not a terminal (docker/cli's
    /// `CheckTty`).
    #[error("the input device is not a TTY")]
    NotATty,
    #[error("container {0} is already running")]
    AlreadyRunning(String),
    /// The command cannot be invoked (Docker's 126).
    #[error("{0}")]
    CannotInvoke(String),
    /// The command was not found (Docker's 127).
    #[error("{0}")]
    CommandNotFound(String),
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    #[error(transparent)]
    State(#[from] statefile::Error),
    #[error(transparent)]
    Image(#[from] images::Error),
    #[error(transparent)]
    Net(#[from] net::Error),
    #[error("{0}: {1}")]
    Libcontainer(String, String),
}

impl Error {
    /// Docker's exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::CannotInvoke(_) => 126,
            Error::CommandNotFound(_) => 127,
            _ => 125,
        }
    }

    pub(crate) fn io(what: impl std::fmt::Display, e: io::Error) -> Error {
        Error::Io(what.to_string(), e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// An I/O error in Go's words (`no such file or directory`), as Docker prints them.
pub(crate) fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            // SAFETY: strerror returns a pointer to a static, NUL-terminated message.
            let msg = unsafe { std::ffi::CStr::from_ptr(libc::strerror(n)) };
            let msg = msg.to_string_lossy();
            let mut c = msg.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        }
        None => e.to_string(),
    }
}
