//! The monitor's control socket, as the runtime uses it: the protocol, server and client are
//! `shim::control` (the small mode serves the same socket); these wrappers take `Paths` and
//! give the runtime's errors.

pub(crate) use shim::control::{Conn, Reply, Request, Server, Status};

use crate::error::{Error, Result};
use crate::store::Paths;

/// Listens on the container's control socket (replacing one a dead monitor left).
pub(crate) fn listen(paths: &Paths) -> Result<Server> {
    Server::listen(&paths.dir).map_err(|e| Error::io(format!("control socket of {}", paths.id), e))
}

/// Sends `req` to the monitor of the container (pid `monitor_pid`) and waits for its reply.
/// `None` when no monitor answers: none listens, or it died before replying.
pub(crate) fn request(paths: &Paths, monitor_pid: i32, req: Request) -> Result<Option<Reply>> {
    shim::control::request(&paths.dir, monitor_pid, req)
        .map_err(|e| Error::io(format!("asking the monitor of {}", paths.id), e))
}
