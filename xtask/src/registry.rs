//! `cargo xtask registry-test`: signed bundles through a real OCI registry on loopback
//! (Debian's `docker-registry`, unpacked into the cache, never installed: installing it
//! would start a system service). `rampart policy push` and `pull` must move each bundle
//! byte for byte, the pulled file must verify against the trust root, and what is not a
//! bundle, or is not there, must be refused with a message that says so.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use rampart_vm_tests::registry::Registry;

use crate::{
    debian,
    workspace::{cache_dir, workspace_root},
};

/// The registry's binary, from Debian's package (fetched and unpacked when missing).
pub fn binary() -> Result<PathBuf> {
    let root = debian::fetch_and_unpack("docker-registry", &cache_dir())?;
    let bin = root.join("usr/bin/docker-registry");
    if !bin.exists() {
        bail!("{} is missing from the unpacked package", bin.display());
    }
    Ok(bin)
}

struct Cli {
    bin: PathBuf,
    dir: PathBuf,
}

impl Cli {
    /// Runs `rampart ARGS` in the test directory: its stdout, or its stderr as the error.
    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !out.status.success() {
            bail!(
                "rampart {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn refused(&self, args: &[&str], want: &str) -> Result<String> {
        match self.run(args) {
            Ok(out) => bail!(
                "rampart {} succeeded ({out}); it must be refused",
                args.join(" ")
            ),
            Err(e) if format!("{e:#}").contains(want) => Ok(format!("{e:#}")),
            Err(e) => bail!(
                "rampart {}: refused, but without `{want}`: {e:#}",
                args.join(" ")
            ),
        }
    }
}

fn same_bytes(a: &Path, b: &Path) -> Result<()> {
    if std::fs::read(a)? != std::fs::read(b)? {
        bail!("{} and {} differ", a.display(), b.display());
    }
    Ok(())
}

/// Runs the test.
pub fn test() -> Result<()> {
    eprintln!("==> OCI registry test (Debian's docker-registry on loopback)");
    let root = workspace_root();
    crate::run::run_cmd(
        Command::new("cargo")
            .current_dir(&root)
            .args(["build", "-p", "rampart"]),
    )?;
    let registry_bin = binary()?;
    let dir = root.join("target/registry-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cli = Cli {
        bin: root.join("target/debug/rampart"),
        dir: dir.clone(),
    };
    std::fs::copy(root.join("policies/demo-app.yaml"), dir.join("p.yaml"))?;
    cli.run(&["keygen", "--out", "./signer"])?;
    cli.run(&[
        "trust",
        "init",
        "--key",
        "signer.pub",
        "--threshold",
        "1",
        "--scope",
        "fleet",
        "-o",
        "trust.json",
    ])?;
    for v in ["1", "2"] {
        let out = format!("v{v}.rpb");
        cli.run(&[
            "policy",
            "sign",
            "--key",
            "signer.key",
            "--version",
            v,
            "--expires",
            "1d",
            "--scope",
            "fleet",
            "-o",
            &out,
            "p.yaml",
        ])?;
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let _registry = Registry::start(&registry_bin, &dir.join("registry"), &addr)?;
    let tag = format!("oci://{addr}/rampart/fleet:stable");
    let mut passed = Vec::new();

    let out = cli.run(&["policy", "push", "v1.rpb", &tag])?;
    let digest = out
        .split("manifest ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .context("push printed no manifest digest")?
        .to_owned();
    cli.run(&["policy", "pull", &tag, "-o", "pulled-1.rpb"])?;
    same_bytes(&dir.join("v1.rpb"), &dir.join("pulled-1.rpb"))?;
    passed.push(format!(
        "v1 pushed to {tag} ({digest}) and pulled byte-identical"
    ));

    let out = cli.run(&["policy", "push", "v2.rpb", &tag])?;
    let pulled = cli.run(&["policy", "pull", &tag, "-o", "pulled-2.rpb"])?;
    same_bytes(&dir.join("v2.rpb"), &dir.join("pulled-2.rpb"))?;
    if !pulled.contains("claims version 2, scope fleet") {
        bail!("pull did not show the annotations of v2: {pulled}");
    }
    if out.contains(&digest) {
        bail!("v2 was pushed under the same manifest digest as v1: {out}");
    }
    let verified = cli.run(&["policy", "verify", "--trust", "trust.json", "pulled-2.rpb"])?;
    passed.push(format!(
        "the tag moved to v2: pulled byte-identical, annotations shown, verifies ({})",
        verified.lines().next().unwrap_or_default().trim()
    ));

    // By digest: the first push is still there, exactly.
    let by_digest = format!("oci://{addr}/rampart/fleet@{digest}");
    cli.run(&["policy", "pull", &by_digest, "-o", "pulled-d.rpb"])?;
    same_bytes(&dir.join("v1.rpb"), &dir.join("pulled-d.rpb"))?;
    passed.push("v1 pulled again by its digest, byte-identical".into());

    // The URL form of a source: the registry serves the layer as a blob, with an ETag.
    let sum = crate::run::output(Command::new("sha256sum").arg(dir.join("v2.rpb")))?;
    let layer = format!(
        "sha256:{}",
        sum.split_whitespace().next().unwrap_or_default()
    );
    let url = format!("http://{addr}/v2/rampart/fleet/blobs/{layer}");
    let out = cli.run(&["policy", "pull", &url, "-o", "pulled-u.rpb"])?;
    same_bytes(&dir.join("v2.rpb"), &dir.join("pulled-u.rpb"))?;
    cli.refused(
        &[
            "policy",
            "pull",
            &format!("http://10.255.255.1/{layer}"),
            "-o",
            "x.rpb",
        ],
        "allow_plain_http",
    )?;
    passed.push(format!(
        "the URL form pulls v2's layer byte-identical ({}), plain HTTP off loopback refused",
        out.split('(')
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap_or_default()
    ));

    std::fs::write(dir.join("not-a-bundle.rpb"), b"{\"hello\": \"world\"}")?;
    cli.refused(
        &["policy", "push", "not-a-bundle.rpb", &tag],
        "not a Rampart bundle",
    )?;
    let e = cli.refused(
        &[
            "policy",
            "pull",
            &format!("oci://{addr}/rampart/absent:v9"),
            "-o",
            "x.rpb",
        ],
        "manifest unknown",
    )?;
    if dir.join("x.rpb").exists() {
        bail!("a failed pull wrote its output file");
    }
    passed.push(format!(
        "a non-bundle is not pushed; an absent tag is an error ({e})"
    ));
    for p in &passed {
        eprintln!("  PASS {p}");
    }
    eprintln!("==> OCI registry test: {} checks passed", passed.len());
    Ok(())
}
