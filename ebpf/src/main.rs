//! Rampart's kernel programs.
//!
//! Every program is a thin entry that calls a `judge_*` function; the decision logic reads
//! as ordinary Rust. One module per hook family (`exec`, `file`, `mmap`, `tree` for
//! creating, removing, linking and renaming, `attr` for truncation, mode and owner,
//! `inode` for timestamps, extended attributes and ACLs, `scope` for signals, ptrace and
//! `bpf()`, `system` for mounts, chroot, user namespaces, kernel loading, perf events and
//! `CLONE_INTO_CGROUP`, `socket` for which sockets may be made, `unix` for AF_UNIX peers, `capability`, `network`,
//! `listen` for bind and listen, `receive` for received descriptors, `cgroup`) over shared
//! ones: `governance` (which policy applies), `path`, `walk`, `mounts` and `object` (what
//! the target is), `decision` (mode, counters, events) and
//! `maps`. Inside a governed cgroup (or any descendant) the default is deny: only a rule of
//! the policy in force allows. Anything a program cannot establish (an unset struct layout,
//! an unresolvable or over-long path, an unreadable identity, a missing policy) denies with
//! its own reason code. Audit mode turns a denial into an allow that is still recorded;
//! strict mode denies whatever could not be recorded.
#![no_std]
#![no_main]

mod attr;
mod capability;
mod cgroup;
mod cgroupfs;
mod decision;
mod exec;
mod file;
mod governance;
mod inode;
mod listen;
mod maps;
mod mmap;
mod mounts;
mod network;
mod object;
mod path;
mod receive;
mod scope;
mod socket;
mod system;
mod tree;
mod unix;
mod walk;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
