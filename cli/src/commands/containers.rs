//! `rbox` container commands: run, create, start, stop, kill, restart, rm, ps, logs, wait,
//! exec, inspect, rename, top, container prune, system prune (and the hidden monitor).

mod create;
mod ps;

use std::io::Write;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use runtime::{exec, lifecycle, logs};

use crate::format::Format;
use crate::{Cli, Exit};
use create::CreateArgs;

#[derive(Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Common(Common),
    /// List containers
    Ps(PsArgs),
    /// Return low-level information on containers
    Inspect(InspectArgs),
    /// Manage containers
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Manage rbox
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
    /// Owns a detached container (run by rbox itself)
    #[command(name = "container-monitor", hide = true)]
    Monitor {
        /// Take over a running container whose monitor died
        #[arg(long)]
        adopt: bool,
        /// Go on with the restart a dead monitor was waiting for
        #[arg(long)]
        resume: bool,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum ContainerCmd {
    #[command(flatten)]
    Common(Common),
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Display detailed information on one or more containers
    Inspect(InspectArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
}

#[derive(Subcommand)]
pub enum SystemCmd {
    /// Remove stopped containers and repair what crashed rbox processes left behind
    Prune(PruneArgs),
    /// Start the containers their restart policies bring back after a reboot or crash
    Boot,
}

/// The commands Docker offers both at the top level and under `container`.
#[derive(Subcommand)]
pub enum Common {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(Box<RunArgs>),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(Box<CreateArgs>),
    /// Start one or more stopped containers
    Start {
        /// Attach STDOUT/STDERR and forward signals
        #[arg(short = 'a', long)]
        attach: bool,
        /// Attach container's STDIN
        #[arg(short = 'i', long)]
        interactive: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop one or more running containers
    Stop {
        #[command(flatten)]
        how: StopArgs,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Kill one or more running containers
    Kill {
        /// Signal to send to the container
        #[arg(short = 's', long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Restart one or more containers
    Restart {
        #[command(flatten)]
        how: StopArgs,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove one or more containers
    Rm {
        /// Force the removal of a running container (uses SIGKILL)
        #[arg(short = 'f', long)]
        force: bool,
        /// Remove anonymous volumes associated with the container
        #[arg(short = 'v', long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Display the running processes of a container
    Top {
        container: String,
        /// Options for ps (default: -ef), as Docker's `top CONTAINER [ps OPTIONS]`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_options: Vec<String>,
    },
    /// List port mappings or a specific mapping for the container
    Port {
        container: String,
        /// PRIVATE_PORT[/PROTO]
        port: Option<String>,
    },
}

/// How `stop` and `restart` stop a container.
#[derive(Args)]
pub struct StopArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    signal: Option<String>,
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
}

impl StopArgs {
    fn options(&self) -> Result<lifecycle::StopOptions> {
        Ok(lifecycle::StopOptions {
            signal: self
                .signal
                .as_deref()
                .map(runtime::signal::parse)
                .transpose()?,
            timeout: self.time,
        })
    }
}

#[derive(Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    #[command(flatten)]
    create: CreateArgs,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all")
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")
    #[arg(long)]
    until: Option<String>,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    #[arg(short = 'u', long)]
    user: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    cmd: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Format output using a Go template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    #[arg(short = 'f', long)]
    format: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
}

/// A runtime error with Docker's exit code.
fn rt(e: runtime::Error) -> anyhow::Error {
    match e.exit_code() {
        125 => anyhow!(e),
        code => anyhow!(Exit::new(code, e.to_string())),
    }
}

pub fn run(cli: &Cli, cmd: &Cmd) -> Result<i32> {
    let root = &cli.root;
    match cmd {
        Cmd::Common(c) => common(cli, c),
        Cmd::Ps(a) => ps_cmd(cli, a),
        Cmd::Inspect(a) => inspect(cli, a),
        Cmd::Container { cmd } => match cmd {
            ContainerCmd::Common(c) => common(cli, c),
            ContainerCmd::Ls(a) => ps_cmd(cli, a),
            ContainerCmd::Inspect(a) => inspect(cli, a),
            ContainerCmd::Prune(_) => prune(cli, false),
        },
        Cmd::System {
            cmd: SystemCmd::Prune(_),
        } => prune(cli, true),
        Cmd::System {
            cmd: SystemCmd::Boot,
        } => boot(cli),
        Cmd::Monitor { adopt, resume, id } => {
            let begin = match (adopt, resume) {
                (true, _) => lifecycle::Begin::Adopt,
                (_, true) => lifecycle::Begin::Resume,
                _ => lifecycle::Begin::Start,
            };
            Ok(lifecycle::monitor_main(root, id, begin))
        }
    }
}

fn common(cli: &Cli, c: &Common) -> Result<i32> {
    let root = &cli.root;
    let out = &mut std::io::stdout();
    match c {
        Common::Run(a) => run_container(cli, a),
        Common::Create(a) => {
            let opts = a.options(false)?;
            ensure_image(cli, a)?;
            let rec = lifecycle::create(root, &opts).map_err(rt)?;
            writeln!(out, "{}", rec.id)?;
            Ok(0)
        }
        Common::Start {
            attach,
            interactive,
            containers,
        } => {
            if *attach {
                let [c] = containers.as_slice() else {
                    return Err(anyhow!(
                        "you cannot start and attach multiple containers at once"
                    ));
                };
                let rec = lifecycle::find(root, c).map_err(rt)?;
                return lifecycle::run_attached(root, &rec.id, *interactive).map_err(rt);
            }
            each(containers, |c| lifecycle::start(root, c).map(|_| ()))
        }
        Common::Stop { how, containers } => {
            let opts = how.options()?;
            each_parallel(containers, |c| lifecycle::stop(root, c, opts).map(|_| ()))
        }
        Common::Kill { signal, containers } => {
            let sig = runtime::signal::parse(signal)?;
            each_parallel(containers, |c| lifecycle::kill(root, c, sig).map(|_| ()))
        }
        Common::Restart { how, containers } => {
            let opts = how.options()?;
            each(containers, |c| {
                lifecycle::restart(root, c, opts).map(|_| ())
            })
        }
        Common::Rm {
            force,
            volumes,
            containers,
        } => each_parallel(containers, |c| match volumes {
            true => lifecycle::remove_with_volumes(root, c, *force).map(|_| ()),
            false => lifecycle::remove(root, c, *force).map(|_| ()),
        }),
        Common::Logs(a) => logs_cmd(cli, a),
        Common::Wait { containers } => {
            for c in containers {
                let code = lifecycle::wait(root, c).map_err(rt)?;
                writeln!(out, "{code}")?;
            }
            Ok(0)
        }
        Common::Exec(a) => {
            let opts = exec::ExecOptions {
                cmd: a.cmd.clone(),
                env: a.env.clone(),
                workdir: a.workdir.clone(),
                user: a.user.clone(),
                interactive: a.interactive,
                tty: a.tty,
            };
            exec::exec(root, &a.container, &opts).map_err(rt)
        }
        Common::Rename {
            container,
            new_name,
        } => {
            lifecycle::rename(root, container, new_name).map_err(rt)?;
            Ok(0)
        }
        Common::Top {
            container,
            ps_options,
        } => top(cli, container, ps_options),
        Common::Port { container, port } => port_cmd(cli, container, port.as_deref()),
    }
}

/// Runs `f` on each argument, printing it on success as Docker does; one failure makes the
/// command fail after trying all.
fn each(args: &[String], f: impl FnMut(&str) -> runtime::Result<()>) -> Result<i32> {
    report(args, args.iter().map(|a| a.as_str()).map(f).collect())
}

/// `each` with all arguments at once (Docker's `stop`, `kill`, `rm`: `stop a b c` takes one
/// stop timeout, not three), reporting in argument order.
fn each_parallel(args: &[String], f: impl Fn(&str) -> runtime::Result<()> + Sync) -> Result<i32> {
    let results = std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = args.iter().map(|a| s.spawn(move || f(a))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(runtime::Error::Invalid("thread panicked".into())))
            })
            .collect()
    });
    report(args, results)
}

fn report(args: &[String], results: Vec<runtime::Result<()>>) -> Result<i32> {
    let mut last = None;
    for (a, r) in args.iter().zip(results) {
        match r {
            Ok(()) => println!("{a}"),
            Err(e) => {
                if args.len() > 1 {
                    eprintln!("Error: {e}");
                }
                last = Some(e);
            }
        }
    }
    match last {
        Some(e) if args.len() == 1 => Err(rt(e)),
        Some(_) => Ok(1),
        None => Ok(0),
    }
}

fn run_container(cli: &Cli, a: &RunArgs) -> Result<i32> {
    let root = &cli.root;
    tracing::debug!("run: creating the container");
    let opts = a.create.options(a.rm)?;
    ensure_image(cli, &a.create)?;
    let rec = lifecycle::create(root, &opts).map_err(rt)?;
    tracing::debug!(id = %rec.id, "run: created");
    if a.detach {
        return match lifecycle::start(root, &rec.id) {
            Ok(r) => {
                println!("{}", r.id);
                Ok(0)
            }
            Err(e) => {
                let _ = lifecycle::remove(root, &rec.id, true);
                Err(rt(e))
            }
        };
    }
    match lifecycle::run_attached(root, &rec.id, a.create.interactive) {
        Ok(code) => {
            tracing::debug!(code, "run: done");
            Ok(code)
        }
        Err(e) => {
            // A foreground run that could not start leaves nothing behind.
            let _ = lifecycle::remove(root, &rec.id, true);
            Err(rt(e))
        }
    }
}

/// `port CTR [PORT[/PROTO]]`: "80/tcp -> 0.0.0.0:8080" per mapping, or the host addresses of
/// one container port.
fn port_cmd(cli: &Cli, container: &str, port: Option<&str>) -> Result<i32> {
    let r = lifecycle::find(&cli.root, container).map_err(rt)?;
    let want = port.map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut out = std::io::stdout().lock();
    let mut found = false;
    for b in &r.ports {
        match &want {
            Some(w) if *w != b.container_key() => {}
            Some(_) => {
                found = true;
                writeln!(out, "{}", b.host_addr())?;
            }
            None => writeln!(out, "{} -> {}", b.container_key(), b.host_addr())?,
        }
    }
    if let (Some(w), false) = (&want, found) {
        return Err(anyhow!("No public port '{w}' published for {container}"));
    }
    Ok(0)
}

fn ps_cmd(cli: &Cli, a: &PsArgs) -> Result<i32> {
    let recs: Vec<_> = lifecycle::list(&cli.root)
        .into_iter()
        .filter(|r| a.all || r.active())
        .collect();
    let trunc = !a.no_trunc;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &recs {
            writeln!(out, "{}", if trunc { &r.id[..12] } else { &r.id })?;
        }
        return Ok(0);
    }
    match &a.format {
        Some(f) if f != "table" => {
            let fmt = Format::parse(f)?;
            if let Some(h) = fmt.header() {
                writeln!(out, "{h}")?;
            }
            for r in &recs {
                writeln!(out, "{}", fmt.render(&ps::fields(r, trunc))?)?;
            }
        }
        _ => out.write_all(ps::table(&ps::rows(&recs, trunc)).as_bytes())?,
    }
    Ok(0)
}

