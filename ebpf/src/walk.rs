//! The path of a dentry or `struct path` in the hooks that may not call `bpf_d_path` (the
//! `path_*` hooks before Linux 6.3 or so, and the source of `path_link`, which has no
//! `struct path` at all): walks `d_parent` up to the task's root, crossing mount points
//! through `struct mount` as `d_path` does, then writes the names forwards into the path
//! scratch. A path with more than [`MAX_PARTS`] components, or
//! a walk longer than [`MAX_STEPS`], denies with `path-too-long`; a dentry that reaches
//! neither root (a disconnected tree) denies with `path-unresolvable`. [`walk_on_mount`]
//! serves the hooks that know no mount (`mounts`): there a tree root met before the mount's
//! root means the dentry is not under that mount.

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_task, generated::bpf_loop},
    macros::map,
    maps::PerCpuArray,
};
use rampart_common::{KernelLayout, Reason, PATH_BUF_BYTES, WALK_MAX_COMPONENTS};

use crate::{
    maps::layout,
    object::read_at,
    path::{area, copy_name, dentry_name, put_byte, scratch, NAME_MAX},
};

/// Components a walked path may have.
const MAX_PARTS: u32 = WALK_MAX_COMPONENTS;
/// Steps of a walk: components plus mount crossings.
const MAX_STEPS: u32 = 80;

/// The names met on the way up, leaf first. The count lives here, not in a register, so
/// that the verifier does not follow every (step, count) pair as a state of its own.
#[repr(C)]
pub struct WalkParts {
    name: [u64; MAX_PARTS as usize],
    len: [u32; MAX_PARTS as usize],
    count: u32,
    /// Emission: bytes written so far (here for the same reason as the count: a position
    /// on the stack is a new verifier state at every step of the emitting loop).
    pos: u32,
}

/// Reads the count back through a volatile load (an unknown, masked number to the
/// verifier).
fn count_of(parts: *mut WalkParts) -> u32 {
    // SAFETY: this CPU's walk scratch.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*parts).count)) }
}

fn set_count(parts: *mut WalkParts, count: u32) {
    // SAFETY: this CPU's walk scratch.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*parts).count), count) }
}

fn pos_of(parts: *mut WalkParts) -> u32 {
    // SAFETY: this CPU's walk scratch.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*parts).pos)) }
}

fn set_pos(parts: *mut WalkParts, pos: u32) {
    // SAFETY: this CPU's walk scratch.
    unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*parts).pos), pos) }
}

#[map(name = "WALK_PARTS")]
static WALK_PARTS: PerCpuArray<WalkParts> = PerCpuArray::with_max_entries(1, 0);

/// Writes the path of the entry `dentry` (a BTF-typed `struct dentry *`, never the root of
/// a mount: a new entry, or a file being linked) of a directory on the mount of `dir` (a
/// `struct path *` on that mount) into the path scratch; returns its length with the NUL.
pub fn walk_entry(dentry: *const u8, dir: *const u8, layout: &KernelLayout) -> Result<u32, Reason> {
    let parts = WALK_PARTS.get_ptr_mut(0).ok_or(Reason::PathUnresolvable)?;
    let (name, len) = dentry_name(dentry, layout)?;
    // SAFETY: this CPU's walk scratch.
    unsafe {
        (*parts).name[0] = name as u64;
        (*parts).len[0] = len;
    }
    set_count(parts, 1);
    let parent: *const u8 =
        read_at(dentry, layout.dentry_parent).ok_or(Reason::PathUnresolvable)?;
    let vfsmnt: *const u8 = read_at(dir, layout.path_mnt).ok_or(Reason::PathUnresolvable)?;
    walk_from(parts, parent, vfsmnt, false, layout)?.ok_or(Reason::PathUnresolvable)
}

/// Writes the path of a BTF-typed `struct path *` into the path scratch; returns its
/// length with the NUL.
pub fn walk_path(path: *const u8, layout: &KernelLayout) -> Result<u32, Reason> {
    let parts = WALK_PARTS.get_ptr_mut(0).ok_or(Reason::PathUnresolvable)?;
    set_count(parts, 0);
    let dentry: *const u8 = read_at(path, layout.path_dentry).ok_or(Reason::PathUnresolvable)?;
    let vfsmnt: *const u8 = read_at(path, layout.path_mnt).ok_or(Reason::PathUnresolvable)?;
    walk_from(parts, dentry, vfsmnt, false, layout)?.ok_or(Reason::PathUnresolvable)
}

