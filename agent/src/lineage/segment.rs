//! The lineage directory: numbered segment files and the checkpoints file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The file in the lineage directory that collects every signed checkpoint note, for
/// shipping off-host.
pub const CHECKPOINTS_FILE: &str = "checkpoints";

/// The file of segment `n`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("segment-{n:08}.jsonl"))
}

/// The segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("reading the lineage directory {}", dir.display()))?
    {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|r| r.strip_suffix(".jsonl"))
            .and_then(|n| n.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}
