//! `create`: a container's record and directory from an image and the user's settings, with
//! every setting checked first so that bad input leaves nothing behind.

use std::path::Path;

use crate::error::{Error, Result};
use crate::record::{Record, Settings};
use crate::store::{self, Paths};

/// What `create`/`run` ask for.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    pub image: String,
    /// Replaces the image's Cmd when non-empty.
    pub cmd: Vec<String>,
    /// Replaces the image's Entrypoint (and then its Cmd) when set; "" clears it.
    pub entrypoint: Option<String>,
    /// `--log-driver` and `--log-opt KEY=VALUE`s, merged with the root's defaults into
    /// `settings.log_config`.
    pub log_driver: Option<String>,
    pub log_opts: Vec<String>,
    /// `--health-*` / `--no-healthcheck` (Docker CLI's HealthConfig), merged over the image's.
    pub healthcheck: Option<crate::health::Healthcheck>,
    pub settings: Settings,
}

/// Creates the container's record and directory; nothing runs yet.
pub fn create(root: &Path, opts: &CreateOptions) -> Result<Record> {
    let store = images::Store::open(root)?;
    let image = store.resolve(&opts.image)?;
    tracing::debug!(image = %image.id, "image resolved");
    let mut s = opts.settings.clone();
    let joined_hostname = crate::network::check_container_mode(root, &mut s)?;
    let cfg = &image.config;
    match &opts.entrypoint {
        Some(e) if e.is_empty() => s.entrypoint = Vec::new(),
        Some(e) => s.entrypoint = vec![e.clone()],
        None => s.entrypoint = cfg.entrypoint.clone().unwrap_or_default(),
    }
    s.cmd = if !opts.cmd.is_empty() {
        opts.cmd.clone()
    } else if opts.entrypoint.is_some() {
        Vec::new()
    } else {
        cfg.cmd.clone().unwrap_or_default()
    };
    if s.entrypoint.is_empty() && s.cmd.is_empty() {
        return Err(Error::Invalid("No command specified".into()));
    }
    let mut env = cfg.env.clone();
    env.extend(s.env.iter().cloned());
    s.env = env;
    if s.working_dir.is_empty() {
        s.working_dir = cfg.working_dir.clone();
    }
    if s.user.is_empty() {
        s.user = cfg.user.clone();
    }
    if s.network_mode.is_empty() {
        s.network_mode = "bridge".into();
    }
    for e in &cfg.exposed_ports {
        if !s.exposed_ports.contains(e) {
            s.exposed_ports.push(e.clone());
        }
    }
    // Bad -p values fail here, before anything exists.
    crate::network::port_specs(&s)?;
    for (k, v) in &cfg.labels {
        s.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if s.memory < 0 || s.nano_cpus < 0 {
        return Err(Error::Invalid("invalid resource limit".into()));
    }
    if s.memory > 0 && s.memory < 6 * 1024 * 1024 {
        return Err(Error::Invalid("Minimum memory limit allowed is 6MB".into()));
    }
    if s.stop_signal.is_empty() {
        s.stop_signal = cfg.stop_signal.clone();
    }
    check_lifecycle_options(&s)?;
    s.log_config = crate::logs::resolve(root, opts.log_driver.as_deref(), &opts.log_opts)?;
    s.healthcheck = crate::health::resolve(opts.healthcheck.clone(), cfg.healthcheck.as_ref())?;
    crate::health::on_failure(&s.health_on_failure)?;
    crate::mounts::check(&s.mounts)?;
    crate::mounts::name_anonymous(&mut s.mounts);
    let _names = store::names_lock(root)?;
    // `rmi` checks for users under this lock too: the image must still be there once we hold it.
    store.resolve(&image.id)?;
    crate::names::ensure(root, &_names)?;
    let name = match &opts.name {
        Some(n) => {
            let n = n.trim_start_matches('/').to_string();
            if !store::valid_name(&n) {
                return Err(Error::InvalidName(n));
            }
            if let Some(other) = crate::names::holder(root, &n) {
                return Err(Error::NameInUse(n, other.id));
            }
            n
        }
        None => store::random_name(|n| crate::names::holder(root, n).is_some()),
    };
    let id = store::new_unique_id(root);
    if let Some(h) = joined_hostname {
        s.hostname = h;
    } else if s.hostname.is_empty() {
        s.hostname = match net::attachment(root, &s.network_mode) {
            // Docker: a container on the host's network has the host's name.
            // Docker: a container in the host's UTS namespace has the host's name too.
            _ if s.uts_mode == "host" => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Ok((_, caps)) if caps.namespace == net::Namespace::Host => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _ => id[..12].to_string(),
        };
    }
    let rec = Record::new(id.clone(), name, opts.image.clone(), image.id.clone(), s);
    let paths = Paths::new(root, &id);
    store::create_topdir(&store::containers_dir(root))?;
    std::fs::create_dir_all(&paths.dir).map_err(|e| Error::io(paths.dir.display(), e))?;
    // An --rm container does not outlive a power loss anyway, so its record needs no fsync; a
    // record lost that way leaves a directory `prune` removes.
    let save = if rec.settings.auto_remove {
        store::save_transient
    } else {
        store::save
    };
    // Last, so that no other error leaves a host directory behind. The name's entry goes
    // first: a record must never exist without it (`names`).
    if let Err(e) = crate::names::claim(root, &rec.name, &id, !rec.settings.auto_remove, &_names)
        .and_then(|_| save(&paths, &rec))
        .and_then(|_| crate::mounts::create_sources(&rec.settings.mounts))
        .and_then(|_| crate::volume::create_for(root, &rec))
    {
        let _ = std::fs::remove_dir_all(&paths.dir);
        crate::names::release(root, &rec.name, &id, &_names);
        return Err(e);
    }
    crate::events::container(root, &rec, "create", &[]);
    Ok(rec)
}

/// `--restart`, `--rm`, `--stop-signal`: refused as Docker does.
fn check_lifecycle_options(s: &Settings) -> Result<()> {
    if s.auto_remove && !s.restart_policy.is_none() {
        return Err(Error::Invalid(
            "Conflicting options: --restart and --rm".into(),
        ));
    }
    if !s.stop_signal.is_empty() {
        crate::signal::parse(&s.stop_signal)?;
    }
    Ok(())
}
