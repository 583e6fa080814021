//! Governance scope: cgroup v2 directories and their ids.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use rampart_common::{CgroupPathKey, CGROUP_PATH_BYTES, MAX_CGROUP_LEVELS};

use super::{cgroup_pattern::Pattern, sys};

/// `CGROUP2_SUPER_MAGIC` from `include/uapi/linux/magic.h`.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A governed cgroup: its name in policies, its directory, and the id the kernel reports for
/// it when it exists.
///
/// Governance follows the name: the kernel keeps `name -> slot` in `GOVERNED_PATHS` and
/// governs a cgroup made at that path (again, or for the first time) while making it, so
/// `id` is only the cgroup that was there when the agent looked. A pattern is governed the
/// same way through `GOVERNED_PATTERNS` (its parent's path `-> pattern, slot`); the cgroups
/// that match it when the agent looks are governed by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    /// Its path relative to the cgroup v2 root, as the kernel spells it (`/a/b`), or the
    /// pattern's text. Empty for a cgroup adopted from pinned maps by id alone.
    pub name: String,
    /// Its directory in the cgroup2 mount (a pattern's: its parent's).
    pub path: PathBuf,
    /// Its inode number (what `bpf_get_current_cgroup_id` returns for it); `None` while
    /// nothing exists at the path, and for a pattern.
    pub id: Option<u64>,
    /// How the kernel is told to govern it.
    pub by: By,
}

/// How a governed cgroup is written into the kernel's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    /// Its name in `GOVERNED_PATHS`, and its id in `GOVERNED`.
    Name,
    /// Its id in `GOVERNED` alone: a match of a pattern (`name` is its path) or a cgroup
    /// adopted from pinned maps.
    Id,
    /// A pattern in `GOVERNED_PATTERNS` (no id of its own).
    Pattern(Pattern),
}

fn is_cgroup2(path: &Path) -> Result<bool> {
    let f_type = sys::fs_type(path).with_context(|| format!("cannot statfs {}", path.display()))?;
    Ok(f_type == CGROUP2_SUPER_MAGIC)
}

/// The kernel's spelling of a governed cgroup name (`/a/b`: one `/` before each component,
/// none at the end), or why it cannot be governed. Pure: names come from signed policies and
/// the host configuration, and must match what the kernel's `cgroup_mkdir` tracepoint
/// reports byte for byte. A `*` makes it a pattern ([`Pattern::parse`] says which are
/// valid).
pub fn normalize(name: &str) -> Result<String> {
    if !name.starts_with('/') {
        bail!("governed cgroup `{name}` must be an absolute path below the cgroup v2 root");
    }
    let parts: Vec<&str> = name.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        bail!(
            "governed cgroup `{name}` is the cgroup v2 root; governing the whole host is \
             refused, govern a child cgroup instead"
        );
    }
    if let Some(bad) = parts.iter().find(|c| **c == "." || **c == "..") {
        bail!("governed cgroup `{name}` contains `{bad}`; name the cgroup without it");
    }
    if parts.len() >= MAX_CGROUP_LEVELS as usize {
        bail!(
            "governed cgroup `{name}` is {} levels deep; governed cgroups must be fewer than \
             {MAX_CGROUP_LEVELS} levels below the cgroup v2 root",
            parts.len()
        );
    }
    let normal = format!("/{}", parts.join("/"));
    if CgroupPathKey::new(&normal).is_none() {
        bail!(
            "governed cgroup `{name}` is {} bytes long; at most {} are supported",
            normal.len(),
            CGROUP_PATH_BYTES - 2
        );
    }
    Pattern::parse(&normal)?;
    Ok(normal)
}

impl Cgroup {
    /// Resolves the governed cgroup `name` (see [`normalize`]) below the cgroup v2 mount
    /// `root`. A missing directory is not an error: the cgroup is governed once it is made
    /// (`id` is `None` until then). Anything else at the path that is not a cgroup v2
    /// directory is. A pattern resolves to its parent's directory, without an id.
    pub fn resolve(root: &Path, name: &str) -> Result<Self> {
        let name = normalize(name)?;
        let pattern = Pattern::parse(&name)?;
        let dir = pattern
            .as_ref()
            .map_or(name.as_str(), |p| p.parent.as_str());
        let path = root.join(dir.trim_start_matches('/'));
        let id = cgroup_id(&path)?;
        Ok(match pattern {
            Some(p) => Self {
                name,
                path,
                id: None,
                by: By::Pattern(p),
            },
            None => Self {
                name,
                path,
                id,
                by: By::Name,
            },
        })
    }

