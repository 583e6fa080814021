//! `rampart lineage verify|show|tail` on a lineage written by the library, with the exit
//! codes scripts rely on.

use std::{path::PathBuf, process::Command};

use rampart::{
    bundle::SecretKey,
    lineage::{
        decision::DecisionRecord,
        record::Body,
        writer::{Config, Stamp, Writer},
    },
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-lcli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn decision(i: u32, decision: &'static str) -> DecisionRecord {
    DecisionRecord {
        ktime_ns: 1000 + u64::from(i),
        pid: 100 + i,
        tid: 100 + i,
        uid: 0,
        comm: "worker".into(),
        cgroup_id: 9,
        action: if i.is_multiple_of(2) { "open" } else { "exec" },
        decision,
        reason: if decision == "deny" {
            "no-rule"
        } else {
            "allowed"
        },
        rule_id: None,
        policy_id: 0,
        policy_version: 3,
        policy: Some("batch".into()),
        rule: None,
        bundle: None,
        access: None,
        path: Some(format!("/data/{i}")),
        path_truncated: false,
        file_dev: None,
        file_ino: None,
        endpoint: None,
        peer_pid: None,
    }
}

fn rampart(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn verify_show_and_tail() {
    let root = scratch("all");
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (secret, public) = SecretKey::generate()
        .unwrap()
        .write_pair(&keys.join("host"))
        .unwrap();
    let dir = root.join("lineage");
    let (mut w, _) = Writer::open(
        Config::new(&dir),
        SecretKey::read(&secret).unwrap(),
        3,
        None,
    )
    .unwrap();
    for i in 0..10 {
        let d = decision(i, if i.is_multiple_of(3) { "deny" } else { "allow" });
        w.append(Stamp::of_kernel(d.ktime_ns), Some(3), &Body::Decision(&d))
            .unwrap();
    }
    w.flush().unwrap();
    let (d, p) = (
        dir.to_string_lossy().into_owned(),
        public.to_string_lossy().into_owned(),
    );

    // Not closed: nothing anchors the records yet.
    let (code, out) = rampart(&["lineage", "verify", &d, "--pub", &p]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unanchored tail: 11 record(s)"), "{out}");
    w.close("test").unwrap();
    let (code, out) = rampart(&["lineage", "verify", &d, "--pub", &p]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("13 records verified"), "{out}");
    assert!(out.trim_end().ends_with("intact"), "{out}");
    let cps = dir.join("checkpoints").to_string_lossy().into_owned();
    let (code, out) = rampart(&[
        "lineage",
        "verify",
        &d,
        "--pub",
        &p,
        "--checkpoints",
        &cps,
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["external_checkpoints"].as_u64(), v["exit_code"].as_u64()),
        (Some(1), Some(0))
    );

    // Filters.
    let (code, out) = rampart(&["lineage", "show", &d, "--decision", "deny"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 4, "{out}"); // i = 0, 3, 6, 9
    assert!(out.lines().all(|l| l.contains(" deny ")), "{out}");
    let (_, out) = rampart(&[
        "lineage", "show", &d, "--kind", "decision", "--action", "exec", "--json",
    ]);
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(
        out.lines().all(|l| l.contains("\"action\":\"exec\"")),
        "{out}"
    );
    let (_, out) = rampart(&["lineage", "show", &d, "--pid", "104"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (_, out) = rampart(&["lineage", "tail", &d, "-n", "2"]);
    let tail: Vec<&str> = out.lines().collect();
    assert!(
        tail[0].contains("agent-stop") && tail[1].contains("checkpoint of 12 records"),
        "{out}"
    );
    let (code, out) = rampart(&["lineage", "show", &d, "--since", "not a time"]);
    assert_ne!(code, 0);
    assert!(
        out.contains("neither an RFC 3339 time nor a duration"),
        "{out}"
    );

    // A changed byte: exit 1 naming the record.
    let seg = dir.join("segment-00000000.jsonl");
    let text = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, text.replacen("/data/4\"", "/data/5\"", 1)).unwrap();
    let (code, out) = rampart(&["lineage", "verify", &d, "--pub", &p]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("TAMPERED: first bad record seq 5"), "{out}");
    std::fs::remove_dir_all(&root).unwrap();
}
