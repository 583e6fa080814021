//! The guest's initramfs: busybox, the static agent and scenario runner, and an /init that
//! mounts what Rampart needs, runs the scenarios and powers off.

use std::{io::Cursor, path::Path};

use anyhow::{Context, Result};

/// The guest's /init. devtmpfs on /dev is required for spawning children with a null stdin
/// (without it the spawn fails with ENOENT); securityfs shows the active LSMs; cgroup2 is where governance lives.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
ip link set lo up
echo "@@RAMPART-KERNEL $(uname -r)"
/bin/rampart-vm-tests guest
echo "@@RAMPART-EXIT $?"
poweroff -f
"#;

/// The host's dynamic loader, libc, and a program that needs only them (Debian x86-64).
const DYN_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
const DYN_LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";
const DYN_PROGRAM: &str = "/usr/bin/true";
/// Debian's CA bundle (package ca-certificates).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, Vec<u8>, u32),
}

/// Writes the initramfs (uncompressed cpio newc, which every kernel accepts) to `out`.
/// `registry` is Debian's `docker-registry` (dynamically linked against the same libc the
/// initramfs carries), for the scenario that pulls bundles from a real registry.
pub fn build(
    out: &Path,
    busybox: &Path,
    agent: &Path,
    runner: &Path,
    registry: &Path,
) -> Result<()> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    // The example policies, so a scenario can load each into the kernel.
    let mut examples: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(crate::workspace::workspace_root().join("policies"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            examples.push((
                format!("usr/share/rampart/policies/{}", name.unwrap_or_default()),
                read(&path)?,
            ));
        }
    }
    examples.sort();
    let mut entries = vec![
        Entry::Dir("bin"),
        Entry::Dir("sbin"),
        Entry::Dir("usr"),
        Entry::Dir("usr/bin"),
        Entry::Dir("usr/sbin"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("dev"),
        Entry::Dir("tmp"),
        Entry::Dir("run"),
        Entry::Dir("opt"),
        Entry::Dir("etc"),
        Entry::File("init", INIT.as_bytes().to_vec(), 0o755),
        Entry::File("bin/busybox", read(busybox)?, 0o755),
        Entry::File("bin/rampart", read(agent)?, 0o755),
        Entry::File("bin/rampart-vm-tests", read(runner)?, 0o755),
        Entry::File("usr/bin/docker-registry", read(registry)?, 0o755),
        // The host's CA certificates, as a Debian host has them (the OCI client needs a
        // certificate store to exist even for plain HTTP to the loopback registry).
        Entry::Dir("etc/ssl"),
        Entry::Dir("etc/ssl/certs"),
        Entry::File(
            "etc/ssl/certs/ca-certificates.crt",
            read(Path::new(CA_BUNDLE))
                .context("the host's CA certificates (install the ca-certificates package)")?,
            0o644,
        ),
        // A dynamically linked program with its loader and libc, from the host: the
        // scenarios about running code through the dynamic loader need a real one.
        Entry::Dir("lib"),
        Entry::Dir("lib64"),
        Entry::Dir("lib/x86_64-linux-gnu"),
        Entry::Dir("usr/lib"),
        Entry::Dir("usr/lib/rampart-test"),
        Entry::File(
            "lib64/ld-linux-x86-64.so.2",
            read(Path::new(DYN_LOADER))?,
            0o755,
        ),
        Entry::File(
            "lib/x86_64-linux-gnu/libc.so.6",
            read(Path::new(DYN_LIBC))?,
            0o755,
        ),
        Entry::File(
            "usr/lib/rampart-test/dyn-true",
            read(Path::new(DYN_PROGRAM))?,
            0o755,
        ),
        Entry::Dir("usr/share"),
        Entry::Dir("usr/share/rampart"),
        Entry::Dir("usr/share/rampart/policies"),
    ];
    for (name, data) in &examples {
        entries.push(Entry::File(name, data.clone(), 0o644));
    }
    std::fs::write(out, write_entries(entries)?)
        .with_context(|| format!("writing {}", out.display()))
}

