//! `rampart-vm-tests`: the scenario runner that runs inside the QEMU guest.
//!
//! - `rampart-vm-tests guest` runs what `rampart.mode=` on the kernel command line asks:
//!   the scenario suite (default; those named by `rampart.only=a,b`), `demo` or `bench`, and
//!   prints the console protocol.
//! - `rampart-vm-tests cg-exec CGROUP PATH [ARGS...]` moves itself into CGROUP, then execs
//!   PATH; if the exec fails it prints `cg-exec: errno=N` and exits 126. This is how a
//!   scenario makes exactly one exec happen inside a governed cgroup.
//! - `rampart-vm-tests op OP ARGS...` performs one action (open, io_uring open, exec through
//!   /proc/self/fd or a memfd, executable mapping, connect, send) and prints its result.
//! - `rampart-vm-tests probe` prints [`harness::observe::PROBE_OK`]; copies of this binary are the
//!   allowed and disallowed programs the scenarios execute.

mod harness;
mod modes;
mod ops;
mod receive_ops;
mod scenarios;
mod scope_ops;
mod serve_ops;
mod sys;
mod system_ops;

use std::{os::unix::process::CommandExt, process::ExitCode};

fn cg_exec(args: &[String]) -> ExitCode {
    let [cgroup, path, rest @ ..] = args else {
        eprintln!("usage: rampart-vm-tests cg-exec CGROUP PATH [ARGS...]");
        return ExitCode::from(2);
    };
    let procs = format!("{cgroup}/cgroup.procs");
    if let Err(e) = std::fs::write(&procs, std::process::id().to_string()) {
        eprintln!("cg-exec: cannot join {cgroup}: {e}");
        return ExitCode::from(125);
    }
    let err = std::process::Command::new(path).args(rest).exec();
    eprintln!("cg-exec: errno={}", err.raw_os_error().unwrap_or(-1));
    ExitCode::from(126)
}

/// Whether the kernel command line says `rampart.mode=MODE`.
fn mode_is(mode: &str) -> bool {
    std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| {
        c.split_whitespace()
            .any(|w| w.strip_prefix("rampart.mode=") == Some(mode))
    })
}

/// The guest's job, by mode.
fn guest() -> ExitCode {
    if mode_is("bench") {
        modes::bench::main()
    } else if mode_is("demo") {
        modes::demo::main()
    } else {
        modes::suite::run()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("guest") => guest(),
        Some("cg-exec") => cg_exec(&args[1..]),
        Some("op") => {
            let words: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            scope_ops::run(&words)
                .or_else(|| system_ops::run(&words))
                .or_else(|| serve_ops::run(&words))
                .or_else(|| receive_ops::run(&words))
                .map(sys::report)
                .or_else(|| ops::run(&args[1..]))
                .unwrap_or_else(|| {
                    eprintln!("usage: rampart-vm-tests op OP ARGS... (see vm-tests/src/ops.rs)");
                    ExitCode::from(2)
                })
        }
        Some("probe") => {
            println!("{}", harness::observe::PROBE_OK);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: rampart-vm-tests guest | cg-exec CGROUP PATH [ARGS...] | probe");
            ExitCode::from(2)
        }
    }
}
