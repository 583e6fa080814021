//! `rampart lineage verify|show|tail`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use rampart::{
    bundle::keys::PublicKey,
    lineage::{
        filter::{ActionKind, Filter, Kind, Verdict},
        segment::{segment_path, segments},
        verify::verify,
    },
    support::time::rfc3339_ns,
};
use serde_json::Value;

/// Verify, prove, replay and read a lineage (the hash-chained, Merkle-tree record
/// `rampart run --lineage` writes).
#[derive(Debug, Subcommand)]
pub enum LineageCommand {
    /// Check every hash, link, seq, segment link, checkpoint signature and tree root.
    ///
    /// Prints the verified range, the anchored size, the unanchored tail, gaps (count and
    /// events lost) and restarts. Exit 0 intact, 1 tampered (naming the first bad record;
    /// also when the lineage cannot be read), 2 unanchored tail, 3 gaps present.
    Verify {
        /// The lineage directory.
        dir: PathBuf,
        /// The host's public key (NAME.pub of the key given to `run --host-key`).
        #[arg(long = "pub", value_name = "FILE")]
        public: PathBuf,
        /// Checkpoints kept off-host (a copy of DIR/checkpoints): each must match.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a proof that checks offline with only the host's public key.
    ///
    /// With --seq: an inclusion proof of that record (the record, its leaf index, the
    /// audit path and the signed checkpoint it leads to). With --from-size: a consistency
    /// proof that the checkpoint of --to-size records (default: the latest) extends the one
    /// of --from-size records, so a collector keeping only checkpoints can check the host
    /// never rewrote its history. Check either with `lineage verify-proof`.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["seq", "from_size"])))]
    Prove {
        /// The lineage directory.
        dir: PathBuf,
        /// The record to prove (its seq).
        #[arg(long)]
        seq: Option<u64>,
        /// For --seq: the checkpoint (by the records it covers) to prove against; default
        /// the latest.
        #[arg(long, value_name = "SIZE", requires = "seq")]
        checkpoint_size: Option<u64>,
        /// The earlier checkpoint of a consistency proof (by the records it covers).
        #[arg(long, value_name = "SIZE")]
        from_size: Option<u64>,
        /// The later checkpoint; default the latest.
        #[arg(long, value_name = "SIZE", requires = "from_size")]
        to_size: Option<u64>,
        /// Where to write the proof (JSON); `-` for stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Check a proof from `lineage prove` with the host's public key.
    ///
    /// Exit 0 only if every checkpoint in it is signed by the key and its hashes lead to
    /// the signed root; 1 with the reason otherwise (any changed byte fails).
    VerifyProof {
        /// The proof file (`-` for stdin).
        proof: PathBuf,
        /// The host's public key.
        #[arg(long = "pub", value_name = "FILE")]
        public: PathBuf,
        /// What was verified, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every recorded decision from the policy that was in force.
    ///
    /// Verifies the lineage, then for each policy-change record the bundle it names (from
    /// the archive of loaded bundles, by digest; signatures under TRUST at the time of the
    /// change), compiles it with the host answers the record carries, and recomputes each
    /// decision with the explain engine. Prints `N decisions replayed, M divergences`, the
    /// first divergent record, and decisions that could not be recomputed (counted apart,
    /// never as agreement). Exit 0 all agree, 1 the lineage does not verify, 2 divergences,
    /// 3 a policy change whose bundle is missing or does not verify.
    Replay {
        /// The lineage directory.
        dir: PathBuf,
        /// The host's public key.
        #[arg(long = "pub", value_name = "FILE")]
        public: PathBuf,
        /// The trust root bundles are checked under.
        #[arg(long, value_name = "FILE", default_value = "/etc/rampart/trust.json")]
        trust: PathBuf,
        /// The archived bundles (DIGEST.rpb); default STATE_DIR/bundles.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/rampart/bundles")]
        bundles: PathBuf,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print records (not verified: use `lineage verify`).
    Show {
        /// The lineage directory.
        dir: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Print the last records, and with -f new ones as they are written.
    Tail {
        /// The lineage directory.
        dir: PathBuf,
        /// How many records to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing new records until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// Which records `lineage show` and `lineage tail` print (all filters must match).
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Record kind.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Decision of a decision record.
    #[arg(long, value_enum)]
    decision: Option<Verdict>,
    /// Action of a decision record.
    #[arg(long, value_enum)]
    action: Option<ActionKind>,
    /// Process id of a decision record.
    #[arg(long)]
    pid: Option<u64>,
    /// Cgroup id of a decision record.
    #[arg(long)]
    cgroup: Option<u64>,
    /// From this time: RFC 3339 (2026-11-22T10:00:00Z) or a duration ago (15m).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Up to this time (same forms).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// The records' JSON lines as written.
    #[arg(long)]
    json: bool,
}

impl FilterArgs {
    fn build(&self) -> Result<Filter> {
        Ok(Filter {
            kind: self.kind,
            decision: self.decision,
            action: self.action,
            pid: self.pid,
            cgroup: self.cgroup,
            since_ns: self.since.as_deref().map(parse_time).transpose()?,
            until_ns: self.until.as_deref().map(parse_time).transpose()?,
        })
    }
}

impl LineageCommand {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            Self::Verify {
                dir,
                public,
                checkpoints,
                json,
            } => verify_command(&dir, &public, checkpoints.as_deref(), json).map(ExitCode::from),
            Self::Prove {
                dir,
                seq,
                checkpoint_size,
                from_size,
                to_size,
                output,
            } => {
                super::lineage_proof::prove(&dir, seq, checkpoint_size, from_size, to_size, &output)
                    .map(|()| ExitCode::SUCCESS)
            }
            Self::VerifyProof {
                proof,
                public,
                json,
            } => super::lineage_proof::verify_proof(&proof, &public, json),
            Self::Replay {
                dir,
                public,
                trust,
                bundles,
                json,
            } => super::lineage_proof::replay(&dir, &public, &trust, &bundles, json)
                .map(ExitCode::from),
            Self::Show { dir, filter } => {
                show_command(&dir, &filter.build()?, filter.json).map(|()| ExitCode::SUCCESS)
            }
            Self::Tail {
                dir,
                lines,
                follow,
                filter,
            } => tail_command(&dir, &filter.build()?, filter.json, lines, follow)
                .map(|()| ExitCode::SUCCESS),
        }
    }
}

/// `rampart lineage verify`: prints the report; returns the exit code (0 intact,
/// 1 tampered, 2 unanchored tail, 3 gaps).
fn verify_command(dir: &Path, key: &Path, checkpoints: Option<&Path>, json: bool) -> Result<u8> {
    let key = PublicKey::read(key).map_err(|e| anyhow::anyhow!(e.in_file(key)))?;
    let report = verify(dir, &key, checkpoints)?;
    let code = report.exit_code();
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["exit_code"] = code.into();
        println!("{v}");
        return Ok(code);
    }
    let r = &report;
    println!(
        "lineage {}: {} records verified (seq 0..{}) in {} segment(s)",
        dir.display(),
        r.records,
        r.records.saturating_sub(1),
        r.segments
    );
    println!(
        "anchored: {} records by signed checkpoints ({} in the lineage, {} from the checkpoint file)",
        r.anchored, r.checkpoints, r.external_checkpoints
    );
    println!(
        "unanchored tail: {} record(s) after the last checkpoint{}",
        r.unanchored_tail,
        if r.unanchored_tail > 0 {
            format!(" (seq {}..{})", r.anchored, r.records.saturating_sub(1))
        } else {
            String::new()
        }
    );
    println!(
        "gaps: {} ({} events lost); restarts: {}",
        r.gaps, r.lost, r.restarts
    );
    for t in &r.torn {
        println!("torn line kept aside: {}", t.display());
    }
    match (&r.tampered, code) {
        (Some(t), _) => println!(
            "TAMPERED: first bad record seq {} (segment {}): {}",
            t.seq, t.segment, t.reason
        ),
        (None, 0) => println!("intact"),
        (None, 2) => println!("chain intact; the tail is not anchored by a checkpoint yet"),
        (None, _) => println!("chain intact, with gaps in coverage"),
    }
    Ok(code)
}

/// Parses a time bound: RFC 3339 (`2026-11-22T10:00:00Z`) or a duration ago (`15m`).
fn parse_time(s: &str) -> Result<u64> {
    let t = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let ago = humantime::parse_duration(s).with_context(|| {
                format!("`{s}` is neither an RFC 3339 time nor a duration such as 15m")
            })?;
            SystemTime::now() - ago
        }
    };
    Ok(t.duration_since(UNIX_EPOCH)?.as_nanos() as u64)
}

/// One record for people.
fn describe(v: &Value) -> String {
    let time = v["time_ns"].as_u64().map(rfc3339_ns).unwrap_or_default();
    let head = format!("#{} {time} v{}", v["seq"], v["policy_version"]);
    let str_of = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    match v["kind"].as_str().unwrap_or("?") {
        "decision" => format!(
            "{head} {} {} {} ({}; {} {}) pid {} {} cgroup {}",
            str_of("decision"),
            str_of("action"),
            v["path"].as_str().or(v["endpoint"].as_str()).unwrap_or("-"),
            str_of("reason"),
            str_of("policy"),
            str_of("rule"),
            v["pid"],
            str_of("comm"),
            v["cgroup_id"]
        ),
        "gap" => format!(
            "{head} GAP {} lost from {} ({})",
            v["lost"],
            str_of("source"),
            str_of("reason")
        ),
        "checkpoint" => format!(
            "{head} checkpoint of {} records, head {}",
            v["size"],
            str_of("head")
        ),
        "policy-change" => format!(
            "{head} policy-change v{} -> v{} {}",
            v["old_version"], v["new_version"], v["policies"]
        ),
        "policy-refused" => format!(
            "{head} policy-refused ({}): {}",
            str_of("code"),
            str_of("error")
        ),
        "agent-start" => format!(
            "{head} agent-start host {} pid {}",
            str_of("host"),
            v["pid"]
        ),
        "agent-stop" => format!("{head} agent-stop ({})", str_of("reason")),
        "release" => format!(
            "{head} RELEASE: {} links detached under {}; nothing enforced",
            v["links"],
            str_of("pin_dir")
        ),
        "truncated" => format!(
            "{head} TRUNCATED: {} records found where the anchor covers {} (lineage {})",
            v["found"],
            v["anchored_size"],
            str_of("anchored_lineage")
        ),
        "control-refused" => format!(
            "{head} control-refused: pid {} uid {} in {}: {}",
            v["pid"],
            v["uid"],
            str_of("cgroup"),
            str_of("error")
        ),
        other => format!("{head} {other}"),
    }
}

fn print_line(out: &mut impl Write, line: &str, filter: &Filter, json: bool) -> Result<bool> {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        writeln!(out, "(unparseable line: {line})")?;
        return Ok(true);
    };
    if !filter.matches(&v) {
        return Ok(false);
    }
    if json {
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{}", describe(&v))?;
    }
    Ok(true)
}

