//! Why a key, trust root, bundle or state was refused, with a stable code per reason.

use std::path::Path;

use thiserror::Error;

use crate::support::files::FileError;

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
    #[error(
        "anti-rollback state {file} does not exist: no bundle is accepted until it is \
         initialised deliberately (`rampart state init --state DIR`, recorded in the file)"
    )]
    StateMissing { file: String },
    #[error(
        "trust root version {version} is older than version {accepted} already used: trust \
         root rollback refused"
    )]
    TrustRollback { version: u64, accepted: u64 },
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
            Self::StateMissing { .. } => "state-missing",
            Self::TrustRollback { .. } => "trust-rollback",
            Self::InFile { inner, .. } => inner.code(),
        }
    }

    /// The same error, said to be about `file`.
    pub fn in_file(self, file: &Path) -> Self {
        match self {
            e @ (Self::Io { .. }
            | Self::KeyFile { .. }
            | Self::State { .. }
            | Self::StateMissing { .. }
            | Self::InFile { .. }) => e,
            e => Self::InFile {
                file: file.display().to_string(),
                inner: Box::new(e),
            },
        }
    }
}

impl From<FileError> for BundleError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::Io { file, reason } => Self::Io { file, reason },
            FileError::TooLarge { file, len, cap } => Self::InFile {
                file,
                inner: Box::new(Self::TooLarge { len, cap }),
            },
        }
    }
}
