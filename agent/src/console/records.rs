//! The lineage as the console reads it: records newest first under a filter, one record by
//! seq, records after a seq (the live tail), and a summary for the overview and health
//! pages. Read-only; every line is parsed as data and nothing in it is trusted beyond what
//! verification (shown beside it) established.

use std::{
    io::{BufRead, BufReader},
    path::Path,
};

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

fn lines_of(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    BufReader::new(file)
        .lines()
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", path.display()))
}

/// Up to `limit` records passing `filter`, newest first (segments are read from the last).
pub fn recent(dir: &Path, filter: &Filter, limit: usize) -> Result<Vec<Entry>> {
    let limit = limit.min(MAX_LISTED);
    let mut out = Vec::new();
    for n in segments(dir)?.into_iter().rev() {
        for line in lines_of(&segment_path(dir, n))?.iter().rev() {
            let Some(e) = Entry::parse(line) else {
                continue;
            };
            if filter.matches(&e.value) {
                out.push(e);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// Records with seq greater than `after` passing `filter`, oldest first, at most `limit`.
pub fn after(dir: &Path, after: Option<u64>, filter: &Filter, limit: usize) -> Result<Vec<Entry>> {
    let mut newest_first = Vec::new();
    'segments: for n in segments(dir)?.into_iter().rev() {
        for line in lines_of(&segment_path(dir, n))?.iter().rev() {
            let Some(e) = Entry::parse(line) else {
                continue;
            };
            if after.is_some_and(|a| e.seq <= a) {
                break 'segments;
            }
            if filter.matches(&e.value) {
                newest_first.push(e);
                if newest_first.len() >= limit {
                    break 'segments;
                }
            }
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
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: u64,
    pub time_ns: u64,
    pub version: u64,
    pub digest: Option<String>,
    pub signers: Vec<String>,
    pub policies: Vec<String>,
}

/// Counts over the whole lineage.
#[derive(Debug, Clone, Default)]
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
    /// Decisions per bucket of `bucket_ns`, from `first_ns` ([`RATE_BUCKETS`] buckets).
    pub rate: Vec<u64>,
    pub denied_rate: Vec<u64>,
    pub bucket_ns: u64,
}

/// How many buckets the event-rate chart has.
pub const RATE_BUCKETS: usize = 60;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads every record once.
pub fn summary(dir: &Path) -> Result<Summary> {
    let mut s = Summary::default();
    let mut decision_times: Vec<(u64, bool)> = Vec::new();
    for n in segments(dir)? {
        for line in lines_of(&segment_path(dir, n))? {
            let Some(e) = Entry::parse(&line) else {
                continue;
            };
            s.records += 1;
            if s.first_ns == 0 {
                s.first_ns = e.time_ns;
            }
            s.last_ns = s.last_ns.max(e.time_ns);
            let v = &e.value;
            match e.kind.as_str() {
                "decision" => {
                    s.decisions += 1;
                    let denied = v["decision"] == "deny";
                    s.denied += u64::from(denied);
                    s.audited += u64::from(v["decision"] == "audit");
                    decision_times.push((e.time_ns, denied));
                }
                "gap" => {
                    s.gaps += 1;
                    s.lost += v["lost"].as_u64().unwrap_or(0);
                }
                "policy-refused" => s.refusals += 1,
                "tamper" => s.tamper += 1,
                "agent-start" => s.restarts += 1,
                "policy-change" => s.changes.push(Change {
                    seq: e.seq,
                    time_ns: e.time_ns,
                    version: v["new_version"].as_u64().unwrap_or(0),
                    digest: v["new_digest"].as_str().map(str::to_owned),
                    signers: strings(&v["signers"]),
                    policies: strings(&v["policies"]),
                }),
                _ => {}
            }
        }
    }
    let span = s.last_ns.saturating_sub(s.first_ns).max(1);
    s.bucket_ns = span.div_ceil(RATE_BUCKETS as u64).max(1);
    s.rate = vec![0; RATE_BUCKETS];
    s.denied_rate = vec![0; RATE_BUCKETS];
    for (t, denied) in decision_times {
        let i = (t.saturating_sub(s.first_ns) / s.bucket_ns).min(RATE_BUCKETS as u64 - 1) as usize;
        s.rate[i] += 1;
        s.denied_rate[i] += u64::from(denied);
    }
    Ok(s)
}
