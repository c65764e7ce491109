//! What a container holds for as long as it is started, across every run of its process
//! under a restart policy: the rootfs mount, the network sandbox with its leases on every
//! network it joined (`network connect`-ed ones too), the published ports' reservations and
//! rules, the /etc files, the OCI spec and the log. A restart reuses all of it, so the IP
//! addresses and host ports stay the same.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::executor::{self, Workload};
use crate::logs::{self, Stream, Writer};
use crate::record::Record;
use crate::store::{self, Paths};
use crate::{etcfiles, rootfs, spec, user};

pub(crate) struct Attached {
    /// Taken by the monitor, which writes the output of every run to it.
    pub log: Option<Writer>,
    /// The hook each run's init execs through (seccomp, `--init`, signal state).
    pub workload: Workload,
    /// The published host ports' sockets: nobody else can take them while the container is
    /// started, also while it waits to restart.
    _ports: net::Reservation,
}

impl Attached {
    /// Sets it all up for a container about to run; `rec` gets its endpoints, sandbox and
    /// ports. On error the caller releases what was made (`cleanup::release_container`).
    pub fn attach(paths: &Paths, rec: &mut Record) -> Result<Attached> {
        let store = images::Store::open(&paths.root)?;
        let image = store.resolve(&rec.image_id)?;
        tracing::debug!(id = %paths.id, "image resolved");
        rootfs::mount_overlay(paths, &store.layer_dirs(&image), rec.settings.auto_remove)?;
        tracing::debug!(id = %paths.id, "rootfs mounted");
        let root = paths.rootfs();
        let user = user::resolve(&root, &rec.settings.user)?;
        let env = spec::process_env(&paths.root, rec, &user);
        let argv = rec.argv();
        let Some(argv0) = argv.first() else {
            return Err(Error::Invalid("No command specified".into()));
        };
        rootfs::check_executable(&root, argv0, &env)?;
        if !rec.settings.working_dir.is_empty() {
            rootfs::ensure_dir(&root, &rec.settings.working_dir, user.uid, user.gid)?;
        }
        for f in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
            rootfs::ensure_file(&root, f)?;
        }
        // -v host directories removed since create come back; empty volumes get the image's.
        crate::mounts::prepare_start(&paths.root, &root, &rec.settings.mounts)?;
        let (netns, ports) = crate::network::attach(paths, rec)?;
        tracing::debug!(id = %paths.id, "network attached");
        etcfiles::write_all(paths, rec, netns.is_none())?;
        write_spec(paths, rec, &user, &env, netns)?;
        Attached::new(paths, rec, logs::open_writer(paths, rec)?, ports)
    }

    fn new(
        paths: &Paths,
        rec: &Record,
        log: Option<Writer>,
        ports: net::Reservation,
    ) -> Result<Attached> {
        Ok(Attached {
            log,
            workload: executor::for_container(
                &paths.root,
                &spec::security_opt(&rec.settings),
                &spec::caps(&rec.settings),
                rec.settings.init,
            )?,
            _ports: ports,
        })
    }

    /// What a previous program of this monitor held: the ports' sockets it handed over (the
    /// rootfs, sandbox, leases, rules and spec stay as they were).
    pub fn resume(paths: &Paths, rec: &Record, ports: net::Reservation) -> Result<Attached> {
        Attached::new(paths, rec, None, ports)
    }

    /// The numbers of the port sockets, for a hand-over.
    pub fn port_fds(&self) -> Vec<std::os::fd::RawFd> {
        self._ports.raw_fds()
    }

    /// Takes over from a monitor that died while its container ran: the rootfs, sandbox,
    /// leases, rules and spec are all still there; the host ports are bound again and the log
    /// says that output was lost meanwhile (the dead monitor held the pipes' read ends).
    /// `rec.ports` loses the host ports that someone took while no monitor held them.
    pub fn adopt(paths: &Paths, rec: &mut Record) -> Result<Attached> {
        let ports = if rec.ports.is_empty() {
            net::Reservation::default()
        } else {
            let (kept, held) = net::reclaim(&paths.root, &paths.id)?;
            rec.ports = kept;
            held
        };
        let since = logs::path(paths, rec)
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok())
            .map(chrono::DateTime::<chrono::Utc>::from);
        let mut log = logs::open_writer(paths, rec)?;
        let from = since
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| "its start".into());
        if let Some(l) = &mut log {
            l.note(
                Stream::Stderr,
                &format!(
                    "rbox: the container's monitor died; output from {from} until now was lost"
                ),
            );
        }
        Attached::new(paths, rec, log, ports)
    }
}

/// The OCI spec every run of this start uses, and libcontainer's state root.
fn write_spec(
    paths: &Paths,
    rec: &Record,
    user: &user::User,
    env: &[String],
    netns: Option<PathBuf>,
) -> Result<()> {
    let config = spec::build(paths, rec, user, env, netns.as_deref())?;
    // Rewritten at every start and read only by libcontainer: no fsync needed.
    let config_path = paths.bundle().join("config.json");
    std::fs::write(&config_path, config.to_string())
        .map_err(|e| Error::io(config_path.display(), e))?;
    tracing::debug!(id = %paths.id, "spec written");
    store::create_topdir(&paths.lc_root())
}
