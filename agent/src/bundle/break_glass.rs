//! Break-glass tokens: a release of all enforcement, authorised by the security team.
//!
//! A token is an envelope of type [`BREAK_GLASS_TYPE`] whose payload names the scope, a
//! random nonce, a short validity window and a reason, signed by a threshold of the trust
//! root's keys (as a bundle is). The daemon obeys `release` from a client without a
//! terminal only with such a token, and each nonce only once.
//!
//! Invariant: [`verify`] accepts a token only if a threshold of distinct trust-root keys
//! signed it, it is for this host's scope, it is valid now, it is valid for at most
//! [`MAX_TOKEN_LIFETIME`], and its nonce is not among `used`.

use serde::{Deserialize, Serialize};

use super::{envelope::Envelope, error::BundleError, scope::valid_scope, trust::TrustRoot};

/// `payloadType` of a break-glass token envelope.
pub const BREAK_GLASS_TYPE: &str = "application/vnd.rampart.break-glass.v1+json";
/// The only token format this agent reads.
pub const BREAK_GLASS_FORMAT: u32 = 1;
/// The longest validity a token may have: a break-glass is for now, not for later.
pub const MAX_TOKEN_LIFETIME: u64 = 24 * 3600;
/// Largest token file read.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// What a token says (JSON, unknown fields rejected).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenPayload {
    pub format: u32,
    /// The fleet or host group it is for (a trust root's scope).
    pub scope: String,
    /// 16 random bytes, hex: a token works once.
    pub nonce: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// Why (recorded in the lineage).
    pub reason: String,
}

/// A token that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorised {
    pub payload: TokenPayload,
    /// The distinct trusted keys that signed it.
    pub signers: Vec<String>,
}

fn bad(m: String) -> BundleError {
    BundleError::Payload(format!("break-glass token: {m}"))
}

impl TokenPayload {
    /// Parses and checks payload bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let p: Self = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if p.format != BREAK_GLASS_FORMAT {
            return Err(bad(format!("format {} is not supported", p.format)));
        }
        valid_scope(&p.scope)?;
        if p.nonce.len() != 32 || !p.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the nonce must be 32 hex digits".into()));
        }
        if p.expires_at <= p.issued_at || p.expires_at - p.issued_at > MAX_TOKEN_LIFETIME {
            return Err(bad(format!(
                "valid from {} to {}: a token must expire after it is issued and within {} s",
                p.issued_at, p.expires_at, MAX_TOKEN_LIFETIME
            )));
        }
        if p.reason.trim().is_empty() || p.reason.len() > 1024 {
            return Err(bad("the reason must be 1 to 1024 bytes".into()));
        }
        Ok(p)
    }

    /// The payload bytes to sign.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::keys::to_json_line(self)
    }
}

/// Verifies token bytes against the trust root, this host's `scope`, the time `now` (with
/// `clock_skew` for the issue time) and the nonces already `used`.
pub fn verify(
    bytes: &[u8],
    trust: &TrustRoot,
    scope: &str,
    now: u64,
    clock_skew: u64,
    used: &[String],
) -> Result<Authorised, BundleError> {
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(BundleError::TooLarge {
            len: bytes.len() as u64,
            cap: MAX_TOKEN_BYTES,
        });
    }
    let envelope = Envelope::parse(bytes, BREAK_GLASS_TYPE)?;
    let signers = envelope.signers(&trust.keys)?;
    signers.require(trust.threshold, "keys of the trust root")?;
    let payload = TokenPayload::parse(&envelope.payload)?;
    if payload.scope != scope {
        return Err(BundleError::Scope {
            bundle: payload.scope,
            host: scope.into(),
        });
    }
    if payload.issued_at > now + clock_skew {
        return Err(BundleError::NotYetValid {
            issued_at: payload.issued_at,
            now,
            skew: clock_skew,
        });
    }
    if payload.expires_at <= now {
        return Err(BundleError::Expired {
            expires_at: payload.expires_at,
            now,
        });
    }
    if used.contains(&payload.nonce) {
        return Err(bad(format!(
            "nonce {} was already used: a token works once",
            payload.nonce
        )));
    }
    Ok(Authorised {
        payload,
        signers: signers.valid.iter().map(ToString::to_string).collect(),
    })
}

/// The file of used nonces in the state directory.
pub const USED_FILE: &str = "break-glass-used.json";

/// A nonce already used, kept until its token would have expired.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Used {
    pub nonce: String,
    pub expires_at: u64,
}

