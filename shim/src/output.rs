//! The read ends of one run's output (two pipes, or the pty master as stdout), read without
//! blocking when the event loop says they are ready and handed to a sink (the log, and a
//! foreground run's terminal).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::events::Source;
use crate::logs::Stream;
use crate::sys::{read_some, set_nonblocking};

pub struct Streams {
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    pub master: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl Streams {
    pub fn new(out: Option<OwnedFd>, err: Option<OwnedFd>, master: Option<OwnedFd>) -> Streams {
        for fd in [&out, &err, &master].into_iter().flatten() {
            set_nonblocking(fd.as_fd());
        }
        Streams {
            out,
            err,
            master,
            buf: vec![0u8; 64 * 1024],
        }
    }

    /// Its descriptors (stdout pipe, stderr pipe, pty master), for the next program.
    pub fn into_fds(self) -> [Option<OwnedFd>; 3] {
        [self.out, self.err, self.master]
    }

    /// The numbers of its descriptors (stdout pipe, stderr pipe, pty master).
    pub fn raw_fds(&self) -> [Option<std::os::fd::RawFd>; 3] {
        [&self.out, &self.err, &self.master].map(|f| f.as_ref().map(|f| f.as_raw_fd()))
    }

    fn fd(&self, stream: Stream) -> Option<BorrowedFd<'_>> {
        match stream {
            Stream::Stdout => self.out.as_ref().or(self.master.as_ref()),
            Stream::Stderr => self.err.as_ref(),
        }
        .map(|f| f.as_fd())
    }

    /// The open streams, for the event loop.
    pub fn sources(&self) -> Vec<(BorrowedFd<'_>, Source)> {
        [Stream::Stdout, Stream::Stderr]
            .into_iter()
            .filter_map(|s| self.fd(s).map(|fd| (fd, Source::Output(s))))
            .collect()
    }

    /// One read of `stream` into `sink`; closes the stream at end of file (a pty master
    /// reports EIO at hangup) and returns whether data came.
    pub fn copy(&mut self, stream: Stream, sink: &mut dyn FnMut(Stream, &[u8])) -> bool {
        let Some(fd) = self.fd(stream).map(|f| f.as_raw_fd()) else {
            return false;
        };
        match read_some(fd, &mut self.buf) {
            Some(0) => false,
            Some(n) => {
                sink(stream, &self.buf[..n]);
                true
            }
            None => {
                self.close(stream);
                false
            }
        }
    }

    fn close(&mut self, stream: Stream) {
        match stream {
            Stream::Stdout if self.out.is_some() => self.out = None,
            Stream::Stdout => self.master = None,
            Stream::Stderr => self.err = None,
        }
    }

    /// Takes what is left once the init exited: the kernel is killing the namespace's other
    /// processes, and what they wrote before is still in the pipes.
    pub fn drain(&mut self, sink: &mut dyn FnMut(Stream, &[u8])) {
        for s in [Stream::Stdout, Stream::Stderr] {
            while self.copy(s, sink) {}
        }
    }
}
