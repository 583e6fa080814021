//! The host's half of the evidence scenario: the lineage, archived bundles, trust root,
//! host key and proofs a guest shipped are written under target/vm-test/evidence-KERNEL/
//! and checked again here with the agent built for the guest, which shares nothing with
//! the guest but these files: both proofs verify with only host.pub, and replay of every
//! decision finds no divergence.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};
use rampart_vm_tests::protocol::EVIDENCE_PREFIX;

/// Writes the shipped files below `dir` and checks them; `None` when nothing was shipped.
pub fn check(agent: &Path, files: &[(String, Vec<u8>)], dir: &Path) -> Option<Result<String>> {
    let shipped: Vec<(&str, &[u8])> = files
        .iter()
        .filter_map(|(n, b)| Some((n.strip_prefix(EVIDENCE_PREFIX)?, b.as_slice())))
        .collect();
    if shipped.is_empty() {
        return None;
    }
    Some(check_files(agent, &shipped, dir))
}

fn run(agent: &Path, args: &[&str]) -> Result<(i32, String)> {
    let out = Command::new(agent)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", agent.display(), args.join(" ")))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.code().unwrap_or(-1), text))
}

fn check_files(agent: &Path, shipped: &[(&str, &[u8])], dir: &Path) -> Result<String> {
    let _ = std::fs::remove_dir_all(dir);
    for (name, bytes) in shipped {
        if name.contains("..") {
            bail!("the guest shipped a file named {name}");
        }
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let public = p("host.pub");
    let mut said = Vec::new();
    for proof in ["denial-proof.json", "consistency-proof.json"] {
        let (code, text) = run(
            agent,
            &["lineage", "verify-proof", &p(proof), "--pub", &public],
        )?;
        if code != 0 {
            bail!(
                "{proof} did not verify on the host (exit {code}): {}",
                text.trim()
            );
        }
        said.push(format!("{proof} verified"));
    }
    let (code, text) = run(
        agent,
        &[
            "lineage",
            "replay",
            &p("lineage"),
            "--pub",
            &public,
            "--trust",
            &p("trust.json"),
            "--bundles",
            &p("bundles"),
            "--json",
        ],
    )?;
    let report: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("replay on the host printed no JSON: {text}"))?;
    if code != 0 || report["divergences"] != 0 {
        bail!("replay on the host exited {code}: {report}");
    }
    said.push(format!(
        "replay: {} decisions replayed, {} divergences",
        report["replayed"], report["divergences"]
    ));
    Ok(format!(
        "on the host with only host.pub: {}",
        said.join("; ")
    ))
}
