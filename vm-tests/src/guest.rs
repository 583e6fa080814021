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
pub const FIXTURES: &str = "/opt/rampart-test";
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const NOTIFY_SOCKET: &str = "/run/rampart-notify.sock";
const AGENT_LOG: &str = "/tmp/rampart-agent.log";
/// The agent's stdout: one JSON decision event per line.
pub const AGENT_EVENTS: &str = "/tmp/rampart-events.jsonl";
/// Under TCG the agent's BTF parse and program load take seconds; leave ample room.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The main agent's lineage, and the host key (NAME.key / NAME.pub) that signs it.
pub const LINEAGE_DIR: &str = "/var/lib/rampart-test/lineage";
pub const HOST_KEY: &str = "/etc/rampart-test/host";
const HOST_KEY_SECRET: &str = "/etc/rampart-test/host.key";
/// Where the main agent pins its programs and maps (the agent's default).
pub const PIN_DIR: &str = "/sys/fs/bpf/rampart";

/// Where the guest writes the policy the agent enforces.
pub const POLICY_FILE: &str = "/etc/rampart-test-policy.yaml";
/// Name of the enforcing test policy (the other one, `test-audit`, is in audit mode).
pub const ENFORCE_POLICY: &str = "test-enforce";

/// A denial the kernel must have recorded: action, target (path or endpoint), reason.
#[derive(Debug, Clone)]
pub struct ExpectedEvent {
    pub action: String,
    pub target: String,
    pub decision: String,
    pub reason: String,
}

/// Everything a scenario may use: fixture paths, cgroups, and what the agent has decided.
pub struct Env {
    pub allowed: PathBuf,
    pub denied: PathBuf,
    pub governed: PathBuf,
    pub audited: PathBuf,
    pub ungoverned: PathBuf,
    pub runner: PathBuf,
    /// Denials (and audit records) scenarios caused and expect as events.
    pub expected_events: Vec<ExpectedEvent>,
    /// The agent's final decision counters, once it has stopped.
    pub agent_decisions: Option<String>,
    /// Events the kernel dropped (ring buffer full), as the agent reported when it stopped.
    pub agent_event_drops: Option<u64>,
    pub bpf_lsm: Result<(), String>,
    agent: Option<Child>,
}

impl ExpectedEvent {
    /// Whether the recorded event `e` (agent JSON) is this expected one.
    pub fn matches(&self, e: &serde_json::Value) -> bool {
        let target = e["path"]
            .as_str()
            .or(e["endpoint"].as_str())
            .unwrap_or_default();
        e["action"] == self.action.as_str()
            && e["decision"] == self.decision.as_str()
            && e["reason"] == self.reason.as_str()
            && match self.target.strip_suffix('*') {
                Some(prefix) => target.starts_with(prefix),
                None => target == self.target,
            }
    }
}

/// The JSON records of an agent's log file (other lines skipped).
pub fn log_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

impl Env {
    /// Path of a fixture file with the given name.
    pub fn fixture(&self, name: &str) -> PathBuf {
        Path::new(FIXTURES).join(name)
    }

    /// The running main agent's pid.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// Records a denial the agent's event stream must contain.
    pub fn expect_event(&mut self, action: &str, target: &str, decision: &str, reason: &str) {
        self.expected_events.push(ExpectedEvent {
            action: action.into(),
            target: target.into(),
            decision: decision.into(),
            reason: reason.into(),
        });
    }
}

