//! A small lineage written by the real writer, for the console's tests and the browser
//! test (`cargo xtask test` runs `cargo run --example console_fixture`): a policy change,
//! allowed and denied decisions (one with a path full of markup and quotes), a gap and
//! signed checkpoints.

use std::path::Path;

use anyhow::Result;

use crate::{
    bundle::keys::{PublicKey, SecretKey},
    lineage::{
        decision::DecisionRecord,
        record::{Body, GapReason},
        writer::{Config, Stamp, Writer},
    },
};

/// The denied path the escaping must show as text.
pub const HOSTILE_PATH: &str = "/tmp/<script>alert('x')</script>\"onmouseover=\"alert(1)";
/// The policy version the fixture puts in force.
pub const VERSION: u64 = 7;

fn decision(i: u64, path: &str, denied: bool) -> DecisionRecord {
    DecisionRecord {
        ktime_ns: 1_000_000 + i,
        pid: 4200 + i as u32,
        tid: 4200 + i as u32,
        uid: 0,
        comm: if denied {
            "curl".into()
        } else {
            "nginx".into()
        },
        cgroup_id: 77,
        action: "open",
        decision: if denied { "deny" } else { "allow" },
        reason: if denied { "no-rule" } else { "allowed" },
        rule_id: (!denied).then_some(0),
        policy_id: 0,
        policy_version: VERSION,
        policy: Some("web".into()),
        rule: (!denied).then(|| "spec.files[0]".into()),
        bundle: None,
        access: Some("read".into()),
        path: Some(path.into()),
        path_truncated: false,
        file_dev: Some(2049),
        file_ino: Some(1000 + i),
        endpoint: None,
        peer_pid: None,
    }
}

/// Writes the lineage into `dir` (created) and the host's public key beside it as
/// `DIR/../host.pub`; returns the key.
pub fn write(dir: &Path) -> Result<PublicKey> {
    let key = SecretKey::generate()?;
    let public = key.public();
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
        std::fs::write(
            parent.join("host.pub"),
            serde_json::to_vec(&public.to_file())?,
        )?;
    }
    let mut cfg = Config::new(dir);
    cfg.checkpoint_every = 8;
    let (mut w, _) = Writer::open(cfg, key, 0, None)?;
    let (signers, policies) = (vec!["security-team".to_owned()], vec!["web".to_owned()]);
    w.append(
        Stamp::now(),
        Some(VERSION),
        &Body::PolicyChange {
            old_version: 0,
            new_version: VERSION,
            old_digest: None,
            new_digest: None,
            signers: &signers,
            policies: &policies,
            resolved: None,
        },
    )?;
    w.policy_version = VERSION;
    for i in 0..20u64 {
        let r = match i % 5 {
            1 => decision(i, &format!("/etc/shadow-{i}"), true),
            3 => decision(i, HOSTILE_PATH, true),
            _ => decision(i, &format!("/srv/www/index-{i}.html"), false),
        };
        w.append(Stamp::now(), Some(VERSION), &Body::Decision(&r))?;
    }
    w.append(
        Stamp::now(),
        None,
        &Body::Gap {
            source: "kernel-ring",
            reason: GapReason::RingBufferFull,
            lost: 3,
            from_ns: 0,
            to_ns: 0,
            detail: None,
        },
    )?;
    w.checkpoint()?;
    w.flush()?;
    Ok(public)
}
