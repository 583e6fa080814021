//! The signed envelope (DSSE-shaped): a payload type, the exact payload bytes, and
//! signatures over the pre-authentication encoding of both.
//!
//! Invariant: a signature is only ever checked against [`pae`] of the envelope's own type
//! and bytes, so a signature for one kind of document can never validate another.

use std::collections::BTreeSet;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use ed25519_dalek::Signature as DalekSignature;
use serde::{Deserialize, Serialize};

use super::{
    error::BundleError,
    keys::{KeyId, PublicKey, SecretKey},
};

/// Most signatures an envelope may carry (checked before any signature work).
pub const MAX_SIGNATURES: usize = 32;

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload`, lengths in ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct SignatureJson {
    keyid: String,
    sig: String,
}

/// One signature as carried: the signer's key id and 64 signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub keyid: KeyId,
    pub sig: [u8; 64],
}

/// A parsed (not yet verified) envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<Signature>,
}

impl Envelope {
    /// Parses envelope JSON strictly: unknown fields, bad base64, wrong lengths and more
    /// than [`MAX_SIGNATURES`] signatures are errors. `expected_type` is checked before the
    /// payload is decoded.
    pub fn parse(bytes: &[u8], expected_type: &str) -> Result<Self, BundleError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(BundleError::Empty);
        }
        let json: EnvelopeJson =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Envelope(e.to_string()))?;
        if json.payload_type != expected_type {
            return Err(BundleError::PayloadType {
                found: json.payload_type,
                expected: expected_type.into(),
            });
        }
        if json.signatures.len() > MAX_SIGNATURES {
            return Err(BundleError::Envelope(format!(
                "{} signatures, more than the {MAX_SIGNATURES} allowed",
                json.signatures.len()
            )));
        }
        let payload = B64
            .decode(&json.payload)
            .map_err(|e| BundleError::Envelope(format!("payload is not base64: {e}")))?;
        let mut signatures = Vec::with_capacity(json.signatures.len());
        for (i, s) in json.signatures.iter().enumerate() {
            let keyid = KeyId::parse(&s.keyid).ok_or_else(|| {
                BundleError::Envelope(format!(
                    "signatures[{i}].keyid `{}` is not 32 lowercase hex digits",
                    s.keyid
                ))
            })?;
            let sig = B64
                .decode(&s.sig)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .ok_or_else(|| {
                    BundleError::Envelope(format!("signatures[{i}].sig is not 64 bytes of base64"))
                })?;
            signatures.push(Signature { keyid, sig });
        }
        Ok(Self {
            payload_type: json.payload_type,
            payload,
            signatures,
        })
    }

    /// A new envelope with no signatures yet.
    pub fn new(payload_type: &str, payload: Vec<u8>) -> Self {
        Self {
            payload_type: payload_type.into(),
            payload,
            signatures: Vec::new(),
        }
    }

    /// Adds `key`'s signature; a key signs an envelope at most once.
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), BundleError> {
        if self.signatures.iter().any(|s| s.keyid == key.id) {
            return Err(BundleError::AlreadySigned {
                keyid: key.id.to_string(),
            });
        }
        let sig = key.sign(&pae(&self.payload_type, &self.payload));
        self.signatures.push(Signature { keyid: key.id, sig });
        Ok(())
    }

    /// The envelope's JSON (with a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let json = EnvelopeJson {
            payload_type: self.payload_type.clone(),
            payload: B64.encode(&self.payload),
            signatures: self
                .signatures
                .iter()
                .map(|s| SignatureJson {
                    keyid: s.keyid.to_string(),
                    sig: B64.encode(s.sig),
                })
                .collect(),
        };
        super::keys::to_json_line(&json)
    }

    /// Counts the distinct `trusted` keys whose signature verifies (`verify_strict`) over
    /// this envelope. A signature by a trusted key that does not verify is an error (the
    /// envelope was altered); signatures by unknown keys and repeats of a key do not count.
    pub fn signers(&self, trusted: &[PublicKey]) -> Result<Signers, BundleError> {
        let message = pae(&self.payload_type, &self.payload);
        let mut out = Signers::default();
        for (index, s) in self.signatures.iter().enumerate() {
            let Some(key) = trusted.iter().find(|k| k.id == s.keyid) else {
                out.unknown.insert(s.keyid);
                continue;
            };
            if out.valid.contains(&s.keyid) {
                out.repeated.insert(s.keyid);
                continue;
            }
            let sig = DalekSignature::from_bytes(&s.sig);
            key.key
                .verify_strict(&message, &sig)
                .map_err(|_| BundleError::BadSignature {
                    index,
                    keyid: s.keyid.to_string(),
                })?;
            out.valid.insert(s.keyid);
        }
        Ok(out)
    }
}

/// The outcome of checking an envelope's signatures against a set of keys.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Signers {
    /// Distinct trusted keys with a verifying signature.
    pub valid: BTreeSet<KeyId>,
    /// Key ids not in the trusted set.
    pub unknown: BTreeSet<KeyId>,
    /// Trusted keys that signed more than once (counted once).
    pub repeated: BTreeSet<KeyId>,
}

impl Signers {
    /// Ok when at least `threshold` distinct keys signed; otherwise the exact shortfall.
    pub fn require(&self, threshold: usize, what: &str) -> Result<(), BundleError> {
        if self.valid.len() >= threshold {
            return Ok(());
        }
        let mut notes = Vec::new();
        if !self.repeated.is_empty() {
            notes.push(format!(
                "key {} signed more than once and counts once",
                join(&self.repeated)
            ));
        }
        if !self.unknown.is_empty() {
            notes.push(if self.unknown.len() == 1 {
                format!("key {} is not among them", join(&self.unknown))
            } else {
                format!("keys {} are not among them", join(&self.unknown))
            });
        }
        Err(BundleError::Threshold {
            what: what.into(),
            valid: self.valid.len(),
            threshold,
            notes: if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            },
        })
    }
}

fn join(ids: &BTreeSet<KeyId>) -> String {
    ids.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