/// The test policies: what the scenarios may do inside the governed cgroups.
fn policy_text() -> String {
    format!(
        r#"apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: {ENFORCE_POLICY}
  description: what the VM scenarios may do in /rampart-governed
spec:
  governs: [/rampart-governed]
  mode: enforce
  exec:
    allow:
      - {F}/allowed-probe
      - {F}/renamed-allowed
      - {F}/movable
      - {F}/upgradable
      - {F}/script-ok.sh
      - {F}/script-bad-interp.sh
      - {F}/dyn-true
      - /lib64/ld-linux-x86-64.so.2
    libraries:
      - /lib/x86_64-linux-gnu/
  files:
    - path: {F}/
      access: [read]
    - path: {F}/data/writable.txt
      access: [read, write]
    - path: /tmp/deep/
      access: [read]
    - path: /dev/null
      access: [read, write]
  network:
    - cidr: 127.0.0.1/32
      ports: ["8000-8100"]
      protocol: tcp
    - cidr: 127.0.0.1/32
      ports: [5353]
      protocol: udp
    - cidr: ::1/128
      ports: [9000]
      protocol: tcp
---
apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: test-audit
spec:
  governs: [/rampart-audit]
  mode: audit
  exec:
    allow: [{F}/allowed-probe]
"#,
        F = FIXTURES
    )
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
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
    let fx = Path::new(FIXTURES);
    std::fs::create_dir_all(fx.join("data"))?;
    let me = std::fs::read_link("/proc/self/exe").context("locating the runner binary")?;
    let allowed = fx.join("allowed-probe");
    let denied = fx.join("denied-probe");
    for name in [
        "allowed-probe",
        "denied-probe",
        "renamed-allowed",
        "movable",
        "swap-in",
        "upgradable",
    ] {
        let copy = fx.join(name);
        std::fs::copy(&me, &copy)
            .with_context(|| format!("creating fixture {}", copy.display()))?;
    }
    for name in ["dyn-true", "denied-dyn"] {
        std::fs::copy("/usr/lib/rampart-test/dyn-true", fx.join(name))
            .context("copying the dynamic test program")?;
    }
    write(
        &fx.join("script-ok.sh"),
        &format!("#!{FIXTURES}/allowed-probe probe\n"),
        0o755,
    )?;
    write(
        &fx.join("script-bad-interp.sh"),
        &format!("#!{FIXTURES}/denied-probe probe\n"),
        0o755,
    )?;
    write(
        &fx.join("script-not-allowed.sh"),
        &format!("#!{FIXTURES}/allowed-probe probe\n"),
        0o755,
    )?;
    write(&fx.join("data/readable.txt"), "readable\n", 0o644)?;
    write(&fx.join("data/writable.txt"), "writable\n", 0o644)?;
    std::fs::create_dir_all("/srv")?;
    write(Path::new("/srv/secret.txt"), "secret\n", 0o644)?;
    // A directory chain whose full path is longer than PATH_MAX, with a file at each depth.
    std::fs::create_dir_all("/tmp/deep")?;
    make_deep_chain(Path::new("/tmp/deep"), 24)?;
    write(Path::new(POLICY_FILE), &policy_text(), 0o644)?;
    std::fs::create_dir_all("/etc/rampart-test")?;
    let keygen = Command::new(AGENT)
        .args(["keygen", "--out", HOST_KEY])
        .output()
        .context("running rampart keygen")?;
    if !keygen.status.success() {
        bail!(
            "rampart keygen failed: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
    }
    let governed = Path::new(CGROUP_ROOT).join("rampart-governed");
    let audited = Path::new(CGROUP_ROOT).join("rampart-audit");
    let ungoverned = Path::new(CGROUP_ROOT).join("rampart-free");
    for cg in [&governed, &audited, &ungoverned] {
        std::fs::create_dir_all(cg).with_context(|| format!("creating cgroup {}", cg.display()))?;
    }
    Ok(Env {
        allowed,
        denied,
        governed,
        audited,
        ungoverned,
        runner: me,
        expected_events: Vec::new(),
        agent_decisions: None,
        agent_event_drops: None,
        bpf_lsm: check_bpf_lsm(),
        agent: None,
    })
}

/// Creates `depth` nested directories under `base`, each with a file `f`, walking with
/// relative paths (the absolute path outgrows PATH_MAX).
fn make_deep_chain(base: &Path, depth: usize) -> Result<()> {
    let saved = std::env::current_dir()?;
    std::env::set_current_dir(base)?;
    std::fs::write("f", "deep\n")?;
    for _ in 0..depth {
        std::fs::create_dir_all(crate::ops::DEEP_DIR_NAME)?;
        std::env::set_current_dir(crate::ops::DEEP_DIR_NAME)?;
        std::fs::write("f", "deep\n")?;
    }
    std::env::set_current_dir(saved)?;
    Ok(())
}

/// Starts `rampart run` governing the test cgroup, and waits for its sd_notify READY=1.
pub fn start_agent(env: &mut Env) -> Result<()> {
    let child = spawn_agent(
        &main_agent_args(),
        Path::new(AGENT_EVENTS),
        Path::new(AGENT_LOG),
    )?;
    env.agent = Some(child);
    Ok(())
}

/// The main agent's command line: the test policy, its lineage, pinned at the default
/// pin directory.
pub fn main_agent_args() -> Vec<&'static str> {
    vec![
        "run",
        "--policy",
        POLICY_FILE,
        "--lineage",
        LINEAGE_DIR,
        "--host-key",
        HOST_KEY_SECRET,
    ]
}

