//! Checkpoints as signed notes, in the shape of a transparency-log checkpoint
//! (C2SP `signed-note` and `tlog-checkpoint`): origin, size, head hash, extension lines,
//! then Ed25519 signature lines. The "root hash" of a Rampart checkpoint is the head of
//! the record chain, not a Merkle root.
//!
//! Invariant: [`verify`] accepts a note only if a signature line by the expected key name
//! and key hash verifies (`verify_strict`) over the exact note body.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use ed25519_dalek::Signature;
use sha2::{Digest, Sha256};

use crate::bundle::keys::{PublicKey, SecretKey};

/// The em dash and space that start a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `rampart.dev/lineage/HOST/LINEAGE-ID`.
    pub origin: String,
    /// Number of records covered (seq 0 ..= size - 1).
    pub size: u64,
    /// Hash of record `size - 1`.
    pub head: [u8; 32],
    /// Wall clock, Unix ns, when it was made.
    pub time_ns: u64,
    /// Segment of record `size - 1`.
    pub segment: u64,
}

/// The signer name of a host key in notes.
pub fn key_name(key: &PublicKey) -> String {
    format!("rampart-host-{}", key.id)
}

/// The 4-byte key hash of signed notes for an Ed25519 key:
/// `SHA-256(name || "\n" || 0x01 || public key)[..4]`.
fn key_hash(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([0x01]);
    h.update(key.key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Checkpoint {
    /// The note body: every line ends with a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\nsegment {}\n",
            self.origin,
            self.size,
            B64.encode(self.head),
            self.time_ns,
            self.segment
        )
    }

    /// The signed note: body, blank line, one signature line.
    pub fn sign(&self, key: &SecretKey) -> String {
        let body = self.body();
        let public = key.public();
        let name = key_name(&public);
        let mut blob = key_hash(&name, &public).to_vec();
        blob.extend_from_slice(&key.sign(body.as_bytes()));
        format!("{body}\n{SIG_PREFIX}{name} {}\n", B64.encode(blob))
    }
}

/// Why a note was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed checkpoint note: {0}")]
    Malformed(String),
    #[error("no signature by {0} verifies over the checkpoint")]
    NotSigned(String),
}

/// Parses a signed note and checks its signature by `key`.
pub fn verify(note: &str, key: &PublicKey) -> Result<Checkpoint, NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.into());
    let (body, sigs) = note
        .split_once("\n\n")
        .ok_or_else(|| bad("no blank line before the signatures"))?;
    let body = format!("{body}\n");
    let name = key_name(key);
    let want_hash = key_hash(&name, key);
    let signed = sigs.lines().filter(|l| !l.is_empty()).any(|line| {
        let Some((who, blob)) = line
            .strip_prefix(SIG_PREFIX)
            .and_then(|l| l.split_once(' '))
        else {
            return false;
        };
        let Ok(blob) = B64.decode(blob) else {
            return false;
        };
        if who != name || blob.len() != 68 || blob[..4] != want_hash {
            return false;
        }
        let Ok(sig) = <[u8; 64]>::try_from(&blob[4..]) else {
            return false;
        };
        key.key
            .verify_strict(body.as_bytes(), &Signature::from_bytes(&sig))
            .is_ok()
    });
    if !signed {
        return Err(NoteError::NotSigned(name));
    }
    let mut lines = body.lines();
    let origin = lines.next().ok_or_else(|| bad("no origin"))?.to_owned();
    let size = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| bad("size is not a number"))?;
    let head = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or_else(|| bad("head is not 32 bytes of base64"))?;
    let mut time_ns = None;
    let mut segment = None;
    for ext in lines {
        if let Some(t) = ext.strip_prefix("time ") {
            time_ns = t.parse().ok();
        } else if let Some(s) = ext.strip_prefix("segment ") {
            segment = s.parse().ok();
        }
    }
    Ok(Checkpoint {
        origin,
        size,
        head,
        time_ns: time_ns.ok_or_else(|| bad("no time line"))?,
        segment: segment.ok_or_else(|| bad("no segment line"))?,
    })
}
