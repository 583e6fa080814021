//! Checks that the running kernel can host Rampart, with the fix for each missing piece.

use std::path::Path;

use anyhow::{bail, Result};

use super::{cgroup, enforcer, sys};

const LSM_LIST: &str = "/sys/kernel/security/lsm";
const BTF: &str = "/sys/kernel/btf/vmlinux";

/// Whether `bpf` is in a comma-separated active LSM list.
pub fn lsm_list_has_bpf(list: &str) -> bool {
    list.trim().split(',').any(|lsm| lsm == "bpf")
}

/// Fails with a message that says how to fix the first missing requirement.
pub fn check_kernel() -> Result<()> {
    if !Path::new(BTF).exists() {
        bail!(
            "the kernel has no BTF ({BTF} is missing): Rampart needs a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels have it)"
        );
    }
    let list = match std::fs::read_to_string(LSM_LIST) {
        Ok(list) => list,
        Err(e) => bail!(
            "cannot read the active LSM list {LSM_LIST} ({e}): mount securityfs with \
             `mount -t securityfs securityfs /sys/kernel/security`"
        ),
    };
    if !lsm_list_has_bpf(&list) {
        bail!(
            "BPF-LSM is not active (active LSMs: {}): add `lsm={},bpf` to the kernel command \
             line (e.g. GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot); \
             the kernel also needs CONFIG_BPF_LSM=y",
            list.trim(),
            list.trim()
        );
    }
    Ok(())
}

/// Why this host cannot load Rampart's programs natively for host tests and benches (the
/// cgroup network programs need no BPF-LSM): not root, no embedded eBPF object, or no
/// cgroup v2. `None` when it can.
pub fn native_unavailable() -> Option<String> {
    if !sys::is_root() {
        return Some("needs root to load eBPF programs and create cgroups".into());
    }
    if !enforcer::has_embedded_object() {
        return Some("the agent was built without its eBPF object (cargo xtask build-ebpf)".into());
    }
    if let Err(e) = cgroup::hierarchy_root() {
        return Some(format!("no cgroup v2 hierarchy: {e:#}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_must_be_a_whole_entry() {
        assert!(lsm_list_has_bpf("lockdown,capability,landlock,bpf\n"));
        assert!(lsm_list_has_bpf("bpf"));
        assert!(!lsm_list_has_bpf("lockdown,capability,apparmor"));
        assert!(!lsm_list_has_bpf("bpfx,landlock"));
        assert!(!lsm_list_has_bpf(""));
    }
}
