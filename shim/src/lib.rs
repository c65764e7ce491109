//! What the container monitor keeps doing while its container runs, in a crate of its own so
//! that the monitor's small mode (the `rbox-shim` binary) can do it without linking, or
//! touching the pages of, libcontainer and the rest of rbox:
//!
//! - `logs`: json-file and local logs, bounded (rotation, compression), written in batches;
//! - `events`: the monitor's event loop (one poll over typed sources, plus deadlines);
//! - `health`: Docker's healthcheck state machine and the probe process it runs;
//! - `time`: RFC 3339 timestamps without a date library.
//!
//! The full monitor (runtime::monitor) uses the same code, so both modes write the same files.

pub mod events;
pub mod health;
pub mod logs;
pub mod time;
