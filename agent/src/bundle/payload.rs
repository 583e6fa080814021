//! The signed payload of a policy bundle: what it is valid for (version, times, scope,
//! agent version) and the policy sources with their digests.
//!
//! Invariant: a [`Payload`] value parsed from bytes has a supported format, a version of
//! at least 1, `issued_at < expires_at`, a valid scope, and sources whose digests match.

use serde::{Deserialize, Serialize};

use super::{error::BundleError, keys::hex, scope::valid_scope};
use crate::policy::source::MAX_POLICY_FILE_BYTES;

/// `payloadType` of a policy bundle envelope.
pub const BUNDLE_TYPE: &str = "application/vnd.rampart.policy-bundle.v1+json";
/// The only payload format this agent reads.
pub const BUNDLE_FORMAT: u32 = 1;
/// Most policy files in one bundle.
pub const MAX_BUNDLE_POLICIES: usize = 256;
/// BLAKE3 `derive_key` context for a policy source's digest.
pub const SOURCE_DIGEST_CONTEXT: &str = "rampart.dev 2026 policy-source v1";
/// BLAKE3 `derive_key` context for a bundle's digest (over the exact payload bytes).
pub const BUNDLE_DIGEST_CONTEXT: &str = "rampart.dev 2026 bundle-payload v1";

/// One policy file carried by a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The file name it was signed from (for messages; not a path on the host).
    pub name: String,
    /// [`source_digest`] of `source`.
    pub digest: String,
    /// The YAML source, exactly as signed.
    pub source: String,
}

/// The bundle payload (JSON, unknown fields rejected).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub format: u32,
    /// Policy version: strictly increasing per scope; a host never goes back.
    pub version: u64,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; past it, the policy in force fails closed.
    pub expires_at: u64,
    /// Which fleet/hosts this bundle is for.
    pub scope: String,
    /// The oldest agent (`MAJOR.MINOR.PATCH`) that may load it.
    pub min_agent_version: String,
    pub policies: Vec<PolicyFile>,
}

/// Digest of a policy source: BLAKE3-derive-key([`SOURCE_DIGEST_CONTEXT`], bytes), hex.
pub fn source_digest(source: &str) -> String {
    hex(blake3::Hasher::new_derive_key(SOURCE_DIGEST_CONTEXT)
        .update(source.as_bytes())
        .finalize()
        .as_bytes())
}

/// Digest of a bundle: BLAKE3-derive-key([`BUNDLE_DIGEST_CONTEXT`], payload bytes), hex.
/// Signatures are outside it, so cosigning does not change it.
pub fn bundle_digest(payload: &[u8]) -> String {
    hex(blake3::Hasher::new_derive_key(BUNDLE_DIGEST_CONTEXT)
        .update(payload)
        .finalize()
        .as_bytes())
}

/// `MAJOR.MINOR.PATCH` as numbers.
pub fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = s.split('.').map(|p| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

impl Payload {
    /// Parses and checks payload bytes (after the signatures verified).
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let bad = |m: String| BundleError::Payload(m);
        let p: Payload = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if p.format != BUNDLE_FORMAT {
            return Err(bad(format!(
                "format {} is not supported (this agent reads format {BUNDLE_FORMAT})",
                p.format
            )));
        }
        if p.version == 0 {
            return Err(bad("version must be at least 1".into()));
        }
        if p.expires_at <= p.issued_at {
            return Err(bad(format!(
                "expires_at {} is not after issued_at {}",
                p.expires_at, p.issued_at
            )));
        }
        valid_scope(&p.scope)?;
        if parse_version(&p.min_agent_version).is_none() {
            return Err(bad(format!(
                "min_agent_version `{}` is not MAJOR.MINOR.PATCH",
                p.min_agent_version
            )));
        }
        if p.policies.is_empty() || p.policies.len() > MAX_BUNDLE_POLICIES {
            return Err(bad(format!(
                "{} policy files; a bundle carries 1 to {MAX_BUNDLE_POLICIES}",
                p.policies.len()
            )));
        }
        for (i, f) in p.policies.iter().enumerate() {
            if f.source.len() as u64 > MAX_POLICY_FILE_BYTES {
                return Err(bad(format!(
                    "policies[{i}] ({}) is over the {MAX_POLICY_FILE_BYTES}-byte limit",
                    f.name
                )));
            }
            if p.policies[..i].iter().any(|o| o.name == f.name) {
                return Err(bad(format!(
                    "policies[{i}]: the name {} is repeated",
                    f.name
                )));
            }
            if source_digest(&f.source) != f.digest {
                return Err(bad(format!(
                    "policies[{i}] ({}): the digest does not match the source",
                    f.name
                )));
            }
        }
        Ok(p)
    }

    /// The payload bytes to sign (deterministic for the same values).
    pub fn to_bytes(&self) -> Vec<u8> {
        super::keys::to_json_line(self)
    }
}
