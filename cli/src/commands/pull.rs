//! `rbox pull`, `rbox login`, `rbox logout`, and `image_for_container`, the `--pull`
//! lookup `run` and `create` use. Output as Docker's: per-layer progress on a terminal only.

use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use images::{Image, Progress, PullOptions, PullPolicy, Pulled, Reference, Store};

use crate::Cli;

/// How often one layer's progress line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);
const BAR_WIDTH: u64 = 50;

#[derive(Subcommand)]
pub enum Cmd {
    /// Download an image from a registry
    Pull(PullArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
}

#[derive(Args)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Use plain http for this registry (localhost and 127.0.0.0/8 always do)
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    insecure: Vec<String>,
    /// NAME[:TAG|@DIGEST]
    name: String,
}

#[derive(Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    password_stdin: bool,
    /// Use plain http for this registry (localhost and 127.0.0.0/8 always do)
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    insecure: Vec<String>,
    /// Registry (Docker Hub when omitted)
    server: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Registry (Docker Hub when omitted)
    server: Option<String>,
}

pub fn run(cli: &Cli, cmd: &Cmd) -> anyhow::Result<i32> {
    let store = Store::open(&cli.root)?;
    match cmd {
        Cmd::Pull(a) => {
            let reference = Reference::parse(&a.name)?;
            let opts = options(a.platform.as_deref(), &a.insecure)?;
            pull(&store, &reference, &opts, io::stdout(), a.quiet)?;
            Ok(0)
        }
        Cmd::Login(a) => login(&store, a),
        Cmd::Logout(a) => {
            let server = a.server.as_deref().unwrap_or("docker.io");
            let key = images::registry_key(server);
            if store.logout(server)? {
                println!("Removing login credentials for {key}");
            } else {
                println!("Not logged in to {key}");
            }
            Ok(0)
        }
    }
}

/// The image a new container uses, pulled as `--pull` says; Docker's messages go to stderr.
/// `run`/`create` call this instead of `Store::resolve`.
pub fn image_for_container(
    cli: &Cli,
    reference: &str,
    policy: PullPolicy,
    platform: Option<&str>,
    quiet: bool,
) -> anyhow::Result<Image> {
    let store = Store::open(&cli.root)?;
    let local = match policy {
        PullPolicy::Always => None,
        PullPolicy::Never => return Ok(store.resolve(reference)?),
        PullPolicy::Missing => match store.resolve(reference) {
            Ok(image) => return Ok(image),
            Err(images::Error::NotFound(shown)) => Some(shown),
            Err(e) => return Err(e.into()),
        },
    };
    let r = Reference::parse(reference)?;
    if let (Some(_), false) = (local, quiet) {
        eprintln!("Unable to find image '{}' locally", shown(&r));
    }
    let opts = options(platform, &[])?;
    Ok(pull(&store, &r, &opts, io::stderr(), quiet)?.image)
}

fn options(platform: Option<&str>, insecure: &[String]) -> anyhow::Result<PullOptions> {
    Ok(PullOptions {
        platform: platform.map(images::Platform::parse).transpose()?,
        insecure_registries: insecure.to_vec(),
    })
}

/// "busybox:latest", "busybox@sha256:..." as Docker shows a reference.
fn shown(r: &Reference) -> String {
    match &r.digest {
        Some(d) => format!("{}@{d}", r.familiar_name()),
        None => r.familiar_tagged(),
    }
}

fn pull<W: Write + IsTerminal>(
    store: &Store,
    r: &Reference,
    opts: &PullOptions,
    out: W,
    quiet: bool,
) -> anyhow::Result<Pulled> {
    let mut view = View::new(out, quiet);
    if r.tag.is_none() && r.digest.is_none() {
        view.line("Using default tag: latest");
    }
    let what = r
        .digest
        .clone()
        .unwrap_or_else(|| r.tag_or_latest().to_string());
    // Docker names the repository without the registry: "library/busybox", "team/app"; the
    // line comes once the manifest is found.
    view.headline = format!("{what}: Pulling from {}", r.path);
    let pulled = store.pull(r, opts, &mut |p| view.event(p))?;
    view.finish();
    view.line(&format!("Digest: {}", pulled.digest));
    view.line(&format!(
        "Status: {} for {}",
        if pulled.updated {
            "Downloaded newer image"
        } else {
            "Image is up to date"
        },
        shown(r)
    ));
    let full = match &r.digest {
        Some(d) => format!("{}/{}@{d}", r.domain, r.path),
        None => format!("{}/{}:{}", r.domain, r.path, r.tag_or_latest()),
    };
    writeln!(view.out, "{full}")?;
    Ok(pulled)
}

struct Layer {
    id: String,
    size: u64,
    status: String,
    drawn: Option<Instant>,
}

/// Pull output: headline lines unless quiet; per-layer lines redrawn in place on a terminal,
/// their final state only otherwise.
struct View<W: Write> {
    out: W,
    tty: bool,
    quiet: bool,
    headline: String,
    layers: Vec<Layer>,
}

impl<W: Write + IsTerminal> View<W> {
    fn new(out: W, quiet: bool) -> View<W> {
        View {
            tty: out.is_terminal(),
            out,
            quiet,
            headline: String::new(),
            layers: Vec::new(),
        }
    }
}

