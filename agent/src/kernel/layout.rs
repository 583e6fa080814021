//! Resolves the [`KernelLayout`] the programs need from the running kernel's BTF.

use rampart_common::{programs, KernelLayout};

use super::btf::{Btf, BtfError};

/// The struct members the programs read, as `(struct, member)`, in [`KernelLayout`] order.
pub const MEMBERS: [(&str, &str); 56] = [
    ("linux_binprm", "file"),
    ("file", "f_inode"),
    ("file", "f_path"),
    ("file", "f_mode"),
    ("file", "f_flags"),
    ("inode", "i_ino"),
    ("inode", "i_sb"),
    ("super_block", "s_dev"),
    ("vm_area_struct", "vm_file"),
    ("cgroup", "kn"),
    ("cgroup", "root"),
    ("kernfs_node", "id"),
    ("cgroup_root", "hierarchy_id"),
    ("dentry", "d_parent"),
    ("dentry", "d_name"),
    ("dentry", "d_inode"),
    ("qstr", "name"),
    ("qstr", "len"),
    ("inode", "i_mode"),
    ("path", "mnt"),
    ("path", "dentry"),
    ("vfsmount", "mnt_root"),
    ("mount", "mnt"),
    ("mount", "mnt_parent"),
    ("mount", "mnt_mountpoint"),
    ("task_struct", "fs"),
    ("fs_struct", "root"),
    ("task_struct", "cred"),
    ("task_struct", "real_cred"),
    ("mount", "mnt_ns"),
    ("dentry", "d_sb"),
    ("super_block", "s_mounts"),
    ("task_struct", "nsproxy"),
    ("nsproxy", "mnt_ns"),
    ("iattr", "ia_valid"),
    ("task_struct", "cgroups"),
    ("css_set", "dfl_cgrp"),
    ("cgroup", "level"),
    ("cgroup", "ancestors"),
    ("task_struct", "tgid"),
    ("inode", "i_private"),
    ("super_block", "s_magic"),
    ("sock", "sk_cgrp_data"),
    ("sock_cgroup_data", "cgroup"),
    ("socket", "sk"),
    ("unix_sock", "addr"),
    ("unix_sock", "path"),
    ("unix_address", "len"),
    ("unix_address", "name"),
    ("sock", "__sk_common"),
    ("sock_common", "skc_family"),
    ("sock_common", "skc_rcv_saddr"),
    ("sock_common", "skc_num"),
    ("sock_common", "skc_v6_rcv_saddr"),
    ("sock", "sk_protocol"),
    ("file", "private_data"),
];

