//! Verifying a lineage: every hash, link, seq, segment and checkpoint signature.
//!
//! Invariant: the report says "intact" only when every record chains to the one before it
//! with contiguous seqs across contiguous segments, every checkpoint (in the lineage and in
//! an off-host checkpoint file) is signed by the host key and its root is the Merkle root of
//! the records it covers (or, for a checkpoint written before the tree, the chain head), and no
//! agent recorded that it found the lineage cut back (`truncated`).

use std::{
    collections::BTreeMap,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    note::{self, Checkpoint},
    record::{fixed_header, record_hash, Parsed},
    segment::{segment_path, segments},
    tree::{leaf_hash, Frontier},
};
use crate::bundle::keys::{hex, PublicKey};

/// The first thing found wrong.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tamper {
    /// The first seq that cannot be trusted.
    pub seq: u64,
    pub segment: u64,
    pub reason: String,
}

/// What verification established.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Records that verified, from seq 0.
    pub records: u64,
    pub segments: u64,
    /// Records covered by the largest verified checkpoint.
    pub anchored: u64,
    /// Checkpoints verified in the lineage and from the checkpoint file.
    pub checkpoints: u64,
    pub external_checkpoints: u64,
    /// Records after the last checkpoint (checkpoint records themselves excluded).
    pub unanchored_tail: u64,
    pub gaps: u64,
    pub lost: u64,
    pub restarts: u64,
    /// Partial lines kept aside by recovery (`*.torn-*`), and a partial line at the end.
    pub torn: Vec<PathBuf>,
    pub tampered: Option<Tamper>,
}

impl Report {
    /// 0 intact, 1 tampered, 2 unanchored tail, 3 gaps (or torn lines kept aside).
    pub fn exit_code(&self) -> u8 {
        if self.tampered.is_some() {
            1
        } else if self.unanchored_tail > 0 {
            2
        } else if self.gaps > 0 || !self.torn.is_empty() {
            3
        } else {
            0
        }
    }
}

/// Signed notes in a checkpoint file: each is body lines, a blank line, signature lines,
/// then a blank line.
pub fn split_notes(text: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let mut current = String::new();
    let mut blanks = 0;
    for line in text.split_inclusive('\n') {
        if line == "\n" {
            blanks += 1;
            if blanks == 2 {
                notes.push(std::mem::take(&mut current));
                blanks = 0;
                continue;
            }
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        notes.push(current);
    }
    notes
}

struct State<'k> {
    key: &'k PublicKey,
    report: Report,
    /// The hash of the last record verified (zeros before the first).
    head: [u8; 32],
    frontier: Frontier,
    /// Stored hashes of the last push (verification needs only the frontier).
    scratch: Vec<u8>,
    /// What external checkpoints must match: size -> (tree root, chain head) at that size.
    wanted: BTreeMap<u64, Option<([u8; 32], String)>>,
    origin: Option<String>,
    last_checkpoint_seq: Option<u64>,
    starts: u64,
}

