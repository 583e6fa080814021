//! The lineage as the console reads it: records newest first under a filter, one record by
//! seq, records after a seq (the live tail), and a summary for the overview and health
//! pages. Read-only; every line is parsed as data and nothing in it is trusted beyond what
//! verification (shown beside it) established.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::lineage::{
    filter::Filter,
    note,
    record::record_hash,
    segment::{segment_path, segments, CHECKPOINTS_FILE},
    verify::split_notes,
};

/// The most records one listing returns.
pub const MAX_LISTED: usize = 500;

/// One record line, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub time_ns: u64,
    pub kind: String,
    /// The line as stored (its hash is the chain's).
    pub line: String,
    pub value: Value,
}

impl Entry {
    fn parse(line: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(line).ok()?;
        Some(Self {
            seq: value["seq"].as_u64()?,
            time_ns: value["time_ns"].as_u64().unwrap_or(0),
            kind: value["kind"].as_str().unwrap_or("").to_owned(),
            line: line.to_owned(),
            value,
        })
    }

    /// The record's BLAKE3 chain hash (hex).
    pub fn hash(&self) -> String {
        crate::bundle::keys::hex(&record_hash(self.line.as_bytes()))
    }

    /// A field as text (strings unquoted), if present.
    pub fn text(&self, key: &str) -> Option<String> {
        match &self.value[key] {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// The blocks a segment is read backwards in.
const BLOCK: u64 = 1 << 20;

/// Hands the complete lines of `path` to `f`, last first, until `f` returns false. Reads
/// backwards in blocks, so a listing of the newest records costs what it shows, not the
/// segment's size. A line longer than the segment is never split: blocks grow until it fits.
fn lines_rev(path: &Path, mut f: impl FnMut(&str) -> bool) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut end = file.metadata()?.len();
    // Bytes after the last newline are a line still being written: not yet a record.
    let mut carry: Vec<u8> = Vec::new();
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let mut block = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)
            .with_context(|| format!("reading {}", path.display()))?;
        block.extend_from_slice(&carry);
        let mut rest: &[u8] = &block;
        if first {
            first = false;
            match memchr::memrchr(b'\n', rest) {
                Some(i) => rest = &rest[..=i],
                None if start == 0 => return Ok(()),
                None => rest = &[],
            }
        }
        // Lines wholly inside `rest` (the first may be cut by the block start).
        let mut tail = rest.strip_suffix(b"\n").unwrap_or(rest);
        loop {
            match memchr::memrchr(b'\n', tail) {
                Some(i) => {
                    if !f(&String::from_utf8_lossy(&tail[i + 1..])) {
                        return Ok(());
                    }
                    tail = &tail[..i];
                }
                None if start == 0 => {
                    if !tail.is_empty() && !f(&String::from_utf8_lossy(tail)) {
                        return Ok(());
                    }
                    return Ok(());
                }
                None => break,
            }
        }
        carry = if tail.is_empty() {
            Vec::new()
        } else {
            let mut c = tail.to_vec();
            c.push(b'\n');
            c
        };
        end = start;
    }
    Ok(())
}

/// Up to `limit` records passing `filter`, newest first (segments are read from the last).
pub fn recent(dir: &Path, filter: &Filter, limit: usize) -> Result<Vec<Entry>> {
    let limit = limit.min(MAX_LISTED);
    let mut out = Vec::new();
    for n in segments(dir)?.into_iter().rev() {
        lines_rev(&segment_path(dir, n), |line| {
            if let Some(e) = Entry::parse(line) {
                if filter.matches(&e.value) {
                    out.push(e);
                }
            }
            out.len() < limit
        })?;
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Records with seq greater than `after` passing `filter`, oldest first, at most `limit`.
pub fn after(dir: &Path, after: Option<u64>, filter: &Filter, limit: usize) -> Result<Vec<Entry>> {
    let mut newest_first = Vec::new();
    let mut done = false;
    for n in segments(dir)?.into_iter().rev() {
        lines_rev(&segment_path(dir, n), |line| {
            let Some(e) = Entry::parse(line) else {
                return true;
            };
            if after.is_some_and(|a| e.seq <= a) {
                done = true;
                return false;
            }
            if filter.matches(&e.value) {
                newest_first.push(e);
            }
            if newest_first.len() >= limit {
                done = true;
            }
            !done
        })?;
        if done {
            break;
        }
    }
    newest_first.reverse();
    Ok(newest_first)
}

/// The record with `seq`.
pub fn record(dir: &Path, seq: u64) -> Result<Entry> {
    let line = crate::lineage::proof::find_record(dir, seq)?;
    Entry::parse(&line).with_context(|| format!("record {seq} is not a JSON record"))
}

/// The first checkpoint note in the checkpoint file that covers `seq` (its size and note),
/// unverified (the proof page verifies).
pub fn covering_checkpoint(dir: &Path, seq: u64) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(dir.join(CHECKPOINTS_FILE)).ok()?;
    split_notes(&text).into_iter().find_map(|n| {
        let cp = note::parse_unverified(&n).ok()?;
        (cp.size > seq).then_some((cp.size, n))
    })
}

/// A policy change as the lineage records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub time_ns: u64,
    pub version: u64,
    pub digest: Option<String>,
    pub signers: Vec<String>,
    pub policies: Vec<String>,
}

