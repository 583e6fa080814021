//! The daemon's Prometheus metrics (`/metrics`), with the `prometheus-client` crate: one
//! registry, families named by Prometheus conventions (`rampart_` prefix, `_total`,
//! `_seconds`, `_bytes`), updated where the daemon acts and read lock-free by the scrape.
//! Every family is listed in docs/metrics.md.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::{text::encode, EncodeLabelSet},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

/// Labels of a decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
    pub action: String,
    pub reason: String,
    /// The deciding policy's name (empty: none, e.g. a default deny of an unknown slot).
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabel {
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    pub hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub request: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TamperLabels {
    pub what: String,
    pub repaired: String,
}

type Seconds = Gauge<f64, AtomicU64>;
type Durations = Family<StepLabel, Histogram, fn() -> Histogram>;

fn load_buckets() -> Histogram {
    // 1 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub decisions: Family<DecisionLabels, Counter>,
    pub ring_drops: Counter,
    pub gaps: Counter,
    pub lost_events: Counter,
    pub lineage_records: Counter,
    pub lineage_bytes: Counter,
    pub lineage_checkpoints: Counter,
    pub lineage_writable: Gauge,
    pub policy_version: Gauge,
    pub policy_expiry: Seconds,
    pub policy_refusals: Family<CodeLabel, Counter>,
    pub load_duration: Durations,
    pub hooks: Family<HookLabel, Gauge>,
    pub resident: Gauge,
    pub control: Family<RequestLabels, Counter>,
    pub tamper: Family<TamperLabels, Counter>,
    pub source_reachable: Family<SourceLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding every family (all at zero).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Self {
            decisions: Family::default(),
            ring_drops: Counter::default(),
            gaps: Counter::default(),
            lost_events: Counter::default(),
            lineage_records: Counter::default(),
            lineage_bytes: Counter::default(),
            lineage_checkpoints: Counter::default(),
            lineage_writable: Gauge::default(),
            policy_version: Gauge::default(),
            policy_expiry: Seconds::default(),
            policy_refusals: Family::default(),
            load_duration: Durations::new_with_constructor(load_buckets),
            hooks: Family::default(),
            resident: Gauge::default(),
            control: Family::default(),
            tamper: Family::default(),
            source_reachable: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "rampart_decisions",
            "Kernel decisions recorded, by decision, action, reason and policy",
            m.decisions.clone(),
        );
        r.register(
            "rampart_ring_drops",
            "Events the kernel could not queue because the event ring was full",
            m.ring_drops.clone(),
        );
        r.register(
            "rampart_lineage_gaps",
            "Gap records written to the lineage (events lost or unrecorded)",
            m.gaps.clone(),
        );
        r.register(
            "rampart_lineage_lost_events",
            "Events the gap records account for as lost",
            m.lost_events.clone(),
        );
        r.register(
            "rampart_lineage_records",
            "Records this agent appended to the lineage",
            m.lineage_records.clone(),
        );
        r.register_with_unit(
            "rampart_lineage",
            "Bytes of records this agent appended to the lineage",
            Unit::Bytes,
            m.lineage_bytes.clone(),
        );
        r.register(
            "rampart_lineage_checkpoints",
            "Signed checkpoints this agent wrote",
            m.lineage_checkpoints.clone(),
        );
        r.register(
            "rampart_lineage_writable",
            "1 while the lineage is being written, 0 while writing fails",
            m.lineage_writable.clone(),
        );
        r.register(
            "rampart_policy_version",
            "Version of the bundle in force (0: local policy files or none)",
            m.policy_version.clone(),
        );
        r.register_with_unit(
            "rampart_policy_expiry",
            "Seconds until the bundle in force expires (+Inf: it does not; 0: expired)",
            Unit::Seconds,
            m.policy_expiry.clone(),
        );
        r.register(
            "rampart_policy_refusals",
            "Policies refused (the one in force stayed), by refusal code",
            m.policy_refusals.clone(),
        );
        r.register_with_unit(
            "rampart_policy_load_duration",
            "Time to put a policy in force, by step (prepare: verify and compile; swap: \
             write the maps and switch)",
            Unit::Seconds,
            m.load_duration.clone(),
        );
        r.register(
            "rampart_hook_attached",
            "1 for each kernel hook attached and in place, 0 if found detached and not put back",
            m.hooks.clone(),
        );
        r.register_with_unit(
            "rampart_agent_resident_memory",
            "Resident memory of the agent process",
            Unit::Bytes,
            m.resident.clone(),
        );
        r.register(
            "rampart_control_requests",
            "Control socket requests, by request and result",
            m.control.clone(),
        );
        r.register(
            "rampart_tamper",
            "Pins removed or links detached behind the agent's back, by what and whether \
             they were put back",
            m.tamper.clone(),
        );
        r.register(
            "rampart_policy_source_reachable",
            "Whether the remote policy source (policy.source) answered its last poll (1) or \
             not (0)",
            m.source_reachable.clone(),
        );
        Self { registry, ..m }
    }

    /// The registry in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The registry in the Prometheus text format 0.0.4, for scrapers and tools that do not
    /// ask for OpenMetrics (e.g. `promtool check metrics`, `curl`).
    pub fn encode_text(&self) -> String {
        to_text_format(&self.encode())
    }

    /// Counts one decision.
    pub fn decision(&self, decision: &str, action: &str, reason: &str, policy: Option<&str>) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: decision.to_owned(),
                action: action.to_owned(),
                reason: reason.to_owned(),
                policy: policy.unwrap_or_default().to_owned(),
            })
            .inc();
    }

    /// Sets the agent's resident memory from `/proc/self/statm`.
    pub fn sample_resident(&self) {
        if let Some(bytes) = resident_bytes() {
            self.resident.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: there a counter family is named
/// with its `_total` suffix in `# HELP` and `# TYPE`, and `# UNIT` and `# EOF` do not exist.
/// Samples are the same lines in both.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// This process's resident set, in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample lines of `text` (name{labels} value), comments dropped.
    fn samples(text: &str) -> Vec<(&str, f64)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name, value.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn every_family_is_exported_with_conventional_names() {
        let m = Metrics::new();
        m.decision("deny", "open", "no-rule", Some("web"));
        m.decision("deny", "open", "no-rule", Some("web"));
        m.decision("allow", "exec", "rule", Some("web"));
        m.gaps.inc();
        m.lineage_bytes.inc_by(550);
        m.policy_version.set(7);
        m.policy_expiry.set(f64::INFINITY);
        m.load_duration
            .get_or_create(&StepLabel {
                step: "prepare".into(),
            })
            .observe(0.004);
        m.hooks
            .get_or_create(&HookLabel {
                hook: "file_open".into(),
            })
            .set(1);
        m.control
            .get_or_create(&RequestLabels {
                request: "status".into(),
                result: "answered".into(),
            })
            .inc();
        m.sample_resident();
        let text = m.encode();
        for family in [
            "# TYPE rampart_decisions counter",
            "# TYPE rampart_ring_drops counter",
            "# TYPE rampart_lineage_gaps counter",
            "# TYPE rampart_lineage_records counter",
            "# TYPE rampart_lineage_bytes counter",
            "# TYPE rampart_lineage_checkpoints counter",
            "# TYPE rampart_policy_version gauge",
            "# TYPE rampart_policy_expiry_seconds gauge",
            "# TYPE rampart_policy_load_duration_seconds histogram",
            "# TYPE rampart_hook_attached gauge",
            "# TYPE rampart_agent_resident_memory_bytes gauge",
            "# TYPE rampart_control_requests counter",
        ] {
            assert!(text.contains(family), "{family} missing from\n{text}");
        }
        let s = samples(&text);
        let get = |name: &str| s.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        assert_eq!(
            get("rampart_decisions_total{decision=\"deny\",action=\"open\",reason=\"no-rule\",policy=\"web\"}"),
            Some(2.0)
        );
        assert_eq!(get("rampart_lineage_bytes_total"), Some(550.0));
        assert_eq!(get("rampart_policy_version"), Some(7.0));
        assert_eq!(get("rampart_policy_expiry_seconds"), Some(f64::INFINITY));
        assert_eq!(
            get("rampart_policy_load_duration_seconds_count{step=\"prepare\"}"),
            Some(1.0)
        );
        assert!(get("rampart_agent_resident_memory_bytes").is_some_and(|b| b > 0.0));

        // The text format names counters with their suffix and keeps every sample.
        let plain = m.encode_text();
        assert!(
            plain.contains("# TYPE rampart_decisions_total counter\n"),
            "{plain}"
        );
        assert!(
            plain.contains("# HELP rampart_decisions_total Kernel decisions"),
            "{plain}"
        );
        assert!(plain.contains("# TYPE rampart_policy_load_duration_seconds histogram\n"));
        assert!(!plain.contains("# EOF") && !plain.contains("# UNIT"));
        assert_eq!(samples(&plain), s);
    }
}
