//! Rampart's kernel programs.
//!
//! Every program is a thin entry that calls a `judge_*` function; the decision logic reads
//! as ordinary Rust. Inside a governed cgroup (or any descendant) the default is deny: only
//! a rule of the policy in force allows. Anything a program cannot establish (an unset
//! struct layout, an unresolvable or over-long path, an unreadable identity, a missing
//! policy) denies with its own reason code. Audit mode turns a denial into an allow that is
//! still recorded; strict mode denies whatever could not be recorded.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::path as KernelPath,
    cty::c_void,
    helpers::{
        bpf_d_path, bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_ktime_get_boot_ns,
            bpf_probe_read_kernel as probe_read_raw,
        },
    },
    macros::{cgroup_sock_addr, lsm, map},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    programs::{LsmContext, SockAddrContext},
};
use rampart_common::{
    access, policy_flags, Action, Decision, Event, FileId, KernelLayout, MapExecKey, Net4Key,
    Net6Key, NetRule, PathKey, PathRule, PolicyInfo, Reason, EVENT_PATH_BYTES, EVENT_RING_BYTES,
    MAP_EXEC_CACHE_ENTRIES, MAX_CGROUP_LEVELS, MAX_GOVERNED_CGROUPS, MAX_NET_RULES, MAX_PATH_RULES,
    MAX_POLICIES, NO_RULE, PATH_BUF_BYTES, PATH_KEY_BYTES, PORT_RANGES_PER_NET_RULE, REASON_COUNT,
};

/// `-EPERM` for LSM hooks.
const LSM_DENY: i32 = -1;
const LSM_ALLOW: i32 = 0;
/// cgroup sock_addr programs: 1 lets the call proceed, 0 fails it with EPERM.
const SOCK_ALLOW: i32 = 1;
const SOCK_DENY: i32 = 0;

const ENAMETOOLONG: i64 = 36;
const PROT_EXEC: u64 = 4;
const FMODE_READ: u32 = 0x1;
const FMODE_WRITE: u32 = 0x2;
const FMODE_EXEC: u32 = 0x20;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[map(name = "GOVERNED")]
static GOVERNED: HashMap<u64, u32> = HashMap::with_max_entries(MAX_GOVERNED_CGROUPS, 0);

#[map(name = "MAP_EXEC_ALLOWED")]
static MAP_EXEC_ALLOWED: LruHashMap<MapExecKey, u32> =
    LruHashMap::with_max_entries(MAP_EXEC_CACHE_ENTRIES, 0);

#[map(name = "POLICIES")]
static POLICIES: Array<PolicyInfo> = Array::with_max_entries(MAX_POLICIES, 0);

#[map(name = "PATH_RULES")]
static PATH_RULES: LpmTrie<PathKey, PathRule> = LpmTrie::with_max_entries(MAX_PATH_RULES, 0);

#[map(name = "NET4_RULES")]
static NET4_RULES: LpmTrie<Net4Key, NetRule> = LpmTrie::with_max_entries(MAX_NET_RULES, 0);

#[map(name = "NET6_RULES")]
static NET6_RULES: LpmTrie<Net6Key, NetRule> = LpmTrie::with_max_entries(MAX_NET_RULES, 0);

#[map(name = "DECISIONS")]
static DECISIONS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);

#[map(name = "EVENT_DROPS")]
static EVENT_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU scratch: `bpf_d_path` writes the path right after the key header, so the first
/// bytes are a ready-made `Key<PathKey>` for the trie lookup.
#[repr(C)]
struct PathScratch {
    prefix_len: u32,
    key: PathKey,
    tail: [u8; PATH_BUF_BYTES - PATH_KEY_BYTES],
}

#[map(name = "PATH_SCRATCH")]
static PATH_SCRATCH: PerCpuArray<PathScratch> = PerCpuArray::with_max_entries(1, 0);

/// Filled in by the agent from the running kernel's BTF before load (read-only data).
#[no_mangle]
static KERNEL_LAYOUT: KernelLayout = KernelLayout::UNSET;

/// What a decision was about, for its event.
struct Request {
    action: Action,
    access: u32,
    file: FileId,
    /// Length of the resolved path in the scratch buffer, 0 if none.
    path_len: u32,
    family: u32,
    port: u32,
    protocol: u32,
    addr: [u8; 16],
}

