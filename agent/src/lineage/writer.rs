//! Appending to a lineage: segments, the chain, checkpoints, durability, recovery.
//!
//! Invariants:
//! - A record is hashed into the chain only when it is accepted into the write buffer, and
//!   a buffered record is never dropped: if the disk refuses it, it stays buffered and is
//!   retried. When the buffer is full, new records are refused and counted; once writing
//!   works again, a `gap` record states the exact number refused.
//! - The file holds only complete lines: a failed write is cut back to the last complete
//!   line. A torn line left by a crash is moved aside (kept, never dropped) and recorded.
//! - Each agent start opens a new segment whose first record chains on the last head.
//! - Record `seq` is leaf `seq` of the tree: its stored hashes reach `DIR/tree` before the
//!   record reaches its segment, so after a crash the tree file is cut back, never rebuilt,
//!   unless it is missing or short (then it is rebuilt from the segments).

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    anchor::{self, Anchor},
    note::Checkpoint,
    record::{encode_into, record_hash, Body, GapReason, Header},
    segment::{segment_path, segments, CHECKPOINTS_FILE},
    tree::{self, leaf_hash, Frontier, TreeFile},
};
use crate::{
    bundle::keys::{hex, SecretKey},
    support::time,
};

/// How the lineage is written.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    /// A checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ...or this long after the last one, whichever comes first.
    pub checkpoint_interval: Duration,
    /// A new segment once the current one reaches this size.
    pub segment_bytes: u64,
    /// Records buffered while the disk refuses writes; beyond, records are refused and
    /// counted (a gap).
    pub max_buffer_bytes: usize,
}

impl Config {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.into(),
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            segment_bytes: 64 * 1024 * 1024,
            max_buffer_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The clocks of a record.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    pub mono_ns: u64,
    pub time_ns: u64,
}

impl Stamp {
    pub fn now() -> Self {
        Self {
            mono_ns: time::mono_ns().unwrap_or(0),
            time_ns: time::realtime_ns().unwrap_or(0),
        }
    }

    /// The stamp of a kernel event at CLOCK_MONOTONIC `mono_ns`.
    pub fn of_kernel(mono_ns: u64) -> Self {
        let now = Self::now();
        let ago = now.mono_ns.saturating_sub(mono_ns);
        Self {
            mono_ns,
            time_ns: now.time_ns.saturating_sub(ago),
        }
    }
}

/// What opening found in an existing lineage.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Records found (the next seq).
    pub records: u64,
    /// Bytes of a torn last line, moved to this file.
    pub torn: Option<(u64, PathBuf)>,
    /// The anchor the lineage fell short of (recorded as `truncated`), if it did.
    pub truncated: Option<Anchor>,
    /// Whether `DIR/tree` was missing or short and was rebuilt from the segments.
    pub tree_rebuilt: bool,
}

/// The lineage writer.
pub struct Writer {
    cfg: Config,
    key: SecretKey,
    origin: String,
    /// The lineage's id (hex).
    lineage: String,
    /// The last checkpoint: records covered and the head then.
    anchored: Option<(u64, String)>,
    boot: String,
    segment: u64,
    file: File,
    /// Bytes of complete lines in the segment file.
    file_len: u64,
    buffer: Vec<u8>,
    seq: u64,
    /// The hash of the last record (zeros before the first).
    head: [u8; 32],
    /// The Merkle tree: its right edge, the file of stored hashes, and stored hashes (raw)
    /// not yet written there.
    frontier: Frontier,
    tree: TreeFile,
    tree_pending: Vec<u8>,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Records refused (buffer full) since the last gap record, and when that began.
    refused: u64,
    refused_since_ns: u64,
    /// The policy version in force, for records other than decisions.
    pub policy_version: u64,
    /// What this writer appended: records, bytes (with newlines), checkpoints.
    stats: Stats,
}

/// What a [`Writer`] appended since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub bytes: u64,
    pub checkpoints: u64,
    /// Gap records, and the events they account for as lost.
    pub gaps: u64,
    pub lost: u64,
}

fn read_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

fn open_segment(path: &Path) -> Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening lineage segment {}", path.display()))?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// The state at the end of an existing lineage: next seq, head, last time, lineage id.
struct Tail {
    seq: u64,
    /// The chain hash of the last record.
    head: [u8; 32],
    last_time_ns: u64,
    lineage: String,
    torn: Option<(u64, PathBuf)>,
}