/// The nonces used so far in the state directory `dir` (none without the file). An
/// unreadable file is an error: no token is accepted until it is repaired.
pub fn read_used(dir: &std::path::Path) -> Result<Vec<Used>, BundleError> {
    let path = dir.join(USED_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bad = |reason: String| BundleError::State {
        file: path.display().to_string(),
        reason,
    };
    let bytes =
        crate::support::files::read_capped(&path, 1 << 20).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("unreadable ({e})")))
}

/// Records `token`'s nonce as used (dropping those whose tokens have expired by `now`).
pub fn record_used(
    dir: &std::path::Path,
    token: &TokenPayload,
    now: u64,
) -> Result<(), BundleError> {
    let mut used: Vec<Used> = read_used(dir)?
        .into_iter()
        .filter(|u| u.expires_at > now)
        .collect();
    used.push(Used {
        nonce: token.nonce.clone(),
        expires_at: token.expires_at,
    });
    let path = dir.join(USED_FILE);
    let mut bytes = serde_json::to_vec(&used).map_err(|e| BundleError::State {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    crate::support::files::write_atomic(&path, &bytes, 0o600).map_err(|e| BundleError::State {
        file: path.display().to_string(),
        reason: format!("cannot persist: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::keys::SecretKey;

    const NOW: u64 = 1_800_000_000;

    fn payload() -> TokenPayload {
        TokenPayload {
            format: BREAK_GLASS_FORMAT,
            scope: "fleet".into(),
            nonce: "ab".repeat(16),
            issued_at: NOW - 10,
            expires_at: NOW + 3600,
            reason: "incident 42".into(),
        }
    }

    fn signed(p: &TokenPayload, keys: &[&SecretKey]) -> Vec<u8> {
        let mut e = Envelope::new(BREAK_GLASS_TYPE, p.to_bytes());
        for k in keys {
            e.sign(k).unwrap();
        }
        e.to_bytes()
    }

    fn root(keys: &[&SecretKey], threshold: usize) -> TrustRoot {
        TrustRoot::new(
            keys.iter().map(|k| k.public()).collect(),
            threshold,
            "fleet",
            1,
            NOW,
        )
        .unwrap()
    }

    #[test]
    fn a_token_signed_by_the_threshold_is_accepted_once() {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let trust = root(&[&a, &b], 2);
        let token = signed(&payload(), &[&a, &b]);
        let ok = verify(&token, &trust, "fleet", NOW, 300, &[]).unwrap();
        assert_eq!(ok.payload.reason, "incident 42");
        assert_eq!(ok.signers.len(), 2);
        let used = [payload().nonce];
        let e = verify(&token, &trust, "fleet", NOW, 300, &used).unwrap_err();
        assert!(e.to_string().contains("already used"), "{e}");
    }

    #[test]
    fn tokens_below_threshold_elsewhere_expired_or_too_long_are_refused() {
        let (a, b) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let trust = root(&[&a, &b], 2);
        let one = signed(&payload(), &[&a]);
        assert_eq!(
            verify(&one, &trust, "fleet", NOW, 300, &[])
                .unwrap_err()
                .code(),
            "below-threshold"
        );
        let both = signed(&payload(), &[&a, &b]);
        assert_eq!(
            verify(&both, &trust, "other", NOW, 300, &[])
                .unwrap_err()
                .code(),
            "wrong-scope"
        );
        assert_eq!(
            verify(&both, &trust, "fleet", NOW + 7200, 300, &[])
                .unwrap_err()
                .code(),
            "expired"
        );
        let long = TokenPayload {
            expires_at: NOW + MAX_TOKEN_LIFETIME + 1,
            issued_at: NOW,
            ..payload()
        };
        let e = verify(&signed(&long, &[&a, &b]), &trust, "fleet", NOW, 300, &[]).unwrap_err();
        assert!(e.to_string().contains("within"), "{e}");
        // A bundle envelope is not a token.
        let mut bundle = Envelope::new(crate::bundle::payload::BUNDLE_TYPE, payload().to_bytes());
        bundle.sign(&a).unwrap();
        assert!(verify(&bundle.to_bytes(), &trust, "fleet", NOW, 300, &[]).is_err());
    }

    #[test]
    fn used_nonces_are_kept_until_their_tokens_expire() {
        let dir = std::env::temp_dir().join(format!("rampart-bg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read_used(&dir).unwrap().is_empty());
        record_used(&dir, &payload(), NOW).unwrap();
        let later = TokenPayload {
            nonce: "cd".repeat(16),
            ..payload()
        };
        // By then the first token has expired: its nonce is dropped.
        record_used(&dir, &later, NOW + 7200).unwrap();
        let used = read_used(&dir).unwrap();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].nonce, later.nonce);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