fn inspect(cli: &Cli, a: &InspectArgs) -> Result<i32> {
    let fmt = a.format.as_deref().map(Format::parse).transpose()?;
    let mut found = Vec::new();
    let mut code = 0;
    for c in &a.containers {
        match lifecycle::find(&cli.root, c) {
            Ok(r) => found.push(runtime::inspect::to_json(&cli.root, &r)),
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match fmt {
        Some(f) => {
            for v in &found {
                writeln!(out, "{}", f.render(v)?)?;
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?,
    }
    Ok(code)
}

fn logs_cmd(cli: &Cli, a: &LogsArgs) -> Result<i32> {
    let now = chrono::Utc::now();
    let time = |v: &Option<String>, flag: &str| {
        v.as_deref()
            .map(|s| runtime::timestamp::parse(s, now))
            .transpose()
            .map_err(|e| anyhow!("invalid value for \"{flag}\": {e}"))
    };
    let (since, until) = (time(&a.since, "since")?, time(&a.until, "until")?);
    let rec = lifecycle::find(&cli.root, &a.container).map_err(rt)?;
    let paths = runtime::Paths::new(&cli.root, &rec.id);
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow!("invalid value for --tail: {n}"))?,
        ),
    };
    let opts = logs::ReadOptions {
        tail,
        timestamps: a.timestamps,
        since,
        until,
    };
    let log = logs::reader(&paths, &rec).map_err(rt)?;
    let (mut out, mut err) = (
        std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()),
        std::io::stderr().lock(),
    );
    let pos = log.print(&opts, &mut out, &mut err)?;
    // Said last, where a reader of the output sees it: what the log does not hold.
    if let Some(lost) = logs::lost_now(&paths, &rec) {
        eprintln!("rbox: the log is not being written: {lost}");
    }
    if a.follow {
        logs::follow(&paths, &log, pos, &opts, &mut out, &mut err)?;
    }
    Ok(0)
}

