//! The console's HTML pages. Each handler gathers what it shows (file reads on blocking
//! threads), then renders with [`html`]; every value from the lineage or a request is
//! escaped there.

use std::{collections::HashMap, fmt::Write, path::PathBuf, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
};
use clap::ValueEnum;

use super::{
    html::{code, escape, facts, page, query_value},
    live::{Live, PolicyView},
    proofs,
    records::{self, Entry, Summary},
    state::Shared,
};
use crate::{
    lineage::filter::{ActionKind, Filter, Kind, Verdict},
    policy::{
        compile::CompiledPolicy,
        explain::{explain, parse_endpoint, Request},
    },
    support::time::{rfc3339, rfc3339_ns, unix_now},
};

type Params = Query<HashMap<String, String>>;

/// A page, or an error page with its status.
fn respond(result: Result<String, (StatusCode, String)>) -> Response {
    match result {
        Ok(body) => Html(body).into_response(),
        Err((status, message)) => (
            status,
            Html(page(
                "Error",
                "",
                None,
                &format!("<p class=\"error\">{}</p>", escape(&message)),
            )),
        )
            .into_response(),
    }
}

fn internal(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn bad(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, e.to_string())
}

/// Runs a lineage read on a blocking thread.
async fn read<T: Send + 'static>(
    c: &Shared,
    f: impl FnOnce(PathBuf) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, (StatusCode, String)> {
    let dir = c.lineage.clone().ok_or((
        StatusCode::NOT_FOUND,
        "this daemon records no lineage ([lineage] in the configuration)".to_owned(),
    ))?;
    tokio::task::spawn_blocking(move || f(dir))
        .await
        .map_err(internal)?
        .map_err(|e| internal(format!("{e:#}")))
}

/// The lineage's counts.
async fn summary(c: &Shared) -> Result<Summary, (StatusCode, String)> {
    c.summary().await.map_err(|e| internal(format!("{e:#}")))
}

/// The banner saying how far the lineage verified (None: intact).
async fn verification_banner(c: &Shared) -> (Option<String>, String) {
    match c.verified().await {
        None => (None, "not checked (no host key)".into()),
        Some(Err(e)) => (
            Some(format!("The lineage could not be verified: {e}")),
            "could not be verified".into(),
        ),
        Some(Ok(r)) => match &r.tampered {
            Some(t) => (
                Some(format!(
                    "The lineage does NOT verify: record {} onward cannot be trusted ({}). \
                     Records shown from there on are what the files say, not evidence.",
                    t.seq, t.reason
                )),
                format!("TAMPERED from record {}", t.seq),
            ),
            None => (
                None,
                format!(
                    "verified: {} records, {} covered by signed checkpoints",
                    r.records, r.anchored
                ),
            ),
        },
    }
}

/// What a decision was about: its path or endpoint.
fn target(e: &Entry) -> String {
    e.text("path")
        .or_else(|| e.text("endpoint"))
        .or_else(|| e.text("peer_pid").map(|p| format!("pid {p}")))
        .unwrap_or_default()
}

/// One line describing a record of any kind.
fn describe(e: &Entry) -> String {
    let t = |k: &str| e.text(k).unwrap_or_default();
    match e.kind.as_str() {
        "decision" => format!(
            "{} {} {} ({})",
            t("decision"),
            t("action"),
            target(e),
            t("reason")
        ),
        "policy-change" => format!("version {} -> {}", t("old_version"), t("new_version")),
        "policy-refused" => format!("{}: {}", t("code"), t("error")),
        "policy-source" => format!("{} {}", t("source"), t("state")),
        "gap" => format!("{} lost ({})", t("lost"), t("reason")),
        "checkpoint" => format!("{} records signed", t("size")),
        "tamper" => format!("{} {}", t("what"), t("object")),
        "agent-start" | "agent-stop" => t("reason"),
        _ => String::new(),
    }
}

