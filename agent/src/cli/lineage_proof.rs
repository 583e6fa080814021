//! `rampart lineage prove` and `rampart lineage verify-proof`.

use std::{io::Read, path::Path, process::ExitCode};

use anyhow::{Context, Result};
use rampart::{
    bundle::keys::PublicKey,
    lineage::proof::{self, Proof},
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
