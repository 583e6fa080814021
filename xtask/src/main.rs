//! `cargo xtask`: Rampart's build, test and VM automation.

mod bench;
mod browser;
mod cycles;
mod debian;
mod ebpf;
mod evidence;
mod fuzz;
mod initramfs;
mod install;
mod k8s;
mod prereq;
mod progress;
mod promtool;
mod registry;
mod run;
mod vm;
mod workspace;

use std::{
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use crate::{run::run_cmd, workspace::workspace_root};

/// Build, test and VM automation for Rampart.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the eBPF programs (nightly + bpf-linker, with BTF), installing missing
    /// prerequisites when run as root on Debian; otherwise prints the commands to run.
    BuildEbpf,
    /// Boot the kernel matrix (Debian 6.1 and 6.12) in QEMU with BPF-LSM and run every
    /// end-to-end scenario with the real programs loaded.
    VmTest(vm::VmTestArgs),
    /// Run everything: fmt check, the import-cycle check, clippy (warnings denied, workspace
    /// lints), unit and host tests, a short fuzz run, the VM suite on the whole kernel
    /// matrix and the demo. This is the project's test command.
    Test {
        /// Skip the VM suite (for quick iterations; CI never skips it).
        #[arg(long)]
        no_vm: bool,
    },
    /// Fuzz the bundle and trust-root parsers (cargo-fuzz, libFuzzer, nightly), installing
    /// cargo-fuzz if needed; prints executions and crashes per target.
    Fuzz(fuzz::FuzzArgs),
    /// The demo: boots a QEMU guest with BPF-LSM, runs the daemon on a signed bundle from
    /// policies/, shows a workload's decisions as they happen, a live policy update and a
    /// rejected tampered bundle, verifies the lineage, and leaves it in target/demo/.
    Demo,
    /// Benchmarks: the host's criterion benches (bundle verify, policy compile, a whole load
    /// into this host's kernel maps, lineage append and verify), then one guest boot per
    /// kernel for hook overhead (no Rampart / loaded but not governed / governed with 10 to
    /// 100 000 rules, interleaved rounds), reload steps, map memory, agent RSS and the event
    /// path; writes target/bench/report.md and report.json. Run as root for the load bench.
    Bench(bench::BenchArgs),
    /// The console in headless Chromium (installed when missing): every page of `rampart
    /// console` over a test lineage, checked and screenshotted into target/console/.
    BrowserTest,
    /// Signed bundles through a real OCI registry on loopback (Debian's docker-registry,
    /// unpacked into the cache): `rampart policy push` and `pull` byte for byte, refusals.
    RegistryTest,
    /// The Helm chart lints (`helm lint --strict`, helm from npm) and renders to exactly
    /// deploy/kubernetes/rampart.yaml; the rendered documents parse and hold what the agent
    /// needs. `--write` regenerates the plain manifests.
    K8sCheck {
        #[arg(long)]
        write: bool,
    },
    /// Check that no source file imports another that (directly or through others) imports
    /// it back, in every crate of the workspace.
    Cycles,
    /// Build and install the agent (with its kernel programs), the systemd unit, a default
    /// configuration (an existing one is kept) and the directories.
    Install(install::InstallArgs),
}

fn cargo(args: &[&str]) -> Result<()> {
    run_cmd(
        Command::new("cargo")
            .current_dir(workspace_root())
            .args(args),
    )
}

fn test(no_vm: bool) -> Result<()> {
    let started = Instant::now();
    eprintln!("==> cargo fmt --check");
    cargo(&["fmt", "--all", "--", "--check"])?;
    // The eBPF object itself is built (and linked) by the VM suite; nightly clippy below
    // already fails fast on a program that does not compile.
    eprintln!("==> cargo xtask cycles (no import cycle among files)");
    cycles::check(&workspace_root())?;
    eprintln!("==> cargo clippy (warnings denied)");
    cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
    ebpf::clippy()?;
    // The host-native network test loads the real programs: build them first so the
    // agent under test embeds them, and make that test fail rather than skip.
    ebpf::build()?;
    eprintln!("==> unit and host tests");
    run_cmd(
        Command::new("cargo")
            .current_dir(workspace_root())
            .env("RAMPART_REQUIRE_HOST_TESTS", "1")
            .arg("test"),
    )?;
    browser::test()?;
    registry::test()?;
    k8s::check(false)?;
    // A short fuzz run in every test: the parsers must not panic on what it finds.
    fuzz::fuzz(&fuzz::FuzzArgs {
        seconds: 30,
        target: None,
    })?;
    if !no_vm {
        let tally = vm::vm_test(&vm::VmTestArgs {
            kernel: None,
            scenario: Vec::new(),
            keep_log: false,
            console: false,
            boot_timeout: 1200,
            demo: false,
            bench: false,
        })?;
        if tally.failed > 0 {
            bail!("{} VM scenario(s) failed", tally.failed);
        }
        if tally.passed == 0 {
            bail!("the VM suite passed no scenario");
        }
        // The README's main command must keep working.
        eprintln!("==> cargo xtask demo");
        vm::demo()?;
    }
    eprintln!("==> all tests passed in {:.0?}", started.elapsed());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::BuildEbpf => ebpf::build().map(|_| ()),
        Cmd::VmTest(args) => vm::vm_test(&args).and_then(|t| {
            if t.failed > 0 {
                bail!("{} VM scenario(s) failed", t.failed)
            }
            Ok(())
        }),
        Cmd::Test { no_vm } => test(no_vm),
        Cmd::Fuzz(args) => fuzz::fuzz(&args).map(|_| ()),
        Cmd::Install(args) => install::install(&args),
        Cmd::Demo => vm::demo(),
        Cmd::Bench(args) => bench::bench(&args),
        Cmd::Cycles => cycles::check(&workspace_root()),
        Cmd::BrowserTest => browser::test(),
        Cmd::RegistryTest => registry::test(),
        Cmd::K8sCheck { write } => k8s::check(write),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
