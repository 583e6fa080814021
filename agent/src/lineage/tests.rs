//! Lineage tests: a written lineage verifies; each kind of tampering is caught at the
//! right record; restarts, torn lines and cut tails are reported.

use std::path::{Path, PathBuf};

use super::{
    decision::DecisionRecord,
    record::{record_hash, Body},
    segment::{segment_path, segments, CHECKPOINTS_FILE},
    verify::{verify, Report},
    writer::{Config, Stamp, Writer},
};
use crate::bundle::keys::{hex, PublicKey, SecretKey};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-lineage-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn decision(i: u64) -> DecisionRecord {
    let denied = i.is_multiple_of(3);
    DecisionRecord {
        ktime_ns: 1_000_000 + i,
        pid: 4242,
        tid: 4242,
        uid: 0,
        comm: "nginx".into(),
        cgroup_id: 77,
        action: "open",
        decision: if denied { "deny" } else { "allow" },
        reason: if denied { "no-rule" } else { "allowed" },
        rule_id: (!denied).then_some(2),
        policy_id: 0,
        policy_version: 7,
        policy: Some("web-server".into()),
        rule: (!denied).then(|| "spec.files[2]".into()),
        bundle: None,
        access: Some("read".into()),
        path: Some(format!("/srv/www/static/assets/file-{i:06}.css")),
        path_truncated: false,
        file_dev: Some(2049),
        file_ino: Some(100_000 + i),
        endpoint: None,
        peer_pid: None,
    }
}

struct Fixture {
    dir: PathBuf,
    key: PublicKey,
}

/// A lineage of `n` decisions with a checkpoint every `every` records, closed cleanly
/// when `close`.
fn lineage(name: &str, n: u64, every: u64, close: bool) -> Fixture {
    let dir = scratch(name);
    let key = SecretKey::generate().unwrap();
    let public = key.public();
    let mut cfg = Config::new(&dir);
    cfg.checkpoint_every = every;
    let (mut w, _) = Writer::open(cfg, key, 7, None).unwrap();
    for i in 0..n {
        let d = decision(i);
        w.append(Stamp::of_kernel(d.ktime_ns), Some(7), &Body::Decision(&d))
            .unwrap();
    }
    if close {
        w.close("test").unwrap();
    } else {
        w.flush().unwrap();
    }
    Fixture { dir, key: public }
}

fn lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(segment_path(dir, 0))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(dir: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(segment_path(dir, 0), text).unwrap();
}

fn check(f: &Fixture) -> Report {
    verify(&f.dir, &f.key, None).unwrap()
}

fn tampered_at(r: &Report) -> u64 {
    assert_eq!(r.exit_code(), 1, "expected tampering to be detected: {r:?}");
    r.tampered.as_ref().unwrap().seq
}

