//! Anti-rollback state: the highest bundle version this host accepted, its digest, and the
//! highest trust root version used.
//!
//! Invariant: the persisted mark never decreases, and a version is bound to one digest
//! (equal version, different content = equivocation). A bundle is checked against the
//! higher of the state file and the copy pinned in the kernel (`ROLLBACK_MARK`), so
//! deleting or rewriting the file does not reset the mark while the pins live. The file is
//! replaced atomically (temp file, fsync, rename, fsync of the directory), so a crash leaves
//! the old or the new state, never a torn one. A missing state file refuses every bundle
//! until it is initialised deliberately ([`StateDir::init`], recorded in the file), and an
//! unreadable one refuses every bundle until repaired (fail closed).

use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{error::BundleError, verify::VerifiedBundle};
use crate::support::files::{read_capped, write_atomic};

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "bundle-state.json";
/// The directory in the state directory where every bundle loaded is kept, as
/// `DIGEST.rpb`, for lineage replay.
pub const ARCHIVE_DIR: &str = "bundles";

/// The archived copy of the bundle with payload digest `digest` in `archive`.
pub fn archived(archive: &Path, digest: &str) -> PathBuf {
    archive.join(format!("{digest}.rpb"))
}
const STATE_FORMAT: u32 = 1;

/// What the host has accepted so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RollbackState {
    pub format: u32,
    /// The highest bundle version accepted (0: none yet, on an initialised host).
    pub version: u64,
    pub digest: String,
    pub scope: String,
    /// Unix seconds when it was accepted.
    pub accepted_at: u64,
    /// The highest trust root version a bundle was accepted under.
    #[serde(default)]
    pub trust_version: u64,
    /// Unix seconds when `rampart state init` made this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialised_at: Option<u64>,
}

impl RollbackState {
    /// Its high-water mark.
    pub fn mark(&self) -> Mark {
        Mark {
            version: self.version,
            digest: self.digest.clone(),
            trust_version: self.trust_version,
        }
    }
}

/// An anti-rollback high-water mark: from the state file or from its pinned copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    /// The highest bundle version accepted (0: none).
    pub version: u64,
    /// That bundle's digest.
    pub digest: String,
    /// The highest trust root version used.
    pub trust_version: u64,
}

/// The higher of two marks: the higher bundle version with its digest (the pinned one's on
/// a tie: the file is what can be rewritten), and the higher trust root version.
pub fn higher(file: Option<Mark>, pinned: Option<Mark>) -> Option<Mark> {
    match (file, pinned) {
        (None, m) | (m, None) => m,
        (Some(f), Some(p)) => {
            let trust_version = f.trust_version.max(p.trust_version);
            let top = if f.version > p.version { f } else { p };
            Some(Mark {
                trust_version,
                ..top
            })
        }
    }
}

/// How a verified bundle relates to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A higher version than any accepted (or the first): loading it advances the state.
    Newer { previous: Option<u64> },
    /// The very bundle already accepted (same version and digest), e.g. after a restart.
    Current,
}

/// The anti-rollback rule, on its own: the bundle against `mark`, and the trust root it
/// was verified with against the trust root versions used before.
pub fn check(mark: Option<&Mark>, bundle: &VerifiedBundle) -> Result<Standing, BundleError> {
    let version = bundle.payload.version;
    let Some(mark) = mark else {
        return Ok(Standing::Newer { previous: None });
    };
    if bundle.trust_version < mark.trust_version {
        return Err(BundleError::TrustRollback {
            version: bundle.trust_version,
            accepted: mark.trust_version,
        });
    }
    if version < mark.version {
        return Err(BundleError::Rollback {
            version,
            accepted: mark.version,
        });
    }
    if version == mark.version {
        if bundle.digest != mark.digest {
            return Err(BundleError::Equivocation {
                version,
                digest: bundle.digest.clone(),
                accepted: mark.digest.clone(),
            });
        }
        return Ok(Standing::Current);
    }
    Ok(Standing::Newer {
        previous: (mark.version > 0).then_some(mark.version),
    })
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    /// The pinned copy of the mark, if the host pins one.
    pinned: Option<Mark>,
}

