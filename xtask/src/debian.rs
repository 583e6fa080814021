//! Fetching Debian packages (kernels, busybox) from the package registry into a cache,
//! without installing them on the host.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{prereq, run::output};

/// Downloads `package` (if not cached) and unpacks it; returns the unpacked root.
pub fn fetch_and_unpack(package: &str, cache: &Path) -> Result<PathBuf> {
    let root = cache.join(package);
    let done = root.join(".unpacked");
    if done.exists() {
        return Ok(root);
    }
    std::fs::create_dir_all(cache)?;
    let deb = download(package, cache)?;
    let _ = std::fs::remove_dir_all(&root);
    output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    std::fs::write(&done, b"")?;
    std::fs::remove_file(&deb)?;
    Ok(root)
}

fn download(package: &str, cache: &Path) -> Result<PathBuf> {
    let spinner = crate::progress::spinner(format!("downloading {package}"));
    let mut attempt = output(
        Command::new("apt-get")
            .args(["download", "-qq", package])
            .current_dir(cache),
    );
    if attempt.is_err() && prereq::can_use_apt() {
        // A fresh machine may have no package lists yet, or stale ones.
        prereq::apt_update_once()?;
        attempt = output(
            Command::new("apt-get")
                .args(["download", "-qq", package])
                .current_dir(cache),
        );
    }
    spinner.finish_and_clear();
    attempt.with_context(|| {
        format!("downloading {package} failed; check `apt-cache policy {package}` (as root: apt-get update)")
    })?;
    let prefix = format!("{package}_");
    for entry in std::fs::read_dir(cache)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            eprintln!("    downloaded {name}");
            return Ok(path);
        }
    }
    bail!(
        "apt-get download {package} produced no .deb in {}",
        cache.display()
    )
}

/// Names of available packages matching an `apt-cache search --names-only` regex.
pub fn search_names(regex: &str) -> Result<Vec<String>> {
    let mut found = output(Command::new("apt-cache").args(["search", "--names-only", regex]))?;
    if found.trim().is_empty() && prereq::can_use_apt() {
        prereq::apt_update_once()?;
        found = output(Command::new("apt-cache").args(["search", "--names-only", regex]))?;
    }
    Ok(found
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The package a metapackage depends on whose name starts with `prefix`.
pub fn dependency_of(metapackage: &str, prefix: &str) -> Result<Option<String>> {
    let deps = output(Command::new("apt-cache").args(["depends", metapackage])).unwrap_or_default();
    let pick = |deps: &str| {
        deps.lines()
            .filter_map(|l| l.trim().strip_prefix("Depends: "))
            .find(|d| d.starts_with(prefix))
            .map(str::to_owned)
    };
    if let Some(found) = pick(&deps) {
        return Ok(Some(found));
    }
    if prereq::can_use_apt() {
        prereq::apt_update_once()?;
        let deps = output(Command::new("apt-cache").args(["depends", metapackage]))?;
        return Ok(pick(&deps));
    }
    Ok(None)
}