/// Resolves every offset in [`MEMBERS`]; fails on the first one that cannot be found.
pub fn resolve(btf: &Btf) -> Result<KernelLayout, BtfError> {
    let mut offsets = [0u32; MEMBERS.len()];
    for (slot, (s, m)) in offsets.iter_mut().zip(MEMBERS) {
        *slot = btf.member_offset(s, m)?;
    }
    let [binprm_file, file_inode, file_path, file_mode, file_flags, inode_ino, inode_sb, sb_dev, vma_file, cgroup_kn, cgroup_root, kn_id, root_hierarchy_id, dentry_parent, dentry_name, dentry_inode, qstr_name, qstr_len, inode_mode, path_mnt, path_dentry, vfsmount_root, mount_mnt, mount_parent, mount_mountpoint, task_fs, fs_root, task_cred, task_real_cred, mount_ns, dentry_sb, sb_mounts, task_nsproxy, nsproxy_mnt_ns, iattr_valid, task_cgroups, css_set_dfl_cgrp, cgroup_level, cgroup_ancestors, task_tgid, inode_private, sb_magic, sock_cgrp_data, sock_cgroup, socket_sk, unix_addr, unix_path, unix_address_len, unix_address_name, sk_common, skc_family, skc_rcv_saddr, skc_num, skc_v6_rcv_saddr, sk_protocol, file_private_data] =
        offsets;
    let (mount_instance, mounts_chained) = mount_links(btf)?;
    let kn_parent = kernfs_parent(btf)?;
    Ok(KernelLayout {
        binprm_file,
        file_inode,
        file_path,
        file_mode,
        file_flags,
        inode_ino,
        inode_sb,
        sb_dev,
        vma_file,
        cgroup_kn,
        cgroup_root,
        kn_id,
        root_hierarchy_id,
        dentry_parent,
        dentry_name,
        dentry_inode,
        qstr_name,
        qstr_len,
        inode_mode,
        path_mnt,
        path_dentry,
        vfsmount_root,
        mount_mnt,
        mount_parent,
        mount_mountpoint,
        task_fs,
        fs_root,
        task_cred,
        task_real_cred,
        mount_ns,
        dentry_sb,
        sb_mounts,
        mount_instance,
        mounts_chained,
        task_nsproxy,
        nsproxy_mnt_ns,
        iattr_valid,
        task_cgroups,
        css_set_dfl_cgrp,
        cgroup_level,
        cgroup_ancestors,
        task_tgid,
        inode_private,
        sb_magic,
        kn_parent,
        sock_cgrp_data,
        sock_cgroup,
        socket_sk,
        unix_addr,
        unix_path,
        unix_address_len,
        unix_address_name,
        sk_family: sk_common + skc_family,
        sk_rcv_saddr: sk_common + skc_rcv_saddr,
        sk_num: sk_common + skc_num,
        sk_v6_rcv_saddr: sk_common + skc_v6_rcv_saddr,
        sk_protocol,
        file_private_data,
        valid: 1,
    })
}

/// A kernfs node's parent: `parent` to 6.14, `__parent` (RCU-protected) from 6.15.
fn kernfs_parent(btf: &Btf) -> Result<u32, BtfError> {
    match btf.member_offset("kernfs_node", "parent") {
        Err(BtfError::NoSuchMember(..)) => btf.member_offset("kernfs_node", "__parent"),
        found => found,
    }
}

/// How a superblock links its mounts: `(offset, chained)`. To 6.16 a `struct list_head`
/// (`s_mounts`) through each mount's `mnt_instance`; from 6.17 a chain of `struct mount *`
/// through `mnt_next_for_sb`.
fn mount_links(btf: &Btf) -> Result<(u32, u32), BtfError> {
    match btf.member_offset("mount", "mnt_instance") {
        Ok(offset) => Ok((offset, 0)),
        Err(BtfError::NoSuchMember(..)) => Ok((btf.member_offset("mount", "mnt_next_for_sb")?, 1)),
        Err(e) => Err(e),
    }
}

