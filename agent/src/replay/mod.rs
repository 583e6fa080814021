//! Governance replay: every decision a lineage records, recomputed with the explain engine
//! over the exact policy that was in force, from the archived bundle its `policy-change`
//! record names (signatures checked under the trust root, at the time of the change) and the
//! host answers recorded with it.
//!
//! Invariants:
//! - Nothing is replayed from a lineage that does not verify.
//! - A decision counts as agreeing only when it was recomputed and the decision, reason and
//!   rule all match; one that cannot be recomputed (no bundle, an adopted generation, state
//!   the record does not carry) is counted apart, with why.
//! - A policy change is in force for replay only if its bundle was found, verifies, and has
//!   the digest the record names.

#![forbid(unsafe_code)]

pub mod request;

#[cfg(test)]
mod tests;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::{
    bundle::{
        keys::PublicKey,
        state::archived,
        trust::TrustRoot,
        verify::{verify, Context as VerifyContext, VerifiedBundle, AGENT_VERSION},
    },
    lineage::{
        segment::{segment_path, segments},
        verify::{verify as verify_lineage, Report},
    },
    policy::{
        compile::CompiledPolicy, explain::explain, host::compile_sources, resolutions::Resolutions,
        source::PolicySource,
    },
};

/// Where replay finds what it needs.
pub struct Inputs<'a> {
    /// The lineage directory.
    pub dir: &'a Path,
    /// The host key its checkpoints are signed with.
    pub key: &'a PublicKey,
    /// The trust root bundles are checked under.
    pub trust: &'a TrustRoot,
    /// The archived bundles (`DIGEST.rpb`).
    pub bundles: &'a Path,
}

/// A decision replay computed differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    pub seq: u64,
    pub action: String,
    pub target: String,
    pub policy: String,
    pub recorded: Verdict,
    pub replayed: Verdict,
}

/// Decision, reason and rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub decision: String,
    pub reason: String,
    pub rule_id: Option<u32>,
}

/// A policy change replay could not put in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unverified {
    pub seq: u64,
    pub version: u64,
    pub digest: Option<String>,
    pub reason: String,
}

/// What replay found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replay {
    /// The lineage's verification.
    pub lineage: Report,
    pub decisions: u64,
    pub replayed: u64,
    pub agreed: u64,
    pub divergences: u64,
    pub first_divergence: Option<Divergence>,
    /// Decisions that could not be recomputed, by why.
    pub not_recomputable: u64,
    pub not_recomputable_by: BTreeMap<String, u64>,
    pub policy_changes: u64,
    pub policy_changes_verified: u64,
    pub unverified: Vec<Unverified>,
}

impl Replay {
    /// 0: every recomputed decision agrees and every policy change verified; 1: the lineage
    /// does not verify; 2: divergences; 3: a policy change whose bundle is missing or does not
    /// verify (its decisions are counted as not recomputable).
    pub fn exit_code(&self) -> u8 {
        if self.lineage.tampered.is_some() {
            1
        } else if self.divergences > 0 {
            2
        } else if !self.unverified.is_empty() {
            3
        } else {
            0
        }
    }
}

/// The header fields replay reads (the record's first fields, before `"kind"`).
#[derive(Deserialize)]
struct Header {
    seq: u64,
    time_ns: u64,
}

/// The body fields of a policy-change record.
#[derive(Deserialize)]
struct Change<'a> {
    new_version: u64,
    #[serde(default, borrow)]
    new_digest: Option<Cow<'a, str>>,
    #[serde(default)]
    resolved: Option<Resolutions>,
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// A version's policies as replay has them.
enum InForce {
    Policies {
        digest: String,
        policies: Vec<CompiledPolicy>,
    },
    /// Why its decisions cannot be recomputed.
    Unavailable(String),
}

/// Splits a record line into its header and its body (each a JSON object). The header is
/// written first, by hand, and ends where the first unescaped `,"kind":` is: a quote inside
/// a JSON string is always escaped, so that byte sequence cannot occur within one.
pub fn split(line: &str) -> Option<(String, String)> {
    let at = line.find(",\"kind\":")?;
    Some((
        format!("{}}}", &line[..at]),
        format!("{{{}", &line[at + 1..]),
    ))
}

