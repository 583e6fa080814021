//! Serving (issue 17): a governed workload binds and listens only at the local addresses
//! and ports `spec.listen` names (no bind shell, no relay on a port of its choosing); a
//! client's bind to port 0 stays allowed, a listen is judged where the socket is bound
//! (also when the kernel picks the port), and ungoverned tasks are not affected.

use anyhow::Result;

use crate::harness::{
    env::Env,
    observe::{op_in, want, want_denied, Failures, Outcome},
};

pub fn bind_and_listen_only_where_spec_listen_says(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let mut failures = Failures::default();
    let allowed = [
        (
            "TCP listen on 127.0.0.1:7000 (listed)",
            "bind-listen",
            "127.0.0.1:7000/tcp",
        ),
        (
            "UDP bind on 0.0.0.0:7001 (listed)",
            "bind",
            "0.0.0.0:7001/udp",
        ),
        (
            "TCP listen on [::1]:7002 (every port of ::1)",
            "bind-listen",
            "[::1]:7002/tcp",
        ),
        (
            "a client's TCP bind to 127.0.0.1:0",
            "bind",
            "127.0.0.1:0/tcp",
        ),
        (
            "TCP listen on [::1]:0 (the kernel's port, every port listed)",
            "bind-listen",
            "[::1]:0/tcp",
        ),
    ];
    for (what, op, ep) in allowed {
        failures.note(want(what, op_in(env, &g, &[op, ep])?, Outcome::Ok));
    }
    // (what, op, argument, event action, event target, reason)
    let denied = [
        (
            "TCP bind on 127.0.0.1:7002 (another port)",
            "bind",
            "127.0.0.1:7002/tcp",
            "bind",
            "127.0.0.1:7002/tcp",
            "access-not-granted",
        ),
        (
            "TCP bind on 0.0.0.0:7000 (every address: only UDP 7001 there)",
            "bind",
            "0.0.0.0:7000/tcp",
            "bind",
            "0.0.0.0:7000/tcp",
            "access-not-granted",
        ),
        (
            "UDP bind on 127.0.0.1:7003",
            "bind",
            "127.0.0.1:7003/udp",
            "bind",
            "127.0.0.1:7003/udp",
            "access-not-granted",
        ),
        (
            "TCP bind on [::]:7000 (no rule for ::)",
            "bind",
            "[::]:7000/tcp",
            "bind",
            "[::]:7000/tcp",
            "no-rule",
        ),
        (
            "TCP listen after a bind to 127.0.0.1:0 (the kernel's port is not 7000)",
            "bind-listen",
            "127.0.0.1:0/tcp",
            "listen",
            "127.0.0.1:*",
            "access-not-granted",
        ),
        (
            "TCP listen on a socket never bound",
            "listen-unbound",
            "inet",
            "listen",
            "0.0.0.0:0/tcp",
            "access-not-granted",
        ),
    ];
    for (what, op, arg, action, target, reason) in denied {
        let got = op_in(env, &g, &[op, arg])?;
        failures.note(want_denied(env, what, got, (action, target, reason)));
    }
    let free = env.ungoverned.clone();
    failures.note(want(
        "an ungoverned TCP listen on 127.0.0.1:7002",
        op_in(env, &free, &["bind-listen", "127.0.0.1:7002/tcp"])?,
        Outcome::Ok,
    ));
    failures.check()?;
    Ok(format!(
        "{} binds and listens spec.listen names allowed (client port 0 too); {} denied and recorded (other ports, the wildcard address, UDP, ::, a listen on the kernel's port, an unbound listen); ungoverned unchanged",
        allowed.len(),
        denied.len()
    ))
}