/// Counts over the whole lineage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub decisions: u64,
    pub denied: u64,
    pub audited: u64,
    pub gaps: u64,
    pub lost: u64,
    pub refusals: u64,
    pub tamper: u64,
    pub restarts: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub changes: Vec<Change>,
    /// Decisions (and denials) per second over the last [`CHART_SECONDS`] of the lineage.
    pub per_second: std::collections::BTreeMap<u64, (u64, u64)>,
}

/// How much of the lineage's recent past the event-rate chart covers.
pub const CHART_SECONDS: u64 = 3600;
/// How many bars the event-rate chart has.
pub const RATE_BUCKETS: usize = 60;
/// Policy changes kept for the history table (the newest).
const MAX_CHANGES: usize = 1000;

impl Summary {
    /// The chart: (decisions, denials) per bucket, the bucket width (ns) and the first
    /// bucket's start (ns).
    pub fn chart(&self) -> (Vec<(u64, u64)>, u64, u64) {
        let (Some(first), Some(last)) = (
            self.per_second.keys().next().copied(),
            self.per_second.keys().next_back().copied(),
        ) else {
            return (vec![(0, 0); RATE_BUCKETS], 1_000_000_000, self.first_ns);
        };
        let span = (last - first + 1).max(1);
        let width = span.div_ceil(RATE_BUCKETS as u64).max(1);
        let mut bars = vec![(0u64, 0u64); RATE_BUCKETS];
        for (s, (n, d)) in &self.per_second {
            let i = (((s - first) / width) as usize).min(RATE_BUCKETS - 1);
            bars[i].0 += n;
            bars[i].1 += d;
        }
        (bars, width * 1_000_000_000, first * 1_000_000_000)
    }

