//! Running one CNI plugin: the spec's environment, its configuration on stdin, its result or
//! its error on stdout, within a deadline.
//!
//! Each plugin runs in a process group of its own, so a timeout kills it with everything it
//! started (an IPAM plugin it delegated to, a wrapper's `sleep`), by the group's id, which is
//! the pid of our own unreaped child. It dies with rbox (PR_SET_PDEATHSIG) and inherits the
//! descriptor of the plugins' lock (`attach::Locks`), so that after a kill -9 of rbox the next
//! command knows whether anything of the old call still runs. stdin, stdout and stderr are
//! driven by one `poll` on this thread, so a plugin that neither reads nor writes cannot block
//! rbox past the deadline, and no thread is started.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::Value;

/// Where plugins are looked for: RBOX_CNI_PATH, else Debian's and the upstream directories.
pub fn plugin_dirs() -> Vec<PathBuf> {
    let s = std::env::var("RBOX_CNI_PATH")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/usr/lib/cni:/opt/cni/bin".into());
    s.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// How long one plugin may take: RBOX_CNI_TIMEOUT seconds (default 60).
pub fn timeout() -> Duration {
    let secs = std::env::var("RBOX_CNI_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(60.0);
    Duration::from_secs_f64(secs)
}

/// The executable of plugin `type` in `dirs`; libcni's words when there is none.
pub fn find(kind: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter()
        .map(|d| d.join(kind))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            format!(
                "failed to find plugin {kind:?} in path [{}]",
                list.join(" ")
            )
        })
}

/// The spec's parameters of one call.
#[derive(Debug, Clone, Default)]
pub struct Call<'a> {
    /// ADD, DEL, VERSION.
    pub command: &'a str,
    pub container_id: &'a str,
    /// Empty when the namespace is gone (a DEL after a crash).
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `K=V;K2=V2`.
    pub args: &'a str,
    /// The plugin directories, for plugins that delegate (bridge to host-local).
    pub path: &'a str,
}

/// Why a call failed.
#[derive(Debug)]
pub enum Failure {
    /// The plugin could not be started.
    Spawn(io::Error),
    /// It ran past the deadline and was killed.
    Timeout(Duration),
    /// It exited non-zero (or by a signal); `message` is its error in one line.
    Exited { message: String },
    /// Talking to it failed.
    Io(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Spawn(e) => write!(f, "{e}"),
            Failure::Timeout(d) => write!(f, "no answer within {}s, killed", d.as_secs_f64()),
            Failure::Exited { message } => write!(f, "{message}"),
            Failure::Io(e) => write!(f, "{e}"),
        }
    }
}

/// What a plugin writes beyond this is not a CNI result.
const MAX_OUTPUT: usize = 1 << 20;

/// Runs `plugin` for `call` with `stdin` as its configuration; its stdout on success.
/// `inherit` is a descriptor the plugin keeps open (the plugins' lock); `spawned` is told the
/// pid (= process group) as soon as the plugin exists.
pub fn run(
    plugin: &Path,
    call: &Call,
    stdin: &[u8],
    deadline: Duration,
    inherit: Option<RawFd>,
    spawned: &mut dyn FnMut(i32),
) -> Result<Vec<u8>, Failure> {
    let mut cmd = Command::new(plugin);
    // The caller's environment (plugins run iptables from PATH) without stale CNI variables.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", call.args)
        .env("CNI_PATH", call.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // If rbox is gone, nobody would wait for this plugin.
            crate::proxy::die_with_parent(parent)?;
            if let Some(fd) = inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(Failure::Spawn)?;
    spawned(child.id() as i32);
    let outcome = converse(&mut child, stdin, started + deadline);
    match outcome {
        Ok((stdout, stderr)) => match wait(&mut child, started + deadline) {
            Some(status) if status.success() => Ok(stdout),
            Some(status) => Err(Failure::Exited {
                message: error_message(&stdout, &stderr, status),
            }),
            None => {
                kill_group(&mut child);
                Err(Failure::Timeout(deadline))
            }
        },
        Err(e) => {
            kill_group(&mut child);
            Err(match e {
                Talk::Timeout => Failure::Timeout(deadline),
                Talk::Io(e) => Failure::Io(e),
            })
        }
    }
}

enum Talk {
    Timeout,
    Io(io::Error),
}

/// Writes `input` to the child's stdin and reads its stdout and stderr to their ends, or until
/// `end`.
fn converse(child: &mut Child, input: &[u8], end: Instant) -> Result<(Vec<u8>, Vec<u8>), Talk> {
    let take = |o: Option<OwnedFd>| o.ok_or_else(|| Talk::Io(io::Error::other("no pipe")));
    let mut stdin = Some(std::fs::File::from(take(
        child.stdin.take().map(OwnedFd::from),
    )?));
    let mut out = std::fs::File::from(take(child.stdout.take().map(OwnedFd::from))?);
    let mut err = std::fs::File::from(take(child.stderr.take().map(OwnedFd::from))?);
    for fd in [
        stdin.as_ref().map(|f| f.as_raw_fd()),
        Some(out.as_raw_fd()),
        Some(err.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd).map_err(Talk::Io)?;
    }
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut written = 0;
    let (mut out_open, mut err_open) = (true, true);
    if input.is_empty() {
        stdin = None;
    }
    while out_open || err_open || stdin.is_some() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Talk::Timeout);
        }
        let ms = u16::try_from(left.as_millis().clamp(1, u16::MAX as u128)).unwrap_or(u16::MAX);
        let (ready_in, ready_out, ready_err) = {
            let mut fds = Vec::with_capacity(3);
            if let Some(f) = &stdin {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
            }
            if out_open {
                fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
            }
            if err_open {
                fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Talk::Io(e.into())),
            }
            let any = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            let mut it = fds.iter();
            let i = stdin.is_some() && it.next().is_some_and(any);
            let o = out_open && it.next().is_some_and(any);
            let e = err_open && it.next().is_some_and(any);
            (i, o, e)
        };
        if ready_in {
            if let Some(f) = stdin.as_mut() {
                match f.write(&input[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The plugin closed its stdin: it read what it wanted.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => written = input.len(),
                    Err(e) => return Err(Talk::Io(e)),
                }
            }
            if written >= input.len() {
                stdin = None;
            }
        }
        if ready_out {
            out_open = drain(&mut out, &mut stdout)?;
        }
        if ready_err {
            err_open = drain(&mut err, &mut stderr)?;
        }
    }
    Ok((stdout, stderr))
}

