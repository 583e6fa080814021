//! What the `access` field of an event means for the actions that are not about a file:
//! the `bpf()` command, the kind of mount, what the kernel was asked to load.

use rampart_common::{system, Action};

/// The `access` of a non-file event in words (none where the field carries nothing).
pub fn describe(action: Action, access: u32) -> Option<String> {
    match action {
        Action::Bpf => Some(bpf_command(access)),
        Action::Mount => Some(mount_kind(access)),
        Action::KernelLoad => Some(load_kind(access)),
        Action::Lockdown => Some(lockdown_reason(access)),
        _ => None,
    }
}

/// The kernel's lockdown reason of a lockdown event.
fn lockdown_reason(access: u32) -> String {
    system::LOCKDOWN_REASONS
        .iter()
        .find(|(r, _)| *r == access)
        .map_or_else(|| format!("lockdown-{access}"), |(_, n)| (*n).to_owned())
}

/// The name of a mount event's kind.
fn mount_kind(access: u32) -> String {
    system::MOUNT_KINDS
        .iter()
        .find(|(k, _)| *k == access)
        .map_or_else(|| format!("mount-{access}"), |(_, n)| (*n).to_owned())
}

/// What a kernel-load event loads: `module-request`, `read-file:ID` or `load-data:ID`,
/// ID named after the kernel's `enum kernel_read_file_id` / `kernel_load_data_id`.
fn load_kind(access: u32) -> String {
    const IDS: [&str; 7] = [
        "unknown",
        "firmware",
        "module",
        "kexec-image",
        "kexec-initramfs",
        "policy",
        "x509-certificate",
    ];
    let id = access & 0xff;
    let what = IDS
        .get(id as usize)
        .map_or_else(|| format!("id-{id}"), |n| (*n).to_owned());
    match access & !0xff {
        system::LOAD_MODULE_REQUEST => "module-request".to_owned(),
        system::LOAD_READ_FILE => format!("read-file:{what}"),
        system::LOAD_DATA => format!("load-data:{what}"),
        other => format!("load-{other:#x}:{what}"),
    }
}

/// The name of a `bpf()` command (`enum bpf_cmd`), as a denied `bpf` event's `access`.
fn bpf_command(cmd: u32) -> String {
    system::BPF_COMMAND_NAMES
        .get(cmd as usize)
        .map_or_else(|| format!("cmd-{cmd}"), |n| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_kind_of_each_system_event() {
        assert_eq!(describe(Action::Lockdown, 7).as_deref(), Some("ioport"));
        assert_eq!(
            describe(Action::Lockdown, 22).as_deref(),
            Some("lockdown-22")
        );
        assert_eq!(describe(Action::Bpf, 7).as_deref(), Some("obj-get"));
        assert_eq!(describe(Action::Bpf, 99).as_deref(), Some("cmd-99"));
        assert_eq!(
            describe(Action::Mount, system::MOUNT_PIVOT_ROOT).as_deref(),
            Some("pivot-root")
        );
        assert_eq!(describe(Action::Mount, 9).as_deref(), Some("mount-9"));
        assert_eq!(
            describe(Action::KernelLoad, system::LOAD_DATA | 2).as_deref(),
            Some("load-data:module")
        );
        assert_eq!(
            describe(Action::KernelLoad, system::LOAD_READ_FILE | 1).as_deref(),
            Some("read-file:firmware")
        );
        assert_eq!(
            describe(Action::KernelLoad, system::LOAD_MODULE_REQUEST).as_deref(),
            Some("module-request")
        );
        assert_eq!(describe(Action::Chroot, 0), None);
        assert_eq!(describe(Action::Signal, 0), None);
    }
}
