//! `rbox` container commands: run, create, start, stop, kill, restart, rm, ps, logs, wait,
//! exec, inspect, rename, top, container prune, system prune (and the hidden monitor).

pub mod commit;
mod cp;
pub mod create;
mod healthflags;
mod hostflags;
pub mod ps;
mod resources;

use std::io::Write;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use runtime::{exec, lifecycle, logs};

use crate::format::{self, ListFormat};
use crate::{Cli, Exit};
use create::CreateArgs;

#[derive(Subcommand)]
pub enum Cmd {
    #[command(flatten)]
    Common(Common),
    /// List containers
    Ps(PsArgs),
    /// Show the history of an image
    History(commit::HistoryArgs),
    /// Manage containers
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Runs a container's healthcheck probe in it (run by its monitor)
    #[command(name = "container-health", hide = true)]
    Health { id: String },
    /// Owns a detached container (run by rbox itself)
    #[command(name = "container-monitor", hide = true)]
    Monitor {
        /// Take over a running container whose monitor died
        #[arg(long)]
        adopt: bool,
        /// Go on with the restart a dead monitor was waiting for
        #[arg(long)]
        resume: bool,
        /// Take the container back from the monitor's small mode (state in descriptor FD)
        #[arg(long = "continue", value_name = "FD")]
        cont: Option<i32>,
        /// Serve descriptor 4 as an attached client from the start (a `run -it` that may
        /// detach)
        #[arg(long)]
        attached: bool,
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
        /// Override the key sequence for detaching a container
        #[arg(long = "detach-keys")]
        detach_keys: Option<String>,
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
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Copy files/folders between a container and the local filesystem
    Cp {
        /// Archive mode (copy all uid/gid information)
        #[arg(short = 'a', long)]
        archive: bool,
        /// Always follow symbol link in SRC_PATH
        #[arg(short = 'L', long = "follow-link")]
        follow_link: bool,
        /// CONTAINER:SRC_PATH or SRC_PATH (- for a tar archive on stdin)
        src: String,
        /// CONTAINER:DEST_PATH or DEST_PATH (- for a tar archive on stdout)
        dst: String,
    },
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Export a container's filesystem as a tar archive
    Export {
        /// Write to a file, instead of STDOUT
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
        container: String,
    },
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Update configuration of one or more containers
    Update(resources::UpdateArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(resources::StatsArgs),
    /// Pause all processes within one or more containers
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Unpause all processes within one or more containers
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
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
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    sig_proxy: bool,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    detach: bool,
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
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    detach_keys: Option<String>,
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
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", allow_negative_numbers = true)]
    last: Option<i64>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    size: bool,
    /// Filter output based on conditions provided (name, id, label, status, exited, network,
    /// ancestor, volume, publish, expose, before, since, health)
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Format output using a custom template ("table", "table TEMPLATE", "json" or TEMPLATE)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template ("json": the JSON on one line)
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Display total file sizes
    #[arg(short = 's', long)]
    size: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label=k=v", "label!=k")
    #[arg(long)]
    filter: Vec<String>,
}

impl Cmd {
    /// `run` and `create`, whose errors exit 125 (Docker's `docker run` wraps them so).
    pub fn is_run_or_create(&self) -> bool {
        let c = match self {
            Cmd::Common(c) => c,
            Cmd::Container {
                cmd: ContainerCmd::Common(c),
            } => c,
            _ => return false,
        };
        matches!(c, Common::Run(_) | Common::Create(_))
    }

    /// The commands whose process owns a running container (see `commands::owns_processes`).
    pub fn owns_processes(&self) -> bool {
        let c = match self {
            Cmd::Monitor { .. } | Cmd::Health { .. } => return true,
            Cmd::Common(c) => c,
            Cmd::Container {
                cmd: ContainerCmd::Common(c),
            } => c,
            _ => return false,
        };
        matches!(
            c,
            Common::Run(_)
                | Common::Exec(_)
                | Common::Start { attach: true, .. }
                // It may hold the terminal in raw mode: a closed stdout ends it through
                // EPIPE, which restores the terminal, not through SIGPIPE.
                | Common::Attach(_)
                // They mount a stopped container's rootfs for the time of the call.
                | Common::Export { .. }
                | Common::Cp { .. }
        )
    }
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
        Cmd::History(a) => commit::history(cli, a),
        Cmd::Container { cmd } => match cmd {
            ContainerCmd::Common(c) => common(cli, c),
            ContainerCmd::Ls(a) => ps_cmd(cli, a),
            ContainerCmd::Inspect(a) => inspect(cli, a),
            ContainerCmd::Prune(a) => container_prune(cli, a),
        },
        Cmd::Health { id } => runtime::health::probe_main(root, id).map_err(rt),
        Cmd::Monitor {
            cont: Some(fd), id, ..
        } => Ok(lifecycle::continue_main(root, id, *fd)),
        Cmd::Monitor {
            adopt,
            resume,
            attached,
            id,
            ..
        } => {
            let begin = match (adopt, resume) {
                (true, _) => lifecycle::Begin::Adopt,
                (_, true) => lifecycle::Begin::Resume,
                _ => lifecycle::Begin::Start,
            };
            Ok(lifecycle::monitor_main(root, id, begin, *attached))
        }
    }
}

fn common(cli: &Cli, c: &Common) -> Result<i32> {
    let root = &cli.root;
    let out = &mut std::io::stdout();
    match c {
        Common::Run(a) => run_container(cli, a),
        Common::Create(a) => {
            let opts = a.options(false, false)?;
            ensure_image(cli, a)?;
            let rec = lifecycle::create(root, &opts).map_err(rt)?;
            record_links(root, &rec, &a.host.link)?;
            a.host.write_cidfile(&rec.id)?;
            writeln!(out, "{}", rec.id)?;
            Ok(0)
        }
        Common::Start {
            attach,
            interactive,
            detach_keys,
            containers,
        } => {
            // Checked as dockerd checks it at attach. The keys detach where Docker's do: a
            // tty with our terminal's input forwarded (`start -ai`).
            runtime::attach::detach_keys(detach_keys.as_deref()).map_err(rt)?;
            if *attach {
                let [c] = containers.as_slice() else {
                    return Err(anyhow!(
                        "you cannot start and attach multiple containers at once"
                    ));
                };
                // Docker's `start -a` fails with exit 1 whatever kept the container from
                // starting; once it ran, the container's own code (0 after a detach).
                let rec = lifecycle::find(root, c)?;
                if runtime::attach::can_detach(&rec.settings, *interactive) {
                    let started =
                        runtime::attach::start_attached(root, &rec.id, detach_keys.as_deref())?;
                    return Ok(attached_session(started)?);
                }
                return Ok(lifecycle::run_attached(root, &rec.id, *interactive)?);
            }
            start_all(root, containers)
        }
        Common::Stop { how, containers } => {
            let opts = how.options()?;
            each_parallel(containers, |c| {
                runtime::pause::thaw(root, c);
                lifecycle::stop(root, c, opts)?;
                Ok(())
            })
        }
        Common::Kill { signal, containers } => {
            let sig = runtime::signal::parse(signal)?;
            each_parallel(containers, |c| {
                runtime::pause::thaw(root, c);
                lifecycle::kill(root, c, sig)?;
                Ok(())
            })
        }
        Common::Restart { how, containers } => {
            let opts = how.options()?;
            each(containers, |c| {
                runtime::pause::thaw(root, c);
                lifecycle::restart(root, c, opts)?;
                Ok(())
            })
        }
        Common::Rm {
            force,
            volumes,
            containers,
        } => each_parallel(containers, |c| {
            if *force {
                runtime::pause::thaw(root, c);
            }
            let r = match volumes {
                true => lifecycle::remove_with_volumes(root, c, *force),
                false => lifecycle::remove(root, c, *force),
            };
            match r {
                // `rm -f` of what is not there succeeds, with the error on stderr (Docker
                // 20.10: cleanup scripts under `set -e` go on).
                Err(e @ runtime::Error::NotFound(_)) if *force => {
                    eprintln!("Error: {e}");
                    Err(Skipped)
                }
                r => r.map(|_| ()).map_err(Failed),
            }
        }),
        Common::Logs(a) => logs_cmd(cli, a),
        Common::Attach(a) => {
            let opts = runtime::attach::AttachOptions {
                stdin: !a.no_stdin,
                sig_proxy: a.sig_proxy,
                detach_keys: a.detach_keys.clone(),
            };
            // Docker's attach: the container's code once it ran; a detach is the CLI's
            // "read escape sequence" error, exit 1.
            match runtime::attach::attach(root, &a.container, &opts).map_err(rt)? {
                runtime::attach::Ended::Exited(code) => Ok(code),
                runtime::attach::Ended::Detached => {
                    // Docker's CLI says so once the terminal is back to normal.
                    eprintln!("read escape sequence");
                    Ok(1)
                }
            }
        }
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
                detach: a.detach,
                detach_keys: a.detach_keys.clone(),
                ..Default::default()
            };
            exec::exec(root, &a.container, &opts).map_err(rt)
        }
        Common::Cp {
            archive,
            follow_link,
            src,
            dst,
        } => cp::run(cli, src, dst, *archive, *follow_link),
        Common::Diff { container } => {
            let rec = lifecycle::find(root, container).map_err(rt)?;
            for c in runtime::contents::changes(root, &rec)? {
                writeln!(out, "{} {}", c.kind, c.path)?;
            }
            Ok(0)
        }
        Common::Export { output, container } => export(cli, container, output.as_deref()),
        Common::Commit(a) => commit::commit(cli, a),
        Common::Update(a) => resources::update(cli, a),
        Common::Stats(a) => resources::stats(cli, a),
        Common::Pause { containers } => each(containers, |c| {
            runtime::pause::pause(root, c)?;
            Ok(())
        }),
        Common::Unpause { containers } => each(containers, |c| {
            runtime::pause::unpause(root, c)?;
            Ok(())
        }),
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

/// `start` without `-a`, as Docker's: each container's name once it runs (also when it
/// already did), each failure on stderr, then one error naming the failed ones (exit 1).
fn start_all(root: &std::path::Path, containers: &[String]) -> Result<i32> {
    let mut failed = Vec::new();
    for c in containers {
        match lifecycle::start(root, c) {
            Ok(_) | Err(runtime::Error::AlreadyRunning(_)) => println!("{c}"),
            Err(e) => {
                eprintln!("Error: {e}");
                failed.push(c.as_str());
            }
        }
    }
    if failed.is_empty() {
        return Ok(0);
    }
    Err(anyhow!("failed to start containers: {}", failed.join(", ")))
}

/// How one argument of `each` went wrong.
enum Outcome {
    /// Reported on stderr already, and not a failure of the command (`rm -f` of nothing).
    Skipped,
    Failed(runtime::Error),
}
use Outcome::{Failed, Skipped};

impl From<runtime::Error> for Outcome {
    fn from(e: runtime::Error) -> Outcome {
        Failed(e)
    }
}

/// Runs `f` on each argument, printing it on success as Docker does; one failure makes the
/// command fail (exit 1) after trying all.
fn each(args: &[String], f: impl FnMut(&str) -> std::result::Result<(), Outcome>) -> Result<i32> {
    report(args, args.iter().map(|a| a.as_str()).map(f).collect())
}

/// `each` with all arguments at once (Docker's `stop`, `kill`, `rm`: `stop a b c` takes one
/// stop timeout, not three), reporting in argument order.
fn each_parallel(
    args: &[String],
    f: impl Fn(&str) -> std::result::Result<(), Outcome> + Sync,
) -> Result<i32> {
    let results = std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = args.iter().map(|a| s.spawn(move || f(a))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Failed(runtime::Error::Invalid("thread panicked".into())))
                })
            })
            .collect()
    });
    report(args, results)
}

