//! Clocks and times for people: Unix seconds, RFC 3339, and the kernel's clocks.

use std::time::{Duration, UNIX_EPOCH};

use crate::kernel::sys::{self, Clock};

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A Unix time in seconds as RFC 3339 UTC, for people.
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// A Unix time in nanoseconds as RFC 3339 UTC with milliseconds, for people.
pub fn rfc3339_ns(unix_ns: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_nanos(unix_ns)).to_string()
}

/// CLOCK_BOOTTIME now, in nanoseconds (the clock `bpf_ktime_get_boot_ns` reads, on which
/// policy expiry is enforced).
pub fn boot_ns() -> std::io::Result<u64> {
    sys::clock_ns(Clock::Boottime)
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock of kernel event timestamps).
pub fn mono_ns() -> std::io::Result<u64> {
    sys::clock_ns(Clock::Monotonic)
}

/// The wall clock now, in Unix nanoseconds.
pub fn realtime_ns() -> std::io::Result<u64> {
    sys::clock_ns(Clock::Realtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_seconds_and_millis() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_000_000), "2025-11-24T16:00:00Z");
        assert_eq!(rfc3339_ns(1_500_000_000), "1970-01-01T00:00:01.500Z");
    }
}