/// Rows of records (newest first), each linked to its page.
fn record_table(entries: &[Entry], id: &str) -> String {
    let mut out = format!(
        "<table class=\"records\" id=\"{id}\"><thead><tr><th>seq</th><th>time</th><th>kind</th>\
         <th>decision</th><th>action</th><th>comm</th><th>pid</th><th>target</th><th>reason</th>\
         </tr></thead><tbody>"
    );
    for e in entries {
        let t = |k: &str| escape(&e.text(k).unwrap_or_default());
        let class = match e.value["decision"].as_str() {
            Some("deny") => " class=\"deny\"",
            Some("audit") => " class=\"audit\"",
            _ => "",
        };
        let _ = write!(
            out,
            "<tr{class}><td><a href=\"/lineage/{seq}\">{seq}</a></td><td>{time}</td><td>{kind}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t("decision"),
            t("action"),
            t("comm"),
            t("pid"),
            escape(&if e.kind == "decision" { target(e) } else { describe(e) }),
            t("reason"),
            seq = e.seq,
            time = escape(&rfc3339_ns(e.time_ns)),
            kind = escape(&e.kind),
        );
    }
    out.push_str("</tbody></table>");
    if entries.is_empty() {
        out.push_str("<p class=\"empty\">No records match.</p>");
    }
    out
}

/// The policy in force: the daemon's; offline the last bundle the lineage put in force, from
/// the archive, or else what the lineage's last change says.
fn policy_view(c: &Shared, live: Option<&Live>, summary: &Summary) -> Option<PolicyView> {
    if let Some(l) = live {
        return l.policy.clone();
    }
    if let Ok(v) = &c.offline_policy {
        return Some(v.clone());
    }
    summary.changes.last().map(|c| PolicyView {
        version: c.version,
        digest: c.digest.clone(),
        signers: c.signers.clone(),
        policies: c.policies.clone(),
        lineage_only: true,
        ..PolicyView::default()
    })
}

/// The expiry of `p`, or that the lineage alone does not say it.
fn expiry_of(p: Option<&PolicyView>) -> String {
    match p {
        Some(p) if p.lineage_only => {
            "not recorded in the lineage (give rampart console --trust and --bundles)".into()
        }
        p => expiry(p.and_then(|p| p.expires_at)),
    }
}

fn expiry(at: Option<u64>) -> String {
    match at {
        None => "does not expire".into(),
        Some(t) => format!(
            "{} (<span data-expires=\"{t}\">{}</span>)",
            escape(&rfc3339(t)),
            escape(&countdown(t, unix_now()))
        ),
    }
}

/// `in 2d 03:04:05` or `expired`.
pub fn countdown(at: u64, now: u64) -> String {
    if at <= now {
        return "expired".into();
    }
    let left = at - now;
    let (d, h, m, s) = (
        left / 86400,
        left % 86400 / 3600,
        left % 3600 / 60,
        left % 60,
    );
    format!("in {d}d {h:02}:{m:02}:{s:02}")
}

/// `/`.
pub async fn overview(State(c): State<Shared>) -> Response {
    let (banner, verified) = verification_banner(&c).await;
    let live = c.snapshot();
    let result = async {
        let denials = read(&c, |dir| {
            let denied = Filter {
                decision: Some(Verdict::Deny),
                ..Filter::default()
            };
            records::recent(&dir, &denied, 10)
        })
        .await?;
        let summary = summary(&c).await?;
        let policy = policy_view(&c, live.as_ref(), &summary);
        let mode = if live.is_some() {
            "live: served by the running daemon".to_owned()
        } else {
            "offline: over a copied lineage".to_owned()
        };
        let mut body = facts(&[
            ("Console", escape(&mode)),
            ("Lineage", escape(&verified)),
            (
                "Policy in force",
                policy.as_ref().map_or("none".into(), |p| {
                    format!("version {} ({})", p.version, escape(&p.policies.join(", ")))
                }),
            ),
            (
                "Expires",
                expiry(policy.as_ref().and_then(|p| p.expires_at)),
            ),
            (
                "Decisions",
                format!(
                    "{} recorded, <strong class=\"deny\">{} denied</strong>, {} audited",
                    summary.decisions, summary.denied, summary.audited
                ),
            ),
            (
                "Gaps",
                format!("{} ({} events lost)", summary.gaps, summary.lost),
            ),
            ("Records", summary.records.to_string()),
        ]);
        body.push_str("<h2>Latest denials</h2>");
        body.push_str(&record_table(&denials, "denials"));
        body.push_str("<p><a href=\"/lineage?decision=deny\">All denials</a></p>");
        Ok(page("Overview", "/", banner.as_deref(), &body))
    }
    .await;
    respond(result)
}

