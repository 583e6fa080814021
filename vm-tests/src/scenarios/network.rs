//! Network: connect and addressed sends by CIDR, port and protocol (IPv4, IPv6, mapped).

use anyhow::{bail, Result};

use crate::harness::env::Env;
use crate::harness::observe::{op_in, want, want_denied, Outcome};

pub fn connect_judged(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    let refused = Outcome::Errno(libc::ECONNREFUSED);
    want(
        "tcp 127.0.0.1:8080 (allowed)",
        op_in(env, &g, &["connect", "127.0.0.1:8080/tcp"])?,
        refused,
    )?;
    let got = op_in(env, &g, &["connect", "127.0.0.1:22/tcp"])?;
    want_denied(
        env,
        "tcp 127.0.0.1:22",
        got,
        ("connect", "127.0.0.1:22/tcp", "access-not-granted"),
    )?;
    let got = op_in(env, &g, &["connect", "127.0.0.2:8080/tcp"])?;
    want_denied(
        env,
        "tcp 127.0.0.2:8080",
        got,
        ("connect", "127.0.0.2:8080/tcp", "no-rule"),
    )?;
    let ipv6 = op_in(env, &g, &["connect", "[::1]:9000/tcp"])?;
    if ipv6.denied() {
        bail!("tcp [::1]:9000 (allowed) got EPERM");
    }
    let got = op_in(env, &g, &["connect", "[::1]:9001/tcp"])?;
    want_denied(
        env,
        "tcp [::1]:9001",
        got,
        ("connect", "[::1]:9001/tcp", "access-not-granted"),
    )?;
    want(
        "tcp [::ffff:127.0.0.1]:8080 (mapped, allowed as IPv4)",
        op_in(env, &g, &["connect", "[::ffff:127.0.0.1]:8080/tcp"])?,
        refused,
    )?;
    let got = op_in(env, &g, &["connect", "[::ffff:127.0.0.2]:8080/tcp"])?;
    want_denied(
        env,
        "tcp [::ffff:127.0.0.2]:8080 (mapped)",
        got,
        ("connect", "127.0.0.2:8080/tcp", "no-rule"),
    )?;
    want(
        "udp connect 127.0.0.1:5353",
        op_in(env, &g, &["connect", "127.0.0.1:5353/udp"])?,
        Outcome::Ok,
    )?;
    let got = op_in(env, &g, &["connect", "127.0.0.1:8080/udp"])?;
    want_denied(
        env,
        "udp connect 127.0.0.1:8080 (tcp-only port)",
        got,
        ("connect", "127.0.0.1:8080/udp", "access-not-granted"),
    )?;
    want(
        "tcp 127.0.0.1:22 outside governance",
        op_in(
            env,
            &env.ungoverned.clone(),
            &["connect", "127.0.0.1:22/tcp"],
        )?,
        refused,
    )?;
    Ok(format!(
        "IPv4/IPv6/mapped connects judged by CIDR, port and protocol; [::1]:9000 gave {ipv6:?}"
    ))
}

pub fn send_judged(env: &mut Env) -> Result<String> {
    let g = env.governed.clone();
    want(
        "udp sendto 127.0.0.1:5353",
        op_in(env, &g, &["send", "127.0.0.1:5353/udp"])?,
        Outcome::Ok,
    )?;
    let got = op_in(env, &g, &["send", "127.0.0.1:53/udp"])?;
    want_denied(
        env,
        "udp sendto 127.0.0.1:53",
        got,
        ("send", "127.0.0.1:53/udp", "access-not-granted"),
    )?;
    let got = op_in(env, &g, &["send", "[::1]:5353/udp"])?;
    want_denied(
        env,
        "udp sendto [::1]:5353",
        got,
        ("send", "[::1]:5353/udp", "access-not-granted"),
    )?;
    want(
        "udp sendto [::ffff:127.0.0.1]:5353 (mapped)",
        op_in(env, &g, &["send", "[::ffff:127.0.0.1]:5353/udp"])?,
        Outcome::Ok,
    )?;
    Ok(
        "unconnected UDP sendto is judged like connect (sendmsg4/6), mapped addresses as IPv4"
            .into(),
    )
}
