//! The end-to-end scenarios, by theme, and the registry the suite runs in order. Each one
//! makes real execs, opens and connects in real cgroups with the real programs loaded, and
//! fails unless the kernel did exactly what it expects. Every denial a scenario causes is
//! also expected as an event with its reason.

pub mod agent;
pub mod attrs;
pub mod bundles;
pub mod console;
pub mod control;
pub mod daemon;
pub mod evidence;
pub mod examples;
pub mod exec;
pub mod explain;
pub mod files;
pub mod fleet;
pub mod governance;
pub mod lineage;
pub mod listen;
pub mod network;
pub mod pinning;
pub mod receive;
pub mod scope;
pub mod state;
pub mod system;
pub mod tree;
pub mod unix;

use anyhow::Result;

use crate::harness::env::Env;

/// When a scenario runs relative to the agent's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentPhase {
    /// Before the agent starts: controls showing the set-up itself does not deny.
    NotStarted,
    /// With `rampart run` enforcing.
    Running,
    /// After the agent stopped.
    Stopped,
}

/// What the guest kernel must offer for a scenario to run; otherwise it is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requires {
    /// BPF-LSM active (`bpf` in /sys/kernel/security/lsm).
    BpfLsm,
    /// BPF-LSM *not* active: scenarios about refusing such a kernel.
    NoBpfLsm,
}

pub struct Scenario {
    pub name: &'static str,
    pub phase: AgentPhase,
    pub requires: Requires,
    pub run: fn(&mut Env) -> Result<String>,
}

