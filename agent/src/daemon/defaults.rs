//! Every default of the daemon and the CLI, stated once: the configuration file's serde
//! defaults and the flags' clap defaults both read these.

use std::time::Duration;

/// The configuration file `rampart run` reads when given no policy flags.
pub const CONFIG_FILE: &str = "/etc/rampart/rampart.toml";
/// The anti-rollback state directory.
pub const STATE_DIR: &str = "/var/lib/rampart";
/// Where programs, links and maps are pinned (bpffs).
pub const PIN_DIR: &str = "/sys/fs/bpf/rampart";
/// The daemon's control socket.
pub const CONTROL_SOCKET: &str = "/run/rampart/control.sock";
/// How far in the future a bundle's issue time may be (a signer's clock ahead of ours).
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// A lineage checkpoint after this many records...
pub const CHECKPOINT_EVERY: u64 = 10_000;
/// ...or this long after the last one.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);
/// A new lineage segment past this many bytes.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Between polls of a remote policy source.
pub const POLL_INTERVAL: Duration = Duration::from_secs(300);
