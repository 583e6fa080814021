//! `cargo xtask fuzz`: runs the libFuzzer targets of agent/fuzz with cargo-fuzz (nightly,
//! AddressSanitizer), installing cargo-fuzz when it is missing. Reports executions and
//! crashes; a crash fails the run and leaves the input in agent/fuzz/artifacts/.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::{prereq, workspace::workspace_root};

/// The fuzz targets, each with a seed corpus in agent/fuzz/seeds/TARGET.
pub const TARGETS: &[&str] = &["bundle_parsers"];

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Only this target (default: all).
    #[arg(long)]
    pub target: Option<String>,
}

fn ensure_cargo_fuzz() -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return Ok(());
    }
    eprintln!("==> cargo install cargo-fuzz --locked (once; about two minutes)");
    crate::run::run_cmd(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
        .context("installing cargo-fuzz failed; by hand: cargo install cargo-fuzz --locked")
}

/// What libFuzzer reported at the end of a run.
#[derive(Debug, Default)]
pub struct FuzzReport {
    pub executions: u64,
    pub crashed: bool,
}

pub fn fuzz(args: &FuzzArgs) -> Result<Vec<(String, FuzzReport)>> {
    prereq::ensure_nightly_rust_src()?;
    ensure_cargo_fuzz()?;
    let dir = workspace_root().join("agent/fuzz");
    let mut reports = Vec::new();
    for &target in TARGETS {
        if args.target.as_deref().is_some_and(|t| t != target) {
            continue;
        }
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seeds = dir.join("seeds").join(target);
        eprintln!("==> fuzzing {target} for {} s", args.seconds);
        let mut child = Command::new("cargo")
            .current_dir(&dir)
            .args(["+nightly", "fuzz", "run", target])
            .arg(&corpus)
            .arg(&seeds)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg("-print_final_stats=1")
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start cargo fuzz")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut report = FuzzReport::default();
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            // Keep the build and the final stats; the per-input lines are noise here.
            if line.starts_with("stat::number_of_executed_units:") {
                report.executions = line
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
            }
            if line.contains("ERROR: libFuzzer") || line.contains("ERROR: AddressSanitizer") {
                report.crashed = true;
            }
            if !line.starts_with('#') && !line.starts_with('"') {
                eprintln!("{line}");
            }
        }
        let status = child.wait()?;
        eprintln!(
            "==> {target}: {} executions in {} s, {}",
            report.executions,
            args.seconds,
            if report.crashed || !status.success() {
                "CRASHED (input saved under agent/fuzz/artifacts/)"
            } else {
                "no crashes"
            }
        );
        if report.crashed || !status.success() {
            bail!("fuzz target {target} failed");
        }
        if report.executions == 0 {
            bail!("fuzz target {target} reported no executions");
        }
        reports.push((target.to_owned(), report));
    }
    Ok(reports)
}