/// Replays the lineage in `inputs.dir`.
pub fn replay(inputs: &Inputs<'_>) -> Result<Replay> {
    let mut out = Replay {
        lineage: verify_lineage(inputs.dir, inputs.key, None)?,
        ..Replay::default()
    };
    if out.lineage.tampered.is_some() {
        return Ok(out);
    }
    let mut versions: BTreeMap<u64, InForce> = BTreeMap::new();
    let verified = out.lineage.records;
    'segments: for n in segments(inputs.dir)? {
        let path = segment_path(inputs.dir, n);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (header, body) = split(line)
                .with_context(|| format!("{}: a line without a kind", path.display()))?;
            let header: Header = serde_json::from_str(&header)?;
            if header.seq >= verified {
                break 'segments;
            }
            let kind: Kind<'_> = serde_json::from_str(&body)?;
            match kind.kind.as_ref() {
                "policy-change" => {
                    let change: Change<'_> = serde_json::from_str(&body)?;
                    out.policy_changes += 1;
                    let state = put_in_force(inputs, &change, header.time_ns);
                    match &state {
                        InForce::Policies { .. } => out.policy_changes_verified += 1,
                        InForce::Unavailable(reason) => {
                            if change.new_digest.is_some() {
                                out.unverified.push(Unverified {
                                    seq: header.seq,
                                    version: change.new_version,
                                    digest: change.new_digest.as_deref().map(str::to_owned),
                                    reason: reason.clone(),
                                });
                            }
                        }
                    }
                    versions.insert(change.new_version, state);
                }
                "decision" => {
                    out.decisions += 1;
                    let recorded: request::Recorded<'_> = serde_json::from_str(&body)
                        .with_context(|| format!("decision record {}", header.seq))?;
                    judge(&mut out, &versions, header.seq, &recorded);
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The policies a policy-change record put in force, from its archived bundle.
fn put_in_force(inputs: &Inputs<'_>, change: &Change<'_>, time_ns: u64) -> InForce {
    let Some(digest) = change.new_digest.as_deref() else {
        return InForce::Unavailable(
            "no signed bundle (local policy files, or the no-policy fallback)".into(),
        );
    };
    let resolved = change.resolved.clone().unwrap_or_default();
    match compile_archived(inputs.trust, inputs.bundles, digest, &resolved, time_ns) {
        Ok((_, policies)) => InForce::Policies {
            digest: digest.to_owned(),
            policies,
        },
        Err(why) => InForce::Unavailable(why),
    }
}

/// The policies of archived bundle `digest` in `bundles`, verified under `trust` as at
/// `time_ns` (when its policy-change was recorded) and compiled with the host answers
/// recorded then (`resolved`): the verified bundle and its policies, or why not.
pub fn compile_archived(
    trust: &TrustRoot,
    bundles: &Path,
    digest: &str,
    resolved: &Resolutions,
    time_ns: u64,
) -> Result<(VerifiedBundle, Vec<CompiledPolicy>), String> {
    let path = archived(bundles, digest);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "bundle {digest} is not in {} ({e}): the lineage names a policy no archive holds",
            bundles.display()
        )
    })?;
    // As it was then: the bundle had to be valid when the change was recorded.
    let verified = verify(
        &bytes,
        &VerifyContext {
            trust,
            scope: &trust.scope,
            now: time_ns / 1_000_000_000,
            clock_skew: 300,
            agent_version: AGENT_VERSION,
        },
    )
    .map_err(|e| format!("bundle {digest} does not verify under the trust root: {e}"))?;
    if verified.digest != digest {
        return Err(format!(
            "{} holds bundle {}, not {digest}",
            path.display(),
            verified.digest
        ));
    }
    let policies = verified
        .payload
        .policies
        .iter()
        .map(|f| PolicySource::parse(&f.name, &f.source))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::from)
        .and_then(|sources| compile_sources(&sources, resolved))
        .map_err(|e| format!("bundle {digest} does not compile: {e:#}"))?;
    Ok((verified, policies))
}

fn not_recomputable(out: &mut Replay, why: String) {
    out.not_recomputable += 1;
    *out.not_recomputable_by.entry(why).or_default() += 1;
}

/// Recomputes one decision.
fn judge(out: &mut Replay, versions: &BTreeMap<u64, InForce>, seq: u64, r: &request::Recorded<'_>) {
    let (digest, policies) = match versions.get(&r.policy_version) {
        Some(InForce::Policies { digest, policies }) => (digest, policies),
        Some(InForce::Unavailable(why)) => return not_recomputable(out, why.clone()),
        None => {
            return not_recomputable(
                out,
                format!(
                    "policy version {} was not put in force in this lineage (adopted from \
                     pinned maps)",
                    r.policy_version
                ),
            )
        }
    };
    let Some(name) = r.policy.as_deref() else {
        return not_recomputable(out, "the record names no policy".into());
    };
    let recorded = Verdict {
        decision: r.decision.to_string(),
        reason: r.reason.to_string(),
        rule_id: r.rule_id,
    };
    let diverge = |out: &mut Replay, target: String, replayed: Verdict| {
        out.replayed += 1;
        out.divergences += 1;
        if out.first_divergence.is_none() {
            out.first_divergence = Some(Divergence {
                seq,
                action: r.action.to_string(),
                target,
                policy: name.to_owned(),
                recorded: recorded.clone(),
                replayed,
            });
        }
    };
    if let Some(b) = r.bundle.as_deref().filter(|b| *b != digest.as_str()) {
        let replayed = Verdict {
            decision: format!("(under bundle {digest})"),
            reason: format!("the record names bundle {b}"),
            rule_id: None,
        };
        return diverge(out, r.path.as_deref().unwrap_or_default().into(), replayed);
    }
    let Some(policy) = policies.iter().find(|p| p.name == name) else {
        let replayed = Verdict {
            decision: "(no such policy)".into(),
            reason: format!("bundle {digest} has no policy {name}"),
            rule_id: None,
        };
        return diverge(out, String::new(), replayed);
    };
    let request = match request::request_of(r) {
        Ok(q) => q,
        Err(why) => return not_recomputable(out, why),
    };
    let e = explain(policy, &request);
    let replayed = Verdict {
        decision: e.decision.into(),
        reason: e.reason.into(),
        rule_id: e.rule_id,
    };
    if replayed == recorded {
        out.replayed += 1;
        out.agreed += 1;
    } else {
        diverge(out, e.target, replayed);
    }
}

/// The default place of archived bundles: `STATE_DIR/bundles`.
pub fn default_bundles(state_dir: &Path) -> PathBuf {
    state_dir.join(crate::bundle::state::ARCHIVE_DIR)
}
