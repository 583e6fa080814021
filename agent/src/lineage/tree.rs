//! The Merkle tree over the records, with RFC 6962 hashing as in C2SP tlog (the `tlog_tiles`
//! crate's tree functions): leaf `i` is the record with seq `i`, and its leaf data is the
//! record's chain hash (BLAKE3 with the record context over the exact line), so the record
//! format keeps its domain separation and each line is hashed once.
//!
//! ```text
//! leaf(i)    = SHA-256(0x00 || record_hash(line i))
//! node(l, r) = SHA-256(0x01 || l || r)
//! ```
//!
//! The tree is kept as the tlog "stored hashes" (every complete subtree's hash, about two per
//! record) in `DIR/tree`, appended as records are: appending and proving read O(log n) of
//! them, never the records. The file is an index, not evidence: it is derived from the
//! segments and rebuilt from them when it falls short; a proof made from a damaged file does
//! not verify against the signed root.
//!
//! Invariant: a [`Frontier`] of size `n` holds exactly the roots of the perfect subtrees that
//! make up the first `n` leaves, so its [`Frontier::root`] is the RFC 6962 root of them.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::Path,
};

use anyhow::{Context, Result};
use tlog_tiles::{
    node_hash, split_stored_hash_index, stored_hash_count, stored_hash_index, tree_hash,
    Error as TlogError, Hash, HashReader, HASH_SIZE,
};

/// The file of stored hashes in the lineage directory.
pub const TREE_FILE: &str = "tree";

/// The leaf hash of a record, from its chain hash.
pub fn leaf_hash(record_hash: &[u8; 32]) -> Hash {
    tlog_tiles::record_hash(record_hash)
}

/// The right edge of a tree: what appending the next leaf and computing the root need.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// (level, hash) of each perfect subtree, one per set bit of `size`, highest level first.
    nodes: Vec<(u8, Hash)>,
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&index| {
                let (level, n) = split_stored_hash_index(index);
                self.nodes
                    .iter()
                    .find(|(l, _)| *l == level && (self.size >> level).checked_sub(1) == Some(n))
                    .map(|(_, h)| *h)
                    .ok_or(TlogError::IndexesNotInTree)
            })
            .collect()
    }
}

impl Frontier {
    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf, and the hashes to store from `stored_hash_index(0, size)` (raw, the
    /// leaf first, then each subtree it completes: tlog's `stored_hashes`) to `stored`.
    pub fn push(&mut self, leaf: Hash, stored: &mut Vec<u8>) {
        stored.extend_from_slice(&leaf.0);
        // The new leaf completes one subtree per trailing one bit of the old size: those
        // are the lowest frontier nodes, merged from level 0 up into one.
        let merges = (self.size + 1).trailing_zeros();
        let mut h = leaf;
        for _ in 0..merges {
            let Some((_, left)) = self.nodes.pop() else {
                break;
            };
            h = node_hash(left, h);
            stored.extend_from_slice(&h.0);
        }
        self.nodes.push((merges as u8, h));
        self.size += 1;
    }

    /// The root hash of the tree of [`Self::size`] leaves.
    pub fn root(&self) -> Result<Hash> {
        tree_hash(self.size, self).context("computing the lineage tree root")
    }

    /// The frontier of a tree of `size` leaves, read from its stored hashes.
    pub fn read(size: u64, stored: &impl HashReader) -> Result<Self> {
        let nodes: Vec<(u8, u64)> = (0..64u8)
            .rev()
            .filter(|level| size & (1 << level) != 0)
            .map(|level| (level, (size >> level) - 1))
            .collect();
        let indexes: Vec<u64> = nodes
            .iter()
            .map(|(level, n)| stored_hash_index(*level, *n))
            .collect();
        let hashes = stored
            .read_hashes(&indexes)
            .context("reading the lineage tree's right edge")?;
        Ok(Self {
            size,
            nodes: nodes.iter().map(|(l, _)| *l).zip(hashes).collect(),
        })
    }
}

/// The stored hashes in `DIR/tree`, read with positioned reads.
pub struct TreeFile {
    file: File,
    /// Hashes in the file.
    hashes: u64,
}

impl HashReader for TreeFile {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&index| {
                if index >= self.hashes {
                    return Err(TlogError::IndexesNotInTree);
                }
                let mut h = [0u8; HASH_SIZE];
                self.file
                    .read_exact_at(&mut h, index * HASH_SIZE as u64)
                    .map_err(|_| TlogError::IndexesNotInTree)?;
                Ok(Hash(h))
            })
            .collect()
    }
}

