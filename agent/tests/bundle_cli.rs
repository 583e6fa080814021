//! The signed-bundle CLI round trip, run as users run it: keygen, trust init, sign, cosign,
//! verify (with anti-rollback state), show, and trust rotation.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("running rampart")
}

fn ok(args: &[&str]) -> String {
    let out = rampart(args);
    assert!(
        out.status.success(),
        "rampart {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let out = rampart(args);
    assert!(
        !out.status.success(),
        "rampart {} succeeded but should have failed",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn example(name: &str) -> String {
    s(&Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policies")
        .join(name))
}

#[test]
fn keygen_trust_sign_cosign_verify_show() {
    let d = scratch("roundtrip");
    let f = |n: &str| s(&d.join(n));
    for who in ["alice", "bob", "carol"] {
        let out = ok(&["keygen", "--out", &f(who)]);
        assert!(out.starts_with("key id "), "{out}");
    }
    assert!(fails(&["keygen", "--out", &f("alice")]).contains("never overwritten"));
    ok(&[
        "trust",
        "init",
        "--key",
        &f("alice.pub"),
        "--key",
        &f("bob.pub"),
        "--key",
        &f("carol.pub"),
        "--threshold",
        "2",
        "--scope",
        "fleet-1",
        "-o",
        &f("trust.json"),
    ]);
    let sign = |version: &str, out: &str| {
        ok(&[
            "policy",
            "sign",
            "--key",
            &f("alice.key"),
            "--version",
            version,
            "--expires",
            "30d",
            "--scope",
            "fleet-1",
            &example("web-server.yaml"),
            &example("batch-job.yaml"),
            "-o",
            &f(out),
        ])
    };
    sign("5", "v5.rpb");
    // One of two required signatures.
    let err = fails(&[
        "policy",
        "verify",
        "--trust",
        &f("trust.json"),
        &f("v5.rpb"),
    ]);
    assert!(
        err.contains("rejected (below-threshold): 1 valid signature(s) from distinct trusted keys, 2 required"),
        "{err}"
    );
    ok(&["policy", "cosign", "--key", &f("bob.key"), &f("v5.rpb")]);
    let state = f("state");
    // A state that was never initialised accepts nothing.
    let err = fails(&[
        "policy",
        "verify",
        "--trust",
        &f("trust.json"),
        "--state",
        &state,
        &f("v5.rpb"),
    ]);
    assert!(err.contains("rejected (state-missing)"), "{err}");
    let out = ok(&["state", "init", "--state", &state]);
    assert!(out.contains("initialised"), "{out}");
    let out = ok(&[
        "policy",
        "verify",
        "--trust",
        &f("trust.json"),
        "--state",
        &state,
        &f("v5.rpb"),
    ]);
    assert!(out.contains("verified"), "{out}");
    assert!(out.contains("version    5"), "{out}");
    assert!(out.contains("advanced to version 5"), "{out}");
    assert!(out.contains("policy     web-server"), "{out}");
    // JSON summary for scripts.
    let json: serde_json::Value = serde_json::from_str(&ok(&[
        "policy",
        "verify",
        "--trust",
        &f("trust.json"),
        "--json",
        &f("v5.rpb"),
    ]))
    .unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["signers"].as_array().unwrap().len(), 2);
    assert_eq!(json["policies"][1]["name"], "batch-job");
    // An older, fully signed bundle is refused by the state, which stays at 5.
    sign("4", "v4.rpb");
    ok(&["policy", "cosign", "--key", &f("carol.key"), &f("v4.rpb")]);
    let err = fails(&[
        "policy",
        "verify",
        "--trust",
        &f("trust.json"),
        "--state",
        &state,
        &f("v4.rpb"),
    ]);
    assert!(
        err.contains("rejected (rollback): version 4 is older than version 5 already accepted"),
        "{err}"
    );
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("state/bundle-state.json")).unwrap()).unwrap();
    assert_eq!(kept["version"], 5);
    // show works without a trust root and says it is not verified.
    let out = ok(&["policy", "show", &f("v4.rpb")]);
    assert!(out.contains("NOT VERIFIED"), "{out}");
    assert!(out.contains("--- web-server.yaml"), "{out}");
    // A policy that does not compile is never signed.
    std::fs::write(
        d.join("bad.yaml"),
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\n",
    )
    .unwrap();
    let err = fails(&[
        "policy",
        "sign",
        "--key",
        &f("alice.key"),
        "--version",
        "6",
        "--expires",
        "1d",
        "--scope",
        "fleet-1",
        &f("bad.yaml"),
        "-o",
        &f("bad.rpb"),
    ]);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(!d.join("bad.rpb").exists());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn trust_rotation_round_trip() {
    let d = scratch("rotate");
    let f = |n: &str| s(&d.join(n));
    for who in ["old1", "old2", "new1", "new2"] {
        ok(&["keygen", "--out", &f(who)]);
    }
    ok(&[
        "trust",
        "init",
        "--key",
        &f("old1.pub"),
        "--key",
        &f("old2.pub"),
        "--threshold",
        "2",
        "--scope",
        "fleet-1",
        "-o",
        &f("trust.json"),
    ]);
    let before = std::fs::read(d.join("trust.json")).unwrap();
    let out = ok(&[
        "trust",
        "rotate",
        "--trust",
        &f("trust.json"),
        "--key",
        &f("new1.pub"),
        "--key",
        &f("new2.pub"),
        "--threshold",
        "2",
        "--sign",
        &f("old1.key"),
        "--sign",
        &f("new1.key"),
        "-o",
        &f("trust-v2.json"),
    ]);
    assert!(out.contains("not yet valid as a successor"), "{out}");
    // Installing a half-signed root fails and leaves the installed root as it was.
    let err = fails(&[
        "trust",
        "update",
        "--trust",
        &f("trust.json"),
        &f("trust-v2.json"),
    ]);
    assert!(
        err.contains("keys of the current trust root, 2 required"),
        "{err}"
    );
    assert_eq!(std::fs::read(d.join("trust.json")).unwrap(), before);
    ok(&[
        "trust",
        "cosign",
        "--key",
        &f("old2.key"),
        &f("trust-v2.json"),
    ]);
    ok(&[
        "trust",
        "cosign",
        "--key",
        &f("new2.key"),
        &f("trust-v2.json"),
    ]);
    let out = ok(&[
        "trust",
        "update",
        "--trust",
        &f("trust.json"),
        &f("trust-v2.json"),
    ]);
    assert!(out.contains("trust root version 2"), "{out}");
    assert!(ok(&["trust", "show", &f("trust.json")]).contains("version 2"));
    // Bundles signed by the old keys alone no longer verify.
    ok(&[
        "policy",
        "sign",
        "--key",
        &f("old1.key"),
        "--key",
        &f("old2.key"),
        "--version",
        "1",
        "--expires",
        "1d",
        "--scope",
        "fleet-1",
        &example("batch-job.yaml"),
        "-o",
        &f("old.rpb"),
    ]);
    let err = fails(&[
        "policy",
        "verify",
        "--trust",
        &f("trust.json"),
        &f("old.rpb"),
    ]);
    assert!(err.contains("rejected (below-threshold)"), "{err}");
    std::fs::remove_dir_all(&d).unwrap();
}
