//! The Proof Viewer's computation: a record's inclusion proof against the latest signed
//! checkpoint, checked by [`proof::check`] (the verdict shown), and the same path recomputed
//! step by step for display (RFC 9162 §2.1.3.2), which must reach the same signed root.

use std::path::Path;

use anyhow::Result;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use sha2::{Digest, Sha256};

use crate::{
    bundle::keys::PublicKey,
    lineage::{
        note,
        proof::{self, Proof},
        record::record_hash,
        tree::leaf_hash,
    },
};

/// One step up the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The sibling hash from the proof (base64).
    pub sibling: String,
    /// Whether the sibling is the left child (the running hash the right).
    pub sibling_left: bool,
    /// The parent hash this step computes (base64).
    pub parent: String,
}

/// An inclusion proof, checked and laid out.
#[derive(Debug, Clone)]
pub struct Shown {
    pub proof: Proof,
    pub seq: u64,
    pub tree_size: u64,
    /// The leaf hash (base64).
    pub leaf: String,
    pub steps: Vec<Step>,
    /// The root the steps reach, and the root the checkpoint signs (base64).
    pub reached: String,
    pub signed_root: String,
    pub note: String,
    /// The verdict of [`proof::check`] with the host key: the signer, or why not.
    pub verdict: Result<String, String>,
}

fn node(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The steps from `leaf` at `index` in a tree of `size` leaves along `path` (RFC 9162
/// §2.1.3.2); none if the path does not fit the tree.
pub fn steps(index: u64, size: u64, leaf: [u8; 32], path: &[[u8; 32]]) -> Option<Vec<Step>> {
    if index >= size {
        return None;
    }
    let (mut f, mut s, mut r) = (index, size - 1, leaf);
    let mut out = Vec::with_capacity(path.len());
    for p in path {
        if s == 0 {
            return None;
        }
        let sibling_left = f & 1 == 1 || f == s;
        if sibling_left {
            r = node(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f >>= 1;
        s >>= 1;
        out.push(Step {
            sibling: B64.encode(p),
            sibling_left,
            parent: B64.encode(r),
        });
    }
    (s == 0).then_some(out)
}

/// Proves record `seq` against the latest checkpoint and lays the proof out.
pub fn show(dir: &Path, key: &PublicKey, seq: u64) -> Result<Shown> {
    let proof = proof::prove_inclusion(dir, seq, None)?;
    let Proof::Inclusion {
        record,
        audit_path,
        checkpoint,
        ..
    } = &proof
    else {
        anyhow::bail!("an inclusion proof was asked for");
    };
    let cp = note::parse_unverified(checkpoint)?;
    let leaf = leaf_hash(&record_hash(record.as_bytes())).0;
    let path: Vec<[u8; 32]> = audit_path
        .iter()
        .filter_map(|h| B64.decode(h).ok()?.try_into().ok())
        .collect();
    let laid_out = steps(seq, cp.size, leaf, &path).unwrap_or_default();
    let reached = laid_out
        .last()
        .map_or_else(|| B64.encode(leaf), |s| s.parent.clone());
    let verdict = proof::check(&proof, key)
        .map(|v| v.signer)
        .map_err(|e| format!("{e:#}"));
    Ok(Shown {
        seq,
        tree_size: cp.size,
        leaf: B64.encode(leaf),
        steps: laid_out,
        reached,
        signed_root: B64.encode(cp.root),
        note: checkpoint.clone(),
        verdict,
        proof,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u8) -> [u8; 32] {
        leaf_hash(&[i; 32]).0
    }

    /// The root of leaves `l` by the RFC's recursive definition.
    fn root(l: &[[u8; 32]]) -> [u8; 32] {
        if l.len() == 1 {
            return l[0];
        }
        let k = l.len().next_power_of_two() / 2;
        node(&root(&l[..k]), &root(&l[k..]))
    }

    /// The audit path of leaf `m` by the RFC's recursive definition.
    fn path(m: usize, l: &[[u8; 32]]) -> Vec<[u8; 32]> {
        if l.len() == 1 {
            return vec![];
        }
        let k = l.len().next_power_of_two() / 2;
        if m < k {
            let mut p = path(m, &l[..k]);
            p.push(root(&l[k..]));
            p
        } else {
            let mut p = path(m - k, &l[k..]);
            p.push(root(&l[..k]));
            p
        }
    }

    #[test]
    fn the_steps_reach_the_root_for_every_leaf_of_every_size() {
        for n in 1..=13usize {
            let leaves: Vec<_> = (0..n as u8).map(leaf).collect();
            let want = B64.encode(root(&leaves));
            for m in 0..n {
                let p = path(m, &leaves);
                let s = steps(m as u64, n as u64, leaves[m], &p).unwrap();
                let reached = s
                    .last()
                    .map_or_else(|| B64.encode(leaves[m]), |s| s.parent.clone());
                assert_eq!(reached, want, "leaf {m} of {n}");
            }
        }
    }

    #[test]
    fn a_path_of_the_wrong_length_or_index_is_refused() {
        let leaves: Vec<_> = (0..5u8).map(leaf).collect();
        let p = path(2, &leaves);
        assert!(steps(2, 5, leaves[2], &p[..p.len() - 1]).is_none());
        assert!(steps(5, 5, leaves[2], &p).is_none());
        let mut longer = p.clone();
        longer.push(leaves[0]);
        assert!(steps(2, 5, leaves[2], &longer).is_none());
    }
}
