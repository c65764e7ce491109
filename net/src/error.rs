//! The net crate's error type: every variant carries what rbox was doing when it failed.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {0} not found")]
    NetworkNotFound(String),
    /// Bad user input: reported as one line, nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The request clashes with existing state (name taken, address in use, endpoints exist).
    #[error("{0}")]
    Conflict(String),
    #[error("{context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    State(#[from] statefile::Error),
    /// A CNI plugin failed, timed out or answered nonsense; the message names it.
    #[error("{0}")]
    Plugin(String),
    /// A firewall backend refused or failed an operation.
    #[error("{backend}: {message}")]
    Firewall {
        backend: &'static str,
        message: String,
    },
    /// The cluster store could not be reached or refused a request (names the store).
    #[error("{0}")]
    Cluster(String),
    /// Several errors from a teardown that kept going.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<Error>),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

pub(crate) fn nl(context: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let context = context.into();
    move |source| Error::Netlink { context, source }
}

/// Collects errors of a teardown that must keep going.
#[derive(Default)]
pub(crate) struct Errors(Vec<Error>);

impl Errors {
    pub fn check<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(mut self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => Err(self.0.remove(0)),
            _ => Err(Error::Many(self.0)),
        }
    }
}