#[test]
fn a_closed_lineage_is_intact() {
    let f = lineage("intact", 250, 100, true);
    let r = check(&f);
    // agent-start, 250 decisions with 2 checkpoints among them, agent-stop, checkpoint.
    assert_eq!(r.records, 1 + 250 + 2 + 1 + 1);
    assert_eq!(r.exit_code(), 0, "{r:?}");
    assert_eq!(r.anchored, r.records - 1);
    assert_eq!(r.checkpoints, 3);
    assert_eq!((r.gaps, r.restarts, r.unanchored_tail), (0, 0, 0));
    // The checkpoint file holds the same notes, and verifies as off-host anchors.
    let r2 = verify(&f.dir, &f.key, Some(&f.dir.join(CHECKPOINTS_FILE))).unwrap();
    assert_eq!((r2.exit_code(), r2.external_checkpoints), (0, 3));
    // Every record is a JSON object whose prev is the hash of the line before.
    let l = lines(&f.dir);
    for pair in l.windows(2) {
        let v: serde_json::Value = serde_json::from_str(&pair[1]).unwrap();
        assert_eq!(v["prev"], hex(&record_hash(pair[0].as_bytes())));
    }
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_changed_byte_is_caught_at_its_record() {
    let f = lineage("byte", 50, 1000, true);
    let mut l = lines(&f.dir);
    l[10] = l[10].replacen("\"allow\"", "\"deny\"", 1);
    l[11] = l[11].replacen("nginx", "nginX", 1);
    write_lines(&f.dir, &l);
    assert_eq!(tampered_at(&check(&f)), 11);
    // The record before the final checkpoint, and the checkpoint itself (the last record).
    let f = lineage("byte-last", 5, 1000, true);
    let good = lines(&f.dir);
    let n = good.len();
    let mut l = good.clone();
    l[n - 2] = l[n - 2].replacen("test", "tesT", 1);
    write_lines(&f.dir, &l);
    assert_eq!(tampered_at(&check(&f)), (n - 2) as u64);
    let mut l = good;
    l[n - 1] = l[n - 1].replacen("segment ", "segment 1", 1);
    write_lines(&f.dir, &l);
    assert_eq!(tampered_at(&check(&f)), (n - 1) as u64);
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_deleted_record_is_caught() {
    let f = lineage("delete", 50, 1000, true);
    let mut l = lines(&f.dir);
    l.remove(20);
    write_lines(&f.dir, &l);
    let r = check(&f);
    assert_eq!(tampered_at(&r), 20);
    assert!(r
        .tampered
        .unwrap()
        .reason
        .contains("expected seq 20, found seq 21"));
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn swapped_records_are_caught() {
    let f = lineage("swap", 50, 1000, true);
    let mut l = lines(&f.dir);
    l.swap(30, 31);
    write_lines(&f.dir, &l);
    assert_eq!(tampered_at(&check(&f)), 30);
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn an_inserted_record_is_caught() {
    let f = lineage("insert", 50, 1000, true);
    let mut l = lines(&f.dir);
    let copy = l[15].clone();
    l.insert(16, copy);
    write_lines(&f.dir, &l);
    assert_eq!(tampered_at(&check(&f)), 16);
    std::fs::remove_dir_all(&f.dir).unwrap();
}

/// Re-chains every line after `from` so each prev matches the (edited) line before it.
fn rehash_from(l: &mut [String], from: usize) {
    for i in from + 1..l.len() {
        let v: serde_json::Value = serde_json::from_str(&l[i]).unwrap();
        let old = v["prev"].as_str().unwrap().to_owned();
        let new = hex(&record_hash(l[i - 1].as_bytes()));
        l[i] = l[i].replacen(&old, &new, 1);
    }
}

#[test]
fn a_rehashed_segment_is_caught_by_the_checkpoint_signature() {
    let f = lineage("rehash", 60, 1000, true);
    let mut l = lines(&f.dir);
    l[25] = l[25].replacen("\"deny\"", "\"allow\"", 1);
    rehash_from(&mut l, 25);
    write_lines(&f.dir, &l);
    let r = check(&f);
    // The chain links all hold now; only the signed checkpoint (the last record) knows.
    let last = (l.len() - 1) as u64;
    assert_eq!(tampered_at(&r), last);
    assert!(r
        .tampered
        .unwrap()
        .reason
        .contains("checkpoint root does not match"));
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_tail_cut_after_the_last_checkpoint_is_unanchored() {
    // A checkpoint at 51 records (agent-start + 50), then 30 more, not closed.
    let f = lineage("cut", 80, 51, false);
    let mut l = lines(&f.dir);
    assert_eq!(check(&f).unanchored_tail, 30);
    l.truncate(l.len() - 10);
    write_lines(&f.dir, &l);
    let r = check(&f);
    assert_eq!(r.exit_code(), 2, "{r:?}");
    assert_eq!((r.anchored, r.unanchored_tail), (51, 20));
    // Cut before the last checkpoint: the off-host checkpoint file shows records removed.
    l.truncate(40);
    write_lines(&f.dir, &l);
    let r = verify(&f.dir, &f.key, Some(&f.dir.join(CHECKPOINTS_FILE))).unwrap();
    assert_eq!(tampered_at(&r), 40);
    assert!(r
        .tampered
        .unwrap()
        .reason
        .contains("records 40..50 were removed"));
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_checkpoint_signed_by_another_key_is_caught() {
    let f = lineage("otherkey", 30, 1000, true);
    let other = SecretKey::generate().unwrap().public();
    let r = verify(&f.dir, &other, None).unwrap();
    let last = (lines(&f.dir).len() - 1) as u64;
    assert_eq!(tampered_at(&r), last);
    assert!(r.tampered.unwrap().reason.contains("no signature by"));
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_restart_links_segments_with_a_gap_and_a_torn_line_is_kept() {
    let dir = scratch("restart");
    let keys = scratch("restart-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (secret, _) = SecretKey::generate()
        .unwrap()
        .write_pair(&keys.join("host"))
        .unwrap();
    let key = SecretKey::read(&secret).unwrap();
    let public = key.public();
    let (mut w, _) = Writer::open(Config::new(&dir), key, 1, None).unwrap();
    w.append(Stamp::now(), None, &Body::Decision(&decision(1)))
        .unwrap();
    w.flush().unwrap();
    let head = w.head().to_owned();
    drop(w); // a crash: no agent-stop, no checkpoint
             // Half a record at the end, as a crash mid-write leaves it.
    let seg0 = segment_path(&dir, 0);
    let mut text = std::fs::read(&seg0).unwrap();
    text.extend_from_slice(b"{\"seq\":3,\"prev\":\"ab");
    std::fs::write(&seg0, text).unwrap();
    let key2 = SecretKey::read(&secret).unwrap();
    let (mut w, recovery) = Writer::open(Config::new(&dir), key2, 1, None).unwrap();
    let (bytes, aside) = recovery.torn.expect("the torn line is reported");
    assert_eq!(bytes, 19);
    assert_eq!(std::fs::read(&aside).unwrap(), b"{\"seq\":3,\"prev\":\"ab");
    w.close("test").unwrap();
    assert_eq!(segments(&dir).unwrap(), vec![0, 1]);
    let first_of_new = std::fs::read_to_string(segment_path(&dir, 1)).unwrap();
    let v: serde_json::Value = serde_json::from_str(first_of_new.lines().next().unwrap()).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["prev"].as_str()),
        (Some("agent-start"), Some(head.as_str()))
    );
    assert_eq!(v["resumed_from"], head);
    let r = verify(&dir, &public, None).unwrap();
    assert_eq!(r.exit_code(), 3, "{r:?}");
    assert_eq!((r.restarts, r.gaps, r.lost), (1, 2, 1));
    assert_eq!(r.torn, vec![aside]);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&keys).unwrap();
}

#[test]
fn encode_puts_the_header_first_and_stays_valid_json() {
    use super::record::{encode, Header};
    let d = decision(3);
    let line = encode(
        &Header {
            seq: 9,
            prev: "ab\"cd",
            segment: 2,
            boot: "boot",
            mono_ns: 5,
            time_ns: 6,
            policy_version: 7,
        },
        &Body::Decision(&d),
    );
    let text = String::from_utf8(line).unwrap();
    assert!(
        text.starts_with(
            r#"{"seq":9,"prev":"ab\"cd","segment":2,"boot":"boot","mono_ns":5,"time_ns":6,"policy_version":7,"kind":"decision","ktime_ns":1000003,"#
        ),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["prev"].as_str(), v["path"].as_str()),
        (
            Some("ab\"cd"),
            Some("/srv/www/static/assets/file-000003.css")
        )
    );
}

#[test]
fn a_lineage_cut_back_below_its_anchor_is_recorded_and_fails_verification() {
    let dir = scratch("cut");
    let keys = scratch("cut-keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (secret, _) = SecretKey::generate()
        .unwrap()
        .write_pair(&keys.join("host"))
        .unwrap();
    let public = SecretKey::read(&secret).unwrap().public();
    let (mut w, _) = Writer::open(
        Config::new(&dir),
        SecretKey::read(&secret).unwrap(),
        1,
        None,
    )
    .unwrap();
    for i in 0..3 {
        w.append(Stamp::now(), None, &Body::Decision(&decision(i)))
            .unwrap();
    }
    w.checkpoint().unwrap();
    let early = std::fs::read(segment_path(&dir, 0)).unwrap();
    for i in 3..6 {
        w.append(Stamp::now(), None, &Body::Decision(&decision(i)))
            .unwrap();
    }
    w.close("test").unwrap();
    let anchor = w
        .anchor()
        .expect("the closing checkpoint anchors the lineage");
    drop(w);
    // Cut back to the first checkpoint, as an attacker would while no agent runs, and the
    // checkpoint file with it: the lineage alone still verifies.
    std::fs::write(segment_path(&dir, 0), &early).unwrap();
    let notes = std::fs::read_to_string(dir.join(super::segment::CHECKPOINTS_FILE)).unwrap();
    let first = super::verify::split_notes(&notes).remove(0);
    std::fs::write(
        dir.join(super::segment::CHECKPOINTS_FILE),
        format!("{first}\n"),
    )
    .unwrap();
    assert_eq!(verify(&dir, &public, None).unwrap().exit_code(), 0);
    // Without the anchor a restart finds nothing wrong; with it, the cut is recorded.
    let (w, recovery) = Writer::open(
        Config::new(&dir),
        SecretKey::read(&secret).unwrap(),
        1,
        Some(&anchor),
    )
    .unwrap();
    assert_eq!(recovery.truncated.as_ref(), Some(&anchor));
    drop(w);
    let r = verify(&dir, &public, None).unwrap();
    assert_eq!(r.exit_code(), 1, "{r:?}");
    let reason = r.tampered.map(|t| t.reason).unwrap_or_default();
    assert!(reason.contains("cut back or replaced"), "{reason}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&keys).unwrap();
}

#[test]
fn the_fixed_header_reads_what_json_reads_or_defers_to_it() {
    use super::record::{fixed_header, Parsed};
    let f = lineage("fixed", 20, 8, true);
    for line in lines(&f.dir) {
        let json: Parsed<'_> = serde_json::from_str(&line).unwrap();
        let (fast, at) =
            fixed_header(line.as_bytes()).expect("every written header reads directly");
        assert!(line[at..].starts_with("\"kind\":"));
        assert_eq!(
            (fast.seq, fast.prev, fast.segment, fast.kind, fast.time_ns),
            (json.seq, json.prev, json.segment, json.kind, json.time_ns)
        );
    }
    let line = lines(&f.dir)[3].clone();
    // Anything not exactly as the writer writes it is left to the JSON parser.
    for changed in [
        line.replacen("\"seq\":3", "\"seq\":03", 1),
        line.replacen("\"boot\":\"", "\"boot\":\"\\u0041", 1),
        line.replacen("{\"seq\":3,", "{\"seq\": 3,", 1),
        line.replacen("\"segment\"", "\"segmenT\"", 1),
        line.replacen("\"kind\":\"decision\"", "\"kind\":\"Decision\"", 1),
    ] {
        assert_ne!(changed, line);
        assert!(fixed_header(changed.as_bytes()).is_none(), "{changed}");
    }
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_long_segment_checked_on_every_core_finds_the_same_first_bad_record() {
    let f = lineage("parallel", 12_000, 5_000, true);
    let r = check(&f);
    assert_eq!(r.exit_code(), 0, "{r:?}");
    assert_eq!(r.records, 1 + 12_000 + 2 + 1 + 1);
    let mut l = lines(&f.dir);
    l[9_001] = l[9_001].replacen("nginx", "nginX", 1);
    l[3] = l[3].replacen("{\"seq\"", "{\"seq\" ", 1);
    write_lines(&f.dir, &l);
    // Record 3 is still valid JSON (read by the parser, not the fixed header) and its hash
    // changed: caught at 3, not at 9 001 further on.
    assert_eq!(tampered_at(&check(&f)), 3);
    // Only the one in the last worker's share: found there.
    l[3] = l[3].replacen("{\"seq\" ", "{\"seq\"", 1);
    write_lines(&f.dir, &l);
    assert_eq!(tampered_at(&check(&f)), 9_001);
    std::fs::remove_dir_all(&f.dir).unwrap();
}