impl TreeFile {
    /// Opens `DIR/tree` for reading (proofs).
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(TREE_FILE);
        let file = File::open(&path).with_context(|| {
            format!(
                "opening the lineage tree {} (a lineage written before the tree has none: the \
                 next agent start on it rebuilds it from the segments)",
                path.display()
            )
        })?;
        Self::from_file(file)
    }

    /// Opens (or creates) `DIR/tree` for appending.
    pub fn open_rw(dir: &Path) -> Result<Self> {
        let path = dir.join(TREE_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening the lineage tree {}", path.display()))?;
        Self::from_file(file)
    }

    fn from_file(file: File) -> Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            hashes: len / HASH_SIZE as u64,
        })
    }

    /// Whether the file holds the stored hashes of at least `records` records.
    pub fn covers(&self, records: u64) -> bool {
        self.hashes >= stored_hash_count(records)
    }

    /// Whether the leaf of record `records - 1` in the file is the leaf of the record with
    /// chain hash `last` (true for an empty lineage).
    pub fn last_leaf_is(&self, records: u64, last: Option<[u8; 32]>) -> Result<bool> {
        let (Some(n), Some(last)) = (records.checked_sub(1), last) else {
            return Ok(records == 0);
        };
        let stored = self
            .read_hashes(&[stored_hash_index(0, n)])
            .context("reading the lineage tree's last leaf")?;
        Ok(stored.first() == Some(&leaf_hash(&last)))
    }

    /// Cuts the file to exactly the stored hashes of `records` records (hashes written for
    /// records that never reached the segment, e.g. by a crash between the two writes).
    pub fn cut_to(&mut self, records: u64) -> Result<()> {
        let want = stored_hash_count(records);
        self.file.set_len(want * HASH_SIZE as u64)?;
        self.hashes = want;
        Ok(())
    }

    /// Appends stored hashes (raw, 32 bytes each) at the end of what it holds.
    pub fn append(&mut self, raw: &[u8]) -> std::io::Result<()> {
        let at = self.hashes * HASH_SIZE as u64;
        let result = self.file.write_all_at(raw, at);
        if result.is_err() {
            let _ = self.file.set_len(at);
            return result;
        }
        self.hashes += (raw.len() / HASH_SIZE) as u64;
        Ok(())
    }

    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Builds a tree from leaves (tests and benchmarks): the stored hashes, raw, and the
/// frontier.
pub fn build(leaves: impl IntoIterator<Item = Hash>) -> (Vec<u8>, Frontier) {
    let mut frontier = Frontier::default();
    let mut raw = Vec::new();
    for leaf in leaves {
        frontier.push(leaf, &mut raw);
    }
    (raw, frontier)
}

/// Creates `DIR/tree` empty, to be written from the start.
pub fn create(dir: &Path) -> Result<File> {
    let path = dir.join(TREE_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("rewriting the lineage tree {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tlog_tiles::{check_record, check_tree, prove_record, prove_tree, record_hash};

    /// The leaves of RFC 6962's test vectors (certificate-transparency's merkle_tree_test).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    /// The root of the tree of the first 1..=8 of them.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| record_hash(&crate::bundle::keys::decode_hex(l).unwrap_or_default()))
            .collect()
    }

    /// An in-memory store of stored hashes.
    struct Mem(Vec<u8>);

    impl HashReader for Mem {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
            indexes
                .iter()
                .map(|&i| {
                    let at = i as usize * HASH_SIZE;
                    self.0
                        .get(at..at + HASH_SIZE)
                        .and_then(|s| <[u8; 32]>::try_from(s).ok())
                        .map(Hash)
                        .ok_or(TlogError::IndexesNotInTree)
                })
                .collect()
        }
    }

    #[test]
    fn roots_match_rfc6962_test_vectors() {
        let mut frontier = Frontier::default();
        for (leaf, want) in leaves().into_iter().zip(ROOTS) {
            frontier.push(leaf, &mut Vec::new());
            assert_eq!(
                crate::bundle::keys::hex(&frontier.root().unwrap().0),
                want,
                "size {}",
                frontier.size()
            );
        }
    }

    #[test]
    fn a_frontier_read_back_from_stored_hashes_continues_the_same_tree() {
        let all = leaves();
        let (raw, full) = build(all.clone());
        for size in 1..=8u64 {
            let (prefix_raw, _) = build(all[..size as usize].to_vec());
            let mut f = Frontier::read(size, &Mem(prefix_raw)).unwrap();
            for leaf in &all[size as usize..] {
                f.push(*leaf, &mut Vec::new());
            }
            assert_eq!(f.root().unwrap(), full.root().unwrap(), "from size {size}");
        }
        assert_eq!(raw.len() as u64, stored_hash_count(8) * HASH_SIZE as u64);
        // The same stored hashes, in the same order, as tlog's own `stored_hashes`.
        let mut theirs = Vec::new();
        for (n, leaf) in all.iter().enumerate() {
            let hashes =
                tlog_tiles::stored_hashes_for_record_hash(n as u64, *leaf, &Mem(theirs.clone()))
                    .unwrap();
            for h in hashes {
                theirs.extend_from_slice(&h.0);
            }
        }
        assert_eq!(raw, theirs);
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_every_tampered_one_fails() {
        let all = leaves();
        let (raw, _) = build(all.clone());
        let store = Mem(raw);
        for t in 1..=8u64 {
            let root = tree_hash(t, &store).unwrap();
            assert_eq!(crate::bundle::keys::hex(&root.0), ROOTS[t as usize - 1]);
            for n in 0..t {
                let proof = prove_record(t, n, &store).unwrap();
                check_record(&proof, t, root, n, all[n as usize]).unwrap();
                // Another leaf, another index, another root, or any changed hash: refused.
                let other = all[(n as usize + 1) % 8];
                assert!(check_record(&proof, t, root, n, other).is_err());
                if t > 1 {
                    assert!(check_record(&proof, t, root, (n + 1) % t, all[n as usize]).is_err());
                }
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i].0[7] ^= 1;
                    assert!(check_record(&bad, t, root, n, all[n as usize]).is_err());
                }
            }
            for n in 1..=t {
                let old = tree_hash(n, &store).unwrap();
                let proof = prove_tree(t, n, &store).unwrap();
                check_tree(&proof, t, root, n, old).unwrap();
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i].0[0] ^= 0x80;
                    assert!(check_tree(&bad, t, root, n, old).is_err(), "t {t} n {n}");
                }
                let mut wrong_old = old;
                wrong_old.0[31] ^= 1;
                assert!(check_tree(&proof, t, root, n, wrong_old).is_err());
            }
        }
    }
}
