//! File changes the kernel hands over as a dentry alone (issue 16): timestamps, extended
//! attributes and POSIX ACLs, each denied without its right and allowed with it; judged
//! through every mount the file is seen by (a bind mount the policy does not name denies);
//! overlayfs's own changes on its upper layer during a copy-up not judged against the
//! workload; exec-pinned programs' attributes and mode fixed; io_uring personalities
//! refused in governed cgroups.

use std::process::Command;

use anyhow::{Context, Result};

use super::tree::{allow, at, deny, mount_file_systems, prepare, run_cases};
use crate::harness::env::{Env, PINNED_PROGRAM};
use crate::harness::observe::{op_in, want, Outcome};

/// Where the test binds `/tmp/rights/stamp` a second time (no rule names it).
const BIND: &str = "/mnt/stamp-bind";

pub fn times_xattrs_acls(env: &mut Env) -> Result<String> {
    prepare()?;
    mount_file_systems()?;
    // Other names of the pinned program, made by the host, in directories that grant the
    // right at their own path.
    for dir in ["stamp", "meta"] {
        let name = at(&format!("{dir}/pinned"));
        std::fs::hard_link(PINNED_PROGRAM, &name)
            .with_context(|| format!("linking {PINNED_PROGRAM} to {name} (the host may)"))?;
    }
    let o = |rel: &str| format!("{}/{rel}", super::tree::OVERLAY);
    let mut cases = vec![
        deny(
            "utimes without utimes",
            &["utimes", &at("ro/f")],
            ("utimes", &at("ro/f"), "access-not-granted"),
        ),
        allow("utimes with utimes", &["utimes", &at("stamp/f")]),
        deny(
            "touch (times now) without utimes",
            &["utimes-now", &at("ro/f")],
            ("utimes", &at("ro/f"), "access-not-granted"),
        ),
        allow("touch with utimes", &["utimes-now", &at("stamp/f")]),
        deny(
            "setxattr without xattr",
            &["setxattr", &at("ro/f")],
            ("xattr", &at("ro/f"), "access-not-granted"),
        ),
        allow("setxattr with xattr", &["setxattr", &at("stamp/f")]),
        allow("removexattr with xattr", &["removexattr", &at("stamp/f")]),
        deny(
            "removexattr without xattr",
            &["removexattr", &at("ro/f")],
            ("xattr", &at("ro/f"), "access-not-granted"),
        ),
        deny(
            "set an ACL without xattr",
            &["setacl", &at("ro/f")],
            ("xattr", &at("ro/f"), "access-not-granted"),
        ),
        allow("set an ACL with xattr", &["setacl", &at("stamp/acl")]),
        allow("remove an ACL with xattr", &["removeacl", &at("stamp/acl")]),
        deny(
            "remove an ACL without xattr",
            &["removeacl", &at("ro/f")],
            ("xattr", &at("ro/f"), "access-not-granted"),
        ),
        // inode_setattr also sees mode changes and truncation: those are not time changes.
        allow(
            "chmod with chmod, without utimes",
            &["chmod", &at("meta/f")],
        ),
        allow(
            "truncate with truncate, without utimes",
            &["truncate", &at("trunc/t")],
        ),
        deny(
            "file capability on an exec-pinned program",
            &["setxattr", &at("stamp/pinned")],
            ("xattr", &at("stamp/pinned"), "exec-pinned"),
        ),
        deny(
            "chmod of an exec-pinned program",
            &["chmod", &at("meta/pinned")],
            ("chmod", &at("meta/pinned"), "exec-pinned"),
        ),
        // Overlay: the change is judged at the overlay path; the copy-up's own changes on
        // the upper layer are the kernel's.
        allow(
            "overlay: utimes of a lower file (copy-up)",
            &["utimes", &o("stamp/f")],
        ),
        allow(
            "overlay: setxattr after copy-up",
            &["setxattr", &o("stamp/f")],
        ),
        deny(
            "overlay: utimes without utimes",
            &["utimes", &o("ro/g")],
            ("utimes", &o("ro/g"), "access-not-granted"),
        ),
        deny(
            "io_uring request under a registered personality",
            &["uring-personality"],
            ("uring-creds", "", "no-rule"),
        ),
    ];
    run_cases(env, &cases)?;
    // The same file through a second mount that no rule names: every path must allow.
    std::fs::create_dir_all(BIND)?;
    let bound = Command::new("mount")
        .args(["--bind", &at("stamp"), BIND])
        .output()
        .context("running mount --bind")?;
    anyhow::ensure!(
        bound.status.success(),
        "mount --bind: {}",
        String::from_utf8_lossy(&bound.stderr)
    );
    let through_bind = vec![deny(
        "utimes of a file also seen through an unnamed bind mount",
        &["utimes", &at("stamp/f")],
        ("utimes", &format!("{BIND}/f"), "no-rule"),
    )];
    let judged = run_cases(env, &through_bind);
    let _ = Command::new("umount").arg(BIND).output();
    judged?;
    cases.extend(through_bind);
    // Outside governance nothing is judged.
    let free = env.ungoverned.clone();
    want(
        "utimes outside governance",
        op_in(env, &free, &["utimes", &at("ro/f")])?,
        Outcome::Ok,
    )?;
    want(
        "io_uring personality outside governance",
        op_in(env, &free, &["uring-personality"])?,
        Outcome::Ok,
    )?;
    Ok(format!(
        "{} cases: utimes and touch, setxattr and removexattr, ACL set and remove each \
         denied without the right, allowed with it; a bind mount no rule names denies; \
         overlay copy-up allowed; attributes and mode of an exec-pinned program fixed; \
         io_uring personalities refused; unjudged outside governance",
        cases.len()
    ))
}
