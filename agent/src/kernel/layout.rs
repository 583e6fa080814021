//! Resolves the [`KernelLayout`] the programs need from the running kernel's BTF.

use rampart_common::KernelLayout;

use super::btf::{Btf, BtfError};

/// The struct members the programs read, as `(struct, member)`, in [`KernelLayout`] order.
pub const MEMBERS: [(&str, &str); 13] = [
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
];

/// Resolves every offset in [`MEMBERS`]; fails on the first one that cannot be found.
pub fn resolve(btf: &Btf) -> Result<KernelLayout, BtfError> {
    let [binprm_file, file_inode, file_path, file_mode, file_flags, inode_ino, inode_sb, sb_dev, vma_file, cgroup_kn, cgroup_root, kn_id, root_hierarchy_id] =
        MEMBERS.map(|(s, m)| btf.member_offset(s, m));
    Ok(KernelLayout {
        binprm_file: binprm_file?,
        file_inode: file_inode?,
        file_path: file_path?,
        file_mode: file_mode?,
        file_flags: file_flags?,
        inode_ino: inode_ino?,
        inode_sb: inode_sb?,
        sb_dev: sb_dev?,
        vma_file: vma_file?,
        cgroup_kn: cgroup_kn?,
        cgroup_root: cgroup_root?,
        kn_id: kn_id?,
        root_hierarchy_id: root_hierarchy_id?,
        valid: 1,
    })
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
            64,
            &[
                ("f_path", long, 0),
                ("f_mode", uint, 8 * 20),
                ("f_flags", uint, 8 * 32),
                ("f_inode", p, 8 * 24),
            ],
        );
        b.composite(
            false,
            "inode",
            64,
            &[("i_sb", p, 8 * 40), ("i_ino", long, 8 * 64)],
        );
        b.composite(false, "super_block", 64, &[("s_dev", uint, 8 * 16)]);
        b.composite(false, "vm_area_struct", 64, &[("vm_file", p, 8 * 48)]);
        b.composite(
            false,
            "cgroup",
            64,
            &[("root", p, 8 * 8), ("kn", p, 8 * 16)],
        );
        b.composite(false, "kernfs_node", 64, &[("id", long, 8 * 56)]);
        b.composite(false, "cgroup_root", 64, &[("hierarchy_id", uint, 8 * 4)]);
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
                valid: 1
            }
        );
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
        ] {
            assert!(off < 4096, "implausible offset {off}");
        }
    }
}
