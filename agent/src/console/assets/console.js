// Rampart console: the expiry countdown and the Lineage Explorer's live tail.
// Record fields are written by governed workloads: they are only ever set as textContent.
"use strict";

function countdown(at) {
  const left = at - Math.floor(Date.now() / 1000);
  if (left <= 0) return "expired";
  const d = Math.floor(left / 86400), h = Math.floor(left % 86400 / 3600);
  const m = Math.floor(left % 3600 / 60), s = left % 60;
  const p = (n) => String(n).padStart(2, "0");
  return "in " + d + "d " + p(h) + ":" + p(m) + ":" + p(s);
}

function tickCountdowns() {
  for (const el of document.querySelectorAll("[data-expires]")) {
    el.textContent = countdown(Number(el.dataset.expires));
  }
}

function startTail() {
  const status = document.getElementById("tail-status");
  const table = document.getElementById("records");
  if (!status || !table || !window.EventSource) return;
  const body = table.tBodies[0];
  status.textContent = "live tail: connecting";
  const source = new EventSource(status.dataset.stream);
  source.onopen = () => { status.textContent = "live tail: on"; };
  source.onerror = () => { status.textContent = "live tail: reconnecting"; };
  source.addEventListener("record", (ev) => {
    let r;
    try { r = JSON.parse(ev.data); } catch (_) { return; }
    const tr = document.createElement("tr");
    if (r.decision === "deny" || r.decision === "audit") tr.className = r.decision;
    const seq = document.createElement("td");
    const a = document.createElement("a");
    a.href = "/lineage/" + encodeURIComponent(String(r.seq));
    a.textContent = String(r.seq);
    seq.appendChild(a);
    tr.appendChild(seq);
    for (const k of ["time", "kind", "decision", "action", "comm", "pid", "target", "reason"]) {
      const td = document.createElement("td");
      td.textContent = r[k] === undefined ? "" : String(r[k]);
      tr.appendChild(td);
    }
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  startTail();
});