/// Every scenario, in the order they run.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "agent-refuses-kernel-without-bpf-lsm",
        phase: AgentPhase::NotStarted,
        requires: Requires::NoBpfLsm,
        run: agent::refuses_without_bpf_lsm,
    },
    Scenario {
        name: "control-denied-binary-runs-before-enforcement",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: exec::control_before_enforcement,
    },
    Scenario {
        name: "bundle-swap-100-times-atomic-bad-bundles-change-nothing",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: bundles::atomic_swap,
    },
    Scenario {
        name: "bundle-expiry-fails-closed",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: bundles::expiry_fails_closed,
    },
    Scenario {
        name: evidence::SCENARIO,
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: evidence::replay_and_proofs,
    },
    Scenario {
        name: console::SCENARIO,
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: console::metrics_and_readiness,
    },
    Scenario {
        name: fleet::SCENARIO,
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: fleet::oci_source,
    },
    Scenario {
        name: "clock-moved-back-expired-bundle-stays-expired",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: bundles::clock_back_keeps_expired_bundle_expired,
    },
    Scenario {
        name: "lineage-ring-overflow-gaps-equal-drops-strict-denies",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: lineage::ring_overflow_gaps,
    },
    Scenario {
        name: "example-policies-load-and-govern",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: examples::examples_load,
    },
    Scenario {
        name: "map-exec-allowance-does-not-survive-slot-reuse",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: files::map_exec_allowance_does_not_survive_slot_reuse,
    },
    Scenario {
        name: "cgroup-recreated-at-governed-path-governed-at-once",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: governance::recreated_cgroup_governed_at_once,
    },
    Scenario {
        name: "governed-path-created-after-load-governed",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: governance::governed_path_created_after_load_governed,
    },
    Scenario {
        name: "governed-pattern-matches-made-later-governed-siblings-not",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: governance::governed_pattern_matches_made_later_governed,
    },
    Scenario {
        name: "cut-lineage-tail-caught-after-restart",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: lineage::cut_tail_caught_after_restart,
    },
    Scenario {
        name: "deleted-state-older-bundle-refused",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: state::deleted_state_older_bundle_refused,
    },
    Scenario {
        name: "control-socket-refuses-governed-root-peer",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: control::governed_root_peer_refused,
    },
    Scenario {
        name: "release-needs-a-token-and-is-recorded",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: control::release_needs_a_token_and_is_recorded,
    },
    Scenario {
        name: "silent-control-client-does-not-delay-events",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: control::silent_client_does_not_delay_events,
    },
    Scenario {
        name: "daemon-config-bundle-dir-push-and-status",
        phase: AgentPhase::NotStarted,
        requires: Requires::BpfLsm,
        run: daemon::config_and_bundle_dir,
    },
    Scenario {
        name: "explain-agrees-with-kernel",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: explain::explain_agrees,
    },
    Scenario {
        name: "exec-allowed-binary-runs-inside",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::allowed_runs_inside,
    },
    Scenario {
        name: "exec-disallowed-binary-denied-inside",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::disallowed_denied_inside,
    },
    Scenario {
        name: "exec-disallowed-binary-runs-outside",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::disallowed_runs_outside,
    },
    Scenario {
        name: "exec-child-cgroup-created-later-is-governed",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::late_child_cgroup_governed,
    },
    Scenario {
        name: "exec-hardlink-and-symlink-to-disallowed-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::other_names_for_disallowed_denied,
    },
    Scenario {
        name: "exec-copy-of-allowed-binary-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::copy_of_allowed_denied,
    },
    Scenario {
        name: "exec-via-proc-self-fd-and-proc-self-root-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::proc_self_paths_denied,
    },
    Scenario {
        name: "exec-memfd-execveat-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::memfd_denied,
    },
    Scenario {
        name: "exec-dynamic-program-runs-with-library-rules",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::dynamic_program_runs,
    },
    Scenario {
        name: "exec-through-dynamic-loader-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::loader_side_door_denied,
    },
    Scenario {
        name: "map-exec-and-mprotect-exec-of-disallowed-file-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: files::map_exec_denied,
    },
    Scenario {
        name: "exec-shebang-script-and-interpreter-both-judged",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::shebang_judged,
    },
    Scenario {
        name: "exec-rename-onto-or-away-from-allowed-path-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::rename_denied,
    },
    Scenario {
        name: "open-by-path-and-access",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: files::open_by_rule,
    },
    Scenario {
        name: "file-actions-each-right-denied-without-allowed-with",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: tree::each_right,
    },
    Scenario {
        name: "link-and-rename-refer-never-gain-rights",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: tree::refer,
    },
    Scenario {
        name: "file-actions-on-ext4-and-overlayfs-copy-up",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: tree::other_file_systems,
    },
    Scenario {
        name: "file-times-xattrs-acls-denied-without-allowed-with",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: attrs::times_xattrs_acls,
    },
    Scenario {
        name: "tamper-chain-denied-signals-and-ptrace-scoped-to-the-policy",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: scope::tamper_chain_and_process_scope,
    },
    Scenario {
        name: "pins-removed-and-links-detached-by-host-root-put-back",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: scope::tampered_pins_and_links_put_back,
    },
    Scenario {
        name: "system-actions-denied-unless-permitted-and-no-cgroup-escape",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: system::denied_unless_permitted,
    },
    Scenario {
        name: "sockets-past-the-defaults-denied-unless-listed",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: system::sockets_past_the_defaults,
    },
    Scenario {
        name: "capabilities-denied-unless-listed",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: system::capabilities_denied_unless_listed,
    },
    Scenario {
        name: "bind-and-listen-only-where-spec-listen-says",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: listen::bind_and_listen_only_where_spec_listen_says,
    },
    Scenario {
        name: "received-descriptors-judged-as-their-origin",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: receive::received_descriptors_judged_as_their_origin,
    },
    Scenario {
        name: "bpf-only-with-the-permit-and-never-on-rampart-objects",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: scope::bpf_only_with_the_permit_and_never_on_rampart_objects,
    },
    Scenario {
        name: "setns-into-namespaces-outside-the-policy-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: scope::setns_outside_the_policy_denied,
    },
    Scenario {
        name: "kernel-access-denied-unless-permitted",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: system::kernel_access_denied_unless_permitted,
    },
    Scenario {
        name: "unix-peers-outside-the-policy-denied-unless-connect",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: unix::peers_outside_the_policy_denied_unless_connect,
    },
    Scenario {
        name: "cgroup-files-written-only-in-governed-cgroups",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: system::cgroup_files_written_only_in_governed_cgroups,
    },
    Scenario {
        name: "open-via-io-uring-judged",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: files::io_uring_judged,
    },
    Scenario {
        name: "open-path-longer-than-kernel-buffer-denied",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: files::long_path_denied,
    },
    Scenario {
        name: "connect-ipv4-ipv6-and-mapped-by-cidr-port-protocol",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: network::connect_judged,
    },
    Scenario {
        name: "send-udp-without-connect-judged",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: network::send_judged,
    },
    Scenario {
        name: "audit-mode-allows-and-records",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: agent::audit_mode,
    },
    Scenario {
        name: "exec-upgraded-program-denied-until-reload-re-pins-it",
        phase: AgentPhase::Running,
        requires: Requires::BpfLsm,
        run: exec::upgraded_program_re_pinned,
    },
    Scenario {
        name: "deny-events-match-every-denial",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: agent::deny_events_match,
    },
    Scenario {
        name: "lineage-verifies-and-holds-every-denial",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: lineage::main_lineage_verifies,
    },
    Scenario {
        name: "enforcement-outlives-agent-sigterm",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: agent::enforcement_outlives_agent,
    },
    Scenario {
        name: "restart-adopts-pins-kill9-keeps-enforcing-release-removes",
        phase: AgentPhase::Stopped,
        requires: Requires::BpfLsm,
        run: pinning::restart_kill_release,
    },
];
