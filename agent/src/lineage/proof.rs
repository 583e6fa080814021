//! Offline proofs over a lineage's Merkle tree: that a record is in the lineage
//! (inclusion), and that a later checkpoint extends an earlier one (consistency), each
//! against signed checkpoints, checkable with only the host's public key.
//!
//! Invariant: [`check`] accepts a proof only if every checkpoint in it is signed by the
//! host key and the proof's hashes lead from what it claims (the record at its index, or
//! the earlier root) to the signed root; the record's own `seq` must be its leaf index.
//! Parse then verify: the JSON is parsed strictly (no unknown fields), then checked.

use std::{
    io::{BufRead, BufReader},
    path::Path,
};

use anyhow::{bail, Context, Result};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde::{Deserialize, Serialize};
use tlog_tiles::{check_record, check_tree, prove_record, prove_tree, Hash};

use super::{
    note::{self, Checkpoint},
    record::{fixed_header, record_hash},
    segment::{segment_path, segments, CHECKPOINTS_FILE},
    tree::{leaf_hash, TreeFile},
    verify::split_notes,
};
use crate::bundle::keys::PublicKey;

/// The longest audit path or consistency proof of a tree of at most 2^64 leaves.
const MAX_PROOF_HASHES: usize = 128;

/// A proof file (`rampart lineage prove`), one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", deny_unknown_fields)]
pub enum Proof {
    /// Record `leaf_index` is in the tree the checkpoint signs.
    #[serde(rename = "rampart-inclusion-v1")]
    Inclusion {
        /// The record's leaf index (its seq).
        leaf_index: u64,
        /// The record line, exactly as in the segment (without its newline).
        record: String,
        /// The audit path, base64 hashes, leaf to root.
        audit_path: Vec<String>,
        /// The signed checkpoint note the path leads to.
        checkpoint: String,
    },
    /// The tree of `new_checkpoint` contains the tree of `old_checkpoint` as its prefix.
    #[serde(rename = "rampart-consistency-v1")]
    Consistency {
        old_checkpoint: String,
        new_checkpoint: String,
        /// The consistency proof, base64 hashes.
        proof: Vec<String>,
    },
}

/// What a verified proof established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// `inclusion` or `consistency`.
    pub proof: &'static str,
    pub origin: String,
    /// Records the (new) checkpoint covers, and its root (base64).
    pub tree_size: u64,
    pub root: String,
    /// Inclusion: the record's seq and kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Consistency: the earlier checkpoint's size and root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_root: Option<String>,
    /// The signer of the checkpoints.
    pub signer: String,
}

fn encode(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h.0)).collect()
}

fn decode(hashes: &[String]) -> Result<Vec<Hash>> {
    if hashes.len() > MAX_PROOF_HASHES {
        bail!(
            "the proof has {} hashes; no tree needs more than {MAX_PROOF_HASHES}",
            hashes.len()
        );
    }
    hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            B64.decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(Hash)
                .with_context(|| format!("hash {i} of the proof is not 32 bytes of base64"))
        })
        .collect()
}

/// The signed checkpoints in `DIR/checkpoints`, parsed (not verified), with their notes.
fn checkpoints(dir: &Path) -> Result<Vec<(Checkpoint, String)>> {
    let path = dir.join(CHECKPOINTS_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    split_notes(&text)
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let cp = note::parse_unverified(&n)
                .with_context(|| format!("{}: checkpoint {}", path.display(), i + 1))?;
            Ok((cp, n))
        })
        .collect()
}

/// The checkpoint of exactly `size` records, or the largest if `size` is `None`.
fn checkpoint_of(all: &[(Checkpoint, String)], size: Option<u64>) -> Result<(Checkpoint, String)> {
    let found = match size {
        Some(s) => all.iter().rev().find(|(c, _)| c.size == s),
        None => all.iter().max_by_key(|(c, _)| c.size),
    };
    found.cloned().with_context(|| {
        let sizes: Vec<String> = all.iter().map(|(c, _)| c.size.to_string()).collect();
        match size {
            Some(s) => format!(
                "no checkpoint of {s} records in the lineage's checkpoint file (sizes: {})",
                sizes.join(", ")
            ),
            None => "the lineage has no checkpoint yet".into(),
        }
    })
}

/// A record line's seq: from its fixed header, else as JSON.
fn seq_of(line: &str) -> Option<u64> {
    fixed_header(line.as_bytes())
        .map(|(p, _)| p.seq)
        .or_else(|| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["seq"].as_u64())
        })
}

/// The record line with `seq` (without its newline).
pub fn find_record(dir: &Path, seq: u64) -> Result<String> {
    // The segment whose first record is the last one at or before `seq`.
    let mut chosen = None;
    for n in segments(dir)? {
        let path = segment_path(dir, n);
        let file = std::fs::File::open(&path)?;
        let mut first = String::new();
        BufReader::new(file).read_line(&mut first)?;
        let first_seq = seq_of(first.trim_end());
        match first_seq {
            Some(s) if s <= seq => chosen = Some(path),
            Some(_) => break,
            None => {}
        }
    }
    let path = chosen.with_context(|| format!("no segment holds seq {seq}"))?;
    let reader = BufReader::new(std::fs::File::open(&path)?);
    for line in reader.lines() {
        let line = line?;
        let this = seq_of(&line);
        if this == Some(seq) {
            return Ok(line);
        }
    }
    bail!("no record with seq {seq} in {}", path.display())
}

