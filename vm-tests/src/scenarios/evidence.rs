//! Evidence scenarios: a daemon on signed bundles swaps policies while a workload is
//! allowed and denied, one bad bundle is refused; then, in the guest, `lineage replay`
//! recomputes every decision from the archived bundles with no divergence, refuses to
//! replay without one of them, and a denial's inclusion proof and a consistency proof
//! verify (and a changed byte does not). The lineage, bundles, trust root, host key and
//! proofs are shipped to the host, where `cargo xtask vm-test` checks them again with the
//! host's own build (a row `host-...`).

use std::{
    path::Path,
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use rampart_vm_tests::protocol::{EVIDENCE_PREFIX, EVIDENCE_SCENARIO};

use super::bundles::{make_cgroup, BundleAgent};
use crate::harness::cli::{keys_and_trust, rampart, s, sign, swap_policy, SCOPE};
use crate::harness::env::{Env, AGENT, FIXTURES};
use crate::harness::observe::{op_in, records, Outcome};
use crate::harness::ship;

pub const SCENARIO: &str = EVIDENCE_SCENARIO;

fn agent(args: &[&str]) -> Result<Output> {
    Command::new(AGENT)
        .args(args)
        .output()
        .with_context(|| format!("running rampart {}", args.join(" ")))
}

/// Ships `path` to the host as `evidence/NAME`.
fn ship_file(name: &str, path: &Path) -> Result<()> {
    ship::file(&format!("{EVIDENCE_PREFIX}{name}"), path)
}

pub fn replay_and_proofs(env: &mut Env) -> Result<String> {
    let dir = Path::new("/run/rampart-evidence");
    keys_and_trust(dir)?;
    rampart(&["keygen", "--out", &s(&dir.join("host"))])?;
    let cg = make_cgroup("rampart-evidence")?;
    let data = Path::new(FIXTURES).join("data");
    let (fa, fb) = (data.join("evidence-a.txt"), data.join("evidence-b.txt"));
    std::fs::write(&fa, "a\n")?;
    std::fs::write(&fb, "b\n")?;
    let (pa, pb) = (dir.join("a.yaml"), dir.join("b.yaml"));
    std::fs::write(
        &pa,
        swap_policy("evidence", "/rampart-evidence", "evidence-a.txt"),
    )?;
    std::fs::write(
        &pb,
        swap_policy("evidence", "/rampart-evidence", "evidence-b.txt"),
    )?;
    // Odd versions allow only a, even versions only b.
    let bundle = |v: u64| dir.join(format!("v{v}.rpb"));
    for v in 1..=4 {
        sign(
            dir,
            if v % 2 == 1 { &pa } else { &pb },
            v,
            "1h",
            SCOPE,
            &bundle(v),
        )?;
    }
    // Version 5 with one character of its signature changed.
    sign(dir, &pa, 5, "1h", SCOPE, &bundle(5))?;
    let mut tampered: Value = serde_json::from_slice(&std::fs::read(bundle(5))?)?;
    let sig = tampered["signatures"][0]["sig"]
        .as_str()
        .context("sig")?
        .to_owned();
    let mut chars: Vec<char> = sig.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    tampered["signatures"][0]["sig"] = chars.into_iter().collect::<String>().into();
    let bad = dir.join("v5-tampered.rpb");
    std::fs::write(&bad, tampered.to_string())?;

    let lineage = dir.join("lineage");
    let host_key = s(&dir.join("host.key"));
    let mut daemon = BundleAgent::start(
        dir,
        &bundle(1),
        &[
            "--lineage",
            &s(&lineage),
            "--host-key",
            &host_key,
            "--checkpoint-every",
            "16",
        ],
    )?;
    let mut denials = 0;
    let mut ops = 0;
    let mut workload = |version: u64| -> Result<()> {
        let (allowed, denied) = if version % 2 == 1 {
            (&fa, &fb)
        } else {
            (&fb, &fa)
        };
        for (file, access, want_ok) in [
            (allowed, "read", true),
            (denied, "read", false),
            (allowed, "write", false),
        ] {
            let got = op_in(env, &cg, &["open", &s(file), access])?;
            let ok = got == Outcome::Ok;
            if ok != want_ok {
                bail!(
                    "version {version}: open {} {access}: {got:?}, expected {}",
                    file.display(),
                    if want_ok { "allowed" } else { "denied" }
                );
            }
            ops += 1;
            denials += u64::from(!ok);
        }
        Ok(())
    };
    workload(1)?;
    daemon.load(&bundle(2), 2)?;
    workload(2)?;
    daemon.refused(&bad, "bad-signature", 2)?;
    workload(2)?;
    daemon.load(&bundle(3), 3)?;
    workload(3)?;
    daemon.load(&bundle(4), 4)?;
    workload(4)?;
    daemon.stop()?;

    let key = s(&dir.join("host.pub"));
    let trust = s(&dir.join("trust.json"));
    let bundles = dir.join("state/bundles");
    let replay = |bundles: &Path| replay_json(&lineage, &key, &trust, bundles);
    let (code, report) = replay(&bundles)?;
    if code != Some(0) {
        bail!("lineage replay exited {code:?}: {report}");
    }
    let replayed = report["replayed"].as_u64().unwrap_or(0);
    if report["divergences"] != 0 || replayed < ops || report["policy_changes_verified"] != 4 {
        bail!("replay: expected 0 divergences over at least {ops} decisions and 4 verified policy changes: {report}");
    }
    // Without version 2's bundle, replay cannot put it in force: exit 3, never agreement.
    let partial = dir.join("partial-bundles");
    std::fs::create_dir_all(&partial)?;
    let v2 = report_digest(&lineage, 2)?;
    for entry in std::fs::read_dir(&bundles)? {
        let path = entry?.path();
        if !path.to_string_lossy().contains(&v2) {
            std::fs::copy(&path, partial.join(path.file_name().context("name")?))?;
        }
    }
    let (code, w) = replay(&partial)?;
    if code != Some(3) || w["replayed"].as_u64() >= Some(replayed) {
        bail!(
            "replay without version 2's bundle should exit 3 and replay fewer: exit {code:?}, {w}"
        );
    }

    // The last denial, proven; and the history between the first and last checkpoints.
    let all = records(&lineage)?;
    let last_denial = all
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "deny")
        .filter_map(|r| r["seq"].as_u64())
        .next_back()
        .context("no denial in the lineage")?;
    let first_checkpoint = all
        .iter()
        .find(|r| r["kind"] == "checkpoint")
        .and_then(|r| r["size"].as_u64())
        .context("no checkpoint in the lineage")?;
    let proof = dir.join("denial-proof.json");
    let consistency = dir.join("consistency-proof.json");
    rampart(&[
        "lineage",
        "prove",
        &s(&lineage),
        "--seq",
        &last_denial.to_string(),
        "-o",
        &s(&proof),
    ])?;
    rampart(&[
        "lineage",
        "prove",
        &s(&lineage),
        "--from-size",
        &first_checkpoint.to_string(),
        "-o",
        &s(&consistency),
    ])?;
    for p in [&proof, &consistency] {
        let out = agent(&["lineage", "verify-proof", &s(p), "--pub", &key])?;
        if !out.status.success() {
            bail!(
                "{} did not verify: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // One changed byte in the proven record: refused.
    let text = std::fs::read_to_string(&proof)?;
    let changed = text.replacen("\\\"deny\\\"", "\\\"allow\\\"", 1);
    let changed = if changed == text {
        text.replacen("deny", "dent", 1)
    } else {
        changed
    };
    let bad_proof = dir.join("changed-proof.json");
    std::fs::write(&bad_proof, changed)?;
    let out = agent(&["lineage", "verify-proof", &s(&bad_proof), "--pub", &key])?;
    if out.status.code() != Some(1) {
        bail!("a changed proof should exit 1, got {:?}", out.status.code());
    }

    let files = ship::dir(&format!("{EVIDENCE_PREFIX}lineage/"), &lineage)?
        + ship::dir(&format!("{EVIDENCE_PREFIX}bundles/"), &bundles)?;
    ship_file("trust.json", &dir.join("trust.json"))?;
    ship_file("host.pub", &dir.join("host.pub"))?;
    ship_file("denial-proof.json", &proof)?;
    ship_file("consistency-proof.json", &consistency)?;
    Ok(format!(
        "4 versions in force, 1 bad bundle refused, {ops} opens ({denials} denied); replay: \
         {replayed} decisions replayed, 0 divergences ({} not recomputable); without v2's \
         bundle exit 3; denial seq {last_denial} and consistency from {first_checkpoint} \
         proven and verified, a changed proof refused; {files} files shipped to the host",
        report["not_recomputable"]
    ))
}

/// `rampart lineage replay --json` of `lineage`: its exit code and report.
fn replay_json(
    lineage: &Path,
    key: &str,
    trust: &str,
    bundles: &Path,
) -> Result<(Option<i32>, Value)> {
    let out = agent(&[
        "lineage",
        "replay",
        &s(lineage),
        "--pub",
        key,
        "--trust",
        trust,
        "--bundles",
        &s(bundles),
        "--json",
    ])?;
    let report = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "lineage replay printed no JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok((out.status.code(), report))
}

/// The bundle digest the lineage's policy-change to `version` names.
fn report_digest(lineage: &Path, version: u64) -> Result<String> {
    records(lineage)?
        .iter()
        .find(|r| r["kind"] == "policy-change" && r["new_version"] == version)
        .and_then(|r| r["new_digest"].as_str().map(str::to_owned))
        .with_context(|| format!("no policy change to version {version} with a digest"))
}