/// Docker's `top`: the host's `ps` (default `-ef`), keeping the header and the rows whose PID
/// is one of the container's processes.
fn top(cli: &Cli, container: &str, ps_options: &[String]) -> Result<i32> {
    let rec = lifecycle::find(&cli.root, container).map_err(rt)?;
    if !rec.running() {
        return Err(anyhow!("container {} is not running", rec.id));
    }
    let pids = runtime::cgroup::pids(&rec.id);
    let default = ["-ef".to_string()];
    let opts = if ps_options.is_empty() {
        &default[..]
    } else {
        ps_options
    };
    let out = std::process::Command::new("ps")
        .args(opts)
        .output()
        .map_err(|e| anyhow!("running ps: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(anyhow!("ps {}: {}", opts.join(" "), err.trim()));
    }
    print!("{}", ps_rows(&String::from_utf8_lossy(&out.stdout), &pids)?);
    Ok(0)
}

/// The header and the rows of `ps` output whose PID column is in `pids`.
fn ps_rows(ps: &str, pids: &[i32]) -> Result<String> {
    let mut lines = ps.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| anyhow!("couldn't find PID field in ps output"))?;
    let mut out = format!("{header}\n");
    for l in lines {
        let pid = l.split_whitespace().nth(col).and_then(|p| p.parse().ok());
        if pid.is_some_and(|p: i32| pids.contains(&p)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    Ok(out)
}

fn prune(cli: &Cli, system: bool) -> Result<i32> {
    let root = &cli.root;
    let removed = lifecycle::prune(root);
    if !removed.is_empty() {
        println!("Deleted Containers:");
        for id in &removed {
            println!("{id}");
        }
        println!();
    }
    if system {
        // Sandboxes whose container record is gone (a crash between steps) are released.
        if let Ok(entries) = std::fs::read_dir(root.join("netns")) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if runtime::store::load(&runtime::Paths::new(root, &id)).is_err() {
                    let _ = net::release(root, &id);
                }
            }
        }
        let nets = net::manage::prune(root).unwrap_or_default();
        if !nets.is_empty() {
            println!("Deleted Networks:");
            for n in &nets {
                println!("{n}");
            }
            println!();
        }
        // With nothing running, the networks' kernel objects (bridges, rules) go too; their
        // definitions stay and come back on first use.
        if !lifecycle::list(root).iter().any(|r| r.active()) {
            if let Err(e) = net::manage::teardown(root) {
                tracing::warn!("network teardown: {e}");
            }
        }
        if let Ok(store) = images::Store::open(root) {
            if let Err(e) = store.prune() {
                tracing::warn!("image store repair: {e}");
            }
        }
    }
    println!("Total reclaimed space: 0B");
    Ok(0)
}

