//! Kernel decision events: parsed from ring-buffer bytes (outside input: length-checked, no
//! trust in enum values) into records that serialise as one JSON line each.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rampart_common::{Action, Decision, Event, Reason, EVENT_PATH_BYTES, NO_RULE};
use thiserror::Error;

use super::event_access;
use crate::{
    lineage::decision::DecisionRecord,
    policy::{compile::access_names, explain},
};

/// Why ring-buffer bytes were not an event.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    /// The record is not the size of an [`Event`].
    #[error("event record is {0} bytes, expected {expected}", expected = std::mem::size_of::<Event>())]
    BadSize(usize),
}

fn action_of(raw: u32) -> Option<Action> {
    Action::from_raw(raw)
}

fn decision_of(raw: u32) -> Option<Decision> {
    [Decision::Allow, Decision::Deny, Decision::Audit]
        .into_iter()
        .find(|d| *d as u32 == raw)
}

fn endpoint(e: &Event) -> Option<String> {
    let ip = match e.family {
        2 => IpAddr::V4(Ipv4Addr::new(e.addr[0], e.addr[1], e.addr[2], e.addr[3])),
        10 => IpAddr::V6(Ipv6Addr::from(e.addr)),
        _ => return None,
    };
    let proto = match e.protocol {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        n => format!("proto{n}"),
    };
    Some(match ip {
        IpAddr::V4(v4) => format!("{v4}:{}/{proto}", e.port),
        IpAddr::V6(v6) => format!("[{v6}]:{}/{proto}", e.port),
    })
}

/// Decodes one ring-buffer record. Unknown action, reason or decision numbers are kept
/// visible as "unknown" rather than rejected: a decision happened and must not vanish.
pub fn parse(bytes: &[u8]) -> Result<DecisionRecord, EventError> {
    if bytes.len() != std::mem::size_of::<Event>() {
        return Err(EventError::BadSize(bytes.len()));
    }
    // SAFETY: the length equals size_of::<Event>(), Event is plain integers (every bit
    // pattern valid), and read_unaligned has no alignment requirement.
    let e: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Event>()) };
    let action = action_of(e.action);
    let is_file = action.is_some_and(Action::is_file);
    let path = (e.path_len > 0).then(|| {
        let n = (e.path_len as usize - 1).min(EVENT_PATH_BYTES);
        let bytes = &e.path[..n];
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(n);
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    });
    let comm_len = e.comm.iter().position(|&b| b == 0).unwrap_or(e.comm.len());
    Ok(DecisionRecord {
        ktime_ns: e.ktime_ns,
        pid: e.pid,
        tid: e.tid,
        uid: e.uid,
        comm: String::from_utf8_lossy(&e.comm[..comm_len]).into_owned(),
        cgroup_id: e.cgroup_id,
        action: action.map_or("unknown", explain::action_name),
        decision: decision_of(e.decision).map_or("unknown", explain::decision_name),
        reason: Reason::from_raw(e.reason).map_or("unknown", Reason::name),
        rule_id: (e.rule_id != NO_RULE).then_some(e.rule_id),
        policy_id: e.policy_id,
        policy_version: e.policy_version,
        policy: None,
        rule: None,
        bundle: None,
        access: match action {
            Some(Action::Socket) => Some(explain::socket_name(e.family, e.access, e.protocol)),
            Some(Action::Capability) => Some(explain::capability_name(e.access)),
            Some(a) if a.is_file() => Some(access_names(e.access)),
            Some(a) => event_access::describe(a, e.access),
            None => None,
        },
        path,
        path_truncated: e.path_len as usize > EVENT_PATH_BYTES + 1,
        file_dev: is_file.then_some(e.file.dev),
        file_ino: is_file.then_some(e.file.ino),
        // A socket event's family and protocol describe the socket, not an address.
        endpoint: (action != Some(Action::Socket))
            .then(|| endpoint(&e))
            .flatten(),
        peer_pid: matches!(action, Some(Action::Signal | Action::Ptrace)).then_some(e.peer_pid),
    })
}

/// The event ring, registered with the tokio reactor so the daemon wakes when the kernel
/// writes an event.
pub type EventRing = tokio::io::unix::AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>;

