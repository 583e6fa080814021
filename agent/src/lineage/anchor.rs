//! The lineage anchor: the size and head of the last checkpoint, kept outside the lineage
//! directory (a file in the state directory and a pinned map) so that a lineage cut back
//! while no agent ran (kill -9, truncate a segment to an earlier checkpoint, restart) is
//! found at the next start and recorded as a `truncated` record, which `lineage verify`
//! reports as tampering even without the off-host checkpoint file.
//!
//! Invariant: a lineage is truncated when its anchor names another lineage (the directory
//! was replaced) or when it holds fewer records than the anchor covers.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::support::files::{read_capped, write_atomic};

/// The file name of the anchor in the state directory.
pub const ANCHOR_FILE: &str = "lineage-anchor.json";

/// The last checkpoint of a lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    /// The lineage's id (hex).
    pub lineage: String,
    /// Records the checkpoint covers.
    pub size: u64,
    /// The head hash at the checkpoint (hex).
    pub head: String,
}

/// The anchor to hold a lineage to: the pinned copy when the two name different lineages
/// (the file is what can be rewritten), else the one covering more records.
pub fn higher(file: Option<Anchor>, pinned: Option<Anchor>) -> Option<Anchor> {
    match (file, pinned) {
        (None, a) | (a, None) => a,
        (Some(f), Some(p)) if f.lineage == p.lineage && f.size > p.size => Some(f),
        (Some(_), Some(p)) => Some(p),
    }
}

/// Whether a lineage `lineage` holding `found` records falls short of `anchor`.
pub fn truncated(anchor: &Anchor, lineage: &str, found: u64) -> bool {
    anchor.lineage != lineage || found < anchor.size
}

/// The anchor in the file at `path`; `None` when there is none yet.
pub fn read(path: &Path) -> Result<Option<Anchor>> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = read_capped(path, 4096)?;
    let anchor = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a lineage anchor", path.display()))?;
    Ok(Some(anchor))
}

/// Replaces the anchor file at `path` atomically.
pub fn write(path: &Path, anchor: &Anchor) -> Result<()> {
    let mut line = serde_json::to_vec(anchor)?;
    line.push(b'\n');
    write_atomic(path, &line, 0o600)
        .with_context(|| format!("writing the lineage anchor {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(lineage: &str, size: u64) -> Anchor {
        Anchor {
            lineage: lineage.into(),
            size,
            head: "h".into(),
        }
    }

    #[test]
    fn the_pinned_copy_wins_unless_the_file_covers_more_of_the_same_lineage() {
        assert_eq!(higher(Some(a("x", 9)), Some(a("x", 5))), Some(a("x", 9)));
        assert_eq!(higher(Some(a("x", 3)), Some(a("x", 5))), Some(a("x", 5)));
        assert_eq!(higher(Some(a("y", 9)), Some(a("x", 5))), Some(a("x", 5)));
        assert_eq!(higher(None, Some(a("x", 5))), Some(a("x", 5)));
        assert_eq!(higher(Some(a("x", 5)), None), Some(a("x", 5)));
    }

    #[test]
    fn shorter_or_other_lineages_are_truncated() {
        let anchor = a("x", 10);
        assert!(!truncated(&anchor, "x", 10));
        assert!(!truncated(&anchor, "x", 11));
        assert!(truncated(&anchor, "x", 9));
        assert!(truncated(&anchor, "y", 100));
    }

    #[test]
    fn the_file_round_trips_and_a_bad_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("rampart-anchor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(ANCHOR_FILE);
        assert_eq!(read(&path).unwrap(), None);
        write(&path, &a("x", 4)).unwrap();
        assert_eq!(read(&path).unwrap(), Some(a("x", 4)));
        std::fs::write(&path, b"{\"lineage\": 1").unwrap();
        assert!(read(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
