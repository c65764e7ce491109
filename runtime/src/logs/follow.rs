//! `logs -f`: prints what the monitor appends, woken by inotify on the log's directory, until
//! the monitor exits (a thread blocks on its lock and closes a pipe then). A rotation is seen
//! as the log's name pointing at a new file: the old one (which the writer never touches again)
//! is read to its end, then the new one from its start (and, when the writer rotated more
//! than once meanwhile, the plain rotated files written in between; a follower further behind
//! than the kept files skips what was dropped).

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use super::read::{emit, to_ts, Decoder, Log, Position, ReadAt};
use super::ReadOptions;
use crate::store::{self, Paths};

/// Follows `log` from `pos` until the container's monitor ends (or a record passes `until`).
pub fn follow(
    paths: &Paths,
    log: &Log,
    pos: Position,
    opts: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    let (done_rx, done_tx) = nix::unistd::pipe().map_err(io::Error::from)?;
    let watched = paths.clone();
    std::thread::spawn(move || {
        store::wait_monitor(&watched);
        drop(done_tx);
    });
    let ino = inotify(log)?;
    let until = opts.until.map(to_ts);
    let (mut file, mut offset) = (pos.file, pos.offset);
    let mut events = [0u8; 4096];
    let mut done = false;
    // The file finished last when the live one could not be opened then (the writer between
    // its rename and its new file): once one opens, the files rotated past meanwhile come
    // first (was: they were skipped, a whole file lost when the follower was slow).
    // Held open, so that its inode cannot be reused by a new file meanwhile.
    let mut finished: Option<File> = None;
    loop {
        if file.is_none() {
            file = File::open(log.path()).ok();
            offset = 0;
            // Taken only once the live file opened: the retry right after a rotation often
            // finds the writer still between its rename and its new file (was: taken then and
            // dropped, and the files rotated past were skipped, a whole file lost).
            let prev = if file.is_some() {
                finished.take()
            } else {
                None
            };
            if let (Some(f), Some(prev)) = (&file, prev) {
                let now = f.metadata().ok().map(|m| m.ino());
                for newer in log.newer_than(prev.metadata()?.ino(), now) {
                    let mut off = 0;
                    if read_new(log, &newer, &mut off, opts, until, out, err)? {
                        return Ok(());
                    }
                }
            }
        }
        if let Some(f) = &file {
            if read_new(log, f, &mut offset, opts, until, out, err)? {
                return Ok(());
            }
            let rotated = std::fs::metadata(log.path())
                .map(|m| m.ino())
                .ok()
                .zip(f.metadata().ok().map(|m| m.ino()))
                .is_none_or(|(now, ours)| now != ours);
            if rotated {
                // Written before the rename: read it all before moving on.
                if read_new(log, f, &mut offset, opts, until, out, err)? {
                    return Ok(());
                }
                // The live file is opened first and then read from its start, not opened by
                // name after the files in between: a rotation while those are read would
                // rename it away, and the lines it held were lost.
                let next = File::open(log.path()).ok();
                let next_ino = next
                    .as_ref()
                    .and_then(|n| n.metadata().ok())
                    .map(|m| m.ino());
                // Rotated more than once since: the files in between come first.
                let mut last = None;
                for newer in log.newer_than(f.metadata()?.ino(), next_ino) {
                    let mut off = 0;
                    if read_new(log, &newer, &mut off, opts, until, out, err)? {
                        return Ok(());
                    }
                    last = Some(newer);
                }
                if next.is_none() {
                    finished = match last {
                        Some(l) => Some(l),
                        None => Some(f.try_clone()?),
                    };
                }
                (file, offset) = (next, 0);
                continue;
            }
        }
        if done {
            return Ok(());
        }
        let mut fds = [
            libc::pollfd {
                fd: ino.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: done_rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll on two descriptors we own; EINTR comes back as -1 and loops.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        // SAFETY: a non-blocking read of pending events into our buffer.
        while unsafe { libc::read(ino.as_raw_fd(), events.as_mut_ptr().cast(), events.len()) } > 0 {
        }
        // The monitor ended: one last read of what it wrote before.
        done = fds[1].revents != 0;
    }
}

/// Prints the whole records appended since `offset`; true when `until` was passed.
fn read_new(
    log: &Log,
    f: &File,
    offset: &mut u64,
    opts: &ReadOptions,
    until: Option<shim::time::Timestamp>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<bool> {
    let mut dec = Decoder::new(BufReader::new(ReadAt::new(f, *offset)), log.kind);
    let since = opts.since.map(to_ts);
    let mut stop = false;
    while let Some(e) = dec.next_entry()? {
        if since.is_some_and(|s| e.time < s) {
            continue;
        }
        if until.is_some_and(|u| e.time > u) {
            stop = true;
            break;
        }
        emit(&e, opts.timestamps, out, err)?;
    }
    *offset += dec.consumed;
    out.flush()?;
    err.flush()?;
    Ok(stop)
}

/// An inotify descriptor watching the directory of the log for writes, new files and renames.
fn inotify(log: &Log) -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 returns a new descriptor or -1.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    let ino = unsafe { OwnedFd::from_raw_fd(fd) };
    let dir = log
        .path()
        .parent()
        .ok_or_else(|| io::Error::other("log path without a directory"))?;
    // local's directory appears with the first start.
    std::fs::create_dir_all(dir)?;
    let dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("log path with a NUL byte"))?;
    let mask = libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;
    // SAFETY: a valid descriptor and a NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd, dir.as_ptr(), mask) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ino)
}
