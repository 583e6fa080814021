//! `cargo xtask vm-test`: boots Debian kernels in QEMU (TCG) with BPF-LSM enabled, runs the
//! scenarios inside, and reports a per-kernel, per-scenario table.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use rampart_vm_tests::protocol::{Line, Outcome, ScenarioResult};

use crate::{
    debian, ebpf, initramfs, prereq,
    run::run_cmd,
    workspace::{cache_dir, workspace_root},
};

/// A kernel in the test matrix: a short name, how to find its Debian package today, and the
/// LSMs it boots with.
pub struct Kernel {
    pub name: &'static str,
    resolve: fn() -> Result<String>,
    lsm: &'static str,
}

const WITH_BPF_LSM: &str = "lockdown,capability,bpf";

/// Debian 12's 6.1 LTS kernel: whatever `linux-image-amd64` depends on now.
fn resolve_6_1() -> Result<String> {
    debian::dependency_of("linux-image-amd64", "linux-image-6.1.")?
        .context("no linux-image-6.1.* dependency of linux-image-amd64 in the package lists")
}

/// Debian 12's 6.12 LTS kernel (backports): the newest `linux-image-6.12.N+deb12-amd64-unsigned`.
fn resolve_6_12() -> Result<String> {
    let mut names = debian::search_names(r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$")?;
    names.sort_by_key(|n| {
        n.trim_start_matches("linux-image-6.12.")
            .split('+')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    });
    names
        .pop()
        .context("no linux-image-6.12.*+deb12-amd64-unsigned package in the package lists")
}

/// The kernel matrix, oldest first. The last entry boots without BPF-LSM to prove the agent
/// refuses such a kernel with a clear error; the enforcement scenarios skip there.
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "6.1",
        resolve: resolve_6_1,
        lsm: WITH_BPF_LSM,
    },
    Kernel {
        name: "6.12",
        resolve: resolve_6_12,
        lsm: WITH_BPF_LSM,
    },
    Kernel {
        name: "6.12-no-bpf-lsm",
        resolve: resolve_6_12,
        lsm: "lockdown,capability",
    },
];

/// Options of `cargo xtask vm-test`.
#[derive(Debug, Clone, clap::Args)]
pub struct VmTestArgs {
    /// Run only this kernel of the matrix (6.1, 6.12 or 6.12-no-bpf-lsm).
    #[arg(long, value_name = "NAME")]
    pub kernel: Option<String>,
    /// Run only this scenario (repeatable); names are printed in the report.
    #[arg(long, value_name = "NAME")]
    pub scenario: Vec<String>,
    /// Keep each guest's console log under target/vm-test/ even when everything passed.
    #[arg(long)]
    pub keep_log: bool,
    /// Print the guest console live, as it boots and runs.
    #[arg(long)]
    pub console: bool,
    /// Seconds a guest may run before it is killed and counted as failed.
    #[arg(long, default_value_t = 1200, value_name = "SECS")]
    pub boot_timeout: u64,
    /// Boot into the demo instead of the scenarios (`cargo xtask demo`).
    #[arg(skip)]
    pub demo: bool,
    /// Boot into the benchmarks instead of the scenarios (`cargo xtask bench`).
    #[arg(skip)]
    pub bench: bool,
}

fn out_dir() -> PathBuf {
    workspace_root().join("target").join("vm-test")
}

/// Builds the static agent and runner for the guest (the agent embeds the eBPF object).
fn build_guest_binaries() -> Result<(PathBuf, PathBuf)> {
    prereq::ensure_musl_target()?;
    eprintln!(
        "==> building static rampart and rampart-vm-tests ({})",
        prereq::MUSL_TARGET
    );
    run_cmd(
        Command::new("cargo")
            .current_dir(workspace_root())
            .args(["build", "--release", "--target", prereq::MUSL_TARGET])
            .args(["-p", "rampart", "-p", "rampart-vm-tests"])
            .env("RAMPART_EBPF_OBJECT", ebpf::object_path()),
    )?;
    let dir = workspace_root()
        .join("target")
        .join(prereq::MUSL_TARGET)
        .join("release");
    Ok((dir.join("rampart"), dir.join("rampart-vm-tests")))
}

fn find_vmlinuz(root: &Path) -> Result<PathBuf> {
    let boot = root.join("boot");
    for entry in std::fs::read_dir(&boot).with_context(|| format!("reading {}", boot.display()))? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("vmlinuz-"))
        {
            return Ok(path);
        }
    }
    bail!("no vmlinuz in {}", boot.display())
}

