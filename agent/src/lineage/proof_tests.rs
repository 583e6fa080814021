//! Proof tests: inclusion and consistency proofs from a written lineage (across a restart,
//! a crash that left the tree file ahead, and a lost tree file) verify with the host's
//! public key alone; every changed byte, another key, and a rewritten history are refused.

use std::path::{Path, PathBuf};

use super::{
    proof::{self, Proof},
    record::Body,
    tests::decision,
    tree::TREE_FILE,
    verify::verify,
    writer::{Config, Stamp, Writer},
};
use crate::bundle::keys::{PublicKey, SecretKey};

struct Host {
    dir: PathBuf,
    keys: PathBuf,
    secret: PathBuf,
    public: PublicKey,
}

impl Host {
    fn new(name: &str) -> Self {
        let base =
            std::env::temp_dir().join(format!("rampart-proof-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let keys = base.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let (secret, _) = SecretKey::generate()
            .unwrap()
            .write_pair(&keys.join("host"))
            .unwrap();
        let public = SecretKey::read(&secret).unwrap().public();
        Self {
            dir: base.join("lineage"),
            keys,
            secret,
            public,
        }
    }

    /// One agent run: `n` decisions from `from`, a checkpoint every `every`; `close`: a
    /// clean stop (with its final checkpoint), else a crash after a flush.
    fn run(&self, from: u64, n: u64, every: u64, close: bool) {
        let mut cfg = Config::new(&self.dir);
        cfg.checkpoint_every = every;
        let key = SecretKey::read(&self.secret).unwrap();
        let (mut w, _) = Writer::open(cfg, key, 7, None).unwrap();
        for i in from..from + n {
            let d = decision(i);
            w.append(Stamp::of_kernel(d.ktime_ns), Some(7), &Body::Decision(&d))
                .unwrap();
        }
        if close {
            w.close("test").unwrap();
        } else {
            w.flush().unwrap();
        }
    }

    /// An agent start that must rebuild the tree file; the lineage still verifies after.
    fn restart_rebuilds_the_tree(&self) {
        let key = SecretKey::read(&self.secret).unwrap();
        let (mut w, recovery) = Writer::open(Config::new(&self.dir), key, 7, None).unwrap();
        assert!(recovery.tree_rebuilt);
        w.close("test").unwrap();
        let r = verify(&self.dir, &self.public, None).unwrap();
        assert!(r.tampered.is_none(), "{r:?}");
    }

    fn cleanup(&self) {
        let _ = std::fs::remove_dir_all(self.dir.parent().unwrap());
        let _ = std::fs::remove_dir_all(&self.keys);
    }
}

fn sizes(dir: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(dir.join(super::segment::CHECKPOINTS_FILE)).unwrap();
    super::verify::split_notes(&text)
        .iter()
        .map(|n| super::note::parse_unverified(n).unwrap().size)
        .collect()
}

fn bytes_of(p: &Proof) -> Vec<u8> {
    serde_json::to_vec(p).unwrap()
}

/// Every single-byte change of the proof's JSON is refused (it does not parse or does not
/// verify).
fn every_changed_byte_fails(p: &Proof, key: &PublicKey) {
    let good = bytes_of(p);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let result = proof::parse(&bad).and_then(|p| proof::check(&p, key));
        assert!(
            result.is_err(),
            "byte {i} ({:?} -> {:?}) changed and the proof still verified",
            good[i] as char,
            bad[i] as char
        );
    }
}

#[test]
fn inclusion_proofs_verify_across_restarts_and_every_changed_byte_fails() {
    let h = Host::new("inclusion");
    h.run(0, 40, 16, true);
    h.run(40, 30, 16, false); // a crash: no stop, no final checkpoint
    h.run(70, 25, 16, true);
    let report = verify(&h.dir, &h.public, None).unwrap();
    assert!(report.tampered.is_none(), "{report:?}");
    let total = report.records;
    let latest = *sizes(&h.dir).iter().max().unwrap();
    assert_eq!(
        latest,
        total - 1,
        "the final checkpoint covers all but itself"
    );
    for seq in [0, 1, 15, 16, 17, 41, 70, latest - 1] {
        let p = proof::prove_inclusion(&h.dir, seq, None).unwrap();
        let v = proof::check(&p, &h.public).unwrap();
        assert_eq!((v.seq, v.tree_size), (Some(seq), latest));
        // Against an earlier checkpoint that covers it, too.
        if let Some(&earlier) = sizes(&h.dir).iter().find(|&&s| s > seq) {
            let p = proof::prove_inclusion(&h.dir, seq, Some(earlier)).unwrap();
            assert_eq!(proof::check(&p, &h.public).unwrap().tree_size, earlier);
        }
    }
    // A record after the checkpoint is not covered yet.
    assert!(proof::prove_inclusion(&h.dir, latest, None).is_err());
    let p = proof::prove_inclusion(&h.dir, 17, None).unwrap();
    every_changed_byte_fails(&p, &h.public);
    // Another host's key: the checkpoint's signature does not verify.
    let other = SecretKey::generate().unwrap().public();
    let err = proof::check(&p, &other).unwrap_err();
    assert!(format!("{err:#}").contains("no signature by"), "{err:#}");
    // The record moved to another leaf (its seq no longer its index), or another record.
    if let Proof::Inclusion {
        record,
        audit_path,
        checkpoint,
        ..
    } = &p
    {
        let moved = Proof::Inclusion {
            leaf_index: 18,
            record: record.clone(),
            audit_path: audit_path.clone(),
            checkpoint: checkpoint.clone(),
        };
        assert!(proof::check(&moved, &h.public).is_err());
        let other_record = super::proof::find_record(&h.dir, 18).unwrap();
        let swapped = Proof::Inclusion {
            leaf_index: 18,
            record: other_record,
            audit_path: audit_path.clone(),
            checkpoint: checkpoint.clone(),
        };
        let err = proof::check(&swapped, &h.public).unwrap_err();
        assert!(
            format!("{err:#}").contains("audit path does not lead"),
            "{err:#}"
        );
    }
    h.cleanup();
}

#[test]
fn consistency_proofs_join_every_pair_of_checkpoints_and_refuse_a_rewritten_history() {
    let h = Host::new("consistency");
    h.run(0, 50, 10, true);
    h.run(50, 20, 10, true);
    let all = sizes(&h.dir);
    assert!(all.len() >= 6, "{all:?}");
    for (i, &a) in all.iter().enumerate() {
        for &b in &all[i..] {
            let p = proof::prove_consistency(&h.dir, a, Some(b)).unwrap();
            let v = proof::check(&p, &h.public).unwrap();
            assert_eq!((v.old_size, v.tree_size), (Some(a), b));
        }
    }
    let p = proof::prove_consistency(&h.dir, all[1], None).unwrap();
    every_changed_byte_fails(&p, &h.public);
    // A host that rewrote record 3 and re-signed with its own key: its new checkpoint is
    // signed, but no proof joins it to the checkpoint a collector kept from before.
    let kept = match &p {
        Proof::Consistency { old_checkpoint, .. } => old_checkpoint.clone(),
        _ => unreachable!(),
    };
    let forged = Host::new("consistency-forged");
    std::fs::create_dir_all(forged.dir.parent().unwrap()).unwrap();
    std::fs::copy(&h.secret, &forged.secret).unwrap();
    forged.run(1000, 70, 10, true);
    let fp = proof::prove_consistency(&forged.dir, sizes(&forged.dir)[0], None).unwrap();
    let Proof::Consistency {
        new_checkpoint,
        proof: hashes,
        ..
    } = fp
    else {
        unreachable!()
    };
    let spliced = Proof::Consistency {
        old_checkpoint: kept,
        new_checkpoint,
        proof: hashes,
    };
    let err = proof::check(&spliced, &h.public).unwrap_err();
    assert!(
        format!("{err:#}").contains("two lineages") || format!("{err:#}").contains("rewrote"),
        "{err:#}"
    );
    h.cleanup();
    forged.cleanup();
}

#[test]
fn a_tree_file_left_ahead_by_a_crash_is_cut_back_and_a_lost_one_rebuilt() {
    let h = Host::new("tree-recovery");
    h.run(0, 30, 8, true);
    let tree = h.dir.join(TREE_FILE);
    // A crash between the tree write and the segment write: hashes of records that never
    // reached the segment.
    let mut bytes = std::fs::read(&tree).unwrap();
    bytes.extend_from_slice(&[0xab; 96]);
    std::fs::write(&tree, &bytes).unwrap();
    h.run(30, 10, 8, true);
    let r = verify(&h.dir, &h.public, None).unwrap();
    assert!(r.tampered.is_none(), "{r:?}");
    let p = proof::prove_inclusion(&h.dir, 35, None).unwrap();
    proof::check(&p, &h.public).unwrap();
    // The tree file lost: the next start rebuilds it from the segments.
    std::fs::remove_file(&tree).unwrap();
    h.restart_rebuilds_the_tree();
    for seq in [0, 35, 44] {
        let p = proof::prove_inclusion(&h.dir, seq, None).unwrap();
        proof::check(&p, &h.public).unwrap();
    }
    let all = sizes(&h.dir);
    let p = proof::prove_consistency(&h.dir, all[0], None).unwrap();
    proof::check(&p, &h.public).unwrap();
    // A tree file of the right length that is not this lineage's (zeros): its last leaf
    // is not the last record's, so the next start rebuilds it instead of extending it.
    let len = std::fs::metadata(&tree).unwrap().len() as usize;
    std::fs::write(&tree, vec![0u8; len]).unwrap();
    h.restart_rebuilds_the_tree();
    let p = proof::prove_inclusion(&h.dir, 44, None).unwrap();
    proof::check(&p, &h.public).unwrap();
    h.cleanup();
}
