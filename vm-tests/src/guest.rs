//! The guest side of the harness: environment set-up, the agent's lifecycle, and reporting.

use std::{
    io::Read,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use rampart_vm_tests::protocol::{Outcome, ScenarioResult, END, PLAN, RESULT};

use crate::scenarios::{self, AgentPhase, Requires};

pub const AGENT: &str = "/bin/rampart";
const FIXTURES: &str = "/opt/rampart-test";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const NOTIFY_SOCKET: &str = "/run/rampart-notify.sock";
const AGENT_LOG: &str = "/tmp/rampart-agent.log";
/// The agent's stdout: one JSON decision event per line.
pub const AGENT_EVENTS: &str = "/tmp/rampart-events.jsonl";
/// Under TCG the agent's BTF parse and program load take seconds; leave ample room.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything a scenario may use: fixture paths, cgroups, and what the agent has decided.
pub struct Env {
    pub allowed: PathBuf,
    pub denied: PathBuf,
    pub governed: PathBuf,
    pub ungoverned: PathBuf,
    pub runner: PathBuf,
    /// Execs inside governance that the kernel allowed / denied, as observed by scenarios.
    pub observed_allowed: u64,
    pub observed_denied: u64,
    /// The agent's final decision counters, once it has stopped.
    pub agent_decisions: Option<String>,
    /// Events the kernel dropped (ring buffer full), as the agent reported when it stopped.
    pub agent_event_drops: Option<u64>,
    pub bpf_lsm: Result<(), String>,
    agent: Option<Child>,
}

impl Env {
    /// Path of a fixture file with the given name.
    pub fn fixture(&self, name: &str) -> PathBuf {
        Path::new(FIXTURES).join(name)
    }
}

fn report(result: &ScenarioResult) {
    let line = serde_json::to_string(result).unwrap_or_else(|e| {
        format!(
            r#"{{"scenario":"{}","outcome":"fail","detail":"unserialisable: {e}"}}"#,
            result.scenario
        )
    });
    println!("{RESULT}{line}");
}

fn only_from_cmdline() -> Option<Vec<String>> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rampart.only="))
        .map(|list| list.split(',').map(str::to_owned).collect())
}

fn check_bpf_lsm() -> Result<(), String> {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) if list.trim().split(',').any(|l| l == "bpf") => Ok(()),
        Ok(list) => Err(format!(
            "BPF-LSM not active in this kernel (lsm={})",
            list.trim()
        )),
        Err(e) => Err(format!("cannot read /sys/kernel/security/lsm: {e}")),
    }
}

fn set_up() -> Result<Env> {
    std::fs::create_dir_all(FIXTURES)?;
    let me = std::fs::read_link("/proc/self/exe").context("locating the runner binary")?;
    let allowed = Path::new(FIXTURES).join("allowed-probe");
    let denied = Path::new(FIXTURES).join("denied-probe");
    for copy in [&allowed, &denied] {
        std::fs::copy(&me, copy).with_context(|| format!("creating fixture {}", copy.display()))?;
    }
    let governed = Path::new(CGROUP_ROOT).join("rampart-governed");
    let ungoverned = Path::new(CGROUP_ROOT).join("rampart-free");
    for cg in [&governed, &ungoverned] {
        std::fs::create_dir_all(cg).with_context(|| format!("creating cgroup {}", cg.display()))?;
    }
    Ok(Env {
        allowed,
        denied,
        governed,
        ungoverned,
        runner: me,
        observed_allowed: 0,
        observed_denied: 0,
        agent_decisions: None,
        agent_event_drops: None,
        bpf_lsm: check_bpf_lsm(),
        agent: None,
    })
}

/// Starts `rampart run` governing the test cgroup, and waits for its sd_notify READY=1.
pub fn start_agent(env: &mut Env) -> Result<()> {
    let _ = std::fs::remove_file(NOTIFY_SOCKET);
    let sock = UnixDatagram::bind(NOTIFY_SOCKET).context("binding the notify socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let log = std::fs::File::create(AGENT_LOG)?;
    let mut child = Command::new(AGENT)
        .arg("run")
        .arg("--govern")
        .arg(&env.governed)
        .arg("--allow-exec")
        .arg(&env.allowed)
        .env("NOTIFY_SOCKET", NOTIFY_SOCKET)
        .env("RAMPART_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(AGENT_EVENTS)?)
        .stderr(log)
        .spawn()
        .context("spawning the agent")?;
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "agent exited before it was ready ({status}); log:\n{}",
                agent_log()
            );
        }
        if started.elapsed() > AGENT_READY_TIMEOUT {
            let _ = child.kill();
            bail!(
                "agent not ready after {AGENT_READY_TIMEOUT:?}; log:\n{}",
                agent_log()
            );
        }
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                break;
            }
        }
    }
    env.agent = Some(child);
    Ok(())
}