/// Reads the last segment's end; a trailing partial line is moved aside and cut off.
fn recover_tail(dir: &Path, last: u64) -> Result<Tail> {
    let path = segment_path(dir, last);
    let mut bytes = Vec::new();
    File::open(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .read_to_end(&mut bytes)?;
    let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut torn = None;
    if complete < bytes.len() {
        let aside = path.with_extension(format!("jsonl.torn-{}", bytes.len()));
        std::fs::write(&aside, &bytes[complete..])
            .with_context(|| format!("preserving the torn line in {}", aside.display()))?;
        let f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(complete as u64)?;
        f.sync_all()?;
        torn = Some(((bytes.len() - complete) as u64, aside));
    }
    let text = &bytes[..complete];
    let Some(line) = text[..text.len().saturating_sub(1)]
        .split(|b| *b == b'\n')
        .next_back()
        .filter(|l| !l.is_empty())
    else {
        bail!(
            "lineage segment {} has no complete record; move it aside to start a new lineage",
            path.display()
        );
    };
    let parsed: super::record::Parsed<'_> = serde_json::from_slice(line)
        .with_context(|| format!("the last record of {} is not a record", path.display()))?;
    Ok(Tail {
        seq: parsed.seq + 1,
        head: record_hash(line),
        last_time_ns: parsed.time_ns,
        lineage: lineage_id(dir)?,
        torn,
    })
}

/// The tree of the `records` records in `dir` (segments `existing`): the tree file cut back to
/// them when it covers them, else rebuilt from the segments.
/// `last_hash` is the chain hash of the last record: the file's last leaf must be its leaf,
/// or the file belongs to other records and is rebuilt.
fn open_tree(
    dir: &Path,
    existing: &[u64],
    records: u64,
    last_hash: Option<[u8; 32]>,
) -> Result<(TreeFile, Frontier, bool)> {
    let mut file = TreeFile::open_rw(dir)?;
    if file.covers(records) && file.last_leaf_is(records, last_hash)? {
        file.cut_to(records)?;
        let frontier = Frontier::read(records, &file)?;
        return Ok((file, frontier, false));
    }
    let mut out = std::io::BufWriter::new(tree::create(dir)?);
    let mut frontier = Frontier::default();
    let mut raw = Vec::with_capacity(64 * 33);
    for &n in existing {
        let path = segment_path(dir, n);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            raw.clear();
            frontier.push(leaf_hash(&record_hash(line)), &mut raw);
            out.write_all(&raw)?;
        }
    }
    out.into_inner()
        .map_err(|e| e.into_error())?
        .sync_data()
        .context("writing the rebuilt lineage tree")?;
    Ok((TreeFile::open_rw(dir)?, frontier, true))
}

/// The lineage id, from the first record of the first segment.
fn lineage_id(dir: &Path) -> Result<String> {
    let first = segments(dir)?
        .first()
        .copied()
        .context("no segment in the lineage directory")?;
    let text = std::fs::read_to_string(segment_path(dir, first))?;
    let line = text.lines().next().context("the first segment is empty")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    v["lineage"]
        .as_str()
        .map(str::to_owned)
        .context("the first record is not an agent-start with a lineage id")
}

