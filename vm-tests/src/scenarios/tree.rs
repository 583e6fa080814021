//! File actions beyond open (issue 16): creating, removing, linking and renaming entries,
//! truncating, changing mode and owner, each denied without its right and allowed with it,
//! under the rights of `/tmp/rights/` in the test policy. Refer cases: links and renames
//! across directories with different rights, exchanges, same-directory renames, links to
//! and writes through other names of an exec-pinned program.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::harness::env::{Env, PINNED_PROGRAM};
use crate::harness::observe::{op_in, want, want_denied, Outcome};

/// The tree the test policy grants rights in (see `policy_text`).
pub const RIGHTS: &str = "/tmp/rights";

/// One action and what the kernel must do with it.
pub(super) struct Case {
    what: &'static str,
    op: Vec<String>,
    /// `None`: allowed; else the denial's (action, path, reason).
    denied: Option<(&'static str, String, &'static str)>,
}

pub(super) fn at(rel: &str) -> String {
    format!("{RIGHTS}/{rel}")
}

pub(super) fn allow(what: &'static str, op: &[&str]) -> Case {
    Case {
        what,
        op: op.iter().map(|s| s.to_string()).collect(),
        denied: None,
    }
}

pub(super) fn deny(
    what: &'static str,
    op: &[&str],
    event: (&'static str, &str, &'static str),
) -> Case {
    Case {
        what,
        op: op.iter().map(|s| s.to_string()).collect(),
        denied: Some((event.0, event.1.to_owned(), event.2)),
    }
}

/// Makes the tree afresh (outside governance): directories, and the files the cases act on.
pub fn prepare() -> Result<()> {
    let _ = std::fs::remove_dir_all(RIGHTS);
    let dirs = [
        "ro", "create", "remove", "dev", "trunc", "meta", "a", "b", "c", "noref", "hidden", "stamp",
    ];
    for d in dirs {
        std::fs::create_dir_all(at(d)).with_context(|| format!("making {}", at(d)))?;
    }
    for f in [
        "ro/f",
        "create/w",
        "remove/f",
        "trunc/t",
        "meta/f",
        "a/x",
        "a/y",
        "a/z",
        "a/e1",
        "a/e4",
        "b/e2",
        "c/e3",
        "hidden/s",
        "stamp/f",
        "stamp/acl",
    ] {
        std::fs::write(at(f), b"rampart\n").with_context(|| format!("writing {}", at(f)))?;
    }
    for d in ["ro/d", "remove/d", "a/dir", "a/dir2"] {
        std::fs::create_dir(at(d)).with_context(|| format!("making {}", at(d)))?;
    }
    std::fs::create_dir_all(deep_dir(DEEPEST))?;
    Ok(())
}

/// Directory levels below `create/` made for the walk's depth limit: with `/tmp/rights/
/// create/` (3 components) and the new name, 60 levels make a 64-component path (the most
/// the dentry walk follows) and 62 a 66-component one.
const DEEPEST: usize = 62;

fn deep_dir(levels: usize) -> String {
    format!("{}{}", at("create"), "/d".repeat(levels))
}

pub(super) fn run_cases(env: &mut Env, cases: &[Case]) -> Result<()> {
    let g = env.governed.clone();
    for case in cases {
        let op: Vec<&str> = case.op.iter().map(String::as_str).collect();
        let got = op_in(env, &g, &op)?;
        let checked = match &case.denied {
            None => want(case.what, got, Outcome::Ok),
            Some((action, path, reason)) => {
                want_denied(env, case.what, got, (action, path, reason))
            }
        };
        // On a surprise, show what the kernel recorded last (its path, reason and rule).
        checked.map_err(|e| {
            let events =
                std::fs::read_to_string(crate::harness::agent::AGENT_EVENTS).unwrap_or_default();
            let last: Vec<&str> = events.lines().rev().take(2).collect();
            e.context(format!("last events: {}", last.join(" | ")))
        })?;
    }
    Ok(())
}

