// The p2pmoa node page: plain JavaScript, no dependency, talks only to its own origin.
// Every text from the network is inserted with textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = 2000;       // status, peers, metrics
const PROGRESS_MS = 250;       // live trace polling while a query is undecided
const SVG_NS = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);
const state = { self: null, peers: {}, asking: false };

function short(id) {
  if (!id) return "?";
  return id.length > 16 ? id.slice(0, 6) + "…" + id.slice(-6) : id;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// JSON has no infinity: the node sends non-finite floats as strings ("inf"); show them as they are
function fix3(x) { return (typeof x === "number") ? x.toFixed(3) : String(x ?? "?"); }
function fmtS(x) { return (typeof x === "number") ? x.toFixed(2) + " s" : "–"; }
function fmtBytes(n) { return n ? (n / 1e6).toFixed(0) + " MB" : "–"; }

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function modelOf(peer) {
  if (state.self && peer === state.self.peer_id) return state.self.model;
  const p = state.peers[peer];
  return p ? (p.model_name || p.model_id || "?") : "?";
}

// ------------------------------------------------------------------ node, buffer, admission

function renderNode(st) {
  const mi = st.model_info || {};
  const parts = ["peer " + st.peer_id, "model " + st.model + (mi.stand_in ? " (stand-in)" : mi.quantization ? " (" + mi.quantization + ", " + (mi.chat ? "chat" : "base") + ", context " + mi.context_length + ")" : ""),
    "role " + JSON.stringify(st.role), "consensus " + st.consensus, "space " + st.embedding_space,
    "peers " + st.peers + " (" + st.mesh_peers + " in the query mesh)"];
  $("node-card").textContent = parts.join(" · ");
  const b = st.buffer || {};
  const dl = $("buffer-state");
  dl.replaceChildren();
  const bar = (frac) => { const s = el("span"); s.style.width = Math.min(100, Math.round(frac * 100)) + "%"; return el("span", { class: "bar" }, s); };
  const rows = [
    ["unfinished / capacity", [bar((b.unfinished || 0) / (b.capacity || 1)), (b.unfinished ?? "?") + " / " + (b.capacity ?? "?")]],
    ["by state", [JSON.stringify(b.by_state || {})]],
    ["admitted", [String(b.admitted ?? "?")]],
    ["arrival rate", [fix3(b.arrival_rate_per_s) + " /s of at most " + fix3(b.max_stable_rate_per_s) + " /s (stability bound)"]],
    ["service time α max", [fmtS(b.alpha_max_s)]],
    ["refused: full / unstable / deadline / duplicate", [[b.refused_full, b.refused_unstable, b.refused_deadline, b.refused_duplicate].map((x) => x ?? 0).join(" / ")]],
  ];
  for (const [k, vs] of rows) dl.append(el("dt", {}, k), el("dd", {}, ...vs));
}

function renderRefusals(metricsText) {
  const ul = $("refusals");
  const items = [];
  for (const line of metricsText.split("\n")) {
    const m = line.match(/^p2pmoa_(admission_refusals_total|queries_refused_total)\{([^}]*)\} ([0-9.e+]+)$/);
    if (!m) continue;
    const reason = (m[2].match(/reason="([^"]*)"/) || [])[1] || "?";
    const where = m[1] === "queries_refused_total" ? "API" : "buffer";
    items.push(el("li", { "data-reason": reason }, where + " · " + reason + ": " + Number(m[3])));
  }
  ul.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "none")]));
}

// ------------------------------------------------------------------ mesh view