impl StateDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.into(),
            pinned: None,
        }
    }

    /// The same directory, checked together with the pinned copy of the mark.
    pub fn with_pinned(mut self, pinned: Option<Mark>) -> Self {
        self.pinned = pinned;
        self
    }

    /// The mark bundles are checked against: the higher of the file's and the pinned copy.
    pub fn floor(&self) -> Result<Option<Mark>, BundleError> {
        Ok(higher(Some(self.load()?.mark()), self.pinned.clone()))
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

    /// The accepted state. A missing file is an error (initialise it deliberately with
    /// [`StateDir::init`]), as is one that cannot be read or parsed (fix it).
    pub fn load(&self) -> Result<RollbackState, BundleError> {
        let path = self.file();
        if !path.exists() {
            return Err(BundleError::StateMissing {
                file: path.display().to_string(),
            });
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
        Ok(state)
    }

    /// Makes the state of a host that has accepted nothing yet (`rampart state init`):
    /// refused if a state exists (remove it deliberately first). Returns what was written.
    pub fn init(&self, now: u64) -> Result<RollbackState, BundleError> {
        if self.file().exists() {
            return Err(BundleError::State {
                file: self.file().display().to_string(),
                reason: "already initialised; an existing state is never overwritten (remove \
                         the file deliberately to start again)"
                    .into(),
            });
        }
        let state = RollbackState {
            format: STATE_FORMAT,
            version: 0,
            digest: String::new(),
            scope: String::new(),
            accepted_at: 0,
            trust_version: 0,
            initialised_at: Some(now),
        };
        self.write(&state)?;
        Ok(state)
    }

    fn write(&self, state: &RollbackState) -> Result<(), BundleError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.io(&self.dir, e))?;
        write_atomic(&self.file(), &super::keys::to_json_line(state), 0o600).map_err(|e| {
            BundleError::State {
                file: self.file().display().to_string(),
                reason: format!("cannot persist: {e}"),
            }
        })
    }

    /// Keeps `bundle` (its envelope: payload and signatures) as `bundles/DIGEST.rpb`, once
    /// per digest. The digest covers the payload, so the copy holds what was loaded.
    pub fn archive(&self, bundle: &VerifiedBundle) -> Result<PathBuf, BundleError> {
        let dir = self.dir.join(ARCHIVE_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| self.io(&dir, e))?;
        let path = archived(&dir, &bundle.digest);
        if !path.exists() {
            write_atomic(&path, &bundle.envelope.to_bytes(), 0o600).map_err(|e| {
                BundleError::State {
                    file: path.display().to_string(),
                    reason: format!("cannot archive the bundle: {e}"),
                }
            })?;
        }
        Ok(path)
    }

    /// Checks `bundle` against the higher of the persisted state and the pinned mark and, if it is
    /// newer, records it (atomic replace). Returns how it stood before and the mark now in
    /// force (to be mirrored into the pinned copy).
    pub fn advance(
        &self,
        bundle: &VerifiedBundle,
        now: u64,
    ) -> Result<(Standing, Mark), BundleError> {
        let held = self.load()?;
        let mark = higher(Some(held.mark()), self.pinned.clone());
        let standing = check(mark.as_ref(), bundle)?;
        let trust_version = mark
            .as_ref()
            .map_or(0, |m| m.trust_version)
            .max(bundle.trust_version);
        let next = RollbackState {
            format: STATE_FORMAT,
            version: bundle.payload.version,
            digest: bundle.digest.clone(),
            scope: bundle.payload.scope.clone(),
            accepted_at: if standing == Standing::Current {
                held.accepted_at
            } else {
                now
            },
            trust_version,
            initialised_at: held.initialised_at,
        };
        // The file is rewritten when it is behind (a newer bundle, or a file older than the
        // pinned mark).
        if next.mark() != held.mark() {
            self.write(&next)?;
        }
        Ok((standing, next.mark()))
    }
}
