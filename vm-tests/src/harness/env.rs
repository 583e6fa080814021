//! The guest environment every scenario shares: fixture files and programs, the test
//! policies, the governed, audited and free cgroups, and the events scenarios expect.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
};

use anyhow::{bail, Context, Result};

use crate::ops::DEEP_DIR_NAME;

pub const AGENT: &str = "/bin/rampart";

pub const FIXTURES: &str = "/opt/rampart-test";

pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The main agent's lineage, and the host key (NAME.key / NAME.pub) that signs it.
pub const LINEAGE_DIR: &str = "/var/lib/rampart-test/lineage";

pub const HOST_KEY: &str = "/etc/rampart-test/host";

pub const HOST_KEY_SECRET: &str = "/etc/rampart-test/host.key";

/// Where the main agent pins its programs and maps (the agent's default).
pub const PIN_DIR: &str = "/sys/fs/bpf/rampart";

/// Where the guest writes the policy the agent enforces.
pub const POLICY_FILE: &str = "/etc/rampart-test-policy.yaml";

/// A program an exec rule pins, in the tree of file-action rights (on /tmp's file system).
pub const PINNED_PROGRAM: &str = "/tmp/rights-bin/pinned";

/// The directory of [`PINNED_PROGRAM`]: read-only to the workload.
pub const PINNED_PROGRAM_DIR: &str = "/tmp/rights-bin";

/// The cgroup (under the cgroup2 root) of `test-permits`: every system action permitted.
pub const PERMITS_CGROUP: &str = "/rampart-permits";

/// The cgroup of `test-userns`: only user namespaces permitted.
pub const USERNS_CGROUP: &str = "/rampart-userns";

/// The cgroup of `test-nocaps`: every system action permitted, no capability listed.
pub const NOCAPS_CGROUP: &str = "/rampart-nocaps";

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

