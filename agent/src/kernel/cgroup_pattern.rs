//! Governed cgroup patterns: `/parent/prefix*suffix` governs every child of `/parent`
//! whose name starts with `prefix` and ends with `suffix` (and, like any governed cgroup,
//! everything below it), including children made later: the kernel's `cgroup_mkdir`
//! program matches a new cgroup's name against its parent's entry in `GOVERNED_PATTERNS`.
//!
//! Invariant: what this module says matches is exactly what the kernel program matches.
//! One `*`, in the last component only, with at most [`CGROUP_PATTERN_BYTES`] bytes on each
//! side, below a parent that is not the root; one pattern per parent (checked where the
//! policies are put together). Pure: the kernel side is proven in the VM.

use anyhow::{bail, Result};
use rampart_common::{CgroupPathKey, CgroupPattern, CGROUP_PATTERN_BYTES};

/// A parsed pattern (from a name already spelled as the kernel does, see
/// [`super::cgroup::normalize`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The parent cgroup (`/a/b`).
    pub parent: String,
    /// Text before the `*`.
    pub prefix: String,
    /// Text after the `*`.
    pub suffix: String,
}

impl Pattern {
    /// The pattern in `name`, `None` for a name without `*`, or why it cannot be one.
    pub fn parse(name: &str) -> Result<Option<Self>> {
        let stars = name.matches('*').count();
        if stars == 0 {
            return Ok(None);
        }
        let (parent, last) = name.rsplit_once('/').unwrap_or(("", name));
        if stars > 1 {
            bail!("governed cgroup pattern `{name}` has {stars} `*`; one is supported");
        }
        if parent.contains('*') || !last.contains('*') {
            bail!(
                "governed cgroup pattern `{name}`: `*` may only be in the last component \
                 (e.g. /system.slice/docker-*.scope)"
            );
        }
        if parent.is_empty() {
            bail!(
                "governed cgroup pattern `{name}` matches children of the cgroup v2 root; \
                 patterns must be below a named cgroup (e.g. /kubepods.slice/kubepods-*.slice)"
            );
        }
        let (prefix, suffix) = last.split_once('*').unwrap_or((last, ""));
        for (side, text) in [("before", prefix), ("after", suffix)] {
            if text.len() > CGROUP_PATTERN_BYTES {
                bail!(
                    "governed cgroup pattern `{name}` has {} bytes {side} the `*`; at most \
                     {CGROUP_PATTERN_BYTES} are supported",
                    text.len()
                );
            }
        }
        Ok(Some(Self {
            parent: parent.to_owned(),
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        }))
    }

    /// The pattern as written (`/a/b/pre*suf`).
    pub fn text(&self) -> String {
        format!("{}/{}*{}", self.parent, self.prefix, self.suffix)
    }

    /// Whether a child named `name` matches (as the kernel compares: bytes).
    pub fn matches_name(&self, name: &str) -> bool {
        name.len() >= self.prefix.len() + self.suffix.len()
            && name.starts_with(&self.prefix)
            && name.ends_with(&self.suffix)
            && !name.contains('/')
    }

    /// Whether the cgroup `path` (`/a/b/c`) is a match or below one.
    pub fn covers(&self, path: &str) -> bool {
        let Some(rest) = path
            .strip_prefix(self.parent.as_str())
            .and_then(|r| r.strip_prefix('/'))
        else {
            return false;
        };
        let child = rest.split('/').next().unwrap_or(rest);
        self.matches_name(child)
    }

    /// Whether every cgroup `other` matches, this matches too (same parent, a prefix that
    /// extends this one's and a suffix that ends with this one's).
    pub fn includes(&self, other: &Pattern) -> bool {
        self.parent == other.parent
            && other.prefix.starts_with(&self.prefix)
            && other.suffix.ends_with(&self.suffix)
    }

    /// The `GOVERNED_PATTERNS` key: the parent's path.
    pub fn key(&self) -> Option<CgroupPathKey> {
        CgroupPathKey::new(&self.parent)
    }

    /// The `GOVERNED_PATTERNS` value governing matches with `slot`.
    pub fn value(&self, slot: u32) -> Option<CgroupPattern> {
        CgroupPattern::new(&self.prefix, &self.suffix, slot)
    }

    /// The pattern of a `GOVERNED_PATTERNS` entry (for adoption from pinned maps); `None`
    /// for an entry no agent writes.
    pub fn from_kernel(key: &CgroupPathKey, value: &CgroupPattern) -> Option<Self> {
        let text = |bytes: &[u8], len: usize| -> Option<String> {
            String::from_utf8(bytes.get(..len)?.to_vec()).ok()
        };
        let parent_len = key.path.iter().position(|b| *b == 0)?;
        let pattern = Self {
            parent: text(&key.path, parent_len)?,
            prefix: text(&value.prefix, value.prefix_len as usize)?,
            suffix: text(&value.suffix, value.suffix_len as usize)?,
        };
        Self::parse(&pattern.text()).ok().flatten()
    }
}