/// Writes the path of `dentry` as seen through `vfsmnt` (a probe-read `struct vfsmount *`
/// of the dentry's superblock) into the path scratch; its length with the NUL, or `None`
/// if the dentry is not in that mount's tree (a bind mount of another directory).
pub fn walk_on_mount(
    dentry: *const u8,
    vfsmnt: *const u8,
    layout: &KernelLayout,
) -> Result<Option<u32>, Reason> {
    let parts = WALK_PARTS.get_ptr_mut(0).ok_or(Reason::PathUnresolvable)?;
    set_count(parts, 0);
    walk_from(parts, dentry, vfsmnt, true, layout)
}

/// Where a walk is (on the caller's stack: `bpf_loop` hands it to each step).
#[repr(C)]
struct Walk {
    dentry: u64,
    vfsmnt: u64,
    root_dentry: u64,
    root_mnt: u64,
    /// [`RUNNING`], [`DONE`], [`OUTSIDE`], or a [`Reason`] that ended it.
    outcome: u32,
    /// Non-zero: a tree root that is not the mount's root ends the walk as [`OUTSIDE`]
    /// (otherwise it is `path-unresolvable`).
    outside_ok: u32,
}

const RUNNING: u32 = u32::MAX;
const DONE: u32 = u32::MAX - 1;
/// The walk met the root of the dentry's tree without passing its mount's root.
const OUTSIDE: u32 = u32::MAX - 2;
/// `bpf_loop` callbacks: go on, or stop.
const GO_ON: i64 = 0;
const STOP: i64 = 1;

/// Walks up from `dentry` on `vfsmnt` (both probe-read: plain numbers to the verifier,
/// which allows no arithmetic on BTF-typed pointers the walk needs), after the names
/// already in `parts`, and writes the whole path (`None`: the dentry is outside the mount's
/// tree, reported only if `outside_ok`). Both loops run under `bpf_loop`, so the verifier
/// checks each step once instead of every iteration.
fn walk_from(
    parts: *mut WalkParts,
    dentry: *const u8,
    vfsmnt: *const u8,
    outside_ok: bool,
    layout: &KernelLayout,
) -> Result<Option<u32>, Reason> {
    let unresolvable = Reason::PathUnresolvable;
    // SAFETY: a helper call without arguments; the task pointer is only probe-read.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let fs: *const u8 = read_at(task, layout.task_fs).ok_or(unresolvable)?;
    let root_mnt: *const u8 = read_at(fs, layout.fs_root + layout.path_mnt).ok_or(unresolvable)?;
    let root_dentry: *const u8 =
        read_at(fs, layout.fs_root + layout.path_dentry).ok_or(unresolvable)?;
    let mut walk = Walk {
        dentry: dentry as u64,
        vfsmnt: vfsmnt as u64,
        root_dentry: root_dentry as u64,
        root_mnt: root_mnt as u64,
        outcome: RUNNING,
        outside_ok: outside_ok as u32,
    };
    let ctx = &mut walk as *mut Walk as *mut c_void;
    // SAFETY: `ctx` points at `walk` on this stack frame, alive for the whole call; the
    // callback only reads and writes it through that pointer.
    unsafe { bpf_loop(MAX_STEPS, step as *mut c_void, ctx, 0) };
    match walk.outcome {
        DONE => {}
        OUTSIDE => return Ok(None),
        // Steps ran out: deeper than any path this walk follows.
        RUNNING => return Err(Reason::PathTooLong),
        reason => return Err(Reason::from_raw(reason).unwrap_or(unresolvable)),
    }
    let base = area(scratch()?);
    let count = count_of(parts);
    if count == 0 {
        put_byte(base, 0, b'/');
        put_byte(base, 1, 0);
        return Ok(Some(2));
    }
    walk.outcome = RUNNING;
    set_pos(parts, 0);
    // SAFETY: as above.
    unsafe { bpf_loop(count, emit as *mut c_void, ctx, 0) };
    if walk.outcome != RUNNING {
        return Err(Reason::from_raw(walk.outcome).unwrap_or(unresolvable));
    }
    let end = pos_of(parts);
    if end >= PATH_BUF_BYTES as u32 {
        return Err(Reason::PathTooLong);
    }
    put_byte(base, end, 0);
    Ok(Some(end + 1))
}

