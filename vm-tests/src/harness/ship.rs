//! Files the guest hands to the host: each one a `DemoFile` protocol line on the console,
//! written by xtask below its output directory under `name`.

use std::path::Path;

use anyhow::{Context, Result};

use rampart_vm_tests::protocol::Line;

/// Ships the file at `path` as `name`.
pub fn file(name: &str, path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    println!(
        "{}",
        Line::DemoFile {
            name: name.to_owned(),
            bytes,
        }
    );
    Ok(())
}

/// Ships every file directly in `dir` as `PREFIX` + its name; returns how many.
pub fn dir(prefix: &str, dir: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let name = path.file_name().context("name")?.to_string_lossy();
            file(&format!("{prefix}{name}"), &path)?;
            n += 1;
        }
    }
    Ok(n)
}
