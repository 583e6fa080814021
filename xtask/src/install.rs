//! `cargo xtask install`: builds the agent with its kernel programs and installs the binary,
//! the systemd unit, a default configuration (never over an existing one) and the
//! directories, under an optional staging root (for packaging).

use std::{
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{ebpf, prereq, run::run_cmd, workspace::workspace_root};

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Install under this staging directory instead of / (for packages and tests).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Where the binary goes, below the root.
    #[arg(long, value_name = "DIR", default_value = "/usr/local")]
    pub prefix: PathBuf,
}

fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn dir(path: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn file(from: &Path, to: &Path, mode: u32) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("installing {} as {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    eprintln!("    {}", to.display());
    Ok(())
}

pub fn install(args: &InstallArgs) -> Result<()> {
    let object = ebpf::build()?;
    prereq::ensure_musl_target()?;
    eprintln!("==> building the static agent ({})", prereq::MUSL_TARGET);
    run_cmd(
        Command::new("cargo")
            .current_dir(workspace_root())
            .args([
                "build",
                "--release",
                "--target",
                prereq::MUSL_TARGET,
                "-p",
                "rampart",
            ])
            .env("RAMPART_EBPF_OBJECT", &object),
    )?;
    let built = workspace_root()
        .join("target")
        .join(prereq::MUSL_TARGET)
        .join("release/rampart");
    let packaging = workspace_root().join("agent/packaging");
    let root = &args.root;
    eprintln!("==> installing under {}", root.display());
    let bin = under(root, &args.prefix.join("bin"));
    dir(&bin, 0o755)?;
    file(&built, &bin.join("rampart"), 0o755)?;
    let unit_dir = under(root, Path::new("/etc/systemd/system"));
    dir(&unit_dir, 0o755)?;
    let unit = std::fs::read_to_string(packaging.join("rampart.service"))?.replace(
        "/usr/local/bin/rampart",
        &args.prefix.join("bin/rampart").to_string_lossy(),
    );
    std::fs::write(unit_dir.join("rampart.service"), unit)?;
    eprintln!("    {}", unit_dir.join("rampart.service").display());
    let etc = under(root, Path::new("/etc/rampart"));
    dir(&etc, 0o755)?;
    dir(&etc.join("bundles"), 0o700)?;
    let state = under(root, Path::new("/var/lib/rampart"));
    dir(&state, 0o700)?;
    // Installing is the deliberate first run: the agent accepts no bundle until its
    // anti-rollback state exists, and never re-creates a missing one itself.
    if state.join("bundle-state.json").exists() {
        eprintln!(
            "    {} exists: kept as it is",
            state.join("bundle-state.json").display()
        );
    } else {
        run_cmd(
            Command::new(&built)
                .args(["state", "init", "--state"])
                .arg(&state),
        )?;
    }
    let config = etc.join("rampart.toml");
    if config.exists() {
        eprintln!("    {} exists: kept as it is", config.display());
    } else {
        file(&packaging.join("rampart.toml"), &config, 0o644)?;
    }
    let doc = under(root, &args.prefix.join("share/doc/rampart"));
    dir(&doc, 0o755)?;
    file(
        &workspace_root().join("README.md"),
        &doc.join("README.md"),
        0o644,
    )?;
    eprintln!(
        "==> installed. Next, as root:\n  \
         rampart keygen --out /etc/rampart/host          # signs lineage checkpoints\n  \
         cp trust.json /etc/rampart/trust.json           # from your security team\n  \
         $EDITOR /etc/rampart/rampart.toml               # policy.governs: your workloads\n  \
         cp bundle.rpb /etc/rampart/bundles/             # a signed policy bundle\n  \
         systemctl daemon-reload && systemctl enable --now rampart\n  \
         rampart status"
    );
    Ok(())
}
