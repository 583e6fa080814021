//! Prerequisites: installs what it can (as root on Debian), otherwise stops with the exact
//! commands the user must run.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context, Result};

use crate::run::{output, run_cmd};

/// The LLVM major version bpf-linker must be built against (it must match the nightly's).
pub const LLVM_MAJOR: u32 = 22;
pub const BPF_LINKER_VERSION: &str = "0.13.0";
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// Whether this process may run apt-get to change the system (root, on a Debian-like host).
pub fn can_use_apt() -> bool {
    is_root() && on_path("apt-get")
}

/// Whether `program` is found on PATH (or is an existing path).
pub fn on_path(program: &str) -> bool {
    find_on_path(program).is_some()
}

pub fn find_on_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).exists().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn apt_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|s| s.contains("install ok installed"))
}

/// Runs `apt-get update` once per xtask run (only as root).
pub fn apt_update_once() -> Result<()> {
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        eprintln!("==> apt-get update");
        run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    }
    Ok(())
}

/// Ensures Debian packages are installed; installs them as root, or says how.
pub fn apt_install(packages: &[&str], why: &str) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !apt_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let cmd = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !can_use_apt() {
        bail!(
            "{why} needs these packages: {}\n  run as root: apt-get update && {cmd}",
            missing.join(" ")
        );
    }
    apt_update_once()?;
    eprintln!("==> installing {} ({why})", missing.join(" "));
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Ensures the nightly toolchain has rust-src (for `-Z build-std=core`) and clippy.
pub fn ensure_nightly_rust_src() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is required to build the eBPF programs (https://rustup.rs)")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "the eBPF programs build with a nightly toolchain, and none is installed\n  \
             run: rustup toolchain install nightly --component rust-src"
        );
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("==> rustup component add rust-src --toolchain nightly");
        run_cmd(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// Ensures bpf-linker is installed, built against LLVM 22 to match the nightly.
pub fn ensure_bpf_linker() -> Result<()> {
    if output(Command::new("bpf-linker").arg("--version")).is_ok() {
        return Ok(());
    }
    let llvm = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    apt_install(
        &[
            &format!("llvm-{LLVM_MAJOR}-dev"),
            &format!("libpolly-{LLVM_MAJOR}-dev"),
            "libzstd-dev",
        ],
        "building bpf-linker",
    )?;
    eprintln!(
        "==> installing bpf-linker {BPF_LINKER_VERSION} against LLVM {LLVM_MAJOR} (about a minute)"
    );
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{LLVM_MAJOR}"),
            ])
            .env("LLVM_PREFIX", &llvm),
    )
    .with_context(|| {
        format!(
            "installing bpf-linker failed; by hand: LLVM_PREFIX={llvm} cargo install bpf-linker \
             --version {BPF_LINKER_VERSION} --no-default-features --features llvm-{LLVM_MAJOR}"
        )
    })
}

/// Ensures the musl target is installed (the guest binaries are static), with musl-gcc for
/// the C in ring (the console's TLS); `.cargo/config.toml` names it as that target's CC.
pub fn ensure_musl_target() -> Result<()> {
    if !on_path("musl-gcc") {
        apt_install(&["musl-tools"], "building the static agent (ring's C code)")?;
    }
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == MUSL_TARGET) {
        eprintln!("==> rustup target add {MUSL_TARGET}");
        run_cmd(Command::new("rustup").args(["target", "add", MUSL_TARGET]))?;
    }
    Ok(())
}

/// Ensures QEMU for x86-64 guests is available.
/// `xz`, to unpack the compressed kernel modules of newer Debian kernels for the guest.
pub fn ensure_xz() -> Result<()> {
    if on_path("xz") {
        return Ok(());
    }
    apt_install(&["xz-utils"], "unpacking the guest's kernel modules")
}

pub fn ensure_qemu() -> Result<()> {
    // The guest carries the host's CA bundle (the OCI client needs one to exist).
    if !std::path::Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
        apt_install(&["ca-certificates"], "the guest's certificate store")?;
    }
    if on_path("qemu-system-x86_64") {
        return Ok(());
    }
    apt_install(&["qemu-system-x86"], "booting test kernels")
}
