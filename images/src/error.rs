//! One error type for the store; every variant carries what was being done.

use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    /// Bad `--change` value.
    #[error("{0}")]
    InvalidChange(String),
    /// Not a tar, truncated, unknown layout, missing blob, bad JSON inside.
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A layer entry that would land outside the layer directory.
    #[error("unsafe layer entry {entry:?}: {reason}")]
    UnsafePath { entry: String, reason: String },
    /// Removing an image that is in use or referenced several times.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error(transparent)]
    State(#[from] statefile::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn at(path: &Path, what: &str) -> impl FnOnce(io::Error) -> Error {
        let context = format!("{what} {}", path.display());
        move |source| Error::Io { context, source }
    }
}