function renderPeers(peers) {
  state.peers = {};
  for (const p of peers) state.peers[p.peer_id] = p;
  const tb = $("peers-table").querySelector("tbody");
  tb.replaceChildren(...peers.map((p) => el("tr", { class: "peer-row", "data-peer": p.peer_id },
    el("td", { title: p.peer_id }, short(p.peer_id)),
    el("td", {}, p.model_name || p.model_id || "?"),
    el("td", {}, p.stand_in ? "stand-in" : (p.quantization || "?")),
    el("td", {}, p.chat === undefined ? "?" : (p.chat ? "chat" : "base")),
    el("td", {}, p.context_length || "–"),
    el("td", {}, fmtBytes(p.size_bytes)),
    el("td", { title: p.embedding_space || "" }, short(p.embedding_space || "?")),
    el("td", {}, p.role || "?"),
    el("td", {}, p.trust == null ? "–" : Number(p.trust).toFixed(2)),
    el("td", {}, p.delay_s == null ? "–" : (p.delay_s * 1000).toFixed(0) + " ms"),
    el("td", {}, p.subscribed ? "yes" : "no"))));
  if (!peers.length) tb.append(el("tr", {}, el("td", { colSpan: 11, class: "muted" }, "no peers connected")));
  drawMesh(peers);
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawMesh(peers) {
  const g = $("mesh-graph");
  g.replaceChildren();
  const n = peers.length, r = 80;
  peers.forEach((p, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, n) - Math.PI / 2;
    const x = Math.round(r * 1.6 * Math.cos(a)), y = Math.round(r * Math.sin(a));
    g.append(svg("line", { x1: 0, y1: 0, x2: x, y2: y }));
    const c = svg("circle", { cx: x, cy: y, r: 9, class: p.subscribed ? "alive" : "down" });
    c.append(svg("title", {}, p.peer_id));
    g.append(c, svg("text", { x: x, y: y + 20 }, short(p.peer_id) + " " + (p.model_name || p.model_id || "")));
  });
  g.append(svg("circle", { cx: 0, cy: 0, r: 12, class: "self" }),
           svg("text", { x: 0, y: 26 }, "this node " + (state.self ? state.self.model : "")));
}

async function refresh() {
  try {
    const [st, peers, metrics] = await Promise.all([getJSON("/status"), getJSON("/peers"),
      fetch("/metrics", { cache: "no-store" }).then((r) => r.text())]);
    state.self = st;
    renderNode(st);
    renderPeers(peers.peers || []);
    renderRefusals(metrics);
    $("conn-error").hidden = true;
  } catch (e) {
    $("conn-error").hidden = false;
    $("conn-error").textContent = "node not reachable: " + e.message;
  }
}

// ------------------------------------------------------------------ consensus trace

function traceItem(kind, text) {
  const li = el("li", { class: "trace-item", "data-kind": kind }, text);
  $("trace-list").append(li);
  return li;
}

function startProgress(qid, t0) {
  const seen = new Set();
  let phase = null, votes = new Set(), stopped = false;
  const live = { members: 0, seen, votes, stop() { stopped = true; } };
  async function tick() {
    if (stopped) return;
    try {
      const r = await fetch("/v1/queries/" + encodeURIComponent(qid) + "/progress", { cache: "no-store" });
      if (r.ok) {
        const p = await r.json();
        for (const pr of p.proposals || []) {
          if (seen.has(pr.peer)) continue;
          seen.add(pr.peer);
          traceItem("proposal", "proposal from " + short(pr.peer) + " · model " + pr.model_id + " · role " +
            JSON.stringify(pr.role) + " · arrived " + fmtS(pr.arrived_s) + " · LLM " + fmtS(pr.llm_s));
        }
        if (p.phase && p.phase !== phase) {
          phase = p.phase;
          if (phase !== "done") traceItem("phase", "phase: " + phase + " (after " + fmtS(p.elapsed_s) + ")");
        }
        if ((p.members || []).length && p.members.length !== live.members) {
          live.members = p.members.length;
          roundItem(p.method, p.members, p.weights);
        }
        if (p.pbft) {
          const v = "view " + p.pbft.view + (p.pbft.view_change ? " (view change under way)" : "");
          if (v !== live.pbftView) {
            live.pbftView = v;
            traceItem("pbft", "PBFT " + v);
          }
        }
        for (const [who, ranking] of Object.entries(p.votes || {})) {
          if (votes.has(who)) continue;
          votes.add(who);
          traceItem("vote", "vote from " + short(who) + ": ballot (scores per candidate) " + JSON.stringify(ranking));
        }
        if (p.phase === "done") stopped = true;
      }
    } catch (e) { /* the stream reports errors; polling just retries */ }
    if (!stopped) setTimeout(tick, PROGRESS_MS);
  }
  tick();
  return live;
}

function roundItem(method, members, weights) {
  traceItem("round", "round of " + method + " with " + members.length + " members, weights " +
    members.map((m) => short(m) + "=" + Number((weights || {})[m]).toFixed(2)).join(", "));
}