/// One step up: a name, or a mount crossing, or the end.
extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    let walk = ctx as *mut Walk;
    // SAFETY: `ctx` is the `Walk` that `walk_from` passed to bpf_loop.
    let walk = unsafe { &mut *walk };
    match up(walk, layout()) {
        Ok(Up::On) => GO_ON,
        Ok(Up::AtRoot) => {
            walk.outcome = DONE;
            STOP
        }
        Ok(Up::Outside) => {
            walk.outcome = if walk.outside_ok != 0 {
                OUTSIDE
            } else {
                // A disconnected tree, where a path was expected.
                Reason::PathUnresolvable as u32
            };
            STOP
        }
        Err(reason) => {
            walk.outcome = reason as u32;
            STOP
        }
    }
}

/// Where one step up led.
enum Up {
    /// A name or a mount crossing further up.
    On,
    /// The task's root, or the root of the mount tree.
    AtRoot,
    /// The root of the dentry's tree, which is not the root of the mount walked.
    Outside,
}

/// Moves the walk one step up.
fn up(walk: &mut Walk, layout: &KernelLayout) -> Result<Up, Reason> {
    let unresolvable = Reason::PathUnresolvable;
    let parts = WALK_PARTS.get_ptr_mut(0).ok_or(unresolvable)?;
    let d = walk.dentry as *const u8;
    let vm = walk.vfsmnt as *const u8;
    if d.is_null() || vm.is_null() {
        return Err(unresolvable);
    }
    if walk.dentry == walk.root_dentry && walk.vfsmnt == walk.root_mnt {
        return Ok(Up::AtRoot);
    }
    let mnt_root: *const u8 = read_at(vm, layout.vfsmount_root).ok_or(unresolvable)?;
    if d == mnt_root {
        let mnt = vm.wrapping_sub(layout.mount_mnt as usize);
        let parent: *const u8 = read_at(mnt, layout.mount_parent).ok_or(unresolvable)?;
        if parent == mnt {
            // The root of the mount tree: the task's root lies elsewhere (as d_path, the
            // path is then the one from the global root).
            return Ok(Up::AtRoot);
        }
        let mountpoint: *const u8 = read_at(mnt, layout.mount_mountpoint).ok_or(unresolvable)?;
        walk.dentry = mountpoint as u64;
        walk.vfsmnt = parent.wrapping_add(layout.mount_mnt as usize) as u64;
        return Ok(Up::On);
    }
    let parent: *const u8 = read_at(d, layout.dentry_parent).ok_or(unresolvable)?;
    if parent == d {
        // The root of a tree that is not the root of its mount: disconnected, or (for a
        // dentry judged through each mount of its superblock) not under this mount.
        return Ok(Up::Outside);
    }
    let (name, len) = dentry_name(d, layout)?;
    let count = count_of(parts);
    // The index is masked before any check of the count, so that the compiler keeps the
    // mask the verifier needs; a count past the end is refused right after.
    let i = (count & (MAX_PARTS - 1)) as usize;
    // SAFETY: this CPU's walk scratch, index masked into its arrays.
    unsafe {
        (*parts).name[i] = name as u64;
        (*parts).len[i] = len;
    }
    if count >= MAX_PARTS {
        return Err(Reason::PathTooLong);
    }
    set_count(parts, count + 1);
    walk.dentry = parent as u64;
    Ok(Up::On)
}

/// Writes the `index`th name from the top: `/NAME` at the walk's position.
extern "C" fn emit(index: u64, ctx: *mut c_void) -> i64 {
    let walk = ctx as *mut Walk;
    // SAFETY: `ctx` is the `Walk` that `walk_from` passed to bpf_loop.
    let walk = unsafe { &mut *walk };
    match emit_one(index as u32) {
        Ok(()) => GO_ON,
        Err(reason) => {
            walk.outcome = reason as u32;
            STOP
        }
    }
}

fn emit_one(j: u32) -> Result<(), Reason> {
    let parts = WALK_PARTS.get_ptr_mut(0).ok_or(Reason::PathUnresolvable)?;
    let base = area(scratch()?);
    let count = count_of(parts);
    // Masked before the count is checked (see `up`).
    let i = (count.wrapping_sub(1).wrapping_sub(j) & (MAX_PARTS - 1)) as usize;
    // SAFETY: this CPU's walk scratch, index masked into its arrays.
    let (name, len) = unsafe { ((*parts).name[i] as *const u8, (*parts).len[i] & NAME_MAX) };
    if j >= count || count > MAX_PARTS {
        return Err(Reason::PathUnresolvable);
    }
    let pos = pos_of(parts);
    if pos + 1 + len + 1 > PATH_BUF_BYTES as u32 {
        return Err(Reason::PathTooLong);
    }
    put_byte(base, pos, b'/');
    copy_name(base, pos + 1, name, len)?;
    set_pos(parts, pos + 1 + len);
    Ok(())
}