impl Request {
    /// A request with nothing resolved yet: the judge fills in the target.
    const fn new(action: Action, access: u32) -> Self {
        Self {
            action,
            access,
            file: FileId { dev: 0, ino: 0 },
            path_len: 0,
            family: 0,
            port: 0,
            protocol: 0,
            addr: [0; 16],
        }
    }
}

/// The policy slot governing the current task: that of its deepest governed cgroup.
fn governing_policy() -> Option<u32> {
    let mut found = None;
    let mut level = 0;
    while level < MAX_CGROUP_LEVELS {
        // SAFETY: a helper call with a scalar argument; it returns 0 past the task's depth.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        // SAFETY: the value is copied out at once.
        if let Some(policy) = unsafe { GOVERNED.get(id) } {
            found = Some(*policy);
        }
        level += 1;
    }
    found
}

/// The slot's policy, if it is fully loaded.
fn policy(id: u32) -> Option<PolicyInfo> {
    match POLICIES.get(id) {
        Some(info) if info.loaded != 0 => Some(*info),
        _ => None,
    }
}

fn layout() -> KernelLayout {
    // SAFETY: KERNEL_LAYOUT is a plain-data static; the volatile read stops the compiler from
    // folding in the compile-time placeholder, since the agent rewrites it before load.
    unsafe { core::ptr::read_volatile(&KERNEL_LAYOUT) }
}

// ---------------------------------------------------------------------------------------
// LSM programs
// ---------------------------------------------------------------------------------------

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    // The last argument of an LSM program is the verdict of the programs before it on this
    // hook: never turn an earlier denial into an allow.
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let bprm: *const u8 = ctx.arg(0);
    lsm_verdict(judge_file(
        bprm,
        FileFrom::Binprm,
        Action::Exec,
        access::RUN,
    ))
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    let file: *const u8 = ctx.arg(0);
    lsm_verdict(judge_file(file, FileFrom::Open, Action::Open, 0))
}

#[lsm(hook = "mmap_file")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(4);
    if previous != 0 {
        return previous;
    }
    let file: *const u8 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    // Anonymous memory is not a file to judge; only executable file mappings are.
    if file.is_null() || prot & PROT_EXEC == 0 {
        return LSM_ALLOW;
    }
    lsm_verdict(judge_file(
        file,
        FileFrom::File,
        Action::MapExec,
        access::EXEC,
    ))
}

/// `mprotect(PROT_EXEC)` on a file mapping: `bpf_d_path` is not allowed at this hook, so
/// the file is judged by identity: allowed only if an executable mapping of this very file
/// was allowed under the same policy slot (`mmap_file` records those). Anonymous memory is
/// not a file and is not judged.
#[lsm(hook = "file_mprotect")]
pub fn file_mprotect(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(3);
    if previous != 0 {
        return previous;
    }
    let vma: *const u8 = ctx.arg(0);
    let prot: u64 = ctx.arg(2);
    if vma.is_null() || prot & PROT_EXEC == 0 {
        return LSM_ALLOW;
    }
    let Some(policy_id) = governing_policy() else {
        return LSM_ALLOW;
    };
    let layout = layout();
    let mut request = Request::new(Action::MapExec, access::EXEC);
    if layout.valid == 0 {
        return lsm_verdict(conclude(policy_id, &request, Reason::LayoutUnset, NO_RULE));
    }
    let file = btf_ptr(vma, layout.vma_file);
    if file.is_null() {
        return LSM_ALLOW;
    }
    let (reason, rule) = match file_identity(file, &layout) {
        Some(id) => {
            request.file = id;
            let key = MapExecKey {
                policy: policy_id,
                _pad: 0,
                file: id,
            };
            // SAFETY: the value is copied out at once.
            match unsafe { MAP_EXEC_ALLOWED.get(key) } {
                Some(rule) => (Reason::Allowed, *rule),
                None => (Reason::MapExecUnverified, NO_RULE),
            }
        }
        None => (Reason::IdentityUnreadable, NO_RULE),
    };
    lsm_verdict(conclude(policy_id, &request, reason, rule))
}

fn lsm_verdict(allow: bool) -> i32 {
    if allow {
        LSM_ALLOW
    } else {
        LSM_DENY
    }
}

/// Where the `struct file` of a hook comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FileFrom {
    /// `struct linux_binprm *`: its `file`.
    Binprm,
    /// `struct file *` being opened: the access comes from its `f_mode`.
    Open,
    /// `struct file *`.
    File,
}