impl State<'_> {
    fn tamper(&mut self, seq: u64, segment: u64, reason: String) {
        if self.report.tampered.is_none() {
            self.report.tampered = Some(Tamper {
                seq,
                segment,
                reason,
            });
        }
    }

    /// Checks one record at the expected position; false stops verification.
    fn record(&mut self, facts: Facts<'_>, segment: u64) -> bool {
        let expected = self.report.records;
        let raw = facts.hash;
        let parsed = match &facts.parsed {
            Ok(p) => p,
            Err(e) => {
                self.tamper(expected, segment, e.clone());
                return false;
            }
        };
        if parsed.seq != expected {
            self.tamper(
                expected,
                segment,
                format!(
                    "expected seq {expected}, found seq {}: a record was deleted, inserted or \
                     reordered here",
                    parsed.seq
                ),
            );
            return false;
        }
        if facts.prev != Some(self.head) {
            let (seq, reason) = if expected == 0 {
                (
                    0,
                    "the first record does not start from the genesis hash".into(),
                )
            } else {
                (
                    expected - 1,
                    format!(
                        "record {} was altered: its hash is not the prev of record {expected}",
                        expected - 1
                    ),
                )
            };
            self.tamper(seq, segment, reason);
            return false;
        }
        if parsed.segment != segment {
            self.tamper(
                expected,
                segment,
                format!(
                    "record says segment {}, but is in segment {segment}",
                    parsed.segment
                ),
            );
            return false;
        }
        match parsed.kind {
            "gap" => {
                self.report.gaps += 1;
                self.report.lost += parsed.lost.unwrap_or(0);
            }
            "agent-start" => self.starts += 1,
            // Recorded by an agent that found the lineage cut back (or replaced) while no
            // agent ran: what was cut cannot be trusted to have said what it should.
            "truncated" => self.tamper(
                expected,
                segment,
                format!(
                    "at this start the lineage held {} records where its anchor (the last \
                     checkpoint, kept outside the lineage directory) covers {}: it was cut \
                     back or replaced while no agent ran",
                    parsed.found.unwrap_or(0),
                    parsed.anchored_size.unwrap_or(0)
                ),
            ),
            "checkpoint" => {
                if let Err(reason) = self.checkpoint(parsed, expected) {
                    self.tamper(expected, segment, reason);
                    return false;
                }
                self.report.checkpoints += 1;
                self.last_checkpoint_seq = Some(expected);
            }
            _ => {}
        }
        self.head = raw;
        self.report.records += 1;
        self.frontier.push(leaf_hash(&raw), &mut self.scratch);
        self.scratch.clear();
        if let Some(slot) = self.wanted.get_mut(&self.report.records) {
            match self.frontier.root() {
                Ok(root) => *slot = Some((root.0, hex(&self.head))),
                Err(e) => {
                    self.tamper(expected, segment, format!("{e:#}"));
                    return false;
                }
            }
        }
        true
    }

    fn checkpoint(&mut self, parsed: &Parsed<'_>, seq: u64) -> Result<(), String> {
        let text = parsed
            .note
            .as_deref()
            .ok_or("checkpoint record without a note")?;
        let cp = note::verify(text, self.key).map_err(|e| format!("checkpoint: {e}"))?;
        if cp.size != seq || parsed.size != Some(seq) {
            return Err(format!(
                "checkpoint covers {} records but stands at seq {seq}",
                cp.size
            ));
        }
        let root = self.frontier.root().map_err(|e| format!("{e:#}"))?;
        let (signed, recorded) = match parsed.root {
            Some(r) => (cp.root == root.0, r == hex(&root.0)),
            // Written before the tree: the note signs the chain head.
            None => (cp.root == self.head, true),
        };
        if !signed || !recorded || parsed.head != Some(hex(&self.head).as_str()) {
            return Err(format!(
                "checkpoint root does not match the records it covers: records before seq \
                 {seq} were altered (and re-hashed)"
            ));
        }
        self.same_origin(&cp)?;
        self.report.anchored = self.report.anchored.max(cp.size);
        Ok(())
    }

    fn same_origin(&mut self, cp: &Checkpoint) -> Result<(), String> {
        match &self.origin {
            Some(o) if *o != cp.origin => {
                Err(format!("checkpoint origin {} differs from {o}", cp.origin))
            }
            Some(_) => Ok(()),
            None => {
                self.origin = Some(cp.origin.clone());
                Ok(())
            }
        }
    }
}

/// What one line says, worked out apart from the others (so on every core).
struct Facts<'a> {
    hash: [u8; 32],
    /// `prev`, decoded (none if it is not 64 hex digits).
    prev: Option<[u8; 32]>,
    parsed: Result<Parsed<'a>, String>,
}

/// Kinds whose fields verification reads; for the others the fixed header is enough.
const KINDS_READ: [&str; 3] = ["gap", "truncated", "checkpoint"];

/// What one line says; `body` is scratch space.
fn facts<'a>(line: &'a [u8], body: &mut Vec<u8>) -> Facts<'a> {
    let hash = record_hash(line);
    let bad = |e: serde_json::Error| format!("not a valid record: {e}");
    let parsed = match fixed_header(line) {
        // Still one JSON object: the header is by construction, so check `{` + the body,
        // without building anything.
        Some((p, at)) if !KINDS_READ.contains(&p.kind) => {
            body.clear();
            body.push(b'{');
            body.extend_from_slice(&line[at..]);
            serde_json::from_slice::<serde::de::IgnoredAny>(body)
                .map(|_| p)
                .map_err(bad)
        }
        _ => serde_json::from_slice::<Parsed<'_>>(line).map_err(bad),
    };
    let prev = parsed.as_ref().ok().and_then(|p| prev_bytes(p.prev));
    Facts { hash, prev, parsed }
}

