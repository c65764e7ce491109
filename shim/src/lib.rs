//! What the container monitor keeps doing while its container runs, in a crate of its own so
//! that the monitor's small mode (the `rbox-shim` binary) can do it without linking, or
//! touching the pages of, libcontainer and the rest of rbox:
//!
//! - `logs`: json-file and local logs, bounded (rotation, compression), written in batches;
//! - `control`: the monitor's control socket (protocol, server, client);
//! - `attach`: clients attached to the run's output and input over that socket;
//! - `events`: the monitor's event loop (one poll over typed sources, plus deadlines);
//! - `health`: Docker's healthcheck state machine and the probe process it runs;
//! - `handoff`: the state one program of the monitor passes to the next across execve;
//! - `output`, `sys`: the run's output streams, the system calls all of it needs;
//! - `time`: RFC 3339 timestamps without a date library.
//!
//! The full monitor (runtime::monitor) uses the same code, so both modes write the same files.

pub mod attach;
pub mod control;
pub mod events;
pub mod handoff;
pub mod health;
pub mod logs;
pub mod output;
pub mod sys;
pub mod time;
