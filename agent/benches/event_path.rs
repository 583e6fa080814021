//! The event path on this host's kernel, natively: a workload in a governed cgroup sends
//! UDP datagrams the policy allows, with `events: all`, so each `sendmsg4` decision is a
//! kernel event in the ring buffer; the agent's own pipeline (`recorder::drain_into`: parse,
//! annotate, an event line, a lineage record with its hash chain, fdatasync at least every
//! 100 ms) drains it on one thread. Offered rates rise (10 s each) until events are lost
//! (the kernel's drop counter), then twice the highest loss-free rate; finally the lineage
//! is verified and timed. Prints one `event-path {json}` line for `cargo xtask bench`.
//!
//! The datagram path is used because it needs no BPF-LSM (this host's kernel may not have
//! it); the ring, the event format and the agent's code are the same as for file and exec
//! decisions. Needs root, cgroup v2 and the agent built with its eBPF object; otherwise it
//! prints why and measures nothing.
//! Run: `sudo -E cargo bench -p rampart --bench event_path`.

use std::{
    io::{BufWriter, Write},
    net::UdpSocket,
    path::Path,
    time::{Duration, Instant},
};

use rampart::{
    bundle::SecretKey,
    daemon::{
        recorder::{drain_into, LineageSettings, Recorder},
        swap::{self, LoadTimes},
    },
    kernel::{
        btf::Btf,
        cgroup::{self, Cgroup},
        enforcer::{Enforcer, SlotInfo},
        layout, preflight,
    },
    lineage::verify,
    policy::{compile, Literal, PolicySource},
};
use serde_json::json;

/// Seconds per offered rate.
const SECONDS: u64 = 10;
const RATES: [u64; 6] = [25_000, 50_000, 100_000, 150_000, 200_000, 400_000];

/// In a forked child that joins `cg`: sends datagrams to `to` at `rate` per second for
/// `SECONDS` (paced per millisecond); exits with 0, or 1 on a failure.
fn sender(cg: &Cgroup, to: std::net::SocketAddr, rate: u64) -> libc::pid_t {
    let procs = cg.path.join("cgroup.procs");
    // SAFETY: fork in a single-threaded bench process; the child only sends and leaves
    // with _exit, never returning into the parent's code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = (|| -> std::io::Result<()> {
            std::fs::write(&procs, "0")?;
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < Duration::from_secs(SECONDS) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    sock.send_to(b"x", to)?;
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(())
        })()
        .is_ok();
        // SAFETY: ends the forked child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    pid
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    if let Some(why) = preflight::native_unavailable() {
        eprintln!("event_path bench SKIPPED: {why}");
        println!("event-path-skipped {why}");
        return;
    }
    if let Err(e) = run() {
        eprintln!("event_path bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("rampart-bench-events-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = measure(&work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn measure(work: &Path) -> anyhow::Result<()> {
    let hierarchy = cgroup::hierarchy_root()?;
    let name = format!("rampart-bench-events-{}", std::process::id());
    let dir = hierarchy.join(&name);
    std::fs::create_dir_all(&dir)?;
    let cg = Cgroup::resolve(&hierarchy, &format!("/{name}"))?;
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let to = sink.local_addr()?;
    let yaml = format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: events\nspec:\n  \
         governs: [/{name}]\n  events: all\n  network:\n    - cidr: 127.0.0.1/32\n      \
         ports: [{}]\n      protocol: udp\n",
        to.port()
    );
    let source = PolicySource::parse("events.yaml", &yaml)?;
    let policy = compile(&source.documents[0], "events.yaml", &Literal)?;

    let raw = Btf::from_sys_fs()?;
    let layout = layout::resolve(&Btf::parse(&raw)?)?;
    let mut enforcer = Enforcer::load_network_only(&layout)?;
    let generation = swap::switch(
        &mut enforcer,
        &|name: &str| cgroup::open_in_hierarchy(&hierarchy, name),
        None,
        vec![policy],
        SlotInfo::default(),
        &mut LoadTimes::default(),
    )?;
    let mut ring = enforcer.take_events()?;

    let key = SecretKey::generate()?;
    let (key_path, pub_path) = key.write_pair(&work.join("host"))?;
    let lineage = work.join("lineage");
    let mut recorder = Recorder::open(
        Some(&LineageSettings {
            dir: lineage.clone(),
            host_key: key_path,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            segment_bytes: 64 * 1024 * 1024,
            anchor_file: None,
        }),
        0,
        None,
    )?;
    recorder.start_drops(false, enforcer.event_drops()?);
    let mut out = BufWriter::new(std::fs::File::create(work.join("events.jsonl"))?);
    let generations = [&generation];
    let records = |r: &Recorder| {
        r.lineage_status()
            .and_then(|s| s["records"].as_u64())
            .unwrap_or(0)
    };

    let mut run_at = |rate: u64| -> anyhow::Result<serde_json::Value> {
        let drops_before = enforcer.event_drops()?;
        let records_before = records(&recorder);
        let started = Instant::now();
        let child = sender(&cg, to, rate);
        let mut last_tick = Instant::now();
        let mut status = 0;
        loop {
            drain_into(&mut ring, &generations, &mut recorder, &mut out);
            if last_tick.elapsed() >= Duration::from_millis(100) {
                recorder.drops(enforcer.event_drops()?);
                recorder.tick();
                last_tick = Instant::now();
            }
            // SAFETY: a non-blocking wait for the child forked above.
            if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        drain_into(&mut ring, &generations, &mut recorder, &mut out);
        out.flush()?;
        recorder.drops(enforcer.event_drops()?);
        recorder.tick();
        let elapsed = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            libc::WEXITSTATUS(status) == 0,
            "the sender failed at {rate}/s"
        );
        let lost = enforcer.event_drops()? - drops_before;
        // Decision records, plus gap records (one per 100 ms tick with losses) and a
        // checkpoint every 10 000 records.
        let recorded = records(&recorder) - records_before;
        Ok(json!({
            "rate": rate,
            "recorded": recorded,
            "recorded_per_s": (recorded as f64 / elapsed).round(),
            "lost": lost,
        }))
    };
    let mut runs = Vec::new();
    let mut best = None;
    for rate in RATES {
        let r = run_at(rate)?;
        eprintln!("event_path: {r}");
        let clean = r["lost"] == 0;
        runs.push(r);
        if !clean {
            break;
        }
        best = Some(rate);
    }
    if let Some(b) = best.filter(|b| *b < *RATES.last().unwrap_or(&0)) {
        let r = run_at(b * 2)?;
        eprintln!("event_path: {r}");
        runs.push(r);
    }
    recorder.close("bench done");
    drop(ring);
    drop(enforcer);
    let _ = std::fs::remove_dir(&dir);

    let public = rampart::bundle::PublicKey::read(&pub_path)?;
    let t = Instant::now();
    let report = verify::verify(&lineage, &public, None)?;
    let verify_s = t.elapsed().as_secs_f64();
    println!(
        "event-path {}",
        json!({
            "seconds_per_rate": SECONDS,
            "runs": runs,
            "highest_zero_drop_rate": best,
            "lineage_records": report.records,
            "lineage_verify_exit": report.exit_code(),
            "lineage_verify_per_s": (report.records as f64 / verify_s).round(),
        })
    );
    Ok(())
}
