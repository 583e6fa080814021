//! State the agent keeps in pinned maps so that it outlives the agent and cannot be reset
//! by editing the host's files while the pins live: the anti-rollback mark
//! (`ROLLBACK_MARK`, see [`bundle::state`](crate::bundle::state)) and the lineage anchor
//! (`LINEAGE_ANCHOR`, see [`lineage::anchor`](crate::lineage::anchor)). Both are read from
//! their pins before any program is loaded and written by the enforcer. No kernel program
//! reads them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData};
use rampart_common::{maps, LineageAnchor, RollbackMark, DIGEST_HEX_BYTES, LINEAGE_ID_HEX_BYTES};

use super::pins;
use crate::{bundle::state::Mark, lineage::anchor::Anchor};

/// Where the map `name` is pinned under the pin directory `pin_dir`.
pub fn pin_path(pin_dir: &Path, name: &str) -> PathBuf {
    pins::maps_dir(pin_dir).join(name)
}

/// Entry 0 of the pinned one-entry array `name`; `None` when nothing is pinned there yet.
/// A pin that exists but cannot be read is an error (the caller fails closed).
fn read_first<T: aya::Pod>(pin_dir: &Path, name: &str) -> Result<Option<T>> {
    let path = pin_path(pin_dir, name);
    if !path.exists() {
        return Ok(None);
    }
    let what = || format!("reading the pinned map {}", path.display());
    let data = MapData::from_pin(&path).with_context(what)?;
    let map = Map::from_map_data(data).with_context(what)?;
    let array: Array<_, T> = Array::try_from(map).with_context(what)?;
    Ok(Some(array.get(&0, 0).with_context(what)?))
}

/// `text` into a zero-padded field of `N` bytes; longer text is refused.
fn field<const N: usize>(text: &str, what: &str) -> Result<[u8; N]> {
    let bytes = text.as_bytes();
    anyhow::ensure!(bytes.len() <= N, "{what} {text} is longer than {N} bytes");
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

/// The text of a zero-padded field.
fn text(field: &[u8], what: &str) -> Result<String> {
    let len = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    Ok(std::str::from_utf8(&field[..len])
        .with_context(|| format!("the pinned {what} is not text"))?
        .to_owned())
}

/// The kernel value of a mark.
pub fn mark_to_kernel(mark: &Mark) -> Result<RollbackMark> {
    Ok(RollbackMark {
        version: mark.version,
        trust_version: mark.trust_version,
        digest: field::<DIGEST_HEX_BYTES>(&mark.digest, "digest")?,
    })
}

/// The mark a kernel value holds; `None` for the zeroed value of a fresh map.
pub fn mark_from_kernel(raw: &RollbackMark) -> Result<Option<Mark>> {
    if raw.version == 0 && raw.trust_version == 0 {
        return Ok(None);
    }
    Ok(Some(Mark {
        version: raw.version,
        digest: text(&raw.digest, "bundle digest")?,
        trust_version: raw.trust_version,
    }))
}

/// The pinned anti-rollback mark under `pin_dir`, if any.
pub fn read_mark(pin_dir: &Path) -> Result<Option<Mark>> {
    match read_first::<RollbackMark>(pin_dir, maps::ROLLBACK_MARK)? {
        Some(raw) => mark_from_kernel(&raw),
        None => Ok(None),
    }
}

/// The kernel value of a lineage anchor.
pub fn anchor_to_kernel(anchor: &Anchor) -> Result<LineageAnchor> {
    Ok(LineageAnchor {
        size: anchor.size,
        head: field::<DIGEST_HEX_BYTES>(&anchor.head, "lineage head")?,
        lineage: field::<LINEAGE_ID_HEX_BYTES>(&anchor.lineage, "lineage id")?,
    })
}

/// The anchor a kernel value holds; `None` for the zeroed value of a fresh map.
pub fn anchor_from_kernel(raw: &LineageAnchor) -> Result<Option<Anchor>> {
    if raw.size == 0 {
        return Ok(None);
    }
    Ok(Some(Anchor {
        lineage: text(&raw.lineage, "lineage id")?,
        size: raw.size,
        head: text(&raw.head, "lineage head")?,
    }))
}

/// The pinned lineage anchor under `pin_dir`, if any.
pub fn read_anchor(pin_dir: &Path) -> Result<Option<Anchor>> {
    match read_first::<LineageAnchor>(pin_dir, maps::LINEAGE_ANCHOR)? {
        Some(raw) => anchor_from_kernel(&raw),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_through_its_kernel_value() {
        let mark = Mark {
            version: 7,
            digest: "ab".repeat(32),
            trust_version: 2,
        };
        assert_eq!(
            mark_from_kernel(&mark_to_kernel(&mark).unwrap()).unwrap(),
            Some(mark)
        );
        let zero = RollbackMark {
            version: 0,
            trust_version: 0,
            digest: [0; DIGEST_HEX_BYTES],
        };
        assert_eq!(mark_from_kernel(&zero).unwrap(), None);
        let long = Mark {
            digest: "a".repeat(DIGEST_HEX_BYTES + 1),
            ..Mark::default()
        };
        assert!(mark_to_kernel(&long).is_err());
    }

    #[test]
    fn an_anchor_round_trips_through_its_kernel_value() {
        let anchor = Anchor {
            lineage: "0f".repeat(16),
            size: 42,
            head: "cd".repeat(32),
        };
        assert_eq!(
            anchor_from_kernel(&anchor_to_kernel(&anchor).unwrap()).unwrap(),
            Some(anchor)
        );
    }
}