/// Which policy, action and target the explain form asks about.
fn explain_request(p: &HashMap<String, String>) -> Option<Result<Request, String>> {
    let target = p.get("target").filter(|t| !t.is_empty())?.clone();
    let kind = p.get("kind").map_or("exec", String::as_str);
    Some(match kind {
        "exec" => Ok(Request::Exec {
            path: target,
            identity: None,
        }),
        "open-read" | "open-write" => Ok(Request::Open {
            path: target,
            access: if kind == "open-read" {
                rampart_common::access::READ
            } else {
                rampart_common::access::WRITE
            },
            identity: None,
            cgroup: None,
        }),
        "connect" => {
            parse_endpoint(&target).map(|(addr, protocol)| Request::Connect { addr, protocol })
        }
        other => Err(format!(
            "unknown request kind `{other}` (exec, open-read, open-write, connect)"
        )),
    })
}

fn explain_form(p: &HashMap<String, String>, policies: &[CompiledPolicy]) -> String {
    let chosen = p.get("policy").cloned().unwrap_or_default();
    let kind = p.get("kind").cloned().unwrap_or_else(|| "exec".into());
    let mut out = String::from(
        "<form method=\"get\" action=\"/policy\" class=\"explain\"><label>Policy <select name=\"policy\">",
    );
    for pol in policies {
        let sel = if pol.name == chosen { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{}</option>", escape(&pol.name));
    }
    out.push_str("</select></label> <label>Request <select name=\"kind\">");
    for (k, label) in [
        ("exec", "exec PATH"),
        ("open-read", "open PATH for reading"),
        ("open-write", "open PATH for writing"),
        ("connect", "connect ADDR:PORT/PROTO"),
    ] {
        let sel = if k == kind { " selected" } else { "" };
        let _ = write!(out, "<option value=\"{k}\"{sel}>{label}</option>");
    }
    let _ = write!(
        out,
        "</select></label> <label>Target <input name=\"target\" size=\"40\" value=\"{}\" \
         placeholder=\"/usr/bin/curl or 10.0.0.1:443/tcp\"></label> \
         <button type=\"submit\">Explain</button></form>",
        escape(p.get("target").map_or("", String::as_str))
    );
    out
}

/// `/policy`, with the explain form's answer when it was submitted.
pub async fn policy(State(c): State<Shared>, Query(p): Params) -> Response {
    let (banner, _) = verification_banner(&c).await;
    let live = c.snapshot();
    let result = async {
        let summary = summary(&c).await?;
        let view = policy_view(&c, live.as_ref(), &summary);
        let compiled: Result<Arc<Vec<CompiledPolicy>>, String> = match &live {
            Some(l) => l
                .policy
                .as_ref()
                .map(|p| p.compiled.clone())
                .filter(|c| !c.is_empty())
                .ok_or_else(|| "the policy in force was adopted from pins; its rules are not known to this agent until the next load".to_owned()),
            None => c
                .offline_policy
                .as_ref()
                .map(|v| v.compiled.clone())
                .map_err(Clone::clone),
        };
        let mut body = String::new();
        match &view {
            None => body.push_str("<p class=\"empty\">No policy is in force.</p>"),
            Some(v) => body.push_str(&facts(&[
                ("Version", v.version.to_string()),
                ("Bundle digest", v.digest.as_deref().map_or("none (local policy files)".into(), code)),
                ("Scope", escape(v.scope.as_deref().unwrap_or(if v.lineage_only { "not recorded in the lineage" } else { "-" }))),
                ("Signers", escape(&v.signers.join(", "))),
                ("Expires", expiry_of(Some(v))),
                ("Policies", escape(&v.policies.join(", "))),
                ("Governed cgroups", escape(&v.governed.join(", "))),
            ])),
        }
        body.push_str("<h2>Explain a request</h2>");
        match &compiled {
            Err(why) => {
                let _ = write!(body, "<p class=\"empty\">Explain is not available: {}</p>", escape(why));
            }
            Ok(policies) => {
                body.push_str(&explain_form(&p, policies));
                if let Some(request) = explain_request(&p) {
                    let request = request.map_err(bad)?;
                    let chosen = p.get("policy");
                    let policy = policies
                        .iter()
                        .find(|x| Some(&x.name) == chosen)
                        .or_else(|| policies.first())
                        .ok_or_else(|| bad("no policy to explain with"))?;
                    let e = explain(policy, &request);
                    let _ = write!(
                        body,
                        "<div class=\"verdict {cls}\" id=\"explained\">{}</div>",
                        facts(&[
                            ("Decision", format!("<strong>{}</strong>", escape(e.decision))),
                            ("Action", escape(e.action)),
                            ("Target", escape(&e.target)),
                            ("Reason", escape(e.reason)),
                            ("Rule", escape(e.rule.as_deref().unwrap_or("none (default deny)"))),
                            ("Hook", escape(e.hook)),
                            ("Policy", escape(&e.policy)),
                        ]),
                        cls = escape(e.decision),
                    );
                    body.push_str("<p class=\"note\">Exec rules pin a file identity; the console does not read this host's files, so an exec is judged by path (as if the file's identity were unknown).</p>");
                }
                body.push_str("<h2>Rules</h2>");
                for pol in policies.iter() {
                    let _ = write!(
                        body,
                        "<h3>{} <small>({:?}, governs {})</small></h3><table class=\"rules\"><tr><th>rule</th><th>field</th><th>as written</th></tr>",
                        escape(&pol.name),
                        pol.mode,
                        escape(&pol.governs.join(", "))
                    );
                    for r in &pol.rules {
                        let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", r.id, escape(&r.field), code(&r.text));
                    }
                    body.push_str("</table>");
                }
            }
        }
        body.push_str("<h2>Policy history</h2><table class=\"records\"><tr><th>seq</th><th>time</th><th>version</th><th>digest</th><th>signers</th><th>policies</th></tr>");
        for ch in summary.changes.iter().rev() {
            let _ = write!(
                body,
                "<tr><td><a href=\"/lineage/{s}\">{s}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&rfc3339_ns(ch.time_ns)),
                ch.version,
                ch.digest.as_deref().map_or_else(|| "-".into(), code),
                escape(&ch.signers.join(", ")),
                escape(&ch.policies.join(", ")),
                s = ch.seq,
            );
        }
        body.push_str("</table>");
        Ok(page("Policy", "/policy", banner.as_deref(), &body))
    }
    .await;
    respond(result)
}

/// The filter a query asks for; an unknown value is an error that lists the valid ones.
pub fn filter_of(p: &HashMap<String, String>) -> Result<Filter, String> {
    fn pick<T: ValueEnum>(p: &HashMap<String, String>, key: &str) -> Result<Option<T>, String> {
        match p.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => T::from_str(v, false).map(Some).map_err(|_| {
                let valid: Vec<String> = T::value_variants()
                    .iter()
                    .filter_map(|x| x.to_possible_value().map(|p| p.get_name().to_owned()))
                    .collect();
                format!("{key}={v}: not one of {}", valid.join(", "))
            }),
        }
    }
    let number = |key: &str| -> Result<Option<u64>, String> {
        match p.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("{key}={v}: not a number")),
        }
    };
    let time = |key: &str| -> Result<Option<u64>, String> {
        match p.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => humantime::parse_rfc3339_weak(v)
                .map_err(|e| format!("{key}={v}: not a time such as 2026-12-07T15:00:00Z ({e})"))
                .and_then(|t| {
                    t.duration_since(std::time::UNIX_EPOCH)
                        .map(|d| Some(d.as_nanos() as u64))
                        .map_err(|e| format!("{key}={v}: {e}"))
                }),
        }
    };
    Ok(Filter {
        kind: pick::<Kind>(p, "kind")?,
        decision: pick::<Verdict>(p, "decision")?,
        action: pick::<ActionKind>(p, "action")?,
        pid: number("pid")?,
        cgroup: number("cgroup")?,
        since_ns: time("since")?,
        until_ns: time("until")?,
    })
}