/// Whether the cgroup `path` is the governed entry `governed` (a name or a pattern) or
/// below it (`/a/b` is below `/a`, `/ab` is not).
pub fn covers(governed: &str, path: &str) -> bool {
    match Pattern::parse(governed) {
        Ok(Some(p)) => p.covers(path),
        Ok(None) => {
            path == governed
                || path
                    .strip_prefix(governed)
                    .is_some_and(|r| r.starts_with('/'))
        }
        Err(_) => false,
    }
}

/// Whether everything the governed entry `inner` (a name or a pattern) governs is governed
/// by the entry `outer`.
pub fn contained(inner: &str, outer: &str) -> bool {
    match Pattern::parse(inner) {
        Ok(Some(p)) => match Pattern::parse(outer) {
            Ok(Some(o)) => o.includes(&p) || o.covers(&p.parent),
            Ok(None) => covers(outer, &p.parent),
            Err(_) => false,
        },
        Ok(None) => covers(outer, inner),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> Pattern {
        Pattern::parse(s).unwrap().unwrap()
    }

    #[test]
    fn patterns_parse_with_one_star_in_the_last_component() {
        let p = pattern("/system.slice/docker-*.scope");
        assert_eq!(
            (p.parent.as_str(), p.prefix.as_str(), p.suffix.as_str()),
            ("/system.slice", "docker-", ".scope")
        );
        assert_eq!(p.text(), "/system.slice/docker-*.scope");
        assert_eq!(pattern("/a/*").prefix, "");
        assert_eq!(Pattern::parse("/a/b").unwrap(), None);
        for (bad, why) in [
            ("/a/*/b", "last component"),
            ("/a/b**", "2 `*`"),
            ("/a*/b*", "2 `*`"),
            ("/docker-*.scope", "cgroup v2 root"),
            ("/*", "cgroup v2 root"),
        ] {
            let e = Pattern::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("/a/{}*", "x".repeat(CGROUP_PATTERN_BYTES + 1));
        assert!(Pattern::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("bytes before"));
        let longest = format!(
            "/a/{}*{}",
            "x".repeat(CGROUP_PATTERN_BYTES),
            "y".repeat(CGROUP_PATTERN_BYTES)
        );
        assert!(Pattern::parse(&longest).is_ok());
    }

    #[test]
    fn matches_are_children_of_the_parent_whose_name_fits() {
        let p = pattern("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod*.slice");
        let pod = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1f2e.slice";
        assert!(p.covers(pod));
        assert!(p.covers(&format!("{pod}/cri-containerd-abc.scope")));
        for not in [
            "/kubepods.slice/kubepods-besteffort.slice",
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod1.slice",
            "/kubepods.slice/kubepods-besteffort.slicex/kubepods-besteffort-pod1.slice",
            "/kubepods.slice/kubepods-besteffort-pod1.slice",
        ] {
            assert!(!p.covers(not), "{not}");
        }
        // The `*` may match nothing, but the sides may not overlap.
        let q = pattern("/a/ab*ba");
        assert!(q.matches_name("abba"));
        assert!(q.matches_name("abxba"));
        assert!(!q.matches_name("aba"));
    }

    #[test]
    fn containment_of_names_and_patterns() {
        assert!(contained("/system.slice/docker-*.scope", "/system.slice"));
        assert!(contained(
            "/system.slice/docker-*.scope",
            "/system.slice/docker-*.scope"
        ));
        assert!(contained(
            "/system.slice/docker-ab*.scope",
            "/system.slice/docker-*.scope"
        ));
        assert!(contained(
            "/system.slice/docker-a.scope",
            "/system.slice/docker-*.scope"
        ));
        assert!(contained("/s/docker-a.scope/x/*", "/s/docker-*.scope"));
        assert!(!contained(
            "/system.slice/*",
            "/system.slice/docker-*.scope"
        ));
        assert!(!contained(
            "/system.slice/docker-*",
            "/system.slice/docker-*.scope"
        ));
        assert!(!contained(
            "/system.slice/docker-*.scope",
            "/system.slice/docker-a.scope"
        ));
        assert!(!contained("/system.slicex/a*", "/system.slice"));
        assert!(covers("/a", "/a/b") && !covers("/a", "/ab"));
    }

    #[test]
    fn kernel_entries_read_back_as_the_pattern_written() {
        let p = pattern("/system.slice/docker-*.scope");
        let (key, value) = (p.key().unwrap(), p.value(7).unwrap());
        assert_eq!(value.slot, 7);
        assert_eq!(Pattern::from_kernel(&key, &value), Some(p));
        let mut bad = value;
        bad.prefix_len = 200;
        assert_eq!(Pattern::from_kernel(&key, &bad), None);
    }
}