/// Judges an action on a file for the current task; true to allow.
fn judge_file(object: *const u8, from: FileFrom, action: Action, need: u32) -> bool {
    let Some(policy_id) = governing_policy() else {
        return true;
    };
    let layout = layout();
    let mut request = Request::new(action, need);
    if layout.valid == 0 {
        return conclude(policy_id, &request, Reason::LayoutUnset, NO_RULE);
    }
    let file = match from {
        FileFrom::Binprm => btf_ptr(object, layout.binprm_file),
        FileFrom::Open | FileFrom::File => object,
    };
    if from == FileFrom::Open {
        let mode = btf_u32(file, layout.file_mode);
        let mut need = 0;
        if mode & FMODE_READ != 0 {
            need |= access::READ;
        }
        if mode & FMODE_WRITE != 0 {
            need |= access::WRITE;
        }
        // The kernel opening a program or its ELF interpreter for execve: `open_exec` passes
        // __FMODE_EXEC in the open flags; f_mode only gains FMODE_EXEC on some kernels.
        let flags = btf_u32(file, layout.file_flags);
        if mode & FMODE_EXEC != 0 || flags & FMODE_EXEC != 0 {
            need |= access::EXEC;
            request.action = Action::Exec;
        }
        request.access = need;
    }
    let (reason, rule) = match file_identity(file, &layout) {
        Some(id) => {
            request.file = id;
            judge_path(file, policy_id, &layout, &mut request)
        }
        None => (Reason::IdentityUnreadable, NO_RULE),
    };
    if action == Action::MapExec && reason == Reason::Allowed {
        // Remember the file for a later mprotect(PROT_EXEC), which cannot resolve paths.
        let key = MapExecKey {
            policy: policy_id,
            _pad: 0,
            file: request.file,
        };
        let _ = MAP_EXEC_ALLOWED.insert(key, rule, 0);
    }
    conclude(policy_id, &request, reason, rule)
}

/// Resolves the file's path with `bpf_d_path` and looks it up in the policy's path rules.
fn judge_path(
    file: *const u8,
    policy_id: u32,
    layout: &KernelLayout,
    request: &mut Request,
) -> (Reason, u32) {
    let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) else {
        return (Reason::PathUnresolvable, NO_RULE);
    };
    if file.is_null() {
        return (Reason::PathUnresolvable, NO_RULE);
    }
    let path = file.wrapping_add(layout.file_path as usize) as *mut KernelPath;
    // SAFETY: `path` is `&file->f_path` of a BTF-typed `struct file *` (the verifier checks
    // the type), and the buffer is this CPU's scratch, PATH_BUF_BYTES long from `key.path`.
    let len = unsafe {
        let buf = core::ptr::addr_of_mut!((*scratch).key.path) as *mut i8;
        bpf_d_path(path, buf, PATH_BUF_BYTES as u32)
    };
    if len == -ENAMETOOLONG {
        return (Reason::PathTooLong, NO_RULE);
    }
    if len <= 0 || len as usize > PATH_BUF_BYTES {
        return (Reason::PathUnresolvable, NO_RULE);
    }
    request.path_len = len as u32;
    // Past PATH_KEY_BYTES only the leading bytes take part in the lookup: an exact-file rule
    // (which includes its NUL) cannot match them, a directory rule is a true prefix.
    let key_bytes = if (len as usize) < PATH_KEY_BYTES {
        len as u32
    } else {
        PATH_KEY_BYTES as u32
    };
    // SAFETY: this CPU's scratch, written only by this program invocation.
    let key = unsafe {
        (*scratch).prefix_len = 16 + key_bytes * 8;
        (*scratch).key.policy = (policy_id as u16).to_be_bytes();
        &*(scratch as *const Key<PathKey>)
    };
    let Some(rule) = PATH_RULES.get(key) else {
        return (Reason::NoRule, NO_RULE);
    };
    if rule.access & request.access != request.access {
        return (Reason::AccessNotGranted, rule.rule_id);
    }
    if request.access & access::RUN != 0 && rule.file != request.file {
        return (Reason::IdentityMismatch, rule.rule_id);
    }
    (Reason::Allowed, rule.rule_id)
}

/// Loads the pointer member at `offset` of a BTF-typed kernel object with a plain load,
/// so that the verifier keeps the result BTF-typed (which `bpf_d_path` requires).
fn btf_ptr(base: *const u8, offset: u32) -> *const u8 {
    if base.is_null() {
        return core::ptr::null();
    }
    // SAFETY: `base` is a BTF-typed pointer from the hook's arguments and `offset` a member
    // offset from the kernel's own BTF; the verifier turns this load into a fault-safe one.
    unsafe { *(base.wrapping_add(offset as usize) as *const *const u8) }
}

