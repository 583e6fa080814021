//! Signed policy bundles: keys, the envelope, the trust root, the payload, verification,
//! and the anti-rollback state. Nothing here touches the kernel; a bundle that fails any
//! check never reaches the loader. The format is specified in docs/bundle-format.md.

pub mod cli;
pub mod envelope;
pub mod keys;
pub mod payload;
pub mod state;
pub mod trust;
pub mod verify;

#[cfg(test)]
mod tests;

use std::{io::Read, path::Path};

use thiserror::Error;

pub use envelope::Envelope;
pub use keys::{KeyId, PublicKey, SecretKey};
pub use payload::Payload;
pub use trust::TrustRoot;
pub use verify::{verify, Context, VerifiedBundle};

/// Why a key, trust root, bundle or state was refused. Each variant has a stable
/// [`BundleError::code`] for records and scripts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BundleError {
    #[error("{file}: {reason}")]
    Io { file: String, reason: String },
    #[error("{len} bytes is over the {cap}-byte limit; refused before parsing")]
    TooLarge { len: u64, cap: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("not a valid envelope: {0}")]
    Envelope(String),
    #[error("payload type is `{found}`, expected `{expected}`")]
    PayloadType { found: String, expected: String },
    #[error("the bundle carries no signature")]
    Unsigned,
    #[error(
        "signature {index} by key {keyid} does not verify: the payload or signature was altered"
    )]
    BadSignature { index: usize, keyid: String },
    #[error("{valid} valid signature(s) from distinct {what}, {threshold} required{notes}")]
    Threshold {
        what: String,
        valid: usize,
        threshold: usize,
        notes: String,
    },
    #[error("key {keyid}: {reason}")]
    BadKey { keyid: String, reason: String },
    #[error("{file}: {reason}")]
    KeyFile { file: String, reason: String },
    #[error("key {keyid} has already signed this envelope")]
    AlreadySigned { keyid: String },
    #[error("trust root: {0}")]
    TrustRoot(String),
    #[error("payload: {0}")]
    Payload(String),
    #[error("scope `{bundle}` of the bundle is not this host's scope `{host}`")]
    Scope { bundle: String, host: String },
    #[error("issued at {issued_at}, more than {skew} s after now ({now}): not valid yet")]
    NotYetValid { issued_at: u64, now: u64, skew: u64 },
    #[error("expired at {expires_at} (now {now})")]
    Expired { expires_at: u64, now: u64 },
    #[error("needs agent version {needs} or later; this agent is {have}")]
    AgentTooOld { needs: String, have: String },
    #[error(
        "version {version} is older than version {accepted} already accepted: rollback refused"
    )]
    Rollback { version: u64, accepted: u64 },
    #[error(
        "version {version} was already accepted with digest {accepted}, this bundle's is \
         {digest}: equivocation refused"
    )]
    Equivocation {
        version: u64,
        digest: String,
        accepted: String,
    },
    #[error("anti-rollback state {file}: {reason}")]
    State { file: String, reason: String },
    #[error("{file}: {inner}")]
    InFile {
        file: String,
        inner: Box<BundleError>,
    },
}

impl BundleError {
    /// A stable, short name for the reason (lineage records, `--json`, scripts).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::TooLarge { .. } => "too-large",
            Self::Empty => "empty",
            Self::Envelope(_) => "malformed-envelope",
            Self::PayloadType { .. } => "wrong-payload-type",
            Self::Unsigned => "unsigned",
            Self::BadSignature { .. } => "bad-signature",
            Self::Threshold { .. } => "below-threshold",
            Self::BadKey { .. } => "bad-key",
            Self::KeyFile { .. } => "bad-key-file",
            Self::AlreadySigned { .. } => "already-signed",
            Self::TrustRoot(_) => "bad-trust-root",
            Self::Payload(_) => "malformed-payload",
            Self::Scope { .. } => "wrong-scope",
            Self::NotYetValid { .. } => "not-yet-valid",
            Self::Expired { .. } => "expired",
            Self::AgentTooOld { .. } => "agent-too-old",
            Self::Rollback { .. } => "rollback",
            Self::Equivocation { .. } => "equivocation",
            Self::State { .. } => "state-unreadable",
            Self::InFile { inner, .. } => inner.code(),
        }
    }

    /// The same error, said to be about `file`.
    pub fn in_file(self, file: &Path) -> Self {
        match self {
            e @ (Self::Io { .. }
            | Self::KeyFile { .. }
            | Self::State { .. }
            | Self::InFile { .. }) => e,
            e => Self::InFile {
                file: file.display().to_string(),
                inner: Box::new(e),
            },
        }
    }
}

/// Reads a file of at most `cap` bytes; a bigger one is refused without reading it all.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, BundleError> {
    let io = |e: std::io::Error| BundleError::Io {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        let len = std::fs::metadata(path).map_or(cap + 1, |m| m.len());
        return Err(BundleError::TooLarge { len, cap }.in_file(path));
    }
    Ok(bytes)
}

/// A scope names a fleet or host group: 1 to 128 of `A-Z a-z 0-9 . _ -`.
pub fn valid_scope(scope: &str) -> Result<(), BundleError> {
    let ok = !scope.is_empty()
        && scope.len() <= 128
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BundleError::Payload(format!(
            "scope `{scope}` must be 1 to 128 characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// Replaces `path` atomically: a temp file beside it (mode `mode`), fsync, rename, fsync of
/// the directory. A crash leaves the old or the new content, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), BundleError> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        BundleError::Io {
            file: path.display().to_string(),
            reason: e.to_string(),
        }
    })
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
