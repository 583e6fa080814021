//! Lineage records: one JSON line each, a fixed header then the kind's fields, and the
//! hash that chains them.
//!
//! Invariant: a record's hash is computed over the exact bytes written (the line without
//! its newline), never over a re-serialisation, so verification needs no canonical form.

use serde::{Deserialize, Serialize};

use super::decision::DecisionRecord;
use crate::policy::resolutions::Resolutions;

/// BLAKE3 `derive_key` context of record hashes.
pub const RECORD_HASH_CONTEXT: &str = "rampart.dev 2026 lineage record v1";
/// `prev` of the very first record of a lineage.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hasher in derive-key mode for [`RECORD_HASH_CONTEXT`], built once (deriving the
/// context key per record would cost more than hashing the record).
static RECORD_HASHER: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(RECORD_HASH_CONTEXT));

/// The chain hash of one record line (without its trailing newline):
/// BLAKE3-derive-key([`RECORD_HASH_CONTEXT`], line).
pub fn record_hash(line: &[u8]) -> [u8; 32] {
    *RECORD_HASHER.clone().update(line).finalize().as_bytes()
}

/// Fields every record starts with, in this order.
#[derive(Debug, Clone, Serialize)]
pub struct Header<'a> {
    /// Position in the lineage: 0, 1, 2, ... across all segments, with no hole.
    pub seq: u64,
    /// Hex hash of the previous record ([`GENESIS`] for seq 0).
    pub prev: &'a str,
    /// Which segment file holds it (0, 1, ...).
    pub segment: u64,
    /// The kernel boot id (`/proc/sys/kernel/random/boot_id`).
    pub boot: &'a str,
    /// CLOCK_MONOTONIC ns (for decisions: the kernel's event time).
    pub mono_ns: u64,
    /// Wall clock, Unix ns.
    pub time_ns: u64,
    /// The policy version in force (for decisions: the version that decided).
    pub policy_version: u64,
}

/// Why events were lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GapReason {
    /// The kernel's ring buffer was full (counted by the kernel per event).
    RingBufferFull,
    /// The agent was not running.
    AgentDown,
    /// A record was cut short by a crash; the bytes are kept beside the segment.
    TornWrite,
    /// The disk refused writes long enough for the write buffer to fill.
    WriteFailed,
}

