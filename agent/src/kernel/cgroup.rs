//! Governance scope: cgroup v2 directories and their ids.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use rampart_common::MAX_CGROUP_LEVELS;

use super::sys;

/// `CGROUP2_SUPER_MAGIC` from `include/uapi/linux/magic.h`.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A governed cgroup: its path and the id the kernel reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// Its directory in the cgroup2 mount.
    pub path: PathBuf,
    /// Its inode number: what `bpf_get_current_cgroup_id` returns for it.
    pub id: u64,
    /// Depth below the cgroup2 root (the root is level 0).
    pub level: u32,
}

fn is_cgroup2(path: &Path) -> Result<bool> {
    let f_type = sys::fs_type(path).with_context(|| format!("cannot statfs {}", path.display()))?;
    Ok(f_type == CGROUP2_SUPER_MAGIC)
}

impl Cgroup {
    /// Resolves a cgroup v2 directory. The id is the directory's inode number, which is the
    /// kernfs node id that `bpf_get_current_cgroup_id()` returns.
    pub fn open(path: &Path) -> Result<Self> {
        let path = path
            .canonicalize()
            .with_context(|| format!("governed cgroup {} does not exist", path.display()))?;
        if !is_cgroup2(&path)? {
            bail!(
                "{} is not on a cgroup v2 file system; governance needs cgroup v2 \
                 (mount it with `mount -t cgroup2 none /sys/fs/cgroup`)",
                path.display()
            );
        }
        // The level is the number of cgroup2 directories above this one.
        let mut level = 0;
        let mut cur = path.parent();
        while let Some(dir) = cur {
            if !is_cgroup2(dir)? {
                break;
            }
            level += 1;
            cur = dir.parent();
        }
        if level == 0 {
            bail!(
                "{} is the cgroup v2 root; governing the whole host is refused, \
                 govern a child cgroup instead",
                path.display()
            );
        }
        if level >= MAX_CGROUP_LEVELS {
            bail!(
                "{} is {level} levels deep; governed cgroups must be fewer than \
                 {MAX_CGROUP_LEVELS} levels below the cgroup v2 root",
                path.display()
            );
        }
        let id = std::fs::metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?
            .ino();
        Ok(Self { path, id, level })
    }
}

/// Where the cgroup v2 hierarchy is mounted: the first `cgroup2` entry of
/// `/proc/self/mounts` (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones).
pub fn hierarchy_root() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .context("cannot read /proc/self/mounts to find the cgroup v2 mount")?;
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .context(
            "no cgroup v2 file system is mounted; governance needs one \
             (mount -t cgroup2 none /sys/fs/cgroup)",
        )
}

/// Opens a governed cgroup named as in a policy: relative to the cgroup v2 root, with a
/// leading `/`.
pub fn open_in_hierarchy(root: &Path, name: &str) -> Result<Cgroup> {
    let rel = name.trim_start_matches('/');
    Cgroup::open(&root.join(rel)).with_context(|| format!("governed cgroup {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_cgroup_directory_is_refused() {
        let err = Cgroup::open(&std::env::temp_dir()).unwrap_err();
        assert!(err.to_string().contains("not on a cgroup v2"), "{err}");
    }

    #[test]
    fn missing_directory_is_refused() {
        let err = Cgroup::open(Path::new("/nonexistent/rampart")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