function renderFinalTrace(tr, live) {
  const dec = tr.decision || {};
  // Items the live poll could not see (e.g. a round faster than one poll) are added now.
  for (const p of tr.proposals || []) {
    if (live.seen.has(p.peer)) continue;
    live.seen.add(p.peer);
    traceItem("proposal", "proposal from " + short(p.peer) + " · model " + p.model_id + " · role " +
      JSON.stringify(p.role) + " · arrived " + fmtS(p.arrived_s) + " · LLM " + fmtS(p.llm_s));
  }
  if ((tr.members || []).length && !live.members) {
    live.members = tr.members.length;
    roundItem(tr.method, tr.members, tr.weights);
  }
  for (const [who, ranking] of Object.entries(tr.votes || {})) {
    if (live.votes.has(who)) continue;
    live.votes.add(who);
    traceItem("vote", "vote from " + short(who) + ": ballot (scores per candidate) " + JSON.stringify(ranking));
  }
  const t = tr.timings || {};
  traceItem("decision", "decision by " + tr.method + (tr.method === "pbft" ? " (view " + dec.view + ")" : "") +
    ": answer of " + short(dec.proposer) + " (" + modelOf(dec.proposer) + ") · " + (tr.n_proposals ?? "?") + "/" +
    (tr.n_expected ?? "?") + " proposals · collect " + fmtS(t.collect_s) + " · round " + fmtS(t.round_s) +
    " · total " + fmtS(t.total_s) + " · digest " + String(dec.digest || "").slice(0, 12));
  for (const note of tr.notes || []) traceItem("note", "note: " + note);
  const table = $("trace-proposals"), tb = table.querySelector("tbody");
  tb.replaceChildren(...(tr.proposals || []).map((p) => el("tr",
    { class: p.peer === dec.proposer ? "chosen proposal-row" : "proposal-row", "data-peer": p.peer },
    el("td", { title: p.peer }, short(p.peer)), el("td", {}, p.model_id), el("td", {}, p.role),
    el("td", {}, fmtS(p.arrived_s)), el("td", {}, fmtS(p.llm_s)), el("td", {}, p.completion_tokens ?? "–"),
    el("td", {}, p.centrality == null ? "–" : Number(p.centrality).toFixed(3)),
    el("td", {}, p.peer === dec.proposer ? "chosen" : ""))));
  table.hidden = false;
}

// ------------------------------------------------------------------ asking

function randomId() {
  const a = new Uint8Array(8);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

function showError(msg) {
  $("answer-error").hidden = false;
  $("answer-error").textContent = msg;
  traceItem("error", msg);
}

async function ask(question, method) {
  const qid = randomId(), t0 = performance.now();
  $("answer").textContent = "";
  $("answer").removeAttribute("data-first-ms");
  $("answer").removeAttribute("data-query-id");
  $("answer-error").hidden = true;
  $("trace-list").replaceChildren();
  $("trace-proposals").hidden = true;
  traceItem("phase", "query " + qid + " sent (" + (method || "node default") + ")");
  const live = startProgress(qid, t0);
  const body = { model: method ? "p2pmoa/" + method : "p2pmoa", stream: true,
    messages: [{ role: "user", content: question }], p2pmoa: { query_id: qid } };
  try {
    const resp = await fetch("/v1/chat/completions", { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!resp.ok) {
      const e = await resp.json().catch(() => ({}));
      showError("HTTP " + resp.status + ": " + ((e.error && e.error.message) || resp.statusText));
      return;
    }
    const reader = resp.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const evt = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of evt.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const obj = JSON.parse(data);
          if (obj.error) {  // refused or failed after the stream began (busy, no decision)
            showError((obj.error.code ? obj.error.code + ": " : "") + (obj.error.message || "error"));
            continue;
          }
          const delta = ((obj.choices || [])[0] || {}).delta || {};
          if (delta.content) {
            if (!$("answer").hasAttribute("data-first-ms")) {
              $("answer").setAttribute("data-first-ms", String(Math.round(performance.now() - t0)));
            }
            $("answer").textContent += delta.content;
          }
          if (obj.p2pmoa_trace) {
            live.stop();
            renderFinalTrace(obj.p2pmoa_trace, live);
            $("answer").setAttribute("data-query-id", obj.p2pmoa_trace.query_id || qid);
          }
        }
      }
    }
  } catch (e) {
    showError("request failed: " + e.message);
  } finally {
    live.stop();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("ask-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const q = $("question").value.trim();
    if (!q || state.asking) return;
    state.asking = true;
    $("ask").disabled = true;
    $("ask-state").textContent = "waiting for the mesh…";
    try {
      await ask(q, $("method").value);
    } finally {
      state.asking = false;
      $("ask").disabled = false;
      $("ask-state").textContent = "";
      refresh();
    }
  });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
