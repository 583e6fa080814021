//! What every op shares: the one-line result it prints and the checks around a raw
//! system call. A leaf module: `ops` and `scope_ops` both build on it.

use std::{ffi::CString, process::ExitCode};

/// Prefix of an op's one-line result.
pub const OP: &str = "rampart-op: ";

/// Prints an op's result: `rampart-op: ok` or `rampart-op: errno=N`.
pub fn report(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => println!("{OP}ok"),
        Err(e) => println!("{OP}errno={}", e.raw_os_error().unwrap_or(-1)),
    }
    ExitCode::SUCCESS
}

/// A C string of an argument; an interior NUL is EINVAL, as the kernel would say.
pub fn cstr(s: &str) -> std::io::Result<CString> {
    CString::new(s).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// A raw system call's return value: negative means the errno in `errno`.
pub fn check(rc: i64) -> std::io::Result<i64> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