/// Registers the ring buffer taken from the enforcer for readiness polling.
pub fn watch_ring(ring: aya::maps::RingBuf<aya::maps::MapData>) -> std::io::Result<EventRing> {
    // SAFETY: the RingBuf owns its map's file descriptor (an OwnedFd inside MapData) for as
    // long as it lives, and as_raw_fd() always returns that same descriptor; the AsyncFd
    // owns the RingBuf, so the descriptor outlives the registration.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use rampart_common::{access, FileId};

    use super::*;

    fn bytes_of(e: &Event) -> Vec<u8> {
        let n = std::mem::size_of::<Event>();
        // SAFETY: Event is repr(C) plain data without padding; viewing it as bytes is sound.
        unsafe { std::slice::from_raw_parts((e as *const Event).cast::<u8>(), n) }.to_vec()
    }

    fn sample() -> Event {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        let mut path = [0u8; EVENT_PATH_BYTES];
        path[..9].copy_from_slice(b"/bin/curl");
        Event {
            ktime_ns: 42,
            cgroup_id: 7,
            policy_version: 3,
            file: FileId {
                dev: 1 << 20,
                ino: 99,
            },
            pid: 100,
            tid: 101,
            uid: 1000,
            action: Action::Exec as u32,
            reason: Reason::NoRule as u32,
            decision: Decision::Deny as u32,
            rule_id: NO_RULE,
            access: access::READ | access::EXEC,
            policy_id: 0,
            path_len: 10,
            family: 0,
            port: 0,
            protocol: 0,
            peer_pid: 0,
            addr: [0; 16],
            comm,
            path,
        }
    }

    #[test]
    fn signal_and_bpf_events_carry_their_peer_and_command() {
        let mut e = sample();
        e.action = Action::Signal as u32;
        e.path_len = 0;
        e.peer_pid = 4242;
        let r = parse(&bytes_of(&e)).unwrap();
        assert_eq!(
            (r.action, r.peer_pid, r.access),
            ("signal", Some(4242), None)
        );
        assert_eq!((r.file_dev, r.file_ino), (None, None));
        e.action = Action::Bpf as u32;
        e.access = 7;
        let r = parse(&bytes_of(&e)).unwrap();
        assert_eq!((r.action, r.peer_pid), ("bpf", None));
        assert_eq!(r.access.as_deref(), Some("obj-get"));
        e.access = 99;
        assert_eq!(
            parse(&bytes_of(&e)).unwrap().access.as_deref(),
            Some("cmd-99")
        );
    }

    #[test]
    fn socket_events_name_the_socket_not_an_endpoint() {
        let mut e = sample();
        e.action = Action::Socket as u32;
        e.path_len = 0;
        (e.family, e.access, e.protocol) = (2, 3, 1);
        let r = parse(&bytes_of(&e)).unwrap();
        assert_eq!(
            (r.action, r.access.as_deref(), r.endpoint),
            ("socket", Some("inet/raw/1"), None)
        );
        (e.family, e.access, e.protocol) = (99, 9, 0);
        let r = parse(&bytes_of(&e)).unwrap();
        assert_eq!(r.access.as_deref(), Some("family-99/type-9/0"));
    }

    #[test]
    fn parses_a_denial() {
        let r = parse(&bytes_of(&sample())).unwrap();
        assert_eq!(r.comm, "curl");
        assert_eq!(
            (r.action, r.decision, r.reason),
            ("exec", "deny", "no-rule")
        );
        assert_eq!((r.pid, r.tid, r.uid, r.cgroup_id), (100, 101, 1000, 7));
        assert_eq!(r.path.as_deref(), Some("/bin/curl"));
        assert_eq!(r.access.as_deref(), Some("read,exec"));
        assert_eq!(
            (r.file_dev, r.file_ino, r.rule_id),
            (Some(1 << 20), Some(99), None)
        );
        assert_eq!((r.policy_version, r.endpoint), (3, None));
    }

    #[test]
    fn parses_a_network_denial() {
        let mut e = sample();
        e.action = Action::Connect as u32;
        e.path_len = 0;
        e.family = 10;
        e.port = 443;
        e.protocol = 6;
        e.addr = std::net::Ipv6Addr::LOCALHOST.octets();
        let r = parse(&bytes_of(&e)).unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("[::1]:443/tcp"));
        assert_eq!((r.path, r.access, r.file_ino), (None, None, None));
    }

    #[test]
    fn long_paths_are_marked_truncated() {
        let mut e = sample();
        e.path = [b'a'; EVENT_PATH_BYTES];
        e.path_len = 4000;
        let r = parse(&bytes_of(&e)).unwrap();
        assert!(r.path_truncated);
        assert_eq!(r.path.map(|p| p.len()), Some(EVENT_PATH_BYTES));
    }

    #[test]
    fn unknown_numbers_are_visible() {
        let mut e = sample();
        e.reason = 9999;
        e.decision = 77;
        let r = parse(&bytes_of(&e)).unwrap();
        assert_eq!((r.decision, r.reason), ("unknown", "unknown"));
    }

    #[test]
    fn wrong_sizes_are_rejected() {
        let raw = bytes_of(&sample());
        let n = raw.len();
        assert_eq!(parse(&raw[..n - 1]), Err(EventError::BadSize(n - 1)));
        assert_eq!(parse(&[]), Err(EventError::BadSize(0)));
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(parse(&long), Err(EventError::BadSize(n + 1)));
    }

    #[test]
    fn serialises_as_one_json_line() {
        let line = serde_json::to_string(&parse(&bytes_of(&sample())).unwrap()).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""reason":"no-rule""#), "{line}");
        assert!(line.contains(r#""rule_id":null"#), "{line}");
    }
}