/// `system boot`: prints each container it started, as `start` does.
fn boot(cli: &Cli) -> Result<i32> {
    let mut code = 0;
    for b in lifecycle::boot(&cli.root) {
        match b.result {
            Ok(()) => println!("{}", b.name),
            Err(e) => {
                eprintln!("Error: starting {}: {e}", b.name);
                code = 1;
            }
        }
    }
    Ok(code)
}

/// Pulls the image of `run`/`create` first when `--pull` says so (Docker's default: missing).
fn ensure_image(cli: &Cli, a: &CreateArgs) -> Result<()> {
    crate::commands::pull::image_for_container(
        cli,
        &a.image,
        a.pull,
        a.platform.as_deref(),
        false,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ps_rows;

    #[test]
    fn ps_rows_keeps_header_and_container_pids() {
        let ps = "UID PID PPID C STIME TTY TIME CMD\n\
                  root 1 0 0 10:00 ? 00:00:01 init\n\
                  root 42 1 0 10:01 ? 00:00:00 sleep 1000\n\
                  root 420 1 0 10:01 ? 00:00:00 other 42\n";
        let out = ps_rows(ps, &[42]).unwrap();
        assert_eq!(
            out,
            "UID PID PPID C STIME TTY TIME CMD\nroot 42 1 0 10:01 ? 00:00:00 sleep 1000\n"
        );
        assert!(ps_rows("USER COMMAND\n", &[1]).is_err());
    }
}
