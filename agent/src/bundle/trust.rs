//! The trust root: which keys may sign bundles for this host, how many must, and for which
//! scope. It changes only by rotation: a successor root signed by a threshold of the old
//! keys and a threshold of the new ones.
//!
//! Invariant: a [`TrustRoot`] value has 1..=[`MAX_TRUST_KEYS`] distinct, non-weak keys
//! and a threshold between 1 and the number of keys.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{
    envelope::Envelope,
    error::BundleError,
    keys::{PublicKey, PublicKeyFile},
    scope::valid_scope,
};
use crate::support::files::read_capped;

/// `payloadType` of a trust root envelope.
pub const TRUST_ROOT_TYPE: &str = "application/vnd.rampart.trust-root.v1+json";
/// The only trust root format this agent reads.
pub const TRUST_ROOT_FORMAT: u32 = 1;
/// Most keys a root may list.
pub const MAX_TRUST_KEYS: usize = 32;
/// Size cap on a trust root file.
pub const MAX_TRUST_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct TrustRootJson {
    format: u32,
    version: u64,
    scope: String,
    threshold: u32,
    created_at: u64,
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    keyid: String,
    public: String,
}

/// A parsed, checked trust root and the envelope it came in.
#[derive(Debug, Clone)]
pub struct TrustRoot {
    pub version: u64,
    pub scope: String,
    pub threshold: usize,
    pub created_at: u64,
    pub keys: Vec<PublicKey>,
    pub envelope: Envelope,
}

impl TrustRoot {
    /// A new root (unsigned: sign it with [`Envelope::sign`] on `envelope` for a rotation).
    pub fn new(
        keys: Vec<PublicKey>,
        threshold: usize,
        scope: &str,
        version: u64,
        created_at: u64,
    ) -> Result<Self, BundleError> {
        let json = TrustRootJson {
            format: TRUST_ROOT_FORMAT,
            version,
            scope: scope.into(),
            threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
            created_at,
            keys: keys
                .iter()
                .map(|k| {
                    let PublicKeyFile { keyid, public, .. } = k.to_file();
                    KeyEntry { keyid, public }
                })
                .collect(),
        };
        let payload =
            serde_json::to_vec_pretty(&json).map_err(|e| BundleError::TrustRoot(e.to_string()))?;
        Self::from_payload(Envelope::new(TRUST_ROOT_TYPE, payload))
    }

    /// Parses a trust root file's bytes (size-capped, strict). The signatures are not
    /// checked here: an installed root is the local anchor; a successor is checked with
    /// [`TrustRoot::verify_successor`].
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() as u64 > MAX_TRUST_BYTES {
            return Err(BundleError::TooLarge {
                len: bytes.len() as u64,
                cap: MAX_TRUST_BYTES,
            });
        }
        Self::from_payload(Envelope::parse(bytes, TRUST_ROOT_TYPE)?)
    }

    pub fn read(path: &Path) -> Result<Self, BundleError> {
        Self::parse(&read_capped(path, MAX_TRUST_BYTES)?).map_err(|e| e.in_file(path))
    }

    fn from_payload(envelope: Envelope) -> Result<Self, BundleError> {
        let bad = |m: String| BundleError::TrustRoot(m);
        let json: TrustRootJson =
            serde_json::from_slice(&envelope.payload).map_err(|e| bad(format!("payload: {e}")))?;
        if json.format != TRUST_ROOT_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this agent reads format {TRUST_ROOT_FORMAT})",
                json.format
            )));
        }
        if json.version == 0 {
            return Err(bad("version must be at least 1".into()));
        }
        valid_scope(&json.scope)?;
        if json.keys.is_empty() || json.keys.len() > MAX_TRUST_KEYS {
            return Err(bad(format!(
                "{} keys; a root lists 1 to {MAX_TRUST_KEYS}",
                json.keys.len()
            )));
        }
        let mut keys: Vec<PublicKey> = Vec::with_capacity(json.keys.len());
        for entry in &json.keys {
            let key = PublicKey::from_text(&entry.public, Some(&entry.keyid))?;
            if keys.iter().any(|k| k.id == key.id) {
                return Err(bad(format!("key {} is listed twice", key.id)));
            }
            keys.push(key);
        }
        let threshold = json.threshold as usize;
        if threshold == 0 || threshold > keys.len() {
            return Err(bad(format!(
                "threshold {threshold} must be between 1 and the number of keys ({})",
                keys.len()
            )));
        }
        Ok(Self {
            version: json.version,
            scope: json.scope,
            threshold,
            created_at: json.created_at,
            keys,
            envelope,
        })
    }

    /// Checks that `next` may replace this root: the next version, signed by at least the
    /// old threshold of old keys and the new threshold of new keys.
    pub fn verify_successor(&self, next: &TrustRoot) -> Result<(), BundleError> {
        if next.version != self.version + 1 {
            return Err(BundleError::TrustRoot(format!(
                "the new root has version {}; the successor of version {} must be version {}",
                next.version,
                self.version,
                self.version + 1
            )));
        }
        next.envelope
            .signers(&self.keys)?
            .require(self.threshold, "keys of the current trust root")?;
        next.envelope
            .signers(&next.keys)?
            .require(next.threshold, "keys of the new trust root")
    }
}
