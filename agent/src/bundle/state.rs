//! Anti-rollback state: the highest bundle version this host accepted and its digest.
//!
//! Invariant: the persisted version never decreases, and a version is bound to one digest
//! (equal version, different content = equivocation). The file is replaced atomically
//! (temp file, fsync, rename, fsync of the directory), so a crash leaves the old or the new
//! state, never a torn one; an unreadable state refuses every bundle (fail closed).

use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{error::BundleError, verify::VerifiedBundle};
use crate::support::files::{read_capped, write_atomic};

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "bundle-state.json";
const STATE_FORMAT: u32 = 1;

/// What the host has accepted so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RollbackState {
    pub format: u32,
    pub version: u64,
    pub digest: String,
    pub scope: String,
    /// Unix seconds when it was accepted.
    pub accepted_at: u64,
}

/// How a verified bundle relates to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A higher version than any accepted (or the first): loading it advances the state.
    Newer { previous: Option<u64> },
    /// The very bundle already accepted (same version and digest), e.g. after a restart.
    Current,
}

/// The anti-rollback rule, on its own.
pub fn check(
    state: Option<&RollbackState>,
    bundle: &VerifiedBundle,
) -> Result<Standing, BundleError> {
    let version = bundle.payload.version;
    let Some(state) = state else {
        return Ok(Standing::Newer { previous: None });
    };
    if version < state.version {
        return Err(BundleError::Rollback {
            version,
            accepted: state.version,
        });
    }
    if version == state.version {
        if bundle.digest != state.digest {
            return Err(BundleError::Equivocation {
                version,
                digest: bundle.digest.clone(),
                accepted: state.digest.clone(),
            });
        }
        return Ok(Standing::Current);
    }
    Ok(Standing::Newer {
        previous: Some(state.version),
    })
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.into() }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    fn io(&self, path: &Path, e: std::io::Error) -> BundleError {
        BundleError::State {
            file: path.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// The accepted state; `None` on a host that has accepted nothing. A file that exists
    /// but cannot be read or parsed is an error: fix or remove it deliberately.
    pub fn load(&self) -> Result<Option<RollbackState>, BundleError> {
        let path = self.file();
        if !path.exists() {
            return Ok(None);
        }
        let bad = |reason: String| BundleError::State {
            file: path.display().to_string(),
            reason,
        };
        let bytes = read_capped(&path, 4096).map_err(|e| bad(e.to_string()))?;
        let state: RollbackState = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "unreadable ({e}); no bundle is accepted until it is repaired or deliberately \
                 removed"
            ))
        })?;
        if state.format != STATE_FORMAT {
            return Err(bad(format!("format {} is not supported", state.format)));
        }
        Ok(Some(state))
    }

    /// Checks `bundle` against the persisted state and, if it is newer, records it (atomic
    /// replace). Returns how it stood before.
    pub fn advance(&self, bundle: &VerifiedBundle, now: u64) -> Result<Standing, BundleError> {
        let standing = check(self.load()?.as_ref(), bundle)?;
        if standing == Standing::Current {
            return Ok(standing);
        }
        let state = RollbackState {
            format: STATE_FORMAT,
            version: bundle.payload.version,
            digest: bundle.digest.clone(),
            scope: bundle.payload.scope.clone(),
            accepted_at: now,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.io(&self.dir, e))?;
        write_atomic(&self.file(), &super::keys::to_json_line(&state), 0o600).map_err(|e| {
            BundleError::State {
                file: self.file().display().to_string(),
                reason: format!("cannot persist: {e}"),
            }
        })?;
        Ok(standing)
    }
}