fn filter_form(p: &HashMap<String, String>) -> String {
    let v = |k: &str| escape(p.get(k).map_or("", String::as_str));
    let select = |name: &str, values: &[String]| {
        let mut s =
            format!("<label>{name} <select name=\"{name}\"><option value=\"\">any</option>");
        for x in values {
            let sel = if p.get(name) == Some(x) {
                " selected"
            } else {
                ""
            };
            let _ = write!(s, "<option{sel}>{}</option>", escape(x));
        }
        s.push_str("</select></label> ");
        s
    };
    let names = |vals: &[&str]| vals.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let kinds: Vec<String> = Kind::value_variants()
        .iter()
        .map(|k| k.name().to_owned())
        .collect();
    let actions: Vec<String> = ActionKind::value_variants()
        .iter()
        .map(|a| a.name().to_owned())
        .collect();
    format!(
        "<form method=\"get\" action=\"/lineage\" class=\"filter\">{}{}{}\
         <label>cgroup id <input name=\"cgroup\" size=\"8\" value=\"{}\"></label> \
         <label>pid <input name=\"pid\" size=\"6\" value=\"{}\"></label> \
         <label>since <input name=\"since\" size=\"20\" value=\"{}\" placeholder=\"2026-12-07T15:00:00Z\"></label> \
         <label>until <input name=\"until\" size=\"20\" value=\"{}\"></label> \
         <button type=\"submit\">Filter</button></form>",
        select("kind", &kinds),
        select("decision", &names(&["allow", "deny", "audit"])),
        select("action", &actions),
        v("cgroup"),
        v("pid"),
        v("since"),
        v("until"),
    )
}

