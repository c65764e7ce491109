//! `cp` as Docker's CLI takes it (docker/cli `container/cp.go`, Docker 20.10):
//! `CONTAINER:SRC DEST`, `SRC CONTAINER:DEST`, `-` for a tar archive on stdout or stdin; the
//! copying itself is `runtime::copy`'s.

use anyhow::{bail, Result};
use runtime::copy::{self, Local};
use runtime::lifecycle;

use crate::Cli;

/// `CONTAINER:PATH` or a local path.
enum Place {
    Container(String, String),
    Local(String),
}

fn place(arg: &str) -> Place {
    // A path with a slash before the first colon is local (Docker's `splitCpArg`).
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') && !arg.starts_with('.') => {
            Place::Container(c.to_string(), p.to_string())
        }
        _ => Place::Local(arg.to_string()),
    }
}

fn local(p: &str) -> Local {
    match p {
        "-" => Local::Stream,
        p => Local::Path(p.into()),
    }
}

pub fn run(cli: &Cli, src: &str, dst: &str, archive: bool, follow: bool) -> Result<i32> {
    let root = &cli.root;
    match (place(src), place(dst)) {
        (Place::Container(..), Place::Container(..)) => {
            bail!("copying between containers is not supported")
        }
        (Place::Local(_), Place::Local(_)) => bail!("must specify at least one container source"),
        (Place::Container(c, path), Place::Local(l)) => {
            let rec = lifecycle::find(root, &c)?;
            let out = std::io::BufWriter::new(std::io::stdout().lock());
            let r = copy::from_container(root, &rec, &path, &local(&l), archive, out);
            if let Err(runtime::Error::Io(_, e)) = &r {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    crate::exit::die_of_sigpipe();
                }
            }
            r?;
        }
        (Place::Local(l), Place::Container(c, path)) => {
            let rec = lifecycle::find(root, &c)?;
            copy::into_container(
                root,
                &rec,
                &path,
                &local(&l),
                archive,
                follow,
                std::io::stdin().lock(),
            )?;
        }
    }
    Ok(0)
}
