//! `rampart lineage prove`, `verify-proof` and `replay`: evidence a third party checks.

use std::{io::Read, path::Path, process::ExitCode};

use anyhow::{Context, Result};
use rampart::{
    bundle::{keys::PublicKey, trust::TrustRoot},
    lineage::proof::{self, Proof},
    replay::{self, Inputs},
    support::files::read_capped,
};

/// The largest proof file read (a proof is a record, at most 128 hashes and two notes).
const MAX_PROOF_BYTES: u64 = 1 << 20;

/// `lineage prove`: writes an inclusion proof (`seq`) or a consistency proof (`from_size`).
pub fn prove(
    dir: &Path,
    seq: Option<u64>,
    checkpoint_size: Option<u64>,
    from_size: Option<u64>,
    to_size: Option<u64>,
    output: &Path,
) -> Result<()> {
    let proof = match (seq, from_size) {
        (Some(seq), _) => proof::prove_inclusion(dir, seq, checkpoint_size)?,
        (None, Some(from)) => proof::prove_consistency(dir, from, to_size)?,
        (None, None) => anyhow::bail!("give --seq N or --from-size A"),
    };
    let mut json = serde_json::to_vec(&proof)?;
    json.push(b'\n');
    if output == Path::new("-") {
        use std::io::Write;
        std::io::stdout().write_all(&json)?;
        return Ok(());
    }
    std::fs::write(output, &json).with_context(|| format!("writing {}", output.display()))?;
    match &proof {
        Proof::Inclusion { leaf_index, .. } => eprintln!(
            "wrote an inclusion proof of record {leaf_index} to {}",
            output.display()
        ),
        Proof::Consistency { .. } => {
            eprintln!("wrote a consistency proof to {}", output.display())
        }
    }
    Ok(())
}

/// `lineage verify-proof`: exit 0 when the proof verifies, 1 with the reason otherwise.
pub fn verify_proof(path: &Path, key: &Path, json: bool) -> Result<ExitCode> {
    let key = PublicKey::read(key).map_err(|e| anyhow::anyhow!(e.in_file(key)))?;
    let bytes = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_PROOF_BYTES)
            .read_to_end(&mut buf)?;
        buf
    } else {
        read_capped(path, MAX_PROOF_BYTES)?
    };
    let result = proof::parse(&bytes).and_then(|p| proof::check(&p, &key));
    match result {
        Ok(v) => {
            if json {
                let mut out = serde_json::to_value(&v)?;
                out["verified"] = true.into();
                println!("{out}");
            } else if v.proof == "inclusion" {
                println!(
                    "verified: record {} ({}) is leaf {} of {}, a tree of {} records with \
                     root {} signed by {}",
                    v.seq.unwrap_or_default(),
                    v.kind.as_deref().unwrap_or("?"),
                    v.seq.unwrap_or_default(),
                    v.origin,
                    v.tree_size,
                    v.root,
                    v.signer
                );
            } else {
                println!(
                    "verified: the tree of {} records (root {}) extends the tree of {} records \
                     (root {}) of {}, both signed by {}",
                    v.tree_size,
                    v.root,
                    v.old_size.unwrap_or_default(),
                    v.old_root.as_deref().unwrap_or("?"),
                    v.origin,
                    v.signer
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"verified": false, "error": format!("{e:#}")})
                );
            } else {
                eprintln!("NOT VERIFIED: {e:#}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// `lineage replay`: prints the summary; returns the exit code (0 all agree, 1 lineage not
/// verified, 2 divergences, 3 a bundle missing or not verifying).
pub fn replay(dir: &Path, key: &Path, trust: &Path, bundles: &Path, json: bool) -> Result<u8> {
    let key = PublicKey::read(key).map_err(|e| anyhow::anyhow!(e.in_file(key)))?;
    let trust = TrustRoot::read(trust).map_err(|e| anyhow::anyhow!(e.in_file(trust)))?;
    let started = std::time::Instant::now();
    let r = replay::replay(&Inputs {
        dir,
        key: &key,
        trust: &trust,
        bundles,
    })?;
    let code = r.exit_code();
    if json {
        let mut v = serde_json::to_value(&r)?;
        v["exit_code"] = code.into();
        println!("{v}");
        return Ok(code);
    }
    if let Some(t) = &r.lineage.tampered {
        println!(
            "lineage {} does not verify (first bad record seq {}: {}); nothing replayed",
            dir.display(),
            t.seq,
            t.reason
        );
        return Ok(code);
    }
    println!(
        "lineage {}: {} records verified; {} policy changes, {} put in force from verified bundles",
        dir.display(),
        r.lineage.records,
        r.policy_changes,
        r.policy_changes_verified
    );
    for u in &r.unverified {
        println!(
            "policy change at seq {} (version {}): {}",
            u.seq, u.version, u.reason
        );
    }
    println!(
        "{} decisions replayed, {} divergences ({} agree; {} of {} decisions not recomputable) in {:.1} s",
        r.replayed,
        r.divergences,
        r.agreed,
        r.not_recomputable,
        r.decisions,
        started.elapsed().as_secs_f64()
    );
    if let Some(d) = &r.first_divergence {
        println!(
            "first divergence: seq {} {} {} (policy {}): recorded {} {} rule {:?}, replayed {} {} rule {:?}",
            d.seq,
            d.action,
            d.target,
            d.policy,
            d.recorded.decision,
            d.recorded.reason,
            d.recorded.rule_id,
            d.replayed.decision,
            d.replayed.reason,
            d.replayed.rule_id
        );
    }
    for (why, n) in &r.not_recomputable_by {
        println!("  not recomputable: {n} x {why}");
    }
    Ok(code)
}