/// `/lineage`: the Lineage Explorer.
pub async fn lineage(State(c): State<Shared>, Query(p): Params) -> Response {
    let (banner, verified) = verification_banner(&c).await;
    let result = async {
        let filter = filter_of(&p).map_err(bad)?;
        let limit = p
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(200usize);
        let f = filter.clone();
        let entries = read(&c, move |dir| records::recent(&dir, &f, limit)).await?;
        let newest = entries.first().map_or(String::new(), |e| e.seq.to_string());
        // The live tail asks for what comes after the newest record listed, same filter.
        let mut stream = format!("/lineage/stream?after={}", query_value(&newest));
        for k in ["kind", "decision", "action", "pid", "cgroup"] {
            if let Some(v) = p.get(k).filter(|v| !v.is_empty()) {
                let _ = write!(stream, "&{k}={}", query_value(v));
            }
        }
        let mut body = filter_form(&p);
        let _ = write!(
            body,
            "<p class=\"meta\">Lineage {}. Newest first, at most {limit}. \
             <span id=\"tail-status\" data-stream=\"{}\">live tail: off (needs JavaScript)</span></p>",
            escape(&verified),
            escape(&stream),
        );
        body.push_str(&record_table(&entries, "records"));
        Ok(page("Lineage", "/lineage", banner.as_deref(), &body))
    }
    .await;
    respond(result)
}

/// `/lineage/{seq}`: one record, its hash and its checkpoint.
pub async fn record(State(c): State<Shared>, Path(seq): Path<String>) -> Response {
    let (banner, _) = verification_banner(&c).await;
    let result = async {
        let seq: u64 = seq
            .parse()
            .map_err(|_| bad(format!("`{seq}` is not a record number")))?;
        let (entry, checkpoint) = read(&c, move |dir| {
            Ok((
                records::record(&dir, seq)?,
                records::covering_checkpoint(&dir, seq),
            ))
        })
        .await
        .map_err(|(_, m)| (StatusCode::NOT_FOUND, m))?;
        let mut rows: Vec<(String, String)> = Vec::new();
        if let Some(obj) = entry.value.as_object() {
            for (k, v) in obj {
                let shown = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                rows.push((k.clone(), code(&shown)));
            }
        }
        let rows_ref: Vec<(&str, String)> =
            rows.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut body = facts(&rows_ref);
        body.push_str("<h2>Evidence</h2>");
        body.push_str(&facts(&[
            ("Record hash (BLAKE3)", code(&entry.hash())),
            ("Time", escape(&rfc3339_ns(entry.time_ns))),
            (
                "Checkpoint",
                match &checkpoint {
                    Some((size, _)) => format!(
                        "covered by the checkpoint of {size} records: \
                         <a href=\"/proofs?seq={seq}\">show its inclusion proof</a>"
                    ),
                    None => "not yet covered by a checkpoint".into(),
                },
            ),
        ]));
        let _ = write!(
            body,
            "<h2>As stored</h2><pre class=\"raw\">{}</pre>",
            escape(&entry.line)
        );
        Ok(page(
            &format!("Record {seq}"),
            "/lineage",
            banner.as_deref(),
            &body,
        ))
    }
    .await;
    respond(result)
}