fn report(args: &[String], results: Vec<std::result::Result<(), Outcome>>) -> Result<i32> {
    let mut last = None;
    for (a, r) in args.iter().zip(results) {
        match r {
            Ok(()) => println!("{a}"),
            Err(Skipped) => {}
            Err(Failed(e)) => {
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
    let opts = a.create.options(a.rm, a.detach)?;
    // `create` accepts a stopped container to join (it may be started first); `run` would only
    // fail at start, so it refuses before anything is made.
    if let Some(target) = a
        .create
        .network
        .strip_prefix("container:")
        .filter(|t| !t.is_empty())
    {
        let t = runtime::Container::find(root, target).map_err(rt)?;
        if !t.running {
            return Err(anyhow!(
                "cannot join network of a non running container: {target}"
            ));
        }
    }
    ensure_image(cli, &a.create)?;
    let rec = lifecycle::create(root, &opts).map_err(rt)?;
    tracing::debug!(id = %rec.id, "run: created");
    if let Err(e) = record_links(root, &rec, &a.create.host.link)
        .and_then(|_| a.create.host.write_cidfile(&rec.id))
    {
        let _ = lifecycle::remove(root, &rec.id, true);
        return Err(e);
    }
    let cidfile = a.create.host.cidfile.clone();
    let forget = |root: &std::path::Path, id: &str| {
        let _ = lifecycle::remove(root, id, true);
        if let Some(f) = &cidfile {
            let _ = std::fs::remove_file(f);
        }
    };
    if a.detach {
        return match lifecycle::start(root, &rec.id) {
            Ok(r) => {
                println!("{}", r.id);
                Ok(0)
            }
            Err(e) => {
                forget(root, &rec.id);
                Err(rt(e))
            }
        };
    }
    let s = &opts.settings;
    if a.create.host.attach.is_empty() && runtime::attach::can_detach(s, true) {
        // `-it` from a terminal: a detached monitor with this process as its client, so the
        // detach keys can leave the container running.
        let started = match runtime::attach::start_attached(root, &rec.id, None) {
            Ok(st) => st,
            Err(e) => {
                forget(root, &rec.id);
                return Err(rt(e));
            }
        };
        return attached_session(started).map_err(rt);
    }
    let attached = match a.create.host.attach.is_empty() {
        true => lifecycle::run_attached(root, &rec.id, a.create.interactive),
        false => lifecycle::run_attached_streams(
            root,
            &rec.id,
            s.attach_stdin,
            s.attach_stdout,
            s.attach_stderr,
        ),
    };
    match attached {
        Ok(code) => {
            tracing::debug!(code, "run: done");
            Ok(code)
        }
        Err(e) => {
            // A foreground run that could not start leaves nothing behind.
            forget(root, &rec.id);
            Err(rt(e))
        }
    }
}

/// The foreground part of `run -it`/`start -ai`: the container's code, 0 after a detach
/// (docker/cli's run and start return nil, silently, on the escape sequence).
fn attached_session(started: runtime::attach::Started) -> runtime::Result<i32> {
    Ok(
        match started.session(&runtime::attach::AttachOptions::default())? {
            runtime::attach::Ended::Exited(code) => code,
            runtime::attach::Ended::Detached => 0,
        },
    )
}

/// `export`: the container's merged filesystem as a tar archive, to `-o FILE` (written beside
/// it and renamed, so a failure leaves no partial file) or to a stdout that is no terminal.
fn export(cli: &Cli, container: &str, output: Option<&std::path::Path>) -> Result<i32> {
    use std::io::IsTerminal;
    let rec = lifecycle::find(&cli.root, container).map_err(rt)?;
    match output {
        Some(path) => {
            let tmp = path.with_file_name(format!(
                ".{}.rbox-{}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                std::process::id()
            ));
            let r = (|| -> Result<()> {
                let f = std::fs::File::create(&tmp)?;
                runtime::contents::with_rootfs(&cli.root, &rec, |dir| {
                    runtime::contents::tar_dir(
                        dir,
                        std::path::Path::new(""),
                        std::io::BufWriter::new(&f),
                    )
                })?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)?;
                Ok(())
            })();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(anyhow!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                ));
            }
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            let r = runtime::contents::with_rootfs(&cli.root, &rec, |dir| {
                runtime::contents::tar_dir(dir, std::path::Path::new(""), out)
            });
            if let Err(runtime::Error::Io(_, e)) = &r {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    crate::exit::die_of_sigpipe();
                }
            }
            r?;
        }
    }
    Ok(0)
}

