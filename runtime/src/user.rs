//! `-u USER[:GROUP]` resolved against the container's own /etc/passwd and /etc/group.

use std::path::Path;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

fn entries(rootfs: &Path, file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(rootfs.join(file)).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// Resolves `spec` ("", "name", "1000", "name:group", "1000:1000") as Docker does: names must
/// exist in the image; numeric ids need not.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<User> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = entries(rootfs, "etc/passwd");
    let groups = entries(rootfs, "etc/group");
    let by_name = passwd.iter().find(|e| e.len() >= 7 && e[0] == user);
    let (uid, mut gid, name, home) = match (by_name, user.parse::<u32>()) {
        (Some(e), _) => (
            e[2].parse().unwrap_or(0),
            e[3].parse().unwrap_or(0),
            e[0].clone(),
            e[5].clone(),
        ),
        (None, Ok(uid)) => match passwd.iter().find(|e| e.len() >= 7 && e[2] == user) {
            Some(e) => (uid, e[3].parse().unwrap_or(0), e[0].clone(), e[5].clone()),
            None => (uid, 0, String::new(), "/".to_string()),
        },
        (None, Err(_)) => {
            return Err(Error::Invalid(format!(
                "unable to find user {user}: no matching entries in passwd file"
            )))
        }
    };
    if let Some(g) = group {
        gid = match groups.iter().find(|e| e.len() >= 3 && e[0] == g) {
            Some(e) => e[2].parse().unwrap_or(0),
            None => g.parse().map_err(|_| {
                Error::Invalid(format!(
                    "unable to find group {g}: no matching entries in group file"
                ))
            })?,
        };
    }
    let additional_gids = if name.is_empty() || group.is_some() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|e| e.len() >= 4 && e[3].split(',').any(|m| m == name))
            .filter_map(|e| e[2].parse().ok())
            .filter(|g| *g != gid)
            .collect()
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// `--group-add` values as gids: numbers as they are, names from the image's /etc/group.
pub fn group_ids(rootfs: &Path, names: &[String]) -> Result<Vec<u32>> {
    let groups = entries(rootfs, "etc/group");
    names
        .iter()
        .map(
            |g| match groups.iter().find(|e| e.len() >= 3 && e[0] == *g) {
                Some(e) => Ok(e[2].parse().unwrap_or(0)),
                None => g.parse().map_err(|_| {
                    Error::Invalid(format!(
                        "Unable to find group {g}: no matching entries in group file"
                    ))
                }),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nweb:x:1000:1000::/srv:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nweb:x:1000:\nwheel:x:10:web\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn names_ids_and_groups() {
        let d = rootfs();
        let u = resolve(d.path(), "web").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()),
            (1000, 1000, vec![10], "/srv")
        );
        assert_eq!(resolve(d.path(), "").unwrap().uid, 0);
        let u = resolve(d.path(), "4242:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 10));
        assert_eq!(resolve(d.path(), "65534").unwrap().gid, 65534);
        assert!(resolve(d.path(), "ghost").is_err());
        assert!(resolve(d.path(), "web:ghosts").is_err());
    }
}