/// `/proofs?seq=N`: the Proof Viewer.
pub async fn proofs(State(c): State<Shared>, Query(p): Params) -> Response {
    let result = async {
        let mut body = format!(
            "<form method=\"get\" action=\"/proofs\" class=\"filter\"><label>Record seq \
             <input name=\"seq\" size=\"10\" value=\"{}\"></label> <button type=\"submit\">Prove</button></form>",
            escape(p.get("seq").map_or("", String::as_str))
        );
        let Some(seq) = p.get("seq").filter(|s| !s.is_empty()) else {
            body.push_str("<p>Give a record's seq to see its inclusion proof against the latest signed checkpoint, checked with the host's public key.</p>");
            return Ok(page("Proofs", "/proofs", None, &body));
        };
        let seq: u64 = seq.parse().map_err(|_| bad(format!("`{seq}` is not a record number")))?;
        let key = c.key.clone().ok_or_else(|| bad("no host key: proofs cannot be checked"))?;
        let shown = read(&c, move |dir| proofs::show(&dir, &key, seq)).await?;
        let (verdict, cls) = match &shown.verdict {
            Ok(signer) => (format!("VERIFIED: record {seq} is leaf {seq} of the tree of {} records signed by {signer}", shown.tree_size), "verified"),
            Err(e) => (format!("NOT VERIFIED: {e}"), "refused"),
        };
        let _ = write!(body, "<p class=\"verdict {cls}\" id=\"proof-verdict\">{}</p>", escape(&verdict));
        body.push_str(&facts(&[
            ("Record", format!("<a href=\"/lineage/{seq}\">{seq}</a>")),
            ("Leaf hash", code(&shown.leaf)),
            ("Tree size", shown.tree_size.to_string()),
        ]));
        body.push_str("<h2>Audit path, leaf to root</h2><ol class=\"steps\">");
        for s in &shown.steps {
            let (l, r) = if s.sibling_left { (code(&s.sibling), "running hash".to_owned()) } else { ("running hash".to_owned(), code(&s.sibling)) };
            let _ = write!(body, "<li>SHA-256(0x01 ‖ {l} ‖ {r}) = {}</li>", code(&s.parent));
        }
        body.push_str("</ol>");
        let matches = shown.reached == shown.signed_root;
        body.push_str(&facts(&[
            ("Root reached", code(&shown.reached)),
            ("Root signed", code(&shown.signed_root)),
            ("Roots equal", (if matches { "yes" } else { "NO" }).to_owned()),
        ]));
        let _ = write!(
            body,
            "<h2>Signed checkpoint</h2><pre class=\"raw\">{}</pre><p><a href=\"/proofs/{seq}.json\" download>Download the proof</a> and check it anywhere with <code>rampart lineage verify-proof FILE --pub HOST.pub</code>.</p>",
            escape(&shown.note)
        );
        Ok(page(&format!("Proof of record {seq}"), "/proofs", None, &body))
    }
    .await;
    respond(result)
}

/// `/proofs/{seq}.json`: the proof file `rampart lineage verify-proof` checks.
pub async fn proof_file(State(c): State<Shared>, Path(file): Path<String>) -> Response {
    let Some(seq) = file
        .strip_suffix(".json")
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return not_found().await;
    };
    match read(&c, move |dir| {
        crate::lineage::proof::prove_inclusion(&dir, seq, None)
    })
    .await
    {
        Ok(proof) => match serde_json::to_string_pretty(&proof) {
            Ok(text) => (
                [
                    (header::CONTENT_TYPE, "application/json".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"proof-{seq}.json\""),
                    ),
                ],
                text,
            )
                .into_response(),
            Err(e) => respond(Err(internal(e))),
        },
        Err(e) => respond(Err(e)),
    }
}