fn all_lines(dir: &Path) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    for seg in segments(dir)? {
        let text = std::fs::read_to_string(segment_path(dir, seg))?;
        out.extend(text.lines().map(|l| (seg, l.to_owned())));
    }
    Ok(out)
}

/// `rampart lineage show`: every matching record (not verified: use `verify`).
fn show_command(dir: &Path, filter: &Filter, json: bool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (_, line) in all_lines(dir)? {
        print_line(&mut out, &line, filter, json)?;
    }
    Ok(())
}

/// `rampart lineage tail`: the last `n` matching records, then (with `follow`) new ones as
/// they are written, until interrupted.
fn tail_command(dir: &Path, filter: &Filter, json: bool, n: usize, follow: bool) -> Result<()> {
    let lines = all_lines(dir)?;
    let matching: Vec<&String> = lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| filter.matches(&v)))
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in &matching[matching.len().saturating_sub(n)..] {
        print_line(&mut out, line, filter, json)?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut seg = lines.last().map_or(0, |(s, _)| *s);
    let mut offset = std::fs::metadata(segment_path(dir, seg)).map_or(0, |m| m.len());
    let mut partial = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let path: PathBuf = segment_path(dir, seg);
        let bytes = std::fs::read(&path).unwrap_or_default();
        if (bytes.len() as u64) > offset {
            partial.push_str(&String::from_utf8_lossy(&bytes[offset as usize..]));
            offset = bytes.len() as u64;
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                print_line(&mut out, line.trim_end(), filter, json)?;
            }
            out.flush()?;
        } else if segment_path(dir, seg + 1).exists() {
            seg += 1;
            offset = 0;
        } else if !dir.exists() {
            bail!("{} disappeared", dir.display());
        }
    }
}