/// What a record says, by kind (the `kind` field).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Body<'a> {
    /// An agent began writing (first record of each of its segments chains on).
    AgentStart {
        agent_version: &'a str,
        host: &'a str,
        /// Random id of this lineage, fixed at its first record.
        lineage: &'a str,
        pid: u32,
        /// Hash of the previous head, if this continues an earlier lineage.
        #[serde(skip_serializing_if = "Option::is_none")]
        resumed_from: Option<&'a str>,
    },
    /// The agent stopped cleanly.
    AgentStop { reason: &'a str },
    /// A kernel decision.
    Decision(&'a DecisionRecord),
    /// A new policy is in force.
    PolicyChange {
        old_version: u64,
        new_version: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        old_digest: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        new_digest: Option<&'a str>,
        signers: &'a [String],
        policies: &'a [String],
        /// What the host's files answered while the policies compiled (canonical paths,
        /// pinned identities): with the archived bundle, the exact policy in force.
        #[serde(skip_serializing_if = "Option::is_none")]
        resolved: Option<&'a Resolutions>,
    },
    /// A policy was offered and refused; the policy in force did not change.
    PolicyRefused { code: &'a str, error: &'a str },
    /// The remote policy source (`policy.source`) stopped answering (`unreachable`, the
    /// first failed poll of an outage) or answers again (`reachable`); the policy in force
    /// did not change. Recorded once per outage, not per poll.
    PolicySource {
        source: &'a str,
        /// `unreachable` or `reachable`.
        state: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        /// With `reachable`: how long it was down, and how many polls failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        down_seconds: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        failed_polls: Option<u64>,
    },
    /// Events that were lost, with the exact count where the source counts them.
    Gap {
        source: &'a str,
        reason: GapReason,
        lost: u64,
        /// Wall clock window (Unix ns) in which they were lost.
        from_ns: u64,
        to_ns: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a str>,
    },
    /// `rampart release` detached every pinned program: nothing is enforced any more.
    Release {
        pin_dir: &'a str,
        links: u64,
        maps: u64,
        /// `terminal` (a client with a controlling terminal) or `break-glass-token`.
        authorised_by: &'a str,
        /// The token's nonce, reason and signers, when a token authorised it.
        #[serde(skip_serializing_if = "Option::is_none")]
        nonce: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        signers: &'a [String],
    },
    /// A control-socket client was refused (not root, or inside a governed cgroup): nothing
    /// it asked was done.
    ControlRefused {
        pid: i32,
        uid: u32,
        cgroup: &'a str,
        error: &'a str,
    },
    /// While the agent ran, one of its pins was removed or one of its links detached (by
    /// root outside every governed cgroup, or a bug): what was found, and whether the agent
    /// put it back (re-pinned from the descriptors it holds, or attached again).
    Tamper {
        /// `pin-removed` or `link-detached` (not `found`: `truncated` uses that name for
        /// a number).
        what: &'a str,
        /// The pin's path, or the program and where it was attached.
        object: &'a str,
        repaired: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    /// At this start the lineage held fewer records than its anchor (the last checkpoint,
    /// kept outside the lineage directory) covers, or is another lineage than the anchor's:
    /// it was cut back or replaced while no agent ran.
    Truncated {
        /// The lineage the anchor names.
        anchored_lineage: &'a str,
        /// Records the anchor covers, and the head it names.
        anchored_size: u64,
        anchored_head: &'a str,
        /// Records found at this start.
        found: u64,
    },
    /// A signed checkpoint over the first `size` records.
    Checkpoint {
        size: u64,
        /// Hex Merkle tree root over records 0 .. size - 1 (what the note signs).
        root: &'a str,
        /// Hex chain hash of record size - 1.
        head: &'a str,
        /// The signed note, exactly as also written to the checkpoint file.
        note: &'a str,
    },
}

/// Serialises a record line (without newline). Header fields come first, then `kind` and
/// the kind's fields.
pub fn encode(header: &Header<'_>, body: &Body<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(640);
    encode_into(&mut out, header, body);
    out
}

/// [`encode`], appended to `out`.
pub fn encode_into(out: &mut Vec<u8>, header: &Header<'_>, body: &Body<'_>) {
    use std::io::Write;
    // The header by hand (serde's flatten buffers every field); strings through serde_json
    // so they are escaped like any other, but for a hex `prev`, which needs no escaping.
    let _ = write!(out, "{{\"seq\":{},\"prev\":", header.seq);
    if header.prev.bytes().all(|b| b.is_ascii_alphanumeric()) {
        out.push(b'"');
        out.extend_from_slice(header.prev.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, header.prev);
    }
    let _ = write!(out, ",\"segment\":{},\"boot\":", header.segment);
    let _ = serde_json::to_writer(&mut *out, header.boot);
    let _ = write!(
        out,
        ",\"mono_ns\":{},\"time_ns\":{},\"policy_version\":{}",
        header.mono_ns, header.time_ns, header.policy_version
    );
    // The body is a JSON object starting with `{"kind":`; its `{` becomes the comma after
    // the header.
    let start = out.len();
    // Serialising these plain structs to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, body);
    if let Some(b) = out.get_mut(start) {
        *b = b',';
    }
}

/// The parts of a record verification reads (other fields are skipped, not trusted).
#[derive(Debug, Deserialize)]
pub struct Parsed<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub prev: &'a str,
    pub segment: u64,
    pub kind: &'a str,
    pub time_ns: u64,
    // Gap fields.
    #[serde(default)]
    pub lost: Option<u64>,
    #[serde(default)]
    pub reason: Option<&'a str>,
    // Checkpoint fields.
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub root: Option<&'a str>,
    #[serde(default)]
    pub head: Option<&'a str>,
    #[serde(default)]
    pub note: Option<String>,
    // Truncation fields.
    #[serde(default)]
    pub anchored_size: Option<u64>,
    #[serde(default)]
    pub found: Option<u64>,
}

/// Reads the fixed header of a record line directly (the writer writes it by hand, in this
/// order), up to the kind, for the records whose other fields verification does not read.
/// `None` when the line does not start exactly so (an escaped character in `boot`, another
/// order, a leading zero): the caller then parses it as JSON, which says what is wrong.
///
/// Also returns where the body (`"kind":...`) starts: the header read so is valid JSON by
/// construction (digits, and strings without quotes, escapes or control bytes), so the line
/// is one JSON object exactly when `{` followed by the body is.
pub fn fixed_header(line: &[u8]) -> Option<(Parsed<'_>, usize)> {
    struct Cursor<'a> {
        rest: &'a [u8],
    }
    impl<'a> Cursor<'a> {
        fn lit(&mut self, want: &[u8]) -> Option<()> {
            self.rest = self.rest.strip_prefix(want)?;
            Some(())
        }
        fn num(&mut self) -> Option<u64> {
            let digits = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
            let (d, rest) = self.rest.split_at(digits);
            if d.is_empty() || d.len() > 20 || (d.len() > 1 && d[0] == b'0') {
                return None;
            }
            let mut n: u64 = 0;
            for b in d {
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            }
            self.rest = rest;
            Some(n)
        }
        /// A string's bytes up to its closing quote, when it holds no escape or control byte.
        fn plain(&mut self, ok: impl Fn(u8) -> bool) -> Option<&'a str> {
            let end = self.rest.iter().position(|b| *b == b'"')?;
            let (s, rest) = self.rest.split_at(end);
            if !s.iter().all(|b| ok(*b)) {
                return None;
            }
            self.rest = &rest[1..];
            std::str::from_utf8(s).ok()
        }
    }
    let mut c = Cursor { rest: line };
    c.lit(b"{\"seq\":")?;
    let seq = c.num()?;
    c.lit(b",\"prev\":\"")?;
    let prev = c.plain(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))?;
    if prev.len() != 64 {
        return None;
    }
    c.lit(b",\"segment\":")?;
    let segment = c.num()?;
    c.lit(b",\"boot\":\"")?;
    c.plain(|b| b >= 0x20 && b != b'\\')?;
    c.lit(b",\"mono_ns\":")?;
    c.num()?;
    c.lit(b",\"time_ns\":")?;
    let time_ns = c.num()?;
    c.lit(b",\"policy_version\":")?;
    c.num()?;
    c.lit(b",")?;
    let body = line.len() - c.rest.len();
    c.lit(b"\"kind\":\"")?;
    let kind = c.plain(|b| b.is_ascii_lowercase() || b == b'-')?;
    let parsed = Parsed {
        seq,
        prev,
        segment,
        kind,
        time_ns,
        lost: None,
        reason: None,
        size: None,
        root: None,
        head: None,
        note: None,
        anchored_size: None,
        found: None,
    };
    Some((parsed, body))
}