impl Writer {
    /// Opens (or creates) the lineage in `cfg.dir` and writes the agent-start record of a
    /// new segment, a gap for the time the agent was down, and a gap for a torn line.
    ///
    /// `anchor` is the last checkpoint as kept outside the lineage directory: a lineage that
    /// falls short of it gets a `truncated` record after the agent-start.
    pub fn open(
        cfg: Config,
        key: SecretKey,
        policy_version: u64,
        anchor: Option<&Anchor>,
    ) -> Result<(Self, Recovery)> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.dir)
            .with_context(|| format!("creating the lineage directory {}", cfg.dir.display()))?;
        let existing = segments(&cfg.dir)?;
        let host = hostname();
        let tail = match existing.last() {
            Some(&last) => Some(recover_tail(&cfg.dir, last)?),
            None => None,
        };
        let segment = existing.last().map_or(0, |l| l + 1);
        let lineage = match &tail {
            Some(t) => t.lineage.clone(),
            None => {
                let mut id = [0u8; 16];
                getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
                hex(&id)
            }
        };
        let records = tail.as_ref().map_or(0, |t| t.seq);
        let last_hash = tail.as_ref().map(|t| t.head);
        let (tree, frontier, tree_rebuilt) = open_tree(&cfg.dir, &existing, records, last_hash)?;
        let (file, file_len) = open_segment(&segment_path(&cfg.dir, segment))?;
        let mut w = Self {
            frontier,
            tree,
            tree_pending: Vec::with_capacity(1 << 12),
            origin: format!("rampart.dev/lineage/{host}/{lineage}"),
            lineage: lineage.clone(),
            anchored: None,
            boot: read_boot_id(),
            segment,
            file,
            file_len,
            buffer: Vec::with_capacity(1 << 16),
            seq: tail.as_ref().map_or(0, |t| t.seq),
            head: last_hash.unwrap_or([0; 32]),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            refused: 0,
            refused_since_ns: 0,
            stats: Stats::default(),
            policy_version,
            key,
            cfg,
        };
        let now = Stamp::now();
        let resumed = tail.as_ref().map(|t| hex(&t.head));
        w.append(
            now,
            None,
            &Body::AgentStart {
                agent_version: env!("CARGO_PKG_VERSION"),
                host: &host,
                lineage: &lineage,
                pid: std::process::id(),
                resumed_from: resumed.as_deref(),
            },
        )?;
        let found = tail.as_ref().map_or(0, |t| t.seq);
        let mut recovery = Recovery {
            records: w.seq,
            torn: None,
            truncated: None,
            tree_rebuilt,
        };
        if let Some(a) = anchor.filter(|a| anchor::truncated(a, &lineage, found)) {
            w.append(
                now,
                None,
                &Body::Truncated {
                    anchored_lineage: &a.lineage,
                    anchored_size: a.size,
                    anchored_head: &a.head,
                    found,
                },
            )?;
            recovery.truncated = Some(a.clone());
        }
        if let Some(t) = tail {
            w.append(
                now,
                None,
                &Body::Gap {
                    source: "agent",
                    reason: GapReason::AgentDown,
                    // Decisions made while no agent ran wait in the pinned ring and are
                    // recorded after this; those the ring could not hold are counted by the
                    // kernel and become a kernel-ring gap. Without pinning nothing is decided.
                    lost: 0,
                    from_ns: t.last_time_ns,
                    to_ns: now.time_ns,
                    detail: None,
                },
            )?;
            if let Some((bytes, aside)) = &t.torn {
                let detail = format!(
                    "{bytes} bytes of a record cut short by a crash, kept in {}",
                    aside.display()
                );
                w.append(
                    now,
                    None,
                    &Body::Gap {
                        source: "lineage",
                        reason: GapReason::TornWrite,
                        lost: 1,
                        from_ns: t.last_time_ns,
                        to_ns: now.time_ns,
                        detail: Some(&detail),
                    },
                )?;
            }
            recovery.torn = t.torn;
        }
        w.flush()?;
        Ok((w, recovery))
    }

    /// The last checkpoint as an anchor, to keep outside the lineage directory.
    pub fn anchor(&self) -> Option<Anchor> {
        self.anchored.as_ref().map(|(size, head)| Anchor {
            lineage: self.lineage.clone(),
            size: *size,
            head: head.clone(),
        })
    }

    /// Records written so far (the next seq).
    pub fn len(&self) -> u64 {
        self.seq
    }

    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }

    /// Hex hash of the last record.
    pub fn head(&self) -> String {
        hex(&self.head)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What this writer appended since it opened.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Appends a record (`version`: the policy version it concerns; default: in force).
    /// Returns false when the record was refused because the buffer is full (counted, and
    /// reported as a gap once writing works again).
    pub fn append(&mut self, stamp: Stamp, version: Option<u64>, body: &Body<'_>) -> Result<bool> {
        if self.buffer.len() >= self.cfg.max_buffer_bytes {
            if self.refused == 0 {
                self.refused_since_ns = stamp.time_ns;
            }
            self.refused += 1;
            return Ok(false);
        }
        // Encoded straight into the write buffer.
        let prev = hex(&self.head);
        let start = self.buffer.len();
        encode_into(
            &mut self.buffer,
            &Header {
                seq: self.seq,
                prev: &prev,
                segment: self.segment,
                boot: &self.boot,
                mono_ns: stamp.mono_ns,
                time_ns: stamp.time_ns,
                policy_version: version.unwrap_or(self.policy_version),
            },
            body,
        );
        let hash = record_hash(&self.buffer[start..]);
        self.frontier.push(leaf_hash(&hash), &mut self.tree_pending);
        self.head = hash;
        self.buffer.push(b'\n');
        self.stats.records += 1;
        if let Body::Gap { lost, .. } = body {
            self.stats.gaps += 1;
            self.stats.lost += lost;
        }
        self.stats.bytes += (self.buffer.len() - start) as u64;
        self.seq += 1;
        self.since_checkpoint += 1;
        if self.since_checkpoint >= self.cfg.checkpoint_every
            && !matches!(body, Body::Checkpoint { .. })
        {
            self.checkpoint()?;
        }
        Ok(true)
    }

    /// Writes the buffer to the segment file (no fsync). On error the file is cut back to
    /// its last complete line and the buffer kept for the next attempt.
    fn write_buffer(&mut self) -> Result<()> {
        if !self.tree_pending.is_empty() {
            self.tree.append(&self.tree_pending).with_context(|| {
                format!(
                    "writing the lineage tree {} ({} bytes buffered, kept for retry)",
                    self.cfg.dir.join(tree::TREE_FILE).display(),
                    self.tree_pending.len()
                )
            })?;
            self.tree_pending.clear();
        }
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = (|| -> std::io::Result<()> {
            self.file.seek(SeekFrom::Start(self.file_len))?;
            self.file.write_all(&self.buffer)
        })();
        match result {
            Ok(()) => {
                self.file_len += self.buffer.len() as u64;
                self.buffer.clear();
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.file_len);
                Err(e).with_context(|| {
                    format!(
                        "writing lineage segment {} ({} bytes buffered, kept for retry)",
                        segment_path(&self.cfg.dir, self.segment).display(),
                        self.buffer.len()
                    )
                })
            }
        }
    }

    /// Writes and fsyncs what is buffered; reports refused records as a gap once possible;
    /// rotates the segment when it is full.
    pub fn flush(&mut self) -> Result<()> {
        self.write_buffer()?;
        self.file
            .sync_data()
            .context("fsync of the lineage segment")?;
        if self.refused > 0 {
            let (lost, from_ns) = (self.refused, self.refused_since_ns);
            self.refused = 0;
            let now = Stamp::now();
            self.append(
                now,
                None,
                &Body::Gap {
                    source: "lineage",
                    reason: GapReason::WriteFailed,
                    lost,
                    from_ns,
                    to_ns: now.time_ns,
                    detail: Some("records refused while the disk refused writes"),
                },
            )?;
            self.write_buffer()?;
            self.file.sync_data()?;
        }
        if self.file_len >= self.cfg.segment_bytes {
            self.segment += 1;
            let (file, len) = open_segment(&segment_path(&self.cfg.dir, self.segment))?;
            self.file = file;
            self.file_len = len;
            File::open(&self.cfg.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Signs a checkpoint over every record so far, records it, makes the segment durable,
    /// and appends the note to the checkpoint file.
    pub fn checkpoint(&mut self) -> Result<()> {
        let now = Stamp::now();
        let root = self.frontier.root()?;
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size: self.seq,
            root: root.0,
            time_ns: now.time_ns,
            segment: self.segment,
        };
        let note = cp.sign(&self.key).context("signing a lineage checkpoint")?;
        let head_hex = hex(&self.head);
        let root_hex = hex(&root.0);
        let covered = cp.size;
        self.since_checkpoint = 0;
        self.stats.checkpoints += 1;
        self.last_checkpoint = Instant::now();
        self.append(
            now,
            None,
            &Body::Checkpoint {
                size: cp.size,
                root: &root_hex,
                head: &head_hex,
                note: &note,
            },
        )?;
        self.flush()?;
        self.tree.sync().context("fsync of the lineage tree")?;
        let path = self.cfg.dir.join(CHECKPOINTS_FILE);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(note.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_data()?;
        // Anchored only once the records it covers are durable.
        self.anchored = Some((covered, head_hex));
        Ok(())
    }

    /// The periodic duty (call at least every 100 ms): make buffered records durable, and
    /// checkpoint when the interval has passed with records to cover.
    pub fn tick(&mut self) -> Result<()> {
        if self.since_checkpoint > 0
            && self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval
        {
            return self.checkpoint();
        }
        if !self.buffer.is_empty() || self.refused > 0 {
            self.flush()?;
        }
        Ok(())
    }

    /// Records the agent's stop and a final checkpoint.
    pub fn close(&mut self, reason: &str) -> Result<()> {
        self.append(Stamp::now(), None, &Body::AgentStop { reason })?;
        self.checkpoint()
    }
}