/// Starts `rampart ARGS` with stdout to `events` and stderr to `log`, and waits for its
/// sd_notify READY=1.
pub fn spawn_agent(args: &[&str], events: &Path, log: &Path) -> Result<Child> {
    let _ = std::fs::remove_file(NOTIFY_SOCKET);
    let sock = UnixDatagram::bind(NOTIFY_SOCKET).context("binding the notify socket")?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut child = Command::new(AGENT)
        .args(args)
        .env("NOTIFY_SOCKET", NOTIFY_SOCKET)
        .env("RAMPART_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(events)?)
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("spawning the agent")?;
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "agent exited before it was ready ({status}); log:\n{}",
                read_log()
            );
        }
        if started.elapsed() > AGENT_READY_TIMEOUT {
            let _ = child.kill();
            bail!(
                "agent not ready after {AGENT_READY_TIMEOUT:?}; log:\n{}",
                read_log()
            );
        }
        if let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return Ok(child);
            }
        }
    }
}

/// Stops the agent with SIGTERM and keeps the decision counters it logs on the way out.
pub fn stop_agent(env: &mut Env) -> Result<()> {
    let Some(child) = env.agent.take() else {
        bail!("the agent is not running");
    };
    if let Some(v) = terminate_agent(child, Path::new(AGENT_LOG))? {
        env.agent_decisions = v["decisions"].as_str().map(str::to_owned);
        env.agent_event_drops = v["event_drops"].as_u64();
    }
    Ok(())
}

/// Stops an agent with SIGTERM; returns its closing summary log record (decision counters
/// and event drops), if it wrote one.
pub fn terminate_agent(mut child: Child, log: &Path) -> Result<Option<serde_json::Value>> {
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait()?;
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if !status.success() {
        bail!("agent exited with {status} on SIGTERM; log:\n{text}");
    }
    Ok(text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v.get("decisions").is_some().then_some(v)
    }))
}

/// The agent's log so far (for failure details).
pub fn agent_log() -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(AGENT_LOG) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// Whether the kernel command line asks for the demo instead of the scenarios.
fn demo_mode() -> bool {
    mode_is("demo")
}

/// Whether the kernel command line says `rampart.mode=MODE`.
fn mode_is(mode: &str) -> bool {
    std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| {
        c.split_whitespace()
            .any(|w| w.strip_prefix("rampart.mode=") == Some(mode))
    })
}

pub fn main() -> ExitCode {
    if mode_is("bench") {
        let result = set_up().and_then(|_| crate::bench::run());
        if let Err(e) = result {
            println!("bench failed: {e:#}");
            println!(
                "{}{{\"error\":{}}}",
                rampart_vm_tests::protocol::BENCH,
                serde_json::json!(format!("{e:#}"))
            );
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if demo_mode() {
        if let Err(e) = set_up() {
            println!(
                "{}failed: guest set-up: {e:#}",
                rampart_vm_tests::protocol::DEMO_END
            );
            return ExitCode::FAILURE;
        }
        return crate::demo::run();
    }
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