/// Kernel modules the guest may load (in load order): ext4 on a loop device and overlayfs,
/// for the file-action scenarios on more than tmpfs. Debian builds them as modules.
pub const GUEST_MODULES: [&str; 7] = [
    "lib/crc16",
    "crypto/crc32c_generic",
    "fs/mbcache",
    "fs/jbd2/jbd2",
    "fs/ext4/ext4",
    "drivers/block/loop",
    "fs/overlayfs/overlay",
];

/// Where the guest finds them: `NAME.ko` (the last path component).
pub const GUEST_MODULE_DIR: &str = "lib/rampart-modules";

/// The initramfs for one kernel: `base` followed by a second cpio archive holding that
/// kernel's [`GUEST_MODULES`] (uncompressed; the kernel unpacks concatenated archives in
/// order). A module the package lacks is left out: the scenario that needs it reports so.
pub fn for_kernel(base: &Path, kernel_root: &Path, out: &Path) -> Result<()> {
    let modules = std::fs::read_dir(kernel_root.join("lib/modules"))
        .with_context(|| format!("no lib/modules in {}", kernel_root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("kernel")))
        .find(|p| p.is_dir())
        .with_context(|| format!("no module tree in {}", kernel_root.display()))?;
    let mut entries = vec![Entry::Dir("lib"), Entry::Dir(GUEST_MODULE_DIR)];
    let mut names = Vec::new();
    for module in GUEST_MODULES {
        let plain = modules.join(format!("{module}.ko"));
        let packed = modules.join(format!("{module}.ko.xz"));
        let bytes = if plain.exists() {
            std::fs::read(&plain).with_context(|| format!("reading {}", plain.display()))?
        } else if packed.exists() {
            crate::prereq::ensure_xz()?;
            let out = std::process::Command::new("xz")
                .arg("-dc")
                .arg(&packed)
                .output()
                .with_context(|| format!("running xz -dc {}", packed.display()))?;
            anyhow::ensure!(out.status.success(), "xz -dc {} failed", packed.display());
            out.stdout
        } else {
            continue;
        };
        let name = module.rsplit('/').next().unwrap_or(module);
        names.push((format!("{GUEST_MODULE_DIR}/{name}.ko"), bytes));
    }
    for (name, bytes) in &names {
        entries.push(Entry::File(name, bytes.clone(), 0o644));
    }
    let mut archive = std::fs::read(base).with_context(|| format!("reading {}", base.display()))?;
    archive.extend(write_entries(entries)?);
    std::fs::write(out, archive).with_context(|| format!("writing {}", out.display()))
}

/// One cpio archive of `entries`, in memory.
fn write_entries(entries: Vec<Entry<'_>>) -> Result<Vec<u8>> {
    let inputs = entries.into_iter().map(|entry| match entry {
        Entry::Dir(name) => (
            cpio::NewcBuilder::new(name).mode(0o040_755).nlink(2),
            Cursor::new(Vec::new()),
        ),
        Entry::File(name, data, perm) => (
            cpio::NewcBuilder::new(name).mode(0o100_000 | perm).nlink(1),
            Cursor::new(data),
        ),
    });
    let mut out = Vec::new();
    cpio::write_cpio(inputs, &mut out).context("writing a cpio archive")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rampart_vm_tests::protocol::{Line, KERNEL_MARKER};

    /// `/init` is a shell script, so it writes the kernel line itself: in the protocol's form.
    #[test]
    fn init_prints_the_kernel_line_of_the_protocol() {
        assert!(super::INIT.contains(&format!("echo \"{KERNEL_MARKER}$(uname -r)\"")));
        assert_eq!(
            Line::parse(&format!("{KERNEL_MARKER}6.1.0-40-amd64")),
            Some(Ok(Line::Kernel("6.1.0-40-amd64".into())))
        );
    }
}