/// `--link NAME[:ALIAS]`: the target must exist (Docker's "could not get container for");
/// recorded as Docker records links (`/NAME:/THIS/ALIAS`).
fn record_links(root: &std::path::Path, rec: &runtime::Record, links: &[String]) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let mut recorded = Vec::new();
    for l in links {
        let name = l.split(':').next().unwrap_or(l);
        if lifecycle::find(root, name).is_err() {
            let _ = lifecycle::remove(root, &rec.id, true);
            return Err(anyhow!(Exit::new(
                125,
                format!("could not get container for {name}")
            )));
        }
        recorded.push(runtime::links::record_form(l, &rec.name)?);
    }
    runtime::Container::find(root, &rec.id)?.set_links(recorded)?;
    Ok(())
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
    let filters = runtime::filter::Filters::parse(&a.filter, runtime::filter::PS_KEYS)?;
    // `-n N` and `-l`: the last created ones, whatever their state (`-n 0` is no limit).
    let last = match (a.latest, a.last) {
        (true, _) => Some(1),
        (false, Some(n)) if n > 0 => Some(n as usize),
        _ => None,
    };
    let store = images::Store::open(&cli.root).ok();
    let nets = net::Store::new(&cli.root);
    let image_id = |r: &str| store.as_ref()?.resolve(r).ok().map(|i| i.id);
    let network_id = |n: &str| nets.find(n).ok().map(|n| n.id);
    let lookup = runtime::filter::Lookup {
        image_id: &image_id,
        network_id: &network_id,
    };
    let recs =
        runtime::filter::containers(lifecycle::list(&cli.root), &filters, a.all, last, &lookup)?;
    let trunc = !a.no_trunc;
    let sized = a.size || ListFormat::uses(a.format.as_deref(), "Size");
    // As Docker 28: -q prints ids whatever the format.
    let format = if a.quiet {
        Some("{{.ID}}")
    } else {
        a.format.as_deref()
    };
    let table = if a.size { ps::TABLE_SIZE } else { ps::TABLE };
    let f = ListFormat::parse(format, table)?;
    let rows: Vec<_> = recs
        .iter()
        .map(|r| ps::row(r, trunc, sized.then(|| sizes(cli, r))))
        .collect();
    std::io::stdout().write_all(f.render(&rows, ps::HEADER)?.as_bytes())?;
    Ok(0)
}