/// Loads the `u32` member at `offset` of a BTF-typed kernel object.
fn btf_u32(base: *const u8, offset: u32) -> u32 {
    // SAFETY: as in `btf_ptr`.
    unsafe { *(base.wrapping_add(offset as usize) as *const u32) }
}

/// `(s_dev, i_ino)` of `file->f_inode`.
fn file_identity(file: *const u8, layout: &KernelLayout) -> Option<FileId> {
    let inode: *const u8 = read_at(file, layout.file_inode)?;
    let ino: u64 = read_at(inode, layout.inode_ino)?;
    let sb: *const u8 = read_at(inode, layout.inode_sb)?;
    let dev: u32 = read_at(sb, layout.sb_dev)?;
    Some(FileId {
        dev: dev as u64,
        ino,
    })
}

/// Reads a `T` at `base + offset` in kernel memory; `None` for a null base or a failed read.
fn read_at<T>(base: *const u8, offset: u32) -> Option<T> {
    if base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel copies through the kernel's fault-handling path and
    // returns an error instead of faulting on a bad address.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }.ok()
}

// ---------------------------------------------------------------------------------------
// cgroup sock_addr programs
// ---------------------------------------------------------------------------------------

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Connect, false))
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Send, false))
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Connect, true))
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    sock_verdict(judge_inet(&ctx, Action::Send, true))
}

fn sock_verdict(allow: bool) -> i32 {
    if allow {
        SOCK_ALLOW
    } else {
        SOCK_DENY
    }
}

/// Judges a connect or addressed send; an IPv4-mapped IPv6 address is judged as IPv4.
/// Inlined so that each program gets its own copy with `v6` fixed.
#[inline(always)]
fn judge_inet(ctx: &SockAddrContext, action: Action, v6: bool) -> bool {
    let Some(policy_id) = governing_policy() else {
        return true;
    };
    let sa = ctx.sock_addr;
    // Each context field is read with its own fixed-offset load: the verifier refuses
    // loads through a context pointer that was moved.
    // SAFETY: `sa` is the program's context; the verifier checks each field access.
    let (port, protocol, words) = unsafe {
        use core::ptr::{addr_of, read_volatile};
        let words = if v6 {
            [
                read_volatile(addr_of!((*sa).user_ip6[0])),
                read_volatile(addr_of!((*sa).user_ip6[1])),
                read_volatile(addr_of!((*sa).user_ip6[2])),
                read_volatile(addr_of!((*sa).user_ip6[3])),
            ]
        } else {
            [0, 0, 0, read_volatile(addr_of!((*sa).user_ip4))]
        };
        (
            u16::from_be(read_volatile(addr_of!((*sa).user_port)) as u16),
            read_volatile(addr_of!((*sa).protocol)),
            words,
        )
    };
    let mapped_v4 = v6 && words[0] == 0 && words[1] == 0 && words[2] == 0xffffu32.to_be();
    let mut request = Request::new(action, 0);
    request.port = port as u32;
    request.protocol = protocol;
    let policy = (policy_id as u16).to_be_bytes();
    let rule = if !v6 || mapped_v4 {
        request.family = AF_INET;
        let addr = words[3].to_ne_bytes();
        request.addr[..4].copy_from_slice(&addr);
        let key = Key::new(
            48,
            Net4Key {
                policy,
                addr,
                _pad: [0; 2],
            },
        );
        NET4_RULES.get(&key)
    } else {
        request.family = AF_INET6;
        let mut addr = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            addr[i * 4..i * 4 + 4].copy_from_slice(&words[i].to_ne_bytes());
            i += 1;
        }
        request.addr = addr;
        let key = Key::new(
            144,
            Net6Key {
                policy,
                addr,
                _pad: [0; 2],
            },
        );
        NET6_RULES.get(&key)
    };
    let (reason, rule_id) = match rule {
        None => (Reason::NoRule, NO_RULE),
        Some(rule) => match port_rule(rule, port, protocol) {
            Some(id) => (Reason::Allowed, id),
            None => (Reason::AccessNotGranted, rule.rule_id),
        },
    };
    conclude(policy_id, &request, reason, rule_id)
}