/// The LSM programs to attach on this kernel: every one of [`programs::LSM`], those of
/// [`programs::LSM_OPTIONAL`] the kernel has (`file_truncate` from 6.2; before it,
/// `ftruncate` and `O_TRUNC` reach `path_truncate`; the ACL hooks from 6.2, before which
/// ACLs are extended attributes), and the form of `inode_setattr` whose arguments match the
/// kernel's. A kernel whose `inode_setattr` has neither form is refused: timestamps would
/// go unjudged.
pub fn lsm_hooks(btf: &Btf) -> Result<Vec<&'static str>, BtfError> {
    let mut hooks = programs::LSM.to_vec();
    hooks.extend(
        programs::LSM_OPTIONAL
            .into_iter()
            .filter(|hook| btf.has_function(&format!("bpf_lsm_{hook}"))),
    );
    for (hook, forms) in programs::HOOK_FORMS {
        let function = format!("bpf_lsm_{hook}");
        let params = btf.function_params(&function);
        let form = forms
            .iter()
            .find(|(args, _)| Some(*args) == params)
            .ok_or(BtfError::HookShape(function, params))?;
        hooks.push(form.1);
    }
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use super::super::btf::tests::BtfBuilder;
    use super::*;

    #[test]
    fn resolves_all_members_from_synthetic_btf() {
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        let uint = b.int("unsigned int", 4);
        let p = b.ptr(long);
        b.composite(
            false,
            "linux_binprm",
            64,
            &[("vma", p, 0), ("file", p, 8 * 40)],
        );
        b.composite(
            false,
            "file",
            256,
            &[
                ("f_path", long, 0),
                ("f_mode", uint, 8 * 20),
                ("f_flags", uint, 8 * 32),
                ("f_inode", p, 8 * 24),
                ("private_data", p, 8 * 200),
            ],
        );
        b.composite(
            false,
            "inode",
            64,
            &[
                ("i_mode", uint, 0),
                ("i_sb", p, 8 * 40),
                ("i_ino", long, 8 * 64),
                ("i_private", p, 8 * 56),
            ],
        );
        b.composite(
            false,
            "super_block",
            256,
            &[
                ("s_dev", uint, 8 * 16),
                ("s_magic", long, 8 * 96),
                ("s_mounts", long, 8 * 224),
            ],
        );
        b.composite(false, "vm_area_struct", 64, &[("vm_file", p, 8 * 48)]);
        b.composite(
            false,
            "cgroup",
            64,
            &[
                ("root", p, 8 * 8),
                ("kn", p, 8 * 16),
                ("level", uint, 8 * 40),
                ("ancestors", long, 8 * 200),
            ],
        );
        b.composite(
            false,
            "kernfs_node",
            64,
            &[("parent", p, 0), ("id", long, 8 * 56)],
        );
        b.composite(false, "cgroup_root", 64, &[("hierarchy_id", uint, 8 * 4)]);
        // struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; name; }
        let hash_len = b.composite(false, "", 8, &[("hash", uint, 0), ("len", uint, 32)]);
        let union = b.composite(true, "", 8, &[("", hash_len, 0), ("hash_len", long, 0)]);
        let qstr = b.composite(false, "qstr", 16, &[("", union, 0), ("name", p, 64)]);
        b.composite(
            false,
            "dentry",
            64,
            &[
                ("d_parent", p, 8 * 24),
                ("d_name", qstr, 8 * 32),
                ("d_inode", p, 8 * 48),
                ("d_sb", p, 8 * 56),
            ],
        );
        b.composite(false, "path", 16, &[("mnt", p, 0), ("dentry", p, 64)]);
        b.composite(false, "vfsmount", 16, &[("mnt_root", p, 0)]);
        b.composite(
            false,
            "mount",
            64,
            &[
                ("mnt_parent", p, 8 * 16),
                ("mnt_mountpoint", p, 8 * 24),
                ("mnt", long, 8 * 32),
                ("mnt_ns", p, 8 * 56),
                ("mnt_instance", long, 8 * 120),
            ],
        );
        b.composite(
            false,
            "task_struct",
            128,
            &[
                ("real_cred", p, 8 * 64),
                ("cred", p, 8 * 72),
                ("fs", p, 8 * 96),
                ("nsproxy", p, 8 * 104),
                ("cgroups", p, 8 * 112),
                ("tgid", uint, 8 * 12),
            ],
        );
        b.composite(false, "css_set", 64, &[("dfl_cgrp", p, 8 * 88)]);
        b.composite(false, "fs_struct", 64, &[("root", long, 8 * 24)]);
        b.composite(false, "nsproxy", 32, &[("mnt_ns", p, 8 * 24)]);
        b.composite(false, "iattr", 32, &[("ia_valid", uint, 0)]);
        b.composite(false, "sock_cgroup_data", 16, &[("cgroup", p, 0)]);
        b.composite(
            false,
            "sock",
            512,
            &[
                ("__sk_common", long, 8 * 8),
                ("sk_cgrp_data", long, 8 * 400),
                ("sk_protocol", uint, 8 * 420),
            ],
        );
        b.composite(
            false,
            "sock_common",
            136,
            &[
                ("skc_rcv_saddr", uint, 8 * 4),
                ("skc_num", uint, 8 * 14),
                ("skc_family", uint, 8 * 16),
                ("skc_v6_rcv_saddr", long, 8 * 72),
            ],
        );
        b.composite(false, "socket", 64, &[("sk", p, 8 * 24)]);
        b.composite(
            false,
            "unix_sock",
            1024,
            &[("addr", p, 8 * 760), ("path", long, 8 * 768)],
        );
        b.composite(
            false,
            "unix_address",
            16,
            &[("len", uint, 8 * 4), ("name", long, 8 * 12)],
        );
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(
            resolve(&btf).unwrap(),
            KernelLayout {
                binprm_file: 40,
                file_inode: 24,
                file_path: 0,
                file_mode: 20,
                file_flags: 32,
                inode_ino: 64,
                inode_sb: 40,
                sb_dev: 16,
                vma_file: 48,
                cgroup_kn: 16,
                cgroup_root: 8,
                kn_id: 56,
                root_hierarchy_id: 4,
                dentry_parent: 24,
                dentry_name: 32,
                dentry_inode: 48,
                qstr_name: 8,
                qstr_len: 4,
                inode_mode: 0,
                path_mnt: 0,
                path_dentry: 8,
                vfsmount_root: 0,
                mount_mnt: 32,
                mount_parent: 16,
                mount_mountpoint: 24,
                task_fs: 96,
                fs_root: 24,
                task_cred: 72,
                task_real_cred: 64,
                mount_ns: 56,
                dentry_sb: 56,
                sb_mounts: 224,
                mount_instance: 120,
                task_cgroups: 112,
                css_set_dfl_cgrp: 88,
                cgroup_level: 40,
                cgroup_ancestors: 200,
                task_tgid: 12,
                inode_private: 56,
                sb_magic: 96,
                kn_parent: 0,
                mounts_chained: 0,
                task_nsproxy: 104,
                nsproxy_mnt_ns: 24,
                iattr_valid: 0,
                sock_cgrp_data: 400,
                sock_cgroup: 0,
                socket_sk: 24,
                unix_addr: 760,
                unix_path: 768,
                unix_address_len: 4,
                unix_address_name: 12,
                sk_family: 24,
                sk_rcv_saddr: 12,
                sk_num: 22,
                sk_v6_rcv_saddr: 80,
                sk_protocol: 420,
                file_private_data: 200,
                valid: 1
            }
        );
    }

    #[test]
    fn optional_lsm_hooks_only_where_the_kernel_has_them() {
        use rampart_common::programs;
        // 6.1's shapes: no file_truncate, no ACL hooks, inode_setattr(dentry, attr).
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        b.func_with("bpf_lsm_inode_setattr", &[long, long]);
        b.func_with("bpf_lsm_bpf", &[long; 3]);
        b.func_with("bpf_lsm_perf_event_open", &[long; 2]);
        let old = Btf::parse(&b.build()).unwrap();
        let mut want = programs::LSM.to_vec();
        want.extend(["inode_setattr", "bpf", "perf_event_open"]);
        assert_eq!(lsm_hooks(&old).unwrap(), want);
        // 6.12's: every optional hook, inode_setattr(idmap, dentry, attr).
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        for hook in programs::LSM_OPTIONAL {
            b.func(&format!("bpf_lsm_{hook}"));
        }
        b.func_with("bpf_lsm_inode_setattr", &[long, long, long]);
        // 6.15 and later: bpf(cmd, attr, size, kernel).
        b.func_with("bpf_lsm_bpf", &[long; 4]);
        // The newest kernels: perf_event_open(type).
        b.func_with("bpf_lsm_perf_event_open", &[long]);
        let new = Btf::parse(&b.build()).unwrap();
        let hooks = lsm_hooks(&new).unwrap();
        assert_eq!(
            hooks.len(),
            programs::LSM.len() + programs::LSM_OPTIONAL.len() + 3
        );
        assert!(hooks.contains(&programs::FILE_TRUNCATE));
        assert_eq!(
            hooks[hooks.len() - 3..],
            ["inode_setattr_idmap", "bpf_kernel", "perf_event_open_type"]
        );
        assert_eq!(
            programs::lsm_hook_of("perf_event_open_type"),
            "perf_event_open"
        );
        assert_eq!(
            programs::lsm_hook_of("inode_setattr_idmap"),
            "inode_setattr"
        );
        assert_eq!(programs::lsm_hook_of("bpf_kernel"), "bpf");
        assert_eq!(programs::lsm_hook_of("path_chmod"), "path_chmod");
    }

    #[test]
    fn unknown_hook_shape_is_refused() {
        let without = Btf::parse(&BtfBuilder::new().build()).unwrap();
        assert!(matches!(
            lsm_hooks(&without),
            Err(BtfError::HookShape(_, None))
        ));
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        b.func_with("bpf_lsm_inode_setattr", &[long; 4]);
        b.func_with("bpf_lsm_bpf", &[long; 3]);
        b.func_with("bpf_lsm_perf_event_open", &[long; 2]);
        let odd = Btf::parse(&b.build()).unwrap();
        assert!(matches!(
            lsm_hooks(&odd),
            Err(BtfError::HookShape(_, Some(4)))
        ));
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        b.func_with("bpf_lsm_inode_setattr", &[long; 3]);
        b.func_with("bpf_lsm_bpf", &[long; 2]);
        b.func_with("bpf_lsm_perf_event_open", &[long; 2]);
        let odd_bpf = Btf::parse(&b.build()).unwrap();
        assert!(matches!(
            lsm_hooks(&odd_bpf),
            Err(BtfError::HookShape(f, Some(2))) if f == "bpf_lsm_bpf"
        ));
    }

    #[test]
    fn missing_member_fails_resolution() {
        let mut b = BtfBuilder::new();
        let long = b.int("long", 8);
        b.composite(false, "linux_binprm", 8, &[("file", long, 0)]);
        let btf = Btf::parse(&b.build()).unwrap();
        assert_eq!(
            resolve(&btf).unwrap_err(),
            BtfError::NoSuchStruct("file".into())
        );
    }

    /// Host-native: the machine running the tests has BTF; every member must resolve to an
    /// offset inside its struct. Skips (with a printed reason) where the kernel has no BTF.
    #[test]
    fn resolves_against_running_kernel_btf() {
        let raw = match Btf::from_sys_fs() {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("SKIP: no /sys/kernel/btf/vmlinux on this host ({e})");
                return;
            }
        };
        let btf = Btf::parse(&raw).unwrap();
        let layout = resolve(&btf).unwrap();
        assert_eq!(layout.valid, 1);
        // i_ino and i_sb are distinct members of struct inode.
        assert_ne!(layout.inode_ino, layout.inode_sb);
        // struct qstr: the length shares a word with the hash; the name pointer follows.
        assert_eq!((layout.qstr_len, layout.qstr_name), (4, 8));
        assert_eq!((layout.path_mnt, layout.path_dentry), (0, 8));
        for off in [
            layout.binprm_file,
            layout.file_inode,
            layout.file_path,
            layout.file_mode,
            layout.file_flags,
            layout.inode_sb,
            layout.sb_dev,
            layout.vma_file,
            layout.cgroup_kn,
            layout.cgroup_root,
            layout.kn_id,
            layout.root_hierarchy_id,
            layout.dentry_parent,
            layout.dentry_name,
            layout.dentry_inode,
            layout.mount_mnt,
            layout.mount_parent,
            layout.mount_mountpoint,
            layout.fs_root,
        ] {
            assert!(off < 4096, "implausible offset {off}");
        }
    }
}