impl ExpectedEvent {
    /// Whether the recorded event `e` (agent JSON) is this expected one.
    pub fn matches(&self, e: &serde_json::Value) -> bool {
        let peer = e["peer_pid"].as_u64().map(|pid| pid.to_string());
        let target = e["path"]
            .as_str()
            .or(e["endpoint"].as_str())
            .or(peer.as_deref())
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
    /// Denials the kernel took quietly (no event due), as the agent reported when it stopped.
    pub agent_quiet_denials: Option<u64>,
    pub bpf_lsm: Result<(), String>,
    /// The main agent, while it runs.
    pub agent: Option<Child>,
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
pub fn policy_text() -> String {
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
      - /tmp/rights-bin/pinned
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
    # Process scope (scenarios/scope.rs): /proc files open, so that what denies
    # /proc/PID/mem of another policy's task is the ptrace check, not the path.
    - path: /proc/
      access: [read]
    # File actions (scenarios/tree.rs): one directory per right.
    - path: /tmp/rights/ro/
      access: [read]
    - path: /tmp/rights/create/
      access: [read, write, create]
    - path: /tmp/rights/remove/
      access: [read, remove]
    - path: /tmp/rights/dev/
      access: [read, create, make-char]
    - path: /tmp/rights/trunc/
      access: [read, write, truncate]
    - path: /tmp/rights/meta/
      access: [read, chmod, chown]
    - path: /tmp/rights/stamp/
      access: [read, utimes, xattr]
    - path: /tmp/rights/a/
      access: [read, create, remove, refer]
    - path: /tmp/rights/b/
      access: [read, write, create, remove, refer]
    - path: /tmp/rights/c/
      access: [read, create, remove, refer]
    - path: /tmp/rights/noref/
      access: [read, create, remove]
    - path: /tmp/rights/hidden/
      access: [create, remove, refer]
    - path: /mnt/rights-ext4/ro/
      access: [read]
    - path: /mnt/rights-ext4/a/
      access: [read, create, remove, refer]
    - path: /mnt/rights-ext4/b/
      access: [read, write, create, remove, refer]
    - path: /mnt/rights-ovl/ro/
      access: [read]
    - path: /mnt/rights-ovl/rw/
      access: [read, write, create, remove, truncate]
    - path: /mnt/rights-ovl/a/
      access: [read, create, remove, refer]
    - path: /mnt/rights-ovl/b/
      access: [read, write, create, remove, refer]
    - path: /mnt/rights-ovl/stamp/
      access: [read, utimes, xattr]
    # AF_UNIX peers outside the policy (harness/unix.rs): the directory may be read and
    # written, one stream and one datagram socket in it connected to.
    - path: /tmp/rampart-unix/
      access: [read, write]
    - path: /tmp/rampart-unix/ok.sock
      access: [connect]
    - path: /tmp/rampart-unix/dgram-ok.sock
      access: [connect]
    # The descriptor server (harness/fds.rs, scenarios/receive.rs).
    - path: /tmp/rampart-unix/fds.sock
      access: [connect]
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
  # Serving (scenarios/listen.rs): TCP on loopback port 7000, UDP on every local IPv4
  # address port 7001, TCP on ::1 at every port.
  listen:
    - cidr: 127.0.0.1/32
      ports: [7000]
      protocol: tcp
    - cidr: 0.0.0.0/0
      ports: [7001]
      protocol: udp
    - cidr: ::1/128
      protocol: tcp
  # An unregistered netlink protocol, so that a module request can be triggered
  # (scenarios/system.rs); no other socket past the defaults.
  sockets: [netlink-31]
  # The capabilities the scenarios' allowed cases need (device nodes, trusted xattrs)
  # and those the kernel checks before the hooks under test (mount, chroot, module
  # loading, perf events, I/O ports), so that what denies those is the hook, not the
  # capability.
  capabilities: [mknod, sys_admin, sys_chroot, sys_module, perfmon, sys_rawio]
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
---
apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: test-permits
  description: system actions (scenarios/system.rs), every one permitted
spec:
  governs: [{PERMITS_CGROUP}]
  exec:
    allow: [{F}/allowed-probe]
  files:
    - path: {F}/data/
      access: [read]
    # cgroupfs (scenarios/system.rs): written only in its own cgroups whatever this grants.
    - path: /sys/fs/cgroup/
      access: [read, write]
  permits: [mount, chroot, user-namespaces, kernel-load, perf-events, kernel-access, bpf]
  sockets: [inet-raw, inet-ping, packet, netlink-route]
  # bpf: checked before sys_admin by bpf() (scenarios/scope.rs)
  capabilities: [sys_admin, sys_chroot, sys_module, perfmon, net_raw, sys_rawio, bpf]
---
apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: test-userns
  description: root of a user namespace it may create (scenarios/system.rs)
spec:
  governs: [{USERNS_CGROUP}]
  exec:
    allow: [{F}/allowed-probe]
  permits: [user-namespaces]
  capabilities: [sys_admin, sys_chroot, perfmon]
---
apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: test-nocaps
  description: every system action permitted, no capability (scenarios/system.rs)
spec:
  governs: [{NOCAPS_CGROUP}]
  exec:
    allow: [{F}/allowed-probe]
  files:
    - path: {F}/data/
      access: [read]
  permits: [mount, chroot, user-namespaces, kernel-load, perf-events, kernel-access, bpf]
  sockets: [inet-raw]
"#,
        F = FIXTURES
    )
}

pub fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

pub fn check_bpf_lsm() -> Result<(), String> {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) if list.trim().split(',').any(|l| l == "bpf") => Ok(()),
        Ok(list) => Err(format!(
            "BPF-LSM not active in this kernel (lsm={})",
            list.trim()
        )),
        Err(e) => Err(format!("cannot read /sys/kernel/security/lsm: {e}")),
    }
}

pub fn set_up() -> Result<Env> {
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
    // A program pinned by an exec rule on the same file system as writable directories,
    // so that other names for it can be tried (scenarios/tree.rs).
    std::fs::create_dir_all(PINNED_PROGRAM_DIR)?;
    std::fs::copy(&me, PINNED_PROGRAM).context("creating the pinned program fixture")?;
    write(Path::new(POLICY_FILE), &policy_text(), 0o644)?;
    crate::harness::unix::serve()?;
    crate::harness::fds::serve()?;
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
    let permits = Path::new(CGROUP_ROOT).join(PERMITS_CGROUP.trim_start_matches('/'));
    let userns = Path::new(CGROUP_ROOT).join(USERNS_CGROUP.trim_start_matches('/'));
    let nocaps = Path::new(CGROUP_ROOT).join(NOCAPS_CGROUP.trim_start_matches('/'));
    for cg in [&governed, &audited, &ungoverned, &permits, &userns, &nocaps] {
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
        agent_quiet_denials: None,
        bpf_lsm: check_bpf_lsm(),
        agent: None,
    })
}

/// Creates `depth` nested directories under `base`, each with a file `f`, walking with
/// relative paths (the absolute path outgrows PATH_MAX).
pub fn make_deep_chain(base: &Path, depth: usize) -> Result<()> {
    let saved = std::env::current_dir()?;
    std::env::set_current_dir(base)?;
    std::fs::write("f", "deep\n")?;
    for _ in 0..depth {
        std::fs::create_dir_all(DEEP_DIR_NAME)?;
        std::env::set_current_dir(DEEP_DIR_NAME)?;
        std::fs::write("f", "deep\n")?;
    }
    std::env::set_current_dir(saved)?;
    Ok(())
}