/// A container's writable layer and its image, in bytes (Docker's SizeRw, and SizeRootFs
/// less SizeRw).
pub fn sizes(cli: &Cli, r: &runtime::Record) -> (u64, u64) {
    sizes_in(&cli.root, r)
}

pub fn sizes_in(root: &std::path::Path, r: &runtime::Record) -> (u64, u64) {
    let rw = runtime::usage::disk_usage(&runtime::Paths::new(root, &r.id).upper());
    let image = images::Store::open(root)
        .and_then(|s| s.resolve(&r.image_id))
        .map(|i| i.size)
        .unwrap_or(0);
    (rw, image)
}

fn inspect(cli: &Cli, a: &InspectArgs) -> Result<i32> {
    format::inspect_each(a.format.as_deref(), &a.containers, |c| {
        super::inspect::container(cli, c, a.size)
    })
}

fn logs_cmd(cli: &Cli, a: &LogsArgs) -> Result<i32> {
    let now = chrono::Utc::now();
    let time = |v: &Option<String>, flag: &str| {
        runtime::timestamp::parse_flag(v.as_deref(), flag, now).map_err(|e| anyhow!(e))
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
pub fn ps_rows(ps: &str, pids: &[i32]) -> Result<String> {
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

fn container_prune(cli: &Cli, a: &PruneArgs) -> Result<i32> {
    let f = runtime::filter::Filters::parse(&a.filter, runtime::filter::PRUNE_KEYS)?;
    if !a.force && !crate::prompt::confirm("WARNING! This will remove all stopped containers.")? {
        println!("Total reclaimed space: 0B");
        return Ok(0);
    }
    let (ids, bytes) = prune_containers(cli, &f)?;
    crate::prompt::deleted("Containers", &ids);
    println!(
        "Total reclaimed space: {}",
        runtime::volume::human_size(bytes)
    );
    Ok(0)
}

/// Removes the stopped containers `f` selects; their ids and writable layers' bytes.
pub fn prune_containers(cli: &Cli, f: &runtime::filter::Filters) -> Result<(Vec<String>, u64)> {
    prune_containers_in(&cli.root, f)
}

pub fn prune_containers_in(
    root: &std::path::Path,
    f: &runtime::filter::Filters,
) -> Result<(Vec<String>, u64)> {
    let mut chosen = Vec::new();
    for r in lifecycle::list(root) {
        if !r.active() && f.prune_matches(r.created, &r.settings.labels)? {
            chosen.push((r.id.clone(), sizes_in(root, &r).0));
        }
    }
    // Without filters, lifecycle's own prune also clears what crashes left.
    let removed: Vec<String> = if f.is_empty() {
        lifecycle::prune(root)
    } else {
        chosen
            .iter()
            .filter(|(id, _)| lifecycle::remove(root, id, false).is_ok())
            .map(|(id, _)| id.clone())
            .collect()
    };
    let bytes = chosen
        .iter()
        .filter(|(id, _)| removed.contains(id))
        .map(|(_, b)| b)
        .sum();
    Ok((removed, bytes))
}

/// `system prune`: stopped containers, unused networks, dangling (with `all` every unused)
/// images, with `volumes` anonymous unused volumes; and the repair of what crashed rbox
/// processes left behind (sandboxes without a container, kernel objects of idle networks).
pub fn system_prune(
    cli: &Cli,
    all: bool,
    volumes: bool,
    f: &runtime::filter::Filters,
) -> Result<i32> {
    let root = &cli.root;
    let (ids, mut bytes) = prune_containers(cli, f)?;
    crate::prompt::deleted("Containers", &ids);
    // Sandboxes whose container record is gone (a crash between steps) are released.
    if let Ok(entries) = std::fs::read_dir(root.join("netns")) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if runtime::store::load(&runtime::Paths::new(root, &id)).is_err() {
                let _ = net::release(root, &id);
            }
        }
    }
    let nets = super::networks::prune_networks(root, f).unwrap_or_default();
    crate::prompt::deleted("Networks", &nets);
    if volumes {
        let (names, b) = runtime::volume::prune(root, false, f)?;
        crate::prompt::deleted("Volumes", &names);
        bytes += b;
    }
    let (lines, b) = super::images::prune_images(cli, all, f)?;
    crate::prompt::deleted("Images", &lines);
    bytes += b;
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
    println!(
        "Total reclaimed space: {}",
        runtime::volume::human_size(bytes)
    );
    Ok(0)
}

/// `system boot`: prints each container it started, as `start` does.
pub fn boot(cli: &Cli) -> Result<i32> {
    Ok(report_each(lifecycle::boot(&cli.root), "starting"))
}

pub fn shutdown(cli: &Cli, time: Option<i64>) -> Result<i32> {
    Ok(report_each(
        lifecycle::shutdown(&cli.root, time),
        "stopping",
    ))
}

/// Prints the names `boot`/`shutdown` acted on, and an error line for each that failed.
fn report_each(done: Vec<lifecycle::Booted>, doing: &str) -> i32 {
    let mut code = 0;
    for b in done {
        match b.result {
            Ok(()) => println!("{}", b.name),
            Err(e) => {
                eprintln!("Error: {doing} {}: {e}", b.name);
                code = 1;
            }
        }
    }
    code
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
