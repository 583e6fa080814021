//! Checkpoints as signed notes: a C2SP `tlog-checkpoint` body (origin, size, root hash,
//! extension lines) signed as a C2SP `signed-note` with the host's Ed25519 key. The body and
//! note formats are the `tlog_tiles` and `signed_note` crates'; this module adds the host key
//! as a signer and verifier and Rampart's extension lines.
//!
//! The root hash is the Merkle tree root over the first `size` records
//! ([`super::tree`]); checkpoints written before the tree existed carried the chain head
//! there instead (see [`super::verify`]).
//!
//! Invariant: [`verify`] accepts a note only if a signature by the expected key name and key
//! id verifies (`verify_strict`) over the exact note text.

use ed25519_dalek::Signature;
use signed_note::{Note, VerifierList};

use crate::bundle::keys::{PublicKey, SecretKey};

/// What a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `rampart.dev/lineage/HOST/LINEAGE-ID`.
    pub origin: String,
    /// Number of records covered (seq 0 ..= size - 1).
    pub size: u64,
    /// The Merkle tree root over records 0 .. size - 1.
    pub root: [u8; 32],
    /// Wall clock, Unix ns, when it was made.
    pub time_ns: u64,
    /// Segment of record `size - 1`.
    pub segment: u64,
}

/// The signer name of a host key in notes.
pub fn key_name(key: &PublicKey) -> String {
    format!("rampart-host-{}", key.id)
}

/// The signed-note key id of an Ed25519 key: `SHA-256(name || "\n" || 0x01 || key)[..4]`.
fn key_id(name: &str, key: &PublicKey) -> u32 {
    let mut encoded = vec![0x01];
    encoded.extend_from_slice(key.key.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// The host key as a note signer.
struct HostSigner<'a> {
    key: &'a SecretKey,
    name: String,
    id: u32,
}

impl signed_note::Signer for HostSigner<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        Ok(self.key.sign(msg).to_vec())
    }
}

/// The host's public key as a note verifier, with `verify_strict` (no malleable or
/// small-order signatures).
struct HostVerifier {
    key: PublicKey,
    name: String,
    id: u32,
}

impl signed_note::Verifier for HostVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        self.key
            .key
            .verify_strict(msg, &Signature::from_bytes(&sig))
            .is_ok()
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

impl Checkpoint {
    /// The note text (the checkpoint body): every line ends with a newline.
    pub fn body(&self) -> Result<String, NoteError> {
        let extension = format!("time {}\nsegment {}\n", self.time_ns, self.segment);
        tlog_tiles::Checkpoint::new(
            &self.origin,
            self.size,
            tlog_tiles::Hash(self.root),
            &extension,
        )
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
        .map_err(|_| {
            NoteError::Malformed(format!(
                "origin `{}` cannot start a checkpoint",
                self.origin
            ))
        })
    }

    /// The signed note: body, blank line, one signature line by `key`.
    pub fn sign(&self, key: &SecretKey) -> Result<String, NoteError> {
        let public = key.public();
        let name = key_name(&public);
        let signer = HostSigner {
            id: key_id(&name, &public),
            name,
            key,
        };
        let mut note = Note::new(self.body()?.as_bytes(), &[])
            .map_err(|e| NoteError::Malformed(format!("checkpoint text: {e}")))?;
        note.add_sigs(&[&signer])
            .map_err(|e| NoteError::Malformed(format!("signing the checkpoint: {e}")))?;
        Ok(String::from_utf8_lossy(&note.to_bytes()).into_owned())
    }
}

/// Parses a checkpoint body (the note text, without signatures).
fn parse_body(text: &[u8]) -> Result<Checkpoint, NoteError> {
    let bad = |m: &str| NoteError::Malformed(m.into());
    let cp = tlog_tiles::Checkpoint::from_bytes(text)
        .map_err(|_| bad("not an origin, size and base64 root hash, then extension lines"))?;
    let mut time_ns = None;
    let mut segment = None;
    for ext in cp.extension().lines() {
        if let Some(t) = ext.strip_prefix("time ") {
            time_ns = t.parse().ok();
        } else if let Some(s) = ext.strip_prefix("segment ") {
            segment = s.parse().ok();
        }
    }
    Ok(Checkpoint {
        origin: cp.origin().to_owned(),
        size: cp.size(),
        root: cp.hash().0,
        time_ns: time_ns.ok_or_else(|| bad("no time line"))?,
        segment: segment.ok_or_else(|| bad("no segment line"))?,
    })
}

/// Parses a signed note's checkpoint without checking any signature (to find which
/// checkpoint to prove against; whoever checks the proof checks the signature).
pub fn parse_unverified(note: &str) -> Result<Checkpoint, NoteError> {
    let note = Note::from_bytes(note.as_bytes())
        .map_err(|e| NoteError::Malformed(format!("not a signed note: {e}")))?;
    parse_body(note.text())
}

/// Parses a signed note and checks its signature by `key`.
pub fn verify(note: &str, key: &PublicKey) -> Result<Checkpoint, NoteError> {
    let name = key_name(key);
    let parsed = Note::from_bytes(note.as_bytes())
        .map_err(|e| NoteError::Malformed(format!("not a signed note: {e}")))?;
    let verifiers = VerifierList::new(vec![Box::new(HostVerifier {
        id: key_id(&name, key),
        name: name.clone(),
        key: key.clone(),
    })]);
    parsed
        .verify(&verifiers)
        .map_err(|_| NoteError::NotSigned(name))?;
    parse_body(parsed.text())
}