impl<W: Write> View<W> {
    fn line(&mut self, s: &str) {
        if !self.quiet {
            let _ = writeln!(self.out, "{s}");
        }
    }

    fn event(&mut self, p: Progress) {
        match p {
            Progress::Layers(infos) => {
                let headline = std::mem::take(&mut self.headline);
                self.line(&headline);
                self.layers = infos
                    .iter()
                    .map(|l| Layer {
                        id: images::short_id(&l.digest),
                        size: l.size,
                        status: if l.present {
                            "Already exists".into()
                        } else {
                            "Pulling fs layer".into()
                        },
                        drawn: None,
                    })
                    .collect();
                if self.tty && !self.quiet {
                    for l in &self.layers {
                        let _ = writeln!(self.out, "{}: {}", l.id, l.status);
                    }
                }
            }
            Progress::Bytes { index, done } => {
                let Some(l) = self.layers.get_mut(index) else {
                    return;
                };
                if l.drawn.is_some_and(|t| t.elapsed() < REDRAW) {
                    return;
                }
                l.drawn = Some(Instant::now());
                l.status = format!("Downloading {}", bar(done, l.size));
                self.redraw(index);
            }
            Progress::Downloaded { index } => self.set(index, "Download complete"),
            Progress::Extracting => {
                for i in 0..self.layers.len() {
                    if self.layers[i].status != "Already exists" {
                        self.set(i, "Extracting");
                    }
                }
            }
        }
    }

    /// The layers' final lines.
    fn finish(&mut self) {
        for i in 0..self.layers.len() {
            if self.layers[i].status != "Already exists" {
                self.layers[i].status = "Pull complete".into();
            }
            if self.tty {
                self.redraw(i);
            } else if !self.quiet {
                let l = &self.layers[i];
                let _ = writeln!(self.out, "{}: {}", l.id, l.status);
            }
        }
    }

    fn set(&mut self, index: usize, status: &str) {
        if let Some(l) = self.layers.get_mut(index) {
            l.status = status.to_string();
            self.redraw(index);
        }
    }

    /// Rewrites layer `index`'s line: up to it, clear, print, back down.
    fn redraw(&mut self, index: usize) {
        if !self.tty || self.quiet {
            return;
        }
        let up = self.layers.len() - index;
        let l = &self.layers[index];
        let _ = write!(
            self.out,
            "\x1b[{up}A\r\x1b[2K{}: {}\r\x1b[{up}B",
            l.id, l.status
        );
        let _ = self.out.flush();
    }
}

/// "[=====>      ]  1.2MB/3.4MB"
fn bar(done: u64, total: u64) -> String {
    let filled = (done.min(total) * BAR_WIDTH)
        .checked_div(total)
        .unwrap_or(0);
    let mut b = "=".repeat(filled as usize);
    if filled < BAR_WIDTH {
        b.push('>');
        b.push_str(&" ".repeat((BAR_WIDTH - filled - 1) as usize));
    }
    format!("[{b}]  {}/{}", human(done), human(total))
}

/// Docker's `units.HumanSize`: decimal units, three significant digits.
fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{:.*}", digits, s.parse::<f64>().unwrap_or(v));
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

fn login(store: &Store, a: &LoginArgs) -> anyhow::Result<i32> {
    let server = a.server.as_deref().unwrap_or("docker.io");
    let Some(user) = a.username.as_deref() else {
        bail!("Cannot perform an interactive login: use -u USER with --password-stdin or -p");
    };
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => {
            let mut s = String::new();
            io::stdin().read_to_string(&mut s)?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("Cannot perform an interactive login: use --password-stdin or -p"),
    };
    let opts = options(None, &a.insecure)?;
    store.login(server, user, &password, &opts)?;
    println!("Login Succeeded");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How `run`/`create` take the flag: `--pull missing|always|never`, default missing.
    #[derive(clap::Parser)]
    struct RunFlags {
        #[arg(long, default_value = "missing")]
        pull: PullPolicy,
    }

    #[test]
    fn pull_flag_parses_as_docker_s() {
        use clap::Parser;
        let parse = |a: &[&str]| RunFlags::try_parse_from(a).map(|f| f.pull);
        assert_eq!(parse(&["run"]).unwrap(), PullPolicy::Missing);
        assert_eq!(
            parse(&["run", "--pull", "never"]).unwrap(),
            PullPolicy::Never
        );
        assert_eq!(
            parse(&["run", "--pull=always"]).unwrap(),
            PullPolicy::Always
        );
        let err = parse(&["run", "--pull", "sometimes"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("must be one of"), "{err}");
    }

    #[test]
    fn bars_and_sizes() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1234), "1.23kB");
        assert_eq!(human(2_500_000), "2.5MB");
        assert_eq!(human(123_456_789), "123MB");
        let b = bar(50, 100);
        assert!(b.starts_with(&format!("[{}>", "=".repeat(25))), "{b}");
        assert!(b.ends_with("50B/100B"), "{b}");
        assert_eq!(bar(100, 100), format!("[{}]  100B/100B", "=".repeat(50)));
        assert!(bar(5, 0).ends_with("5B/0B"));
    }
}
