//! Host-native test of the network path: the real cgroup `connect4/6` and `sendmsg4/6`
//! programs on this machine's kernel (they need no BPF-LSM), judging a child process in a
//! real cgroup. Needs root, cgroup v2 and the embedded eBPF object; without them it prints
//! why it is skipped, and `cargo xtask test` (which sets RAMPART_REQUIRE_HOST_TESTS=1)
//! turns a skip into a failure.

use std::{
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
};

use rampart::{
    kernel::{
        btf::Btf,
        cgroup::{self, Cgroup},
        enforcer::{Enforcer, SlotInfo},
        events, layout, preflight,
    },
    policy::{compile, Literal, PolicySource},
};
use rampart_common::Reason;

#[derive(Clone, Copy, Debug)]
enum Act {
    Connect(SocketAddr),
    SendTo(SocketAddr),
}

/// Runs `act` in a child process that first joins the cgroup; returns 0 (done), the errno,
/// or -1 if it could not join.
fn in_cgroup(cg: &Cgroup, act: Act) -> i32 {
    let procs = cg.path.join("cgroup.procs");
    // SAFETY: fork in a test binary whose only other thread is the idle harness; the child
    // runs the action and leaves with _exit, never returning into the harness.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = match std::fs::write(&procs, "0") {
            Err(_) => 255,
            Ok(()) => match run(act) {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(254),
            },
        };
        // SAFETY: ends the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        255 => -1,
        n => n,
    }
}

fn run(act: Act) -> std::io::Result<()> {
    match act {
        Act::Connect(a) => TcpStream::connect(a).map(drop),
        Act::SendTo(a) => {
            let bind: SocketAddr = if a.is_ipv4() {
                "127.0.0.1:0".parse().unwrap()
            } else {
                "[::1]:0".parse().unwrap()
            };
            UdpSocket::bind(bind)?.send_to(b"x", a).map(drop)
        }
    }
}

#[test]
fn cgroup_network_programs_judge_a_governed_child() {
    if let Some(why) = preflight::native_unavailable() {
        if std::env::var_os("RAMPART_REQUIRE_HOST_TESTS").is_some() {
            panic!("host-native network test required but cannot run: {why}");
        }
        eprintln!("host-native network test SKIPPED: {why}");
        return;
    }
    let tcp_ok = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_no = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp_ok = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_no = UdpSocket::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").ok();
    let port = |a: SocketAddr| a.port();
    let (a_ok, a_no) = (tcp_ok.local_addr().unwrap(), tcp_no.local_addr().unwrap());
    let (u_ok, u_no) = (udp_ok.local_addr().unwrap(), udp_no.local_addr().unwrap());

    let root = cgroup::hierarchy_root().unwrap();
    let name = format!("rampart-hosttest-{}", std::process::id());
    let dir: PathBuf = root.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let cg = Cgroup::resolve(&root, &format!("/{name}")).unwrap();
    let mut v6_rule = String::new();
    if let Some(l) = &v6 {
        v6_rule = format!(
            "    - cidr: ::1/128\n      ports: [{}]\n      protocol: tcp\n",
            l.local_addr().unwrap().port()
        );
    }
    let yaml = format!(
        "apiVersion: rampart.dev/v1alpha1
kind: Policy
metadata:
  name: host-net
spec:
  governs: [/{name}]
  network:
    - cidr: 127.0.0.1/32
      ports: [{}]
      protocol: tcp
    - cidr: 127.0.0.1/32
      ports: [{}]
      protocol: udp
{v6_rule}",
        port(a_ok),
        port(u_ok)
    );
    let source = PolicySource::parse("host-net.yaml", &yaml).unwrap();
    let policy = compile(&source.documents[0], "host-net.yaml", &Literal).unwrap();

    let raw = Btf::from_sys_fs().unwrap();
    let layout = layout::resolve(&Btf::parse(&raw).unwrap()).unwrap();
    let mut enforcer = Enforcer::load_network_only(&layout).unwrap();
    enforcer.install(0, SlotInfo::default(), &policy).unwrap();
    enforcer.attach_network(&cg).unwrap();
    enforcer.govern(&cg, 0).unwrap();

    let mapped = |a: SocketAddr| -> SocketAddr {
        format!("[::ffff:127.0.0.1]:{}", a.port()).parse().unwrap()
    };
    let mut cases = vec![
        ("tcp to the allowed port", Act::Connect(a_ok), 0),
        ("tcp to another port", Act::Connect(a_no), libc::EPERM),
        ("udp sendto the allowed port", Act::SendTo(u_ok), 0),
        ("udp sendto another port", Act::SendTo(u_no), libc::EPERM),
        ("udp sendto a tcp-only port", Act::SendTo(a_ok), libc::EPERM),
        (
            "tcp to an unlisted address",
            Act::Connect("127.0.0.2:9".parse().unwrap()),
            libc::EPERM,
        ),
    ];
    if let Some(l) = &v6 {
        let a6 = l.local_addr().unwrap();
        cases.push(("tcp over IPv6 to the allowed port", Act::Connect(a6), 0));
        cases.push((
            "tcp to IPv4-mapped allowed address",
            Act::Connect(mapped(a_ok)),
            0,
        ));
        cases.push((
            "tcp to IPv4-mapped other port",
            Act::Connect(mapped(a_no)),
            libc::EPERM,
        ));
    } else {
        eprintln!("IPv6 loopback unavailable: IPv6 and mapped cases not run");
    }
    let mut failures = Vec::new();
    let mut denied = 0;
    for (what, act, want) in &cases {
        let got = in_cgroup(&cg, *act);
        if got != *want {
            failures.push(format!("{what}: got {got}, expected {want}"));
        }
        denied += u64::from(*want == libc::EPERM);
        // Outside the cgroup nothing is judged (the unlisted address has no listener).
        let (Act::Connect(a) | Act::SendTo(a)) = act;
        if a.ip() != "127.0.0.2".parse::<std::net::IpAddr>().unwrap() {
            if let Err(e) = run(*act) {
                failures.push(format!("{what}, outside the cgroup: {e}"));
            }
        }
    }
    // The kernel counted each denial, and wrote an event for each.
    let counted: u64 = enforcer
        .decisions()
        .unwrap()
        .iter()
        .filter(|(r, _)| r.denies())
        .map(|(_, n)| n)
        .sum();
    let mut ring = enforcer.take_events().unwrap();
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        events.push(events::parse(&item).unwrap());
    }
    drop(ring);
    drop(enforcer);
    let _ = std::fs::remove_dir(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(counted, denied, "denials counted by the kernel");
    assert_eq!(
        events.len() as u64,
        denied,
        "one event per denial: {events:?}"
    );
    assert!(events
        .iter()
        .all(|e| e.decision == "deny" && Some(e.cgroup_id) == cg.id && e.endpoint.is_some()));
    assert!(events
        .iter()
        .any(|e| e.reason == Reason::AccessNotGranted.name()));
    assert!(events.iter().any(|e| e.reason == Reason::NoRule.name()));
}