/// The rule among `rule`'s port ranges that allows `port` over `protocol`.
fn port_rule(rule: &NetRule, port: u16, protocol: u32) -> Option<u32> {
    let mut i = 0;
    while i < PORT_RANGES_PER_NET_RULE {
        if i as u32 >= rule.count {
            break;
        }
        let r = &rule.ranges[i];
        if r.protocol == protocol && r.first <= port && port <= r.last {
            return Some(r.rule_id);
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------
// Decisions and events
// ---------------------------------------------------------------------------------------

/// Applies the policy's mode to a judgement, counts it, records it; true to allow.
fn conclude(policy_id: u32, request: &Request, reason: Reason, rule_id: u32) -> bool {
    let info = policy(policy_id);
    let (reason, rule_id, flags, version) = match info {
        // SAFETY: a helper call without arguments.
        Some(p)
            if p.expires_boot_ns != 0
                && unsafe { bpf_ktime_get_boot_ns() } >= p.expires_boot_ns =>
        {
            // Fail closed, whatever the rules say and whatever the policy's mode, unless
            // the host chose audit for expired policies.
            let flags = if p.flags & policy_flags::EXPIRED_AUDIT != 0 {
                p.flags | policy_flags::AUDIT
            } else {
                p.flags & !policy_flags::AUDIT
            };
            (Reason::PolicyExpired, NO_RULE, flags, p.version)
        }
        Some(p) if p.flags & policy_flags::NO_POLICY != 0 => {
            (Reason::PolicyMissing, NO_RULE, p.flags, p.version)
        }
        Some(p) => (reason, rule_id, p.flags, p.version),
        None => (Reason::PolicyMissing, NO_RULE, 0, 0),
    };
    count(reason);
    let decision = if !reason.denies() {
        Decision::Allow
    } else if flags & policy_flags::AUDIT != 0 {
        Decision::Audit
    } else {
        Decision::Deny
    };
    if decision != Decision::Allow || flags & policy_flags::EVENTS_ALL != 0 {
        let recorded = emit(policy_id, version, request, reason, decision, rule_id);
        if !recorded && flags & policy_flags::STRICT != 0 {
            count(Reason::EventUnrecorded);
            return false;
        }
    }
    decision != Decision::Deny
}

/// Writes a decision event; a full ring buffer is counted, never silent. True if written.
fn emit(
    policy_id: u32,
    version: u64,
    request: &Request,
    reason: Reason,
    decision: Decision,
    rule_id: u32,
) -> bool {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        increment(&EVENT_DROPS, 0);
        return false;
    };
    let e = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `e` points at a reserved, exclusively owned ring-buffer record of Event size;
    // every field is written before submit.
    unsafe {
        (*e).ktime_ns = bpf_ktime_get_ns();
        (*e).cgroup_id = bpf_get_current_cgroup_id();
        (*e).policy_version = version;
        (*e).file = request.file;
        (*e).pid = (pid_tgid >> 32) as u32;
        (*e).tid = pid_tgid as u32;
        (*e).uid = bpf_get_current_uid_gid() as u32;
        (*e).action = request.action as u32;
        (*e).reason = reason as u32;
        (*e).decision = decision as u32;
        (*e).rule_id = rule_id;
        (*e).access = request.access;
        (*e).policy_id = policy_id;
        (*e).path_len = request.path_len;
        (*e).family = request.family;
        (*e).port = request.port;
        (*e).protocol = request.protocol;
        (*e)._reserved = 0;
        (*e).addr = request.addr;
        (*e).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        let dst = core::ptr::addr_of_mut!((*e).path) as *mut c_void;
        let copied = match PATH_SCRATCH.get_ptr(0) {
            Some(scratch) if request.path_len > 0 => {
                let src = core::ptr::addr_of!((*scratch).key.path) as *const c_void;
                probe_read_raw(dst, EVENT_PATH_BYTES as u32, src) == 0
            }
            _ => false,
        };
        if !copied {
            (*e).path_len = 0;
            let words = dst as *mut u64;
            let mut i = 0;
            while i < EVENT_PATH_BYTES / 8 {
                core::ptr::write_volatile(words.add(i), 0);
                i += 1;
            }
        }
    }
    entry.submit(0);
    true
}

fn count(reason: Reason) {
    increment(&DECISIONS, reason as u32);
}

/// Adds one to this CPU's slot `index` of a per-CPU counter array.
fn increment(counters: &PerCpuArray<u64>, index: u32) {
    if let Some(slot) = counters.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot of this map, touched only by this CPU while we run.
        unsafe { *slot += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