/// Stops the agent with SIGTERM and keeps the decision counters it logs on the way out.
pub fn stop_agent(env: &mut Env) -> Result<()> {
    let Some(mut child) = env.agent.take() else {
        bail!("the agent is not running");
    };
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    let log = agent_log();
    if !status.success() {
        bail!("agent exited with {status} on SIGTERM; log:\n{log}");
    }
    let summary = log.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v.get("decisions").is_some().then_some(v)
    });
    if let Some(v) = summary {
        env.agent_decisions = v["decisions"].as_str().map(str::to_owned);
        env.agent_event_drops = v["event_drops"].as_u64();
    }
    Ok(())
}

/// The agent's log so far (for failure details).
pub fn agent_log() -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(AGENT_LOG) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

pub fn main() -> ExitCode {
    let only = only_from_cmdline();
    let selected: Vec<&scenarios::Scenario> = scenarios::ALL
        .iter()
        .filter(|s| only.as_ref().is_none_or(|o| o.iter().any(|n| n == s.name)))
        .collect();
    let unknown: Vec<&String> = only
        .iter()
        .flatten()
        .filter(|n| !scenarios::ALL.iter().any(|s| s.name == n.as_str()))
        .collect();
    let mut names: Vec<&str> = selected.iter().map(|s| s.name).collect();
    names.extend(unknown.iter().map(|n| n.as_str()));
    println!(
        "{PLAN}{}",
        serde_json::to_string(&names).unwrap_or_default()
    );
    for name in &unknown {
        report(&ScenarioResult {
            scenario: (*name).clone(),
            outcome: Outcome::Fail,
            detail: "no such scenario (see the names in a full run's table)".into(),
        });
    }
    println!(
        "{PLAN}{}",
        serde_json::to_string(&names).unwrap_or_default()
    );

    let mut env = match set_up() {
        Ok(env) => env,
        Err(e) => {
            for s in &selected {
                report(&ScenarioResult {
                    scenario: s.name.into(),
                    outcome: Outcome::Fail,
                    detail: format!("guest set-up failed: {e:#}"),
                });
            }
            println!("{END}");
            return ExitCode::FAILURE;
        }
    };

    let mut failed = !unknown.is_empty();
    let mut agent_error: Option<String> = None;
    for phase in [
        AgentPhase::NotStarted,
        AgentPhase::Running,
        AgentPhase::Stopped,
    ] {
        let in_phase: Vec<_> = selected.iter().filter(|s| s.phase == phase).collect();
        if in_phase.is_empty() {
            continue;
        }
        if phase == AgentPhase::Running && env.bpf_lsm.is_ok() {
            if let Err(e) = start_agent(&mut env) {
                agent_error = Some(format!("{e:#}"));
            }
        }
        if phase == AgentPhase::Stopped && env.agent.is_some() {
            if let Err(e) = stop_agent(&mut env) {
                agent_error = Some(format!("{e:#}"));
            }
        }
        for s in in_phase {
            let (outcome, detail) = match (s.requires, &env.bpf_lsm, &agent_error) {
                (Requires::BpfLsm, Err(why), _) => (Outcome::Skip, why.clone()),
                (Requires::NoBpfLsm, Ok(()), _) => (
                    Outcome::Skip,
                    "needs a kernel booted without BPF-LSM (the 6.12-no-bpf-lsm matrix entry)"
                        .into(),
                ),
                (Requires::BpfLsm, Ok(()), Some(e)) if phase != AgentPhase::NotStarted => {
                    (Outcome::Fail, format!("agent: {e}"))
                }
                _ => match (s.run)(&mut env) {
                    Ok(detail) => (Outcome::Pass, detail),
                    Err(e) => (Outcome::Fail, format!("{e:#}")),
                },
            };
            failed |= outcome == Outcome::Fail;
            report(&ScenarioResult {
                scenario: s.name.into(),
                outcome,
                detail,
            });
        }
    }
    if let Some(mut child) = env.agent.take() {
        let _ = child.kill();
    }
    if failed {
        println!("--- agent log ---\n{}--- end agent log ---", agent_log());
    }
    println!("{END}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
