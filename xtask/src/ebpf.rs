//! `cargo xtask build-ebpf`: the kernel programs, with nightly, build-std and bpf-linker.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};

use crate::{prereq, run::run_cmd, workspace::workspace_root};

pub const TARGET: &str = "bpfel-unknown-none";

/// Path of the built object, which the agent's build script embeds.
pub fn object_path() -> PathBuf {
    workspace_root()
        .join("target")
        .join(TARGET)
        .join("release")
        .join("rampart-ebpf")
}

/// Lints the eBPF crate with the nightly clippy, for its real target.
pub fn clippy() -> Result<()> {
    prereq::ensure_nightly_rust_src()?;
    eprintln!("==> cargo +nightly clippy (eBPF crate, warnings denied)");
    run_cmd(nightly_cargo("clippy").args(["--", "-D", "warnings"]))
}

/// `cargo +nightly SUBCOMMAND` on the eBPF crate for its target, in release mode, without
/// the outer cargo's toolchain settings.
fn nightly_cargo(subcommand: &str) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root())
        .args(["+nightly", subcommand, "--release", "-p", "rampart-ebpf"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WRAPPER");
    cmd
}

/// Builds the eBPF object (release, with BTF), installing missing prerequisites.
pub fn build() -> Result<PathBuf> {
    prereq::ensure_nightly_rust_src()?;
    prereq::ensure_bpf_linker()?;
    eprintln!("==> building eBPF programs ({TARGET}, nightly, BTF)");
    run_cmd(
        nightly_cargo("build")
            // BTF for maps and programs; debuginfo is what bpf-linker turns into BTF.
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "-Cdebuginfo=2\x1f-Clink-arg=--btf",
            )
            // The outer cargo's toolchain must not leak into the nightly build.
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("RUSTC_WRAPPER"),
    )
    .context("building the eBPF programs")?;
    let object = object_path();
    anyhow::ensure!(
        object.exists(),
        "build succeeded but {} is missing",
        object.display()
    );
    eprintln!("    eBPF object: {}", object.display());
    Ok(object)
}