    fn add(&mut self, e: &Entry) {
        self.records += 1;
        if self.first_ns == 0 {
            self.first_ns = e.time_ns;
        }
        self.last_ns = self.last_ns.max(e.time_ns);
        let v = &e.value;
        match e.kind.as_str() {
            "decision" => {
                self.decisions += 1;
                let denied = v["decision"] == "deny";
                self.denied += u64::from(denied);
                self.audited += u64::from(v["decision"] == "audit");
                let second = e.time_ns / 1_000_000_000;
                let slot = self.per_second.entry(second).or_default();
                slot.0 += 1;
                slot.1 += u64::from(denied);
                let horizon = (self.last_ns / 1_000_000_000).saturating_sub(CHART_SECONDS);
                while self
                    .per_second
                    .keys()
                    .next()
                    .is_some_and(|first| *first < horizon)
                {
                    self.per_second.pop_first();
                }
            }
            "gap" => {
                self.gaps += 1;
                self.lost += v["lost"].as_u64().unwrap_or(0);
            }
            "policy-refused" => self.refusals += 1,
            "tamper" => self.tamper += 1,
            "agent-start" => self.restarts += 1,
            "policy-change" => {
                self.changes.push(Change {
                    seq: e.seq,
                    time_ns: e.time_ns,
                    version: v["new_version"].as_u64().unwrap_or(0),
                    digest: v["new_digest"].as_str().map(str::to_owned),
                    signers: strings(&v["signers"]),
                    policies: strings(&v["policies"]),
                });
                if self.changes.len() > MAX_CHANGES {
                    self.changes.remove(0);
                }
            }
            _ => {}
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A [`Summary`] kept up to date incrementally: each call reads only what was appended
/// since the last (a lineage cut back, or segments removed, starts it over).
#[derive(Debug, Default)]
pub struct Tally {
    summary: Summary,
    /// The segment and byte offset read up to (complete lines only).
    segment: u64,
    offset: u64,
}

impl Tally {
    /// Reads what was appended to `dir` since the last call; returns the summary.
    pub fn advance(&mut self, dir: &Path) -> Result<Summary> {
        use std::io::{Read, Seek, SeekFrom};
        let all = segments(dir)?;
        let shrunk = match all.iter().find(|n| **n == self.segment) {
            Some(n) => std::fs::metadata(segment_path(dir, *n))?.len() < self.offset,
            None => self.offset > 0 || all.first().is_some_and(|f| *f > self.segment),
        };
        if shrunk {
            *self = Self::default();
        }
        let from = self.segment;
        for n in all.into_iter().filter(|n| *n >= from) {
            if n != self.segment {
                self.segment = n;
                self.offset = 0;
            }
            let path = segment_path(dir, n);
            let mut file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.seek(SeekFrom::Start(self.offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .with_context(|| format!("reading {}", path.display()))?;
            let complete = memchr::memrchr(b'\n', &bytes).map_or(0, |i| i + 1);
            for line in bytes[..complete].split(|b| *b == b'\n') {
                if let Some(e) = Entry::parse(&String::from_utf8_lossy(line)) {
                    self.summary.add(&e);
                }
            }
            self.offset += complete as u64;
        }
        Ok(self.summary.clone())
    }
}

/// Reads every record once.
pub fn summary(dir: &Path) -> Result<Summary> {
    Tally::default().advance(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rampart-records-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn line(seq: u64, extra: &str) -> String {
        format!("{{\"seq\":{seq},\"time_ns\":{},\"kind\":\"decision\",\"decision\":\"deny\",\"path\":\"{extra}\"}}\n", 1_000_000_000 * (seq + 1))
    }

    #[test]
    fn lines_come_back_last_first_across_blocks_without_the_partial_one() {
        let dir = scratch("rev");
        let path = dir.join("segment-00000000.jsonl");
        let long = "x".repeat(3 * BLOCK as usize / 2);
        let mut text = String::new();
        for seq in 0..5 {
            text.push_str(&line(seq, if seq == 2 { &long } else { "/a" }));
        }
        text.push_str("{\"seq\":5,\"partial");
        std::fs::write(&path, &text).unwrap();
        let mut seen = Vec::new();
        lines_rev(&path, |l| {
            seen.push(Entry::parse(l).map(|e| (e.seq, e.line.len())));
            true
        })
        .unwrap();
        let want: Vec<_> = (0..5u64)
            .rev()
            .map(|s| Some((s, line(s, if s == 2 { &long } else { "/a" }).len() - 1)))
            .collect();
        assert_eq!(seen, want);
        let newest = after(&dir, Some(2), &Filter::default(), 10).unwrap();
        assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(recent(&dir, &Filter::default(), 2).unwrap().len(), 2);
    }

    #[test]
    fn the_tally_reads_only_what_was_appended_and_starts_over_when_cut() {
        let dir = scratch("tally");
        let path = dir.join("segment-00000000.jsonl");
        std::fs::write(&path, format!("{}{}", line(0, "/a"), line(1, "/b"))).unwrap();
        let mut t = Tally::default();
        assert_eq!(t.advance(&dir).unwrap().denied, 2);
        // A half-written line is not counted until it is complete.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"seq\":2,").unwrap();
        assert_eq!(t.advance(&dir).unwrap().denied, 2);
        std::io::Write::write_all(&mut f, &line(2, "/c").as_bytes()[9..]).unwrap();
        assert_eq!(t.advance(&dir).unwrap().denied, 3);
        std::fs::write(dir.join("segment-00000001.jsonl"), line(3, "/d")).unwrap();
        let s = t.advance(&dir).unwrap();
        assert_eq!((s.records, s.denied), (4, 4));
        assert_eq!(s, summary(&dir).unwrap());
        // Cut back: counted again from the start.
        std::fs::write(&path, line(0, "/a")).unwrap();
        std::fs::remove_file(dir.join("segment-00000001.jsonl")).unwrap();
        assert_eq!(t.advance(&dir).unwrap().denied, 1);
    }
}
