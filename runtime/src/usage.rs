//! Disk usage of a directory tree, as Docker counts it for `ps -s`, `system df` and volumes:
//! the sizes of the files, each hard-linked inode once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes of the files below `dir` (0 when it cannot be read).
pub fn disk_usage(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    walk(dir, &mut seen)
}

fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            total += walk(&e.path(), seen);
        } else if m.nlink() <= 1 || seen.insert((m.dev(), m.ino())) {
            total += m.len();
        }
    }
    total
}
