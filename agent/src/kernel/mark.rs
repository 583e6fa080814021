//! The pinned copy of the anti-rollback mark (`ROLLBACK_MARK`, see
//! [`bundle::state`](crate::bundle::state)): read from its pin before any program is loaded
//! (bundles are verified first), written by the enforcer once a bundle is in force. It lives
//! as long as the pins: deleting the state file does not reset it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use aya::maps::{Array, Map, MapData};
use rampart_common::{maps, RollbackMark, DIGEST_HEX_BYTES};

use super::pins;
use crate::bundle::state::Mark;

/// Where the mark is pinned under the pin directory `pin_dir`.
pub fn pin_path(pin_dir: &Path) -> PathBuf {
    pins::maps_dir(pin_dir).join(maps::ROLLBACK_MARK)
}

/// The kernel value of a mark (a digest longer than the field cannot be a blake3 hex digest
/// and is refused).
pub fn to_kernel(mark: &Mark) -> Result<RollbackMark> {
    let bytes = mark.digest.as_bytes();
    anyhow::ensure!(
        bytes.len() <= DIGEST_HEX_BYTES,
        "digest {} is longer than {DIGEST_HEX_BYTES} bytes",
        mark.digest
    );
    let mut digest = [0u8; DIGEST_HEX_BYTES];
    digest[..bytes.len()].copy_from_slice(bytes);
    Ok(RollbackMark {
        version: mark.version,
        trust_version: mark.trust_version,
        digest,
    })
}

/// The mark a kernel value holds; `None` for the zeroed value of a fresh map.
pub fn from_kernel(raw: &RollbackMark) -> Result<Option<Mark>> {
    if raw.version == 0 && raw.trust_version == 0 {
        return Ok(None);
    }
    let len = raw
        .digest
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(DIGEST_HEX_BYTES);
    let digest = std::str::from_utf8(&raw.digest[..len])
        .context("the pinned anti-rollback mark holds a digest that is not text")?;
    Ok(Some(Mark {
        version: raw.version,
        digest: digest.to_owned(),
        trust_version: raw.trust_version,
    }))
}

/// The pinned mark under `pin_dir`; `None` when nothing is pinned there yet. A pin that
/// exists but cannot be read is an error (the caller refuses bundles: fail closed).
pub fn read_pinned(pin_dir: &Path) -> Result<Option<Mark>> {
    let path = pin_path(pin_dir);
    if !path.exists() {
        return Ok(None);
    }
    let what = || format!("reading the pinned anti-rollback mark {}", path.display());
    let data = MapData::from_pin(&path).with_context(what)?;
    let map = Map::from_map_data(data).with_context(what)?;
    let array: Array<_, RollbackMark> = Array::try_from(map).with_context(what)?;
    from_kernel(&array.get(&0, 0).with_context(what)?)
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
        assert_eq!(from_kernel(&to_kernel(&mark).unwrap()).unwrap(), Some(mark));
        let zero = RollbackMark {
            version: 0,
            trust_version: 0,
            digest: [0; DIGEST_HEX_BYTES],
        };
        assert_eq!(from_kernel(&zero).unwrap(), None);
        let long = Mark {
            digest: "a".repeat(DIGEST_HEX_BYTES + 1),
            ..Mark::default()
        };
        assert!(to_kernel(&long).is_err());
    }
}