/// The non-empty lines of `text` (newline-terminated).
fn split_lines(text: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::with_capacity(text.len() / 256);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text) {
        if end > start {
            lines.push(&text[start..end]);
        }
        start = end + 1;
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// A record's `prev` exactly as written (64 lowercase hex digits), as bytes.
fn prev_bytes(prev: &str) -> Option<[u8; 32]> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let text: &[u8; 64] = prev.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Below this many lines a segment is checked on one thread.
const PARALLEL_LINES: usize = 4096;
/// Bytes of a segment read at a time.
const BLOCK_BYTES: usize = 8 << 20;
/// Lines a worker takes at a time.
const CHUNK_LINES: usize = 512;

/// Hands the [`facts`] of every line, in order, to `each` until it returns false: worked
/// out on every core, chunk by chunk, while `each` runs on this thread.
fn for_each_facts<'a>(lines: &[&'a [u8]], mut each: impl FnMut(Facts<'a>) -> bool) -> Result<()> {
    use std::sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if workers < 2 || lines.len() < PARALLEL_LINES {
        let mut body = Vec::new();
        for l in lines {
            if !each(facts(l, &mut body)) {
                break;
            }
        }
        return Ok(());
    }
    let chunks: Vec<&[&'a [u8]]> = lines.chunks(CHUNK_LINES).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<(usize, Vec<Facts<'a>>)>(workers * 2);
        for _ in 0..workers {
            let tx = tx.clone();
            let (chunks, next, stop) = (&chunks, &next, &stop);
            s.spawn(move || {
                let mut body = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= chunks.len() || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let done: Vec<Facts<'a>> =
                        chunks[i].iter().map(|l| facts(l, &mut body)).collect();
                    if tx.send((i, done)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Chunks arrive in any order; they are checked in order.
        let mut early = BTreeMap::new();
        let mut want = 0;
        for (i, done) in rx {
            early.insert(i, done);
            while let Some(done) = early.remove(&want) {
                want += 1;
                for f in done {
                    if !each(f) {
                        stop.store(true, Ordering::Relaxed);
                        return Ok(());
                    }
                }
            }
        }
        if want != chunks.len() {
            anyhow::bail!("a verification thread failed");
        }
        Ok(())
    })
}

/// Verifies the lineage in `dir` against the host key and, optionally, an off-host
/// checkpoint file.
pub fn verify(dir: &Path, key: &PublicKey, checkpoints: Option<&Path>) -> Result<Report> {
    let external: Vec<Checkpoint> = match checkpoints {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            split_notes(&text)
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    note::verify(n, key)
                        .with_context(|| format!("{}: checkpoint {}", path.display(), i + 1))
                })
                .collect::<Result<_>>()?
        }
        None => Vec::new(),
    };
    let mut st = State {
        key,
        report: Report::default(),
        head: [0; 32],
        frontier: Frontier::default(),
        scratch: Vec::with_capacity(64 * 33),
        wanted: external.iter().map(|c| (c.size, None)).collect(),
        origin: None,
        last_checkpoint_seq: None,
        starts: 0,
    };
    let segs = segments(dir)?;
    st.report.segments = segs.len() as u64;
    let mut buf = Vec::with_capacity(BLOCK_BYTES + (1 << 16));
    'outer: for (i, &seg) in segs.iter().enumerate() {
        if seg != i as u64 {
            let seq = st.report.records;
            st.tamper(seq, i as u64, format!("segment {i} is missing"));
            break;
        }
        let path = segment_path(dir, seg);
        let mut file =
            std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        // Block by block into one reused buffer; a line cut by a block's end waits for the
        // next block.
        buf.clear();
        loop {
            let read = (&mut file)
                .take(BLOCK_BYTES as u64)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            let complete = memchr::memrchr(b'\n', &buf).map_or(0, |p| p + 1);
            let lines = split_lines(&buf[..complete]);
            let mut going = true;
            for_each_facts(&lines, |f| {
                going = st.record(f, seg);
                going
            })?;
            if !going {
                break 'outer;
            }
            buf.drain(..complete);
        }
        // What is left is a line without its newline.
        if !buf.is_empty() {
            if i + 1 == segs.len() {
                // A crash cut the last line; recovery will move it aside.
                st.report.torn.push(path.clone());
            } else {
                let seq = st.report.records;
                st.tamper(seq, seg, "a partial line inside the lineage".into());
                break;
            }
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.to_string_lossy().contains(".torn-") {
            st.report.torn.push(p);
        }
    }
    if st.report.tampered.is_none() {
        for cp in &external {
            let found = st.wanted.get(&cp.size).cloned().flatten();
            let result = match found {
                None => Err(format!(
                    "an off-host checkpoint anchors {} records, but the lineage has only {}: \
                     records {}..{} were removed",
                    cp.size,
                    st.report.records,
                    st.report.records,
                    cp.size - 1
                )),
                Some((root, head)) if root != cp.root && head != hex(&cp.root) => Err(format!(
                    "an off-host checkpoint of {} records does not match the chain: records \
                     before seq {} were altered (and re-hashed)",
                    cp.size, cp.size
                )),
                Some(_) => st.same_origin(cp),
            };
            match result {
                Ok(()) => {
                    st.report.external_checkpoints += 1;
                    st.report.anchored = st.report.anchored.max(cp.size);
                }
                Err(reason) => {
                    let seq = cp.size.min(st.report.records);
                    st.tamper(seq, cp.segment, reason);
                    break;
                }
            }
        }
    }
    // Records after the anchored size, not counting the checkpoint that anchors it.
    let after = st.report.records.saturating_sub(st.report.anchored);
    let own = u64::from(st.last_checkpoint_seq == Some(st.report.anchored));
    st.report.unanchored_tail = after.saturating_sub(own);
    st.report.restarts = st.starts.saturating_sub(1);
    Ok(st.report)
}
