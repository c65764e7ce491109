//! `exec`: another process in a running container's namespaces and cgroup.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::wait::{waitpid, WaitStatus};
use serde_json::json;

use crate::error::{Error, Result};
use crate::store::Paths;
use crate::{lifecycle, rootfs, spec, tty, user};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub interactive: bool,
    pub tty: bool,
    /// The process dies with the caller (a healthcheck probe).
    pub die_with_parent: bool,
    /// `exec -d`: the process runs on with no stdio and nobody waits for it (its orphan is
    /// reaped by whoever adopts it).
    pub detach: bool,
    /// `--detach-keys` (Docker's ctrl-p,ctrl-q when `None`), looked for with `-it`.
    pub detach_keys: Option<String>,
}

/// Runs `opts.cmd` in the container with this process's stdio; returns its exit code.
pub fn exec(root: &Path, key: &str, opts: &ExecOptions) -> Result<i32> {
    // dockerd checks them before it looks the container up, in its own words for exec.
    let keys = match &opts.detach_keys {
        None => crate::detachkeys::DEFAULT.to_vec(),
        Some(k) => crate::detachkeys::parse(k).map_err(|_| Error::EscapeKeys(k.clone()))?,
    };
    let rec = lifecycle::find(root, key)?;
    if rec.state.status == crate::record::Status::Restarting {
        return Err(Error::Invalid(format!(
            "Container {} is restarting, wait until the container is running",
            rec.id
        )));
    }
    if !rec.running() {
        return Err(Error::Invalid(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    if crate::pause::is_paused(&rec.id) {
        return Err(Error::Invalid(format!(
            "Container {} is paused, unpause the container before exec",
            rec.id
        )));
    }
    let paths = Paths::new(root, &rec.id);
    let rootfs_dir = paths.rootfs();
    let user = user::resolve(
        &rootfs_dir,
        opts.user.as_deref().unwrap_or(&rec.settings.user),
    )?;
    let mut r2 = rec.clone();
    r2.settings.env.extend(opts.env.iter().cloned());
    r2.settings.tty = opts.tty;
    let env = spec::process_env(root, &r2, &user);
    let Some(argv0) = opts.cmd.first() else {
        return Err(Error::Invalid("No command specified".into()));
    };
    rootfs::check_executable(&rootfs_dir, argv0, &env)?;
    let cwd = opts.workdir.clone().unwrap_or_else(|| {
        if rec.settings.working_dir.is_empty() {
            "/".into()
        } else {
            rec.settings.working_dir.clone()
        }
    });
    // The container's capabilities and groups, as Docker gives an exec'd process.
    let caps = spec::caps(&rec.settings);
    let mut user_json = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        user_json["additionalGids"] = json!(user.additional_gids);
    }
    let process = json!({
        "terminal": opts.tty,
        "user": user_json,
        "args": opts.cmd,
        "env": env,
        "cwd": cwd,
        "noNewPrivileges": !rec.settings.privileged,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
    });
    let process_file = paths.dir.join(format!("exec-{}.json", std::process::id()));
    statefile::write_json(&process_file, &process)?;
    let socket = std::env::temp_dir().join(format!(
        ".rbox-exec-{}-{}",
        &rec.id[..12],
        std::process::id()
    ));
    let result = (|| {
        let mut builder = ContainerBuilder::new(rec.id.clone(), SyscallType::default())
            .with_root_path(paths.lc_root())
            .map_err(|e| Error::Libcontainer("libcontainer root".into(), e.to_string()))?;
        if opts.detach {
            let null = || -> Result<OwnedFd> {
                Ok(File::options()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .map_err(|e| Error::io("/dev/null", e))?
                    .into())
            };
            builder = builder.with_stdout(null()?).with_stderr(null()?);
        }
        let stdin: OwnedFd = if opts.interactive && !opts.tty && !opts.detach {
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("stdin", e))?
        } else {
            File::open("/dev/null")
                .map_err(|e| Error::io("/dev/null", e))?
                .into()
        };
        builder = builder.with_stdin(stdin);
        let listener = if opts.tty && !opts.detach {
            let l = tty::listen(&socket)?;
            builder = builder.with_console_socket(Some(&socket));
            Some(l)
        } else {
            None
        };
        let _ = std::io::stdout().flush();
        let pid = builder
            .with_executor(
                crate::executor::for_container(
                    &paths.root,
                    &spec::security_opt(&rec.settings),
                    &caps,
                    false,
                )?
                .dying_with_parent(opts.die_with_parent),
            )
            .as_tenant()
            .with_process(Some(&process_file))
            .with_detach(opts.tty && !opts.detach)
            .build()
            .map_err(|e| Error::Libcontainer(format!("exec in {}", rec.name), e.to_string()))?;
        let exec_id = format!("{:016x}", pid.as_raw() as u64 ^ 0x5eed_0000_0000);
        let what = opts.cmd.join(" ");
        crate::events::container(
            root,
            &rec,
            &format!("exec_create: {what}"),
            &[("execID", exec_id.clone())],
        );
        crate::events::container(
            root,
            &rec,
            &format!("exec_start: {what}"),
            &[("execID", exec_id.clone())],
        );
        if opts.detach {
            return Ok(0);
        }
        let code = match &listener {
            Some(l) => {
                match crate::monitor::proxy_tty(
                    pid,
                    tty::receive_master(l)?,
                    opts.interactive,
                    keys,
                ) {
                    Some(code) => code,
                    // Detached: the process runs on (no exec_die yet); docker/cli's exit 1.
                    None => return Ok(1),
                }
            }
            None => crate::process::exit_code(waitpid(pid, None).unwrap_or(WaitStatus::StillAlive)),
        };
        crate::events::container(
            root,
            &rec,
            "exec_die",
            &[("execID", exec_id), ("exitCode", code.to_string())],
        );
        Ok(code)
    })();
    let _ = std::fs::remove_file(&process_file);
    let _ = std::fs::remove_file(&socket);
    result
}