    /// The cgroups that match this pattern now (none for a name, or while the parent does
    /// not exist), each to be governed by id.
    pub fn matches(&self) -> Result<Vec<Cgroup>> {
        let By::Pattern(pattern) = &self.by else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.path.display())),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", self.path.display()))?;
            let Some(child) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !pattern.matches_name(&child) {
                continue;
            }
            let path = entry.path();
            // Gone since it was listed: the kernel governs it if it is made again.
            let Some(id) = cgroup_id(&path)? else {
                continue;
            };
            found.push(Cgroup {
                name: format!("{}/{child}", pattern.parent),
                path,
                id: Some(id),
                by: By::Id,
            });
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// The key of its name in `GOVERNED_PATHS` (`None` unless governed by name).
    pub fn path_key(&self) -> Option<CgroupPathKey> {
        match self.by {
            By::Name => CgroupPathKey::new(&self.name),
            By::Id | By::Pattern(_) => None,
        }
    }

    /// Its path for messages: the name, or the id of one adopted by id alone.
    pub fn label(&self) -> String {
        match (&self.name, self.id) {
            (n, _) if !n.is_empty() => n.clone(),
            (_, Some(id)) => format!("(cgroup id {id})"),
            (_, None) => "(unknown cgroup)".into(),
        }
    }
}

/// The id of the cgroup v2 directory at `path`, `None` when nothing is there; anything
/// else at the path is an error.
fn cgroup_id(path: &Path) -> Result<Option<u64>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.is_dir() || !is_cgroup2(path)? {
                bail!(
                    "{} is not a cgroup v2 directory; governance needs cgroup v2 \
                     (mount it with `mount -t cgroup2 none /sys/fs/cgroup`)",
                    path.display()
                );
            }
            Ok(Some(meta.ino()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot stat {}", path.display())),
    }
}

/// Whether the cgroup path (or governed pattern) `cgroup` is one of `names` (names or
/// patterns) or below one (`/a/b` is below `/a`, `/ab` is not).
pub fn within(cgroup: &str, names: &[String]) -> bool {
    names
        .iter()
        .any(|a| super::cgroup_pattern::contained(cgroup, a))
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

/// Resolves a governed cgroup named as in a policy: relative to the cgroup v2 root, with a
/// leading `/` (see [`Cgroup::resolve`]); a pattern comes with the cgroups matching it now.
pub fn open_in_hierarchy(root: &Path, name: &str) -> Result<Vec<Cgroup>> {
    let cgroup = Cgroup::resolve(root, name).with_context(|| format!("governed cgroup {name}"))?;
    let matches = cgroup
        .matches()
        .with_context(|| format!("governed cgroup pattern {name}"))?;
    Ok(std::iter::once(cgroup).chain(matches).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_spelled_as_the_kernel_does() {
        assert_eq!(normalize("/a/b").unwrap(), "/a/b");
        assert_eq!(
            normalize("//system.slice//nginx.service/").unwrap(),
            "/system.slice/nginx.service"
        );
    }

    #[test]
    fn names_that_cannot_be_governed_are_refused() {
        for (name, why) in [
            ("a/b", "absolute"),
            ("/", "the cgroup v2 root"),
            ("///", "the cgroup v2 root"),
            ("/a/../b", "contains `..`"),
            ("/a/./b", "contains `.`"),
        ] {
            let e = normalize(name).unwrap_err().to_string();
            assert!(e.contains(why), "{name}: {e}");
        }
        let deep = "/d".repeat(MAX_CGROUP_LEVELS as usize);
        assert!(normalize(&deep)
            .unwrap_err()
            .to_string()
            .contains("levels deep"));
        let long = format!("/{}", "x".repeat(CGROUP_PATH_BYTES));
        assert!(normalize(&long)
            .unwrap_err()
            .to_string()
            .contains("bytes long"));
        let longest = format!("/{}", "x".repeat(CGROUP_PATH_BYTES - 3));
        assert!(normalize(&longest).is_ok());
    }

    #[test]
    fn a_missing_cgroup_resolves_without_an_id() {
        let root = std::env::temp_dir().join(format!("rampart-cg-{}", std::process::id()));
        let cg = Cgroup::resolve(&root, "/not/made/yet").unwrap();
        assert_eq!(cg.id, None);
        assert_eq!(cg.name, "/not/made/yet");
        assert_eq!(cg.path, root.join("not/made/yet"));
    }

    #[test]
    fn a_directory_that_is_not_a_cgroup_is_refused() {
        let tmp = std::env::temp_dir();
        let name = format!("rampart-notcg-{}", std::process::id());
        std::fs::create_dir_all(tmp.join(&name)).unwrap();
        let err = Cgroup::resolve(&tmp, &format!("/{name}")).unwrap_err();
        let _ = std::fs::remove_dir(tmp.join(&name));
        assert!(
            err.to_string().contains("not a cgroup v2 directory"),
            "{err}"
        );
    }
}