pub fn each_right(env: &mut Env) -> Result<String> {
    prepare()?;
    let cases = vec![
        deny(
            "create a file without create",
            &["create", &at("ro/new")],
            ("create", &at("ro/new"), "access-not-granted"),
        ),
        allow("create a file with create", &["create", &at("create/new")]),
        deny(
            "mkdir without create",
            &["mkdir", &at("ro/newdir")],
            ("create", &at("ro/newdir"), "access-not-granted"),
        ),
        allow("mkdir with create", &["mkdir", &at("create/newdir")]),
        deny(
            "symlink without create",
            &["symlink", "/etc/passwd", &at("ro/link")],
            ("create", &at("ro/link"), "access-not-granted"),
        ),
        allow(
            "symlink with create",
            &["symlink", "/etc/passwd", &at("create/link")],
        ),
        deny(
            "mkfifo without create",
            &["mkfifo", &at("ro/fifo")],
            ("create", &at("ro/fifo"), "access-not-granted"),
        ),
        allow("mkfifo with create", &["mkfifo", &at("create/fifo")]),
        deny(
            "character device with create only",
            &["mknod-char", &at("create/null")],
            ("create", &at("create/null"), "access-not-granted"),
        ),
        allow(
            "character device with make-char",
            &["mknod-char", &at("dev/null")],
        ),
        deny(
            "block device with make-char only",
            &["mknod-block", &at("dev/sda")],
            ("create", &at("dev/sda"), "access-not-granted"),
        ),
        deny(
            "create outside every rule",
            &["create", "/tmp/rampart-unruled"],
            ("create", "/tmp/rampart-unruled", "no-rule"),
        ),
        deny(
            "unlink without remove",
            &["unlink", &at("ro/f")],
            ("remove", &at("ro/f"), "access-not-granted"),
        ),
        allow("unlink with remove", &["unlink", &at("remove/f")]),
        deny(
            "rmdir without remove",
            &["rmdir", &at("ro/d")],
            ("remove", &at("ro/d"), "access-not-granted"),
        ),
        allow("rmdir with remove", &["rmdir", &at("remove/d")]),
        deny(
            "truncate(2) with write but not truncate",
            &["truncate", &at("create/w")],
            ("truncate", &at("create/w"), "access-not-granted"),
        ),
        deny(
            "ftruncate with write but not truncate",
            &["ftruncate", &at("create/w")],
            ("truncate", &at("create/w"), "access-not-granted"),
        ),
        deny(
            "open O_TRUNC with write but not truncate",
            &["open-trunc", &at("create/w")],
            ("truncate", &at("create/w"), "access-not-granted"),
        ),
        allow("truncate(2) with truncate", &["truncate", &at("trunc/t")]),
        allow("ftruncate with truncate", &["ftruncate", &at("trunc/t")]),
        allow(
            "open O_TRUNC with truncate",
            &["open-trunc", &at("trunc/t")],
        ),
        deny(
            "chmod without chmod",
            &["chmod", &at("ro/f")],
            ("chmod", &at("ro/f"), "access-not-granted"),
        ),
        allow("chmod with chmod", &["chmod", &at("meta/f")]),
        deny(
            "chown without chown",
            &["chown", &at("ro/f")],
            ("chown", &at("ro/f"), "access-not-granted"),
        ),
        allow("chown with chown", &["chown", &at("meta/f")]),
        allow(
            "create at 64 path components (the walk's limit)",
            &["create", &format!("{}/x", deep_dir(60))],
        ),
        deny(
            "create at 66 path components (past the walk's limit)",
            &["create", &format!("{}/x", deep_dir(DEEPEST))],
            ("create", "", "path-too-long"),
        ),
    ];
    run_cases(env, &cases)?;
    // A denied O_CREAT must leave nothing behind (path_mknod runs before the inode exists).
    for left in [
        "ro/new",
        "ro/newdir",
        "ro/link",
        "ro/fifo",
        "create/null",
        "dev/sda",
    ] {
        if Path::new(&at(left)).symlink_metadata().is_ok() {
            bail!("{} exists after its creation was denied", at(left));
        }
    }
    for made in [
        "create/new",
        "create/newdir",
        "create/link",
        "create/fifo",
        "dev/null",
    ] {
        if Path::new(&at(made)).symlink_metadata().is_err() {
            bail!("{} is missing after its creation was allowed", at(made));
        }
    }
    if std::fs::metadata(at("create/w"))?.len() != 8 {
        bail!(
            "{} was truncated although every truncation was denied",
            at("create/w")
        );
    }
    // Outside governance nothing is judged.
    let free = env.ungoverned.clone();
    want(
        "unlink outside governance",
        op_in(env, &free, &["unlink", &at("ro/f")])?,
        Outcome::Ok,
    )?;
    Ok(format!(
        "{} file actions (create, mkdir, symlink, mkfifo, char/block nodes, unlink, rmdir, \
         truncate, ftruncate, O_TRUNC, chmod, chown) each denied without its right, allowed \
         with it; nothing left behind by a denied create; unjudged outside governance",
        cases.len()
    ))
}