/// An inclusion proof of record `seq` against the checkpoint of `against` records (default:
/// the latest), from the lineage in `dir`.
pub fn prove_inclusion(dir: &Path, seq: u64, against: Option<u64>) -> Result<Proof> {
    let all = checkpoints(dir)?;
    let (cp, note) = checkpoint_of(&all, against)?;
    if seq >= cp.size {
        bail!(
            "record {seq} is not covered by the checkpoint of {} records; wait for the next \
             checkpoint (or name one with --checkpoint-size)",
            cp.size
        );
    }
    let record = find_record(dir, seq)?;
    let tree = TreeFile::open(dir)?;
    let path = prove_record(cp.size, seq, &tree)
        .with_context(|| format!("reading the audit path from {}", dir.display()))?;
    let leaf = leaf_hash(&record_hash(record.as_bytes()));
    check_record(&path, cp.size, Hash(cp.root), seq, leaf).context(
        "the lineage's tree file does not lead to the checkpoint's root: the record or the \
         tree file was altered (`lineage verify` says which)",
    )?;
    Ok(Proof::Inclusion {
        leaf_index: seq,
        record,
        audit_path: encode(&path),
        checkpoint: note,
    })
}

/// A consistency proof from the checkpoint of `from` records to that of `to` (default: the
/// latest).
pub fn prove_consistency(dir: &Path, from: u64, to: Option<u64>) -> Result<Proof> {
    let all = checkpoints(dir)?;
    let (old, old_note) = checkpoint_of(&all, Some(from))?;
    let (new, new_note) = checkpoint_of(&all, to)?;
    if old.size > new.size {
        bail!(
            "the checkpoint of {} records is newer than the one of {}: give the smaller size \
             as --from-size",
            old.size,
            new.size
        );
    }
    let tree = TreeFile::open(dir)?;
    let proof = prove_tree(new.size, old.size, &tree)
        .with_context(|| format!("reading the consistency proof from {}", dir.display()))?;
    check_tree(&proof, new.size, Hash(new.root), old.size, Hash(old.root)).context(
        "the lineage's tree file does not join the two checkpoints: the lineage or its tree \
         file was altered (`lineage verify` says which)",
    )?;
    Ok(Proof::Consistency {
        old_checkpoint: old_note,
        new_checkpoint: new_note,
        proof: encode(&proof),
    })
}

/// Parses a proof file's bytes.
pub fn parse(bytes: &[u8]) -> Result<Proof> {
    serde_json::from_slice(bytes).context("not a Rampart lineage proof (JSON)")
}

/// Checks a proof with the host's public key.
pub fn check(proof: &Proof, key: &PublicKey) -> Result<Verified> {
    let signer = note::key_name(key);
    match proof {
        Proof::Inclusion {
            leaf_index,
            record,
            audit_path,
            checkpoint,
        } => {
            let cp = note::verify(checkpoint, key).context("the proof's checkpoint")?;
            let parsed: super::record::Parsed<'_> =
                serde_json::from_str(record).context("the proof's record is not a record")?;
            if parsed.seq != *leaf_index {
                bail!(
                    "the record says seq {}, but the proof places it at leaf {leaf_index}",
                    parsed.seq
                );
            }
            if *leaf_index >= cp.size {
                bail!(
                    "leaf {leaf_index} is outside the checkpoint's tree of {} records",
                    cp.size
                );
            }
            let path = decode(audit_path)?;
            let leaf = leaf_hash(&record_hash(record.as_bytes()));
            check_record(&path, cp.size, Hash(cp.root), *leaf_index, leaf).map_err(|_| {
                anyhow::anyhow!(
                    "the audit path does not lead from this record at leaf {leaf_index} to \
                     the signed root of {} records: the record, its index or the path was \
                     altered",
                    cp.size
                )
            })?;
            Ok(Verified {
                proof: "inclusion",
                origin: cp.origin,
                tree_size: cp.size,
                root: B64.encode(cp.root),
                seq: Some(parsed.seq),
                kind: Some(parsed.kind.to_owned()),
                old_size: None,
                old_root: None,
                signer,
            })
        }
        Proof::Consistency {
            old_checkpoint,
            new_checkpoint,
            proof,
        } => {
            let old = note::verify(old_checkpoint, key).context("the proof's old checkpoint")?;
            let new = note::verify(new_checkpoint, key).context("the proof's new checkpoint")?;
            if old.origin != new.origin {
                bail!(
                    "the checkpoints are of two lineages: {} and {}",
                    old.origin,
                    new.origin
                );
            }
            if old.size == 0 || old.size > new.size {
                bail!(
                    "the old checkpoint covers {} records and the new one {}: no consistency \
                     to prove",
                    old.size,
                    new.size
                );
            }
            let hashes = decode(proof)?;
            check_tree(&hashes, new.size, Hash(new.root), old.size, Hash(old.root)).map_err(
                |_| {
                    anyhow::anyhow!(
                        "the proof does not show the tree of {} records extending the one of \
                         {}: the host rewrote its history, or the proof was altered",
                        new.size,
                        old.size
                    )
                },
            )?;
            Ok(Verified {
                proof: "consistency",
                origin: new.origin,
                tree_size: new.size,
                root: B64.encode(new.root),
                seq: None,
                kind: None,
                old_size: Some(old.size),
                old_root: Some(B64.encode(old.root)),
                signer,
            })
        }
    }
}