/// Reads what is there; `false` at the end of the stream.
fn drain(f: &mut std::fs::File, buf: &mut Vec<u8>) -> Result<bool, Talk> {
    let mut chunk = [0u8; 8192];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) if buf.len() + n > MAX_OUTPUT => {
                return Err(Talk::Io(io::Error::other("more than 1 MiB of output")))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Talk::Io(e)),
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits for the child's exit until `end` (through a pidfd: no polling); `None` past it.
fn wait(child: &mut Child, end: Instant) -> Option<std::process::ExitStatus> {
    // SAFETY: pidfd_open on our own unreaped child.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as i32, 0) };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let ms = u16::try_from(left.as_millis().clamp(1, u16::MAX as u128)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }
    child.wait().ok()
}

/// Kills the plugin and everything in its process group, and reaps the plugin. The group's id
/// is our unreaped child's pid, so it cannot belong to anyone else.
fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) of the process group our child leads.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// A failed plugin's error in one line: its JSON error (`msg`, `details`), else what it wrote
/// to stderr, else its exit status.
pub fn error_message(stdout: &[u8], stderr: &[u8], status: std::process::ExitStatus) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(stdout) {
        if let Some(msg) = v.get("msg").and_then(Value::as_str) {
            let mut m = one_line(msg);
            if let Some(d) = v
                .get("details")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
            {
                m = format!("{m}: {}", one_line(d));
            }
            return m;
        }
    }
    for text in [stderr, stdout] {
        let s = one_line(&String::from_utf8_lossy(text));
        if !s.is_empty() {
            return s;
        }
    }
    match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    }
}

/// Lines joined with "; ", capped: an error must stay one line.
fn one_line(s: &str) -> String {
    let joined = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match joined.char_indices().nth(400) {
        Some((i, _)) => format!("{}...", &joined[..i]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn call() -> Call<'static> {
        Call {
            command: "ADD",
            container_id: "c1",
            netns: "/nowhere",
            ifname: "eth0",
            args: "IgnoreUnknown=1",
            path: "/nowhere",
        }
    }

    #[test]
    fn environment_stdin_and_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(
            dir.path(),
            "echoer",
            r#"read -r line; echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_ARGS $line""#,
        );
        let mut pid = 0;
        let out = run(&p, &call(), b"{\"a\":1}\n", timeout(), None, &mut |p| {
            pid = p
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ADD c1 eth0 IgnoreUnknown=1 {\"a\":1}\n"
        );
        assert!(pid > 0);
    }

    #[test]
    fn errors_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let json = script(
            dir.path(),
            "jsonerr",
            r#"printf '%s\n' '{"cniVersion":"1.0.0","code":7,"msg":"bad\nthing","details":"more"}'; exit 1"#,
        );
        let e = run(&json, &call(), b"", timeout(), None, &mut |_| {}).unwrap_err();
        assert_eq!(e.to_string(), "bad; thing: more");
        let plain = script(dir.path(), "plain", "echo oops >&2; echo again >&2; exit 3");
        let e = run(&plain, &call(), b"", timeout(), None, &mut |_| {}).unwrap_err();
        assert_eq!(e.to_string(), "oops; again");
        let silent = script(dir.path(), "silent", "exit 4");
        let e = run(&silent, &call(), b"", timeout(), None, &mut |_| {}).unwrap_err();
        assert_eq!(e.to_string(), "exit status 4");
        let e = run(
            &dir.path().join("none"),
            &call(),
            b"",
            timeout(),
            None,
            &mut |_| {},
        );
        assert!(matches!(e, Err(Failure::Spawn(_))));
    }

    #[test]
    fn a_hung_plugin_is_killed_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        // The plugin's child holds stdout open: only killing the group ends the call.
        let p = script(
            dir.path(),
            "hang",
            &format!("sleep 30 & echo $! > {}; wait", marker.display()),
        );
        let t = Instant::now();
        let e = run(
            &p,
            &call(),
            b"",
            Duration::from_millis(300),
            None,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, Failure::Timeout(_)), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let child: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed: gone, or a zombie until a reaper gets it (SIGKILL takes effect a moment after
        // kill(2) returns).
        let dead = || {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .to_string();
            stat.is_empty() || state.starts_with('Z') || state.starts_with('X')
        };
        let end = Instant::now() + Duration::from_secs(5);
        while !dead() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(dead(), "the plugin's child lives on");
    }

    #[test]
    fn find_looks_in_each_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("b");
        std::fs::create_dir(&sub).unwrap();
        script(&sub, "ptp", "true");
        std::fs::write(dir.path().join("ptp"), "not executable").unwrap();
        let dirs = [dir.path().to_path_buf(), sub.clone()];
        assert_eq!(find("ptp", &dirs).unwrap(), sub.join("ptp"));
        let e = find("bridge", &dirs).unwrap_err();
        assert!(
            e.starts_with("failed to find plugin \"bridge\" in path ["),
            "{e}"
        );
    }
}