pub fn refer(env: &mut Env) -> Result<String> {
    prepare()?;
    let pinned = PINNED_PROGRAM.to_owned();
    // Another name for the pinned program in a writable directory, made by the host.
    let other_name = at("b/pinned-link");
    std::fs::hard_link(&pinned, &other_name)
        .with_context(|| format!("linking {pinned} to {other_name} (the host may)"))?;
    let cases = vec![
        deny(
            "rename into a directory without refer",
            &["rename", &at("a/x"), &at("noref/x")],
            ("rename", &at("noref/x"), "access-not-granted"),
        ),
        deny(
            "rename into a directory granting more (write)",
            &["rename", &at("a/x"), &at("b/x")],
            ("rename", &at("b/x"), "refer-gains-access"),
        ),
        allow(
            "rename into a directory granting the same",
            &["rename", &at("a/y"), &at("c/y")],
        ),
        allow(
            "rename within one directory",
            &["rename", &at("a/z"), &at("a/z2")],
        ),
        deny(
            "link a file it may not read into a directory it may read",
            &["link", &at("hidden/s"), &at("a/s")],
            ("link", &at("a/s"), "refer-gains-access"),
        ),
        deny(
            "link into a directory granting write",
            &["link", &at("c/e3"), &at("b/e3")],
            ("link", &at("b/e3"), "refer-gains-access"),
        ),
        deny(
            "exchange with a directory granting more, either way",
            &["exchange", &at("a/e1"), &at("b/e2")],
            ("rename", &at("b/e2"), "refer-gains-access"),
        ),
        allow(
            "exchange between directories granting the same",
            &["exchange", &at("c/e3"), &at("a/e4")],
        ),
        allow(
            "move a directory between equal trees",
            &["rename", &at("a/dir"), &at("c/dir")],
        ),
        deny(
            "move a directory into a tree granting more",
            &["rename", &at("a/dir2"), &at("b/dir2")],
            ("rename", &at("b/dir2"), "refer-gains-access"),
        ),
        deny(
            "hard link to an exec-pinned program",
            &["link", &pinned, &at("a/probe")],
            ("link", &at("a/probe"), "exec-pinned"),
        ),
        deny(
            "write to the exec-pinned program through another name",
            &["open", &other_name, "write"],
            ("open", &other_name, "exec-pinned"),
        ),
    ];
    run_cases(env, &cases)?;
    if Path::new(&at("a/s")).exists() {
        bail!(
            "{} exists: the unreadable file gained a readable name",
            at("a/s")
        );
    }
    for moved in ["c/y", "a/z2", "c/dir"] {
        if !Path::new(&at(moved)).exists() {
            bail!("{} is missing after an allowed rename", at(moved));
        }
    }
    let _ = std::fs::remove_file(&other_name);
    Ok(format!(
        "{} refer cases: renames and links across directories need refer and may not gain \
         rights (files and directories, exchanges both ways), same-directory renames and \
         equal trees allowed; no new name for, nor write through another name of, a pinned \
         program",
        cases.len()
    ))
}

