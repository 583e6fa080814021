//! Verifying a bundle, in the order of the design: size cap -> envelope -> signatures and
//! threshold -> strict payload parse -> scope -> time -> agent version. The anti-rollback
//! check ([`super::state`]), compilation and loading follow in the caller.
//!
//! Invariant: a [`VerifiedBundle`] exists only for bytes that passed every step here.

use super::{
    envelope::{Envelope, Signers},
    error::BundleError,
    keys::KeyId,
    payload::{bundle_digest, parse_version, Payload, BUNDLE_TYPE},
    trust::TrustRoot,
};

/// Size cap on a bundle file, checked before anything is parsed.
pub const MAX_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;

/// What a bundle is verified against.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub trust: &'a TrustRoot,
    /// This host's scope (normally the trust root's).
    pub scope: &'a str,
    /// Unix seconds now.
    pub now: u64,
    /// How far in the future `issued_at` may be.
    pub clock_skew: u64,
    /// This agent's version, `MAJOR.MINOR.PATCH`.
    pub agent_version: &'a str,
}

/// A bundle that passed every check of [`verify`].
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub payload: Payload,
    /// [`bundle_digest`] of the payload bytes.
    pub digest: String,
    /// The distinct trusted keys whose signatures verified.
    pub signers: Vec<KeyId>,
    pub envelope: Envelope,
    /// The version of the trust root it was verified against.
    pub trust_version: u64,
}

/// Verifies bundle bytes; the error names the first check that failed.
pub fn verify(bytes: &[u8], ctx: &Context<'_>) -> Result<VerifiedBundle, BundleError> {
    if bytes.len() as u64 > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge {
            len: bytes.len() as u64,
            cap: MAX_BUNDLE_BYTES,
        });
    }
    let envelope = Envelope::parse(bytes, BUNDLE_TYPE)?;
    if envelope.signatures.is_empty() {
        return Err(BundleError::Unsigned);
    }
    let Signers { valid, .. } = {
        let signers = envelope.signers(&ctx.trust.keys)?;
        signers.require(ctx.trust.threshold, "trusted keys")?;
        signers
    };
    let payload = Payload::parse(&envelope.payload)?;
    if payload.scope != ctx.scope {
        return Err(BundleError::Scope {
            bundle: payload.scope,
            host: ctx.scope.into(),
        });
    }
    if payload.issued_at > ctx.now.saturating_add(ctx.clock_skew) {
        return Err(BundleError::NotYetValid {
            issued_at: payload.issued_at,
            now: ctx.now,
            skew: ctx.clock_skew,
        });
    }
    if payload.expires_at <= ctx.now {
        return Err(BundleError::Expired {
            expires_at: payload.expires_at,
            now: ctx.now,
        });
    }
    let needs = parse_version(&payload.min_agent_version);
    let have = parse_version(ctx.agent_version);
    if needs.is_none() || have.is_none() || needs > have {
        return Err(BundleError::AgentTooOld {
            needs: payload.min_agent_version,
            have: ctx.agent_version.into(),
        });
    }
    Ok(VerifiedBundle {
        digest: bundle_digest(&envelope.payload),
        signers: valid.into_iter().collect(),
        payload,
        envelope,
        trust_version: ctx.trust.version,
    })
}

/// This agent's version, compared with a bundle's `min_agent_version`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Reads (size-capped) and verifies a bundle file against a trust root (no state).
pub fn verify_file(
    bundle: &std::path::Path,
    trust: &TrustRoot,
    scope: &str,
    clock_skew: u64,
    now: u64,
) -> Result<VerifiedBundle, BundleError> {
    let bytes = crate::support::files::read_capped(bundle, MAX_BUNDLE_BYTES)?;
    verify(
        &bytes,
        &Context {
            trust,
            scope,
            now,
            clock_skew,
            agent_version: AGENT_VERSION,
        },
    )
}
