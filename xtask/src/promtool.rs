//! The host's half of the console scenario: the `/metrics` text the guest scraped from the
//! running daemon is checked by promtool, Prometheus's own parser and linter, taken from
//! Debian's `prometheus` package (unpacked into the VM cache, never installed: installing it
//! would start a Prometheus server).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};
use rampart_vm_tests::protocol::CONSOLE_PREFIX;

use crate::{debian, prereq, workspace::cache_dir};

/// promtool from PATH, or from the unpacked `prometheus` package.
pub fn promtool() -> Result<PathBuf> {
    if let Some(p) = prereq::find_on_path("promtool") {
        return Ok(p);
    }
    let root = debian::fetch_and_unpack("prometheus", &cache_dir())?;
    let p = root.join("usr/bin/promtool");
    if !p.exists() {
        bail!("the prometheus package holds no usr/bin/promtool");
    }
    Ok(p)
}

/// Checks the shipped metrics (kept in `dir`); None when nothing was shipped.
pub fn check(files: &[(String, Vec<u8>)], dir: &Path) -> Option<Result<String>> {
    let (_, text) = files
        .iter()
        .find(|(n, _)| n.strip_prefix(CONSOLE_PREFIX) == Some("metrics.txt"))?;
    Some(check_text(text, dir))
}

fn check_text(text: &[u8], dir: &Path) -> Result<String> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("metrics.txt"), text)?;
    let promtool = promtool()?;
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", promtool.display()))?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text)?;
    let out = child.wait_with_output()?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("promtool check metrics: {} {}", out.status, said.trim());
    }
    let families = String::from_utf8_lossy(text)
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .count();
    Ok(format!(
        "promtool check metrics: no problems in {families} families ({})",
        dir.join("metrics.txt").display()
    ))
}