/// Where the guest's initramfs carries the kernel modules (see xtask's initramfs).
const MODULES: &str = "/lib/rampart-modules";
/// An ext4 file system on a loop device, and an overlay of two tmpfs directories.
pub const EXT4: &str = "/mnt/rights-ext4";
pub const OVERLAY: &str = "/mnt/rights-ovl";
const OVERLAY_DIRS: &str = "/tmp/ovl";

fn sh(what: &str, cmd: &mut std::process::Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot run"))?;
    if !out.status.success() {
        let dmesg = std::process::Command::new("dmesg").output().ok();
        let tail: Vec<String> = dmesg
            .map(|d| {
                String::from_utf8_lossy(&d.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "{what}: {}{}; kernel log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail[tail.len().saturating_sub(8)..].join(" | ")
        );
    }
    Ok(())
}

/// Loads the modules ext4, the loop device and overlayfs need (a module already loaded or
/// built in is fine).
fn load_modules() -> Result<()> {
    for name in [
        "crc16",
        "crc32c_generic",
        "mbcache",
        "jbd2",
        "ext4",
        "loop",
        "overlay",
    ] {
        let ko = format!("{MODULES}/{name}.ko");
        if !Path::new(&ko).exists() {
            bail!("{ko} is missing from the initramfs");
        }
        let out = std::process::Command::new("insmod").arg(&ko).output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && !err.contains("exists") {
            bail!("insmod {ko}: {err}");
        }
    }
    Ok(())
}

/// Mounts a fresh ext4 (made by busybox mke2fs, mounted by the ext4 driver) and a fresh
/// overlay with files in its lower layer.
pub(super) fn mount_file_systems() -> Result<()> {
    use std::process::Command;
    load_modules()?;
    for m in [EXT4, OVERLAY] {
        let _ = Command::new("umount").arg(m).output();
        std::fs::create_dir_all(m)?;
    }
    let image = "/tmp/rights-ext4.img";
    let device = "/dev/loop0";
    std::fs::write(image, vec![0u8; 16 << 20])?;
    let _ = Command::new("losetup").args(["-d", device]).output();
    sh("losetup", Command::new("losetup").args([device, image]))?;
    sh("mke2fs", Command::new("mke2fs").args(["-q", device]))?;
    sh(
        "mount ext4",
        Command::new("mount").args(["-t", "ext4", device, EXT4]),
    )?;
    for d in ["a", "b", "ro"] {
        std::fs::create_dir_all(format!("{EXT4}/{d}"))?;
    }
    for f in ["a/x", "ro/f"] {
        std::fs::write(format!("{EXT4}/{f}"), b"rampart\n")?;
    }
    let _ = std::fs::remove_dir_all(OVERLAY_DIRS);
    for d in [
        "lower/ro",
        "lower/rw",
        "lower/a",
        "lower/b",
        "lower/stamp",
        "upper",
        "work",
    ] {
        std::fs::create_dir_all(format!("{OVERLAY_DIRS}/{d}"))?;
    }
    for f in ["ro/f", "ro/g", "rw/f", "rw/t", "rw/gone", "a/x", "stamp/f"] {
        std::fs::write(format!("{OVERLAY_DIRS}/lower/{f}"), b"rampart\n")?;
    }
    let options = format!(
        "lowerdir={OVERLAY_DIRS}/lower,upperdir={OVERLAY_DIRS}/upper,workdir={OVERLAY_DIRS}/work"
    );
    sh(
        "mount overlay",
        Command::new("mount").args(["-t", "overlay", "overlay", "-o", &options, OVERLAY]),
    )
}

pub fn other_file_systems(env: &mut Env) -> Result<String> {
    mount_file_systems()?;
    let e = |rel: &str| format!("{EXT4}/{rel}");
    let o = |rel: &str| format!("{OVERLAY}/{rel}");
    let cases = vec![
        deny(
            "ext4: create without create",
            &["create", &e("ro/new")],
            ("create", &e("ro/new"), "access-not-granted"),
        ),
        allow("ext4: create with create", &["create", &e("a/new")]),
        allow("ext4: mkdir with create", &["mkdir", &e("a/dir")]),
        deny(
            "ext4: unlink without remove",
            &["unlink", &e("ro/f")],
            ("remove", &e("ro/f"), "access-not-granted"),
        ),
        deny(
            "ext4: truncate without truncate",
            &["truncate", &e("ro/f")],
            ("truncate", &e("ro/f"), "access-not-granted"),
        ),
        deny(
            "ext4: chmod without chmod",
            &["chmod", &e("ro/f")],
            ("chmod", &e("ro/f"), "access-not-granted"),
        ),
        deny(
            "ext4: rename into a directory granting write",
            &["rename", &e("a/x"), &e("b/x")],
            ("rename", &e("b/x"), "refer-gains-access"),
        ),
        allow("ext4: unlink with remove", &["unlink", &e("a/new")]),
        allow("overlay: read a lower file", &["open", &o("ro/f"), "read"]),
        deny(
            "overlay: write a lower file it may only read (would copy it up)",
            &["open", &o("ro/f"), "write"],
            ("open", &o("ro/f"), "access-not-granted"),
        ),
        deny(
            "overlay: chmod a lower file it may only read (would copy it up)",
            &["chmod", &o("ro/g")],
            ("chmod", &o("ro/g"), "access-not-granted"),
        ),
        deny(
            "overlay: unlink a lower file without remove (would leave a whiteout)",
            &["unlink", &o("ro/f")],
            ("remove", &o("ro/f"), "access-not-granted"),
        ),
        deny(
            "overlay: create without create",
            &["create", &o("ro/new")],
            ("create", &o("ro/new"), "access-not-granted"),
        ),
        allow(
            "overlay: write a lower file it may write (copied up)",
            &["open", &o("rw/f"), "write"],
        ),
        allow(
            "overlay: truncate a lower file with truncate",
            &["truncate", &o("rw/t")],
        ),
        allow("overlay: create with create", &["create", &o("rw/new")]),
        allow(
            "overlay: unlink a lower file with remove",
            &["unlink", &o("rw/gone")],
        ),
        deny(
            "overlay: rename into a directory granting write",
            &["rename", &o("a/x"), &o("b/x")],
            ("rename", &o("b/x"), "refer-gains-access"),
        ),
    ];
    run_cases(env, &cases)?;
    let upper = |rel: &str| Path::new(OVERLAY_DIRS).join("upper").join(rel);
    for (rel, want) in [
        ("ro/f", false),
        ("ro/g", false),
        ("ro/new", false),
        ("rw/f", true),
        ("rw/t", true),
        ("rw/new", true),
    ] {
        let there = upper(rel).symlink_metadata().is_ok();
        if there != want {
            bail!(
                "overlay upper layer: {} {} (expected {})",
                upper(rel).display(),
                if there { "exists" } else { "is missing" },
                if want {
                    "a copy-up"
                } else {
                    "none: the action was denied"
                }
            );
        }
    }
    if Path::new(&e("ro/new")).exists() || !Path::new(&e("a/dir")).is_dir() {
        bail!("ext4: the denied create left a file, or the allowed mkdir made nothing");
    }
    for m in [OVERLAY, EXT4] {
        let _ = std::process::Command::new("umount").arg(m).output();
    }
    let _ = std::process::Command::new("losetup")
        .args(["-d", "/dev/loop0"])
        .output();
    Ok(format!(
        "{} cases on ext4 (loop device) and overlayfs: each denied without its right, allowed \
         with it; a lower file the workload may only read is never copied up (write open, \
         chmod denied first), one it may write is",
        cases.len()
    ))
}
