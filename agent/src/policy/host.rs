//! Policies on this host: reading a set of policy files, resolving their paths against
//! this host's files (as the kernel will see them), and compiling them together.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use rampart_common::FileId;

use super::{
    compile::{compile, CompiledPolicy, Resolver},
    source::PolicySource,
};
use crate::kernel::{cgroup_pattern::Pattern, file_id::kernel_dev};

/// Resolves rule paths with this host's file system: symlinks are followed (the kernel
/// judges the file a path leads to), and exec rules pin the identity of the file there.
pub struct Host;

impl Resolver for Host {
    fn canonical(&self, path: &str) -> Option<String> {
        let dir = path.ends_with('/') && path.len() > 1;
        let real = std::fs::canonicalize(path.trim_end_matches('/')).ok()?;
        let mut s = real.to_str()?.to_owned();
        if dir && s != "/" {
            s.push('/');
        }
        Some(s)
    }

    fn identity(&self, canonical: &str) -> Option<FileId> {
        let meta = std::fs::metadata(canonical).ok()?;
        meta.is_file().then(|| FileId {
            dev: kernel_dev(meta.dev()),
            ino: meta.ino(),
        })
    }
}

/// Reads, compiles and cross-checks policy files: names are unique, and no cgroup is
/// governed by two policies.
pub fn compile_files(files: &[PathBuf], resolver: &dyn Resolver) -> Result<Vec<CompiledPolicy>> {
    let sources = files
        .iter()
        .map(|path| PolicySource::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    compile_sources(&sources, resolver)
}

/// Compiles parsed policy files together (names unique, one policy per cgroup), e.g. the
/// sources carried by a verified bundle.
pub fn compile_sources(
    sources: &[PolicySource],
    resolver: &dyn Resolver,
) -> Result<Vec<CompiledPolicy>> {
    if sources.is_empty() {
        bail!("no policy file given");
    }
    let mut compiled = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut cgroups: BTreeMap<String, String> = BTreeMap::new();
    for source in sources {
        for (i, doc) in source.documents.iter().enumerate() {
            let place = if source.documents.len() > 1 {
                format!("{} (document {})", source.file, i + 1)
            } else {
                source.file.clone()
            };
            let policy = compile(doc, &source.file, resolver)
                .with_context(|| format!("{place}: cannot compile"))?;
            if let Some(other) = names.insert(policy.name.clone(), place.clone()) {
                bail!(
                    "{place}:{}: metadata.name: policy `{}` is already defined in {other}",
                    line_of(&source.text, "name:", &policy.name),
                    policy.name
                );
            }
            for cg in &policy.governs {
                if let Some(other) = cgroups.insert(cg.clone(), policy.name.clone()) {
                    bail!(
                        "{place}:{}: spec.governs: cgroup {cg} is already governed by policy \
                         `{other}`; a cgroup has one policy",
                        line_of(&source.text, "", cg)
                    );
                }
            }
            compiled.push(policy);
        }
    }
    check_patterns(&cgroups)?;
    Ok(compiled)
}

/// Refuses governed patterns the kernel could not apply one way: two at the same parent
/// (`GOVERNED_PATTERNS` holds one per parent), or a cgroup named by one policy that
/// another policy's pattern matches (which would govern it depends on load order).
fn check_patterns(cgroups: &BTreeMap<String, String>) -> Result<()> {
    let mut parents: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    let mut patterns = Vec::new();
    for (text, policy) in cgroups {
        let Some(p) = Pattern::parse(text)? else {
            continue;
        };
        if let Some((other, by)) = parents.insert(p.parent.clone(), (text, policy)) {
            bail!(
                "spec.governs: patterns {other} (policy `{by}`) and {text} (policy `{policy}`) \
                 are both below {}; one pattern per parent cgroup is supported, widen one to \
                 cover both",
                p.parent
            );
        }
        patterns.push((p, text, policy));
    }
    for (name, policy) in cgroups {
        for (p, text, by) in &patterns {
            let (parent, child) = name.rsplit_once('/').unwrap_or(("", name));
            if by != &policy && parent == p.parent && !child.contains('*') && p.matches_name(child)
            {
                bail!(
                    "spec.governs: cgroup {name} (policy `{policy}`) matches the pattern {text} \
                     of policy `{by}`; a cgroup has one policy (narrow the pattern, or govern \
                     {name} in `{by}`)"
                );
            }
        }
    }
    Ok(())
}

/// The first line number (1-based) holding `key` and `value`, for errors found after
/// parsing; 0 if not found.
fn line_of(text: &str, key: &str, value: &str) -> usize {
    text.lines()
        .position(|l| l.contains(key) && l.contains(value))
        .map_or(0, |i| i + 1)
}

/// The canonical path the kernel will report for a request path (symlinks followed), and
/// the file's identity when it is a regular file.
pub fn resolve_request(path: &Path) -> Result<(String, Option<FileId>)> {
    let real = std::fs::canonicalize(path)
        .with_context(|| format!("{} does not exist on this host", path.display()))?;
    let s = real
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", real.display()))?
        .to_owned();
    let id = Host.identity(&s);
    Ok((s, id))
}

/// The cgroup a file of this host's cgroup v2 mount belongs to (its directory, named as in
/// `spec.governs`: `/a/b`, `/` for the root), or `None` for a file elsewhere.
pub fn cgroup_of(canonical: &str) -> Option<String> {
    let root = crate::kernel::cgroup::hierarchy_root().ok()?;
    let dir = Path::new(canonical).strip_prefix(&root).ok()?.parent()?;
    Some(format!("/{}", dir.display()))
}

/// What is at an entry of a directory, for requests that act on the entry itself (create,
/// remove, link, rename): the kernel judges the directory's resolved path and the entry's
/// own name, so a final symlink is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryState {
    /// Something is there.
    pub exists: bool,
    /// It is a directory.
    pub dir: bool,
    /// Its identity (any kind of file).
    pub identity: Option<FileId>,
}

/// The canonical path the kernel will report for an entry (its directory resolved, its
/// name kept), and what is there now.
pub fn resolve_entry(path: &Path) -> Result<(String, EntryState)> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no directory entry", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (dir, _) = resolve_request(parent)?;
    let name = name
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
    let full = if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    };
    let state = match std::fs::symlink_metadata(&full) {
        Ok(meta) => EntryState {
            exists: true,
            dir: meta.is_dir(),
            identity: Some(FileId {
                dev: kernel_dev(meta.dev()),
                ino: meta.ino(),
            }),
        },
        Err(_) => EntryState::default(),
    };
    Ok((full, state))
}