/// A bar chart of decisions per bucket (denials in front), as inline SVG.
fn rate_chart(s: &Summary) -> String {
    let (bars, width_ns, start_ns) = s.chart();
    let max = bars.iter().map(|b| b.0).max().unwrap_or(0).max(1);
    let (w, h, bar) = (600u64, 120u64, 10u64);
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"decisions over time\">",
        h + 20
    );
    for (i, (n, d)) in bars.iter().enumerate() {
        let x = i as u64 * bar;
        let bh = n * h / max;
        let dh = d * h / max;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#7a9cc6\"><title>{n} decisions</title></rect>\
             <rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{dh}\" fill=\"#c0392b\"><title>{d} denied</title></rect>",
            h - bh,
            bar - 1,
            h - dh,
            bar - 1
        );
    }
    let end_ns = start_ns + width_ns * bars.len() as u64;
    let _ = write!(
        out,
        "<text x=\"0\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{w}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        h + 15,
        escape(&rfc3339_ns(start_ns)),
        h + 15,
        escape(&rfc3339_ns(end_ns)),
    );
    out
}

/// `/health`: the Health Dashboard.
pub async fn health(State(c): State<Shared>) -> Response {
    let (banner, verified) = verification_banner(&c).await;
    let live = c.snapshot();
    let result = async {
        let summary = summary(&c).await?;
        let mut body = String::new();
        match &live {
            Some(l) => {
                let r = l.readiness();
                let _ = write!(
                    body,
                    "<p class=\"verdict {}\" id=\"readiness\">{}</p>",
                    if r.ready { "verified" } else { "refused" },
                    if r.ready { "Ready: policy in force, every hook attached, lineage writable".to_owned() } else { escape(&format!("Not ready: {}", r.reasons.join("; "))) }
                );
                body.push_str("<h2>Hooks</h2><table class=\"rules\"><tr><th>hook</th><th>state</th></tr>");
                for (hook, ok) in &l.hooks {
                    let _ = write!(body, "<tr><td>{}</td><td>{}</td></tr>", escape(hook), if *ok { "attached" } else { "DETACHED" });
                }
                body.push_str("</table>");
                let loads: Vec<String> = l.load_seconds.iter().map(|(s, t)| format!("{s} {:.1} ms", t * 1000.0)).collect();
                body.push_str(&facts(&[
                    ("Kernel ring drops", l.event_drops.to_string()),
                    ("Tamper found / put back", format!("{} / {}", l.tamper_found, l.tamper_repaired)),
                    ("Last policy load", escape(&loads.join(", "))),
                    ("Pinned", (if l.pinned { "yes: enforcement outlives the agent" } else { "no" }).to_owned()),
                    ("Expires", expiry(l.policy.as_ref().and_then(|p| p.expires_at))),
                ]));
            }
            None => body.push_str("<p class=\"note\">Offline console: hooks and load times come from a running daemon; what follows is what the lineage records.</p>"),
        }
        body.push_str("<h2>From the lineage</h2>");
        body.push_str(&facts(&[
            ("Lineage", escape(&verified)),
            ("Gaps", format!("{} ({} events lost)", summary.gaps, summary.lost)),
            ("Policy refusals", summary.refusals.to_string()),
            ("Tamper records", summary.tamper.to_string()),
            ("Agent starts", summary.restarts.to_string()),
        ]));
        let _ = write!(
            body,
            "<h2>Decisions over time</h2><p class=\"meta\">{} decisions, {} denied in all; the chart covers at most the lineage's last hour, in buckets of {} s.</p>{}",
            summary.decisions,
            summary.denied,
            summary.chart().1 / 1_000_000_000,
            rate_chart(&summary)
        );
        Ok(page("Health", "/health", banner.as_deref(), &body))
    }
    .await;
    respond(result)
}

/// Any other path.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page(
            "Not found",
            "",
            None,
            "<p>No such page. The console's pages are in the bar above.</p>",
        )),
    )
        .into_response()
}