/// What one guest boot produced.
struct Boot {
    plan: Vec<String>,
    results: Vec<ScenarioResult>,
    ended: bool,
    timed_out: bool,
    console: String,
    kernel_release: Option<String>,
    /// Demo mode: files the guest shipped, and its last line.
    files: Vec<(String, Vec<u8>)>,
    demo_end: Option<Result<(), String>>,
    /// Bench mode: the guest's result.
    bench: Option<serde_json::Value>,
}

fn boot(kernel: &Path, lsm: &str, initrd: &Path, args: &VmTestArgs, log: &Path) -> Result<Boot> {
    // The kernel package's root is two levels above its vmlinuz (ROOT/boot/vmlinuz-X): add
    // that kernel's modules to the initramfs.
    let root = kernel
        .parent()
        .and_then(Path::parent)
        .context("vmlinuz outside a package root")?;
    let name = kernel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let with_modules = initrd.with_file_name(format!("initramfs-{name}.cpio"));
    initramfs::for_kernel(initrd, root, &with_modules)?;
    let initrd = with_modules.as_path();
    let mut append = format!("console=ttyS0 quiet panic=-1 lsm={lsm}");
    if !args.scenario.is_empty() {
        append.push_str(&format!(" rampart.only={}", args.scenario.join(",")));
    }
    if args.demo {
        append.push_str(" rampart.mode=demo");
    }
    if args.bench {
        append.push_str(" rampart.mode=bench");
    }
    let mut child = Command::new("qemu-system-x86_64")
        // /dev/kvm on these machines is a PVM nested hypervisor that only runs PVM-built guest
        // kernels (a Debian kernel dies in its decompressor), so the guest runs under TCG.
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1G", "-smp", "2"])
        .args([
            "-nographic",
            "-no-reboot",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let stderr = child.stderr.take().context("qemu stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    let tx_err = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_owned();
            if tx.send(text).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx_err.send(format!("[qemu] {line}")).is_err() {
                break;
            }
        }
    });

    let mut logfile = std::fs::File::create(log)?;
    let mut b = Boot {
        plan: Vec::new(),
        results: Vec::new(),
        ended: false,
        timed_out: false,
        console: String::new(),
        kernel_release: None,
        files: Vec::new(),
        demo_end: None,
        bench: None,
    };
    let deadline = Instant::now() + Duration::from_secs(args.boot_timeout);
    let spinner = crate::progress::spinner("booting".into());
    loop {
        let now = Instant::now();
        if now >= deadline {
            b.timed_out = true;
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(500))) {
            Ok(line) => {
                writeln!(logfile, "{line}")?;
                b.console.push_str(&line);
                b.console.push('\n');
                if args.console {
                    spinner.suspend(|| println!("    | {line}"));
                }
                match Line::parse(&line) {
                    None => {}
                    Some(Err(e)) => spinner.suspend(|| println!("    {e}")),
                    Some(Ok(Line::Kernel(rel))) => {
                        spinner.set_message(format!("running scenarios on {rel}"));
                        b.kernel_release = Some(rel);
                    }
                    Some(Ok(Line::Plan(names))) => b.plan = names,
                    Some(Ok(Line::Result(r))) => {
                        spinner.suspend(|| {
                            println!(
                                "    {:<5} {}: {}",
                                outcome_label(r.outcome),
                                r.scenario,
                                r.detail
                            )
                        });
                        b.results.push(r);
                    }
                    Some(Ok(Line::End)) => b.ended = true,
                    Some(Ok(Line::DemoSay(text))) => spinner.suspend(|| println!("{text}")),
                    Some(Ok(Line::DemoFile { name, bytes })) => b.files.push((name, bytes)),
                    Some(Ok(Line::Bench(v))) => {
                        b.bench = Some(v);
                        b.ended = true;
                    }
                    Some(Ok(Line::DemoEnd(end))) => {
                        b.demo_end = Some(end);
                        b.ended = true;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if child.try_wait()?.is_some() {
                    // Drain what the reader threads still hold, then stop.
                    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                        writeln!(logfile, "{line}")?;
                        b.console.push_str(&line);
                        b.console.push('\n');
                    }
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    spinner.finish_and_clear();
    let _ = child.wait();
    Ok(b)
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "SKIP",
    }
}

/// One row of the final report.
struct Row {
    kernel: &'static str,
    scenario: String,
    outcome: Outcome,
    detail: String,
}

/// Collapses a boot into report rows: planned scenarios that never reported, a guest that
/// hung or crashed, all become failures, never silent passes.
fn rows_of(kernel: &'static str, b: &Boot) -> Vec<Row> {
    let mut rows: Vec<Row> = b
        .results
        .iter()
        .map(|r| Row {
            kernel,
            scenario: r.scenario.clone(),
            outcome: r.outcome,
            detail: r.detail.clone(),
        })
        .collect();
    for name in &b.plan {
        if !b.results.iter().any(|r| &r.scenario == name) {
            rows.push(Row {
                kernel,
                scenario: name.clone(),
                outcome: Outcome::Fail,
                detail: "never reported (guest stopped early)".into(),
            });
        }
    }
    if b.plan.is_empty() || !b.ended {
        let why = if b.timed_out {
            "guest timed out (raise --boot-timeout or see the console log)"
        } else if b.plan.is_empty() {
            "the scenario runner never started in the guest"
        } else {
            "the guest stopped before the runner finished"
        };
        rows.push(Row {
            kernel,
            scenario: "guest".into(),
            outcome: Outcome::Fail,
            detail: why.into(),
        });
    }
    rows
}

/// The host's check of what a scenario shipped (`checked`: None when it shipped nothing): a
/// row of its own, skipped (with why) when the scenario was planned but shipped nothing.
fn host_row(
    kernel: &'static str,
    b: &Boot,
    scenario: &str,
    checked: Option<Result<String>>,
) -> Option<Row> {
    let planned = b.plan.iter().any(|n| n == scenario);
    let (outcome, detail) = match checked {
        Some(Ok(detail)) => (Outcome::Pass, detail),
        Some(Err(e)) => (Outcome::Fail, format!("{e:#}")),
        None if planned => (
            Outcome::Skip,
            "the guest shipped nothing to check (its scenario was skipped or failed there)".into(),
        ),
        None => return None,
    };
    Some(Row {
        kernel,
        scenario: format!("host-checks-{scenario}"),
        outcome,
        detail,
    })
}

/// The host rows of one boot: the evidence (proofs, replay) and the scraped metrics.
fn host_rows(kernel: &'static str, agent: &Path, b: &Boot, out: &Path) -> Vec<Row> {
    use rampart_vm_tests::protocol::{CONSOLE_SCENARIO, EVIDENCE_SCENARIO};
    let evidence = crate::evidence::check(agent, &b.files, &out.join(format!("evidence-{kernel}")));
    let metrics = crate::promtool::check(&b.files, &out.join(format!("console-{kernel}")));
    [
        host_row(kernel, b, EVIDENCE_SCENARIO, evidence),
        host_row(kernel, b, CONSOLE_SCENARIO, metrics),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn console_tail(console: &str, lines: usize) -> String {
    let all: Vec<&str> = console.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Counts of passed, failed and skipped rows.
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

fn print_table(rows: &[Row], kernels: &[&'static str]) {
    let mut by_scenario: BTreeMap<&str, BTreeMap<&str, Outcome>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in rows {
        if !order.contains(&r.scenario.as_str()) {
            order.push(&r.scenario);
        }
        by_scenario
            .entry(&r.scenario)
            .or_default()
            .insert(r.kernel, r.outcome);
    }
    let width = order.iter().map(|s| s.len()).max().unwrap_or(8).max(8);
    print!("\n{:<width$}", "scenario");
    for k in kernels {
        print!("  {k:<6}");
    }
    println!();
    for s in order {
        print!("{s:<width$}");
        for k in kernels {
            let cell = by_scenario[s].get(k).map_or("-", |o| outcome_label(*o));
            print!("  {cell:<6}");
        }
        println!();
    }
}

/// Runs the whole VM suite; returns the tally (the caller decides the exit code).
/// Builds everything a guest boots with; returns the initramfs and the static agent.
fn prepare_guest() -> Result<(PathBuf, PathBuf)> {
    prereq::ensure_qemu()?;
    ebpf::build()?;
    let (agent, runner) = build_guest_binaries()?;
    eprintln!(
        "==> fetching guest packages (cached in {})",
        cache_dir().display()
    );
    let busybox = debian::fetch_and_unpack("busybox-static", &cache_dir())?.join("bin/busybox");
    let out = out_dir();
    std::fs::create_dir_all(&out)?;
    let initrd = out.join("initramfs.cpio");
    let registry = crate::registry::binary()?;
    initramfs::build(&initrd, &busybox, &agent, &runner, &registry)?;
    Ok((initrd, agent))
}

/// `cargo xtask demo`: boots Debian's 6.12 kernel with BPF-LSM into the demo, shows its
/// story, keeps the guest's lineage and host key in target/demo/, and verifies them here.
pub fn demo() -> Result<()> {
    let (initrd, agent) = prepare_guest()?;
    let kernel = KERNELS
        .iter()
        .find(|k| k.name == "6.12")
        .context("the 6.12 kernel is not in the matrix")?;
    let package = (kernel.resolve)()?;
    let root = debian::fetch_and_unpack(&package, &cache_dir())?;
    let vmlinuz = find_vmlinuz(&root)?;
    let demo_dir = workspace_root().join("target").join("demo");
    let _ = std::fs::remove_dir_all(&demo_dir);
    std::fs::create_dir_all(&demo_dir)?;
    eprintln!(
        "==> booting {package} in QEMU with lsm=...,bpf (software emulation: about a minute)\n"
    );
    let args = VmTestArgs {
        kernel: None,
        scenario: Vec::new(),
        keep_log: true,
        console: false,
        boot_timeout: 600,
        demo: true,
        bench: false,
    };
    let log = demo_dir.join("console.log");
    let b = boot(&vmlinuz, kernel.lsm, &initrd, &args, &log)?;
    match b.demo_end {
        Some(Ok(())) => {}
        Some(Err(why)) => bail!("the demo failed: {why}; console: {}", log.display()),
        None => bail!(
            "the guest ended without finishing the demo{}; console: {}",
            if b.timed_out { " (timed out)" } else { "" },
            log.display()
        ),
    }
    for (name, bytes) in &b.files {
        let path = demo_dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
    }
    let lineage = demo_dir.join("lineage");
    let public = demo_dir.join("host.pub");
    let cmd = format!(
        "{} lineage verify {} --pub {} --checkpoints {}",
        agent.display(),
        lineage.display(),
        public.display(),
        lineage.join("checkpoints").display()
    );
    println!(
        "\n== 10. Back on this machine: the guest's lineage, checkpoints and host key are in {}",
        demo_dir.display()
    );
    println!("$ {cmd}");
    let out = Command::new(&agent)
        .args(["lineage", "verify"])
        .arg(&lineage)
        .arg("--pub")
        .arg(&public)
        .arg("--checkpoints")
        .arg(lineage.join("checkpoints"))
        .output()
        .context("running the agent's lineage verify on the host")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("  {line}");
    }
    if !out.status.success() {
        bail!(
            "the shipped lineage did not verify on the host: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let proof = demo_dir.join("denial-proof.json");
    let shown = |args: &[&std::ffi::OsStr]| -> Result<()> {
        println!(
            "$ {} {}",
            agent.display(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = Command::new(&agent)
            .args(args)
            .output()
            .context("running the agent on the host")?;
        for line in String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
        {
            println!("  {line}");
        }
        if !out.status.success() {
            bail!("exit {}", out.status.code().unwrap_or(-1));
        }
        Ok(())
    };
    println!("\n== 11. A denial's inclusion proof, checked here with only host.pub");
    shown(&[
        "lineage".as_ref(),
        "verify-proof".as_ref(),
        proof.as_os_str(),
        "--pub".as_ref(),
        public.as_os_str(),
    ])
    .context("the denial's inclusion proof did not verify on the host")?;
    println!("\n== 12. Replay on this machine: the guest's decisions, recomputed here");
    shown(&[
        "lineage".as_ref(),
        "replay".as_ref(),
        lineage.as_os_str(),
        "--pub".as_ref(),
        public.as_os_str(),
        "--trust".as_ref(),
        demo_dir.join("trust.json").as_os_str(),
        "--bundles".as_ref(),
        demo_dir.join("bundles").as_os_str(),
    ])
    .context("replay on the host found divergences or could not verify a bundle")?;
    println!("\n== 13. The governance console over this lineage (offline, on loopback)");
    let console = crate::browser::offline_console(&agent, &demo_dir)?;
    println!("$ {}", console.command);
    for (page, shown) in console.checked {
        println!("  GET {page}: {shown}");
    }
    println!(
        "\nRun the commands above yourself; edit a byte in {}/segment-*.jsonl or in {} and \
         run them again. For the console, run the command of step 13 and open \
         http://127.0.0.1:9464/ (Ctrl-C stops it).",
        lineage.display(),
        proof.display()
    );
    Ok(())
}

/// `cargo xtask bench`: one boot per kernel with BPF-LSM, each returning its results.
pub fn bench_boots() -> Result<Vec<serde_json::Value>> {
    let (initrd, _) = prepare_guest()?;
    let out = workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let mut all = Vec::new();
    for kernel in KERNELS.iter().filter(|k| k.lsm == WITH_BPF_LSM) {
        let package = (kernel.resolve)()?;
        let root = debian::fetch_and_unpack(&package, &cache_dir())?;
        let vmlinuz = find_vmlinuz(&root)?;
        eprintln!(
            "==> benchmarking on kernel {} ({package}); several minutes under TCG",
            kernel.name
        );
        let args = VmTestArgs {
            kernel: None,
            scenario: Vec::new(),
            keep_log: true,
            console: false,
            boot_timeout: 1800,
            demo: false,
            bench: true,
        };
        let log = out.join(format!("console-{}.log", kernel.name));
        let b = boot(&vmlinuz, kernel.lsm, &initrd, &args, &log)?;
        match b.bench {
            Some(v) if v.get("error").is_some() => bail!(
                "kernel {}: the benchmark failed in the guest: {}; console: {}",
                kernel.name,
                v["error"],
                log.display()
            ),
            Some(v) => all.push(v),
            None => bail!(
                "kernel {}: the guest produced no benchmark result{}; console: {}",
                kernel.name,
                if b.timed_out { " (timed out)" } else { "" },
                log.display()
            ),
        }
    }
    Ok(all)
}

pub fn vm_test(args: &VmTestArgs) -> Result<Tally> {
    let kernels: Vec<&Kernel> = KERNELS
        .iter()
        .filter(|k| args.kernel.as_deref().is_none_or(|n| n == k.name))
        .collect();
    if kernels.is_empty() {
        let names: Vec<_> = KERNELS.iter().map(|k| k.name).collect();
        bail!(
            "unknown kernel {:?}; the matrix is {}",
            args.kernel,
            names.join(", ")
        );
    }
    let (initrd, agent) = prepare_guest()?;
    let out = out_dir();

    let mut rows = Vec::new();
    let mut failed_boots = Vec::new();
    for kernel in &kernels {
        let package =
            (kernel.resolve)().with_context(|| format!("resolving kernel {}", kernel.name))?;
        let root = debian::fetch_and_unpack(&package, &cache_dir())?;
        let vmlinuz = find_vmlinuz(&root)?;
        eprintln!("==> kernel {} ({package})", kernel.name);
        let log = out.join(format!("console-{}.log", kernel.name));
        let b = boot(&vmlinuz, kernel.lsm, &initrd, args, &log)?;
        let mut kernel_rows = rows_of(kernel.name, &b);
        for row in host_rows(kernel.name, &agent, &b, &out) {
            println!(
                "    {:<5} {}: {}",
                outcome_label(row.outcome),
                row.scenario,
                row.detail
            );
            kernel_rows.push(row);
        }
        let any_failed = kernel_rows.iter().any(|r| r.outcome == Outcome::Fail);
        if any_failed {
            failed_boots.push((kernel.name, log.clone(), console_tail(&b.console, 60)));
        } else if !args.keep_log {
            let _ = std::fs::remove_file(&log);
        }
        if let Some(rel) = &b.kernel_release {
            eprintln!("    guest kernel {rel}");
        }
        rows.extend(kernel_rows);
    }

    let names: Vec<&'static str> = kernels.iter().map(|k| k.name).collect();
    print_table(&rows, &names);
    for r in rows.iter().filter(|r| r.outcome != Outcome::Pass) {
        println!(
            "  {} [{}] {}: {}",
            outcome_label(r.outcome),
            r.kernel,
            r.scenario,
            r.detail
        );
    }
    for (kernel, log, tail) in &failed_boots {
        println!(
            "\n--- console of kernel {kernel} (last 60 lines; full log: {}) ---",
            log.display()
        );
        println!("{tail}");
        println!("--- end console ---");
    }
    let tally = Tally {
        passed: rows.iter().filter(|r| r.outcome == Outcome::Pass).count(),
        failed: rows.iter().filter(|r| r.outcome == Outcome::Fail).count(),
        skipped: rows.iter().filter(|r| r.outcome == Outcome::Skip).count(),
    };
    println!(
        "\nvm-test: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.skipped
    );
    Ok(tally)
}
