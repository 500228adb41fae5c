// ehrgate operations console. Plain JS, no build step. Every value from the
// server reaches the DOM through textContent or a DOM property, never innerHTML.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const FETCH_TIMEOUT_MS = 4500;
  const KPI_WINDOW_MIN = 60;
  const QUARANTINE_LIMIT = 100;
  const TOKEN_KEY = "ehrgate.console.token";
  const APPLY_DELAY_MS = 400; // a typed or pasted token is tried after this pause

  const $ = (sel, root) => (root || document).querySelector(sel);

  // ---------- small helpers ----------

  function el(tag, opts, children) {
    const e = document.createElement(tag);
    if (opts) {
      if (opts.text != null) e.textContent = String(opts.text);
      if (opts.cls) e.className = opts.cls;
      if (opts.title != null) e.title = String(opts.title);
      if (opts.data) for (const k in opts.data) e.dataset[k] = String(opts.data[k]);
    }
    if (children) for (const c of children) if (c != null) e.append(c);
    return e;
  }

  const isNum = (v) => typeof v === "number" && isFinite(v);
  const num = (v) => (isNum(v) ? v : 0);
  const str = (v) => (v == null ? "" : String(v));

  function fmtInt(v) {
    return isNum(v) ? Math.round(v).toLocaleString("en-US") : "—";
  }
  function fmtMs(v) {
    return isNum(v) ? v.toFixed(v < 10 ? 1 : 0) + " ms" : "—";
  }
  function pad(n) {
    return String(n).padStart(2, "0");
  }
  // ISO timestamp -> "YYYY-MM-DD HH:MM:SS" in UTC; the raw string if unparsable.
  function fmtTime(iso, timeOnly) {
    if (iso == null || iso === "") return "—";
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    const t = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
    if (timeOnly) return t;
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + t;
  }
  function round6(x) {
    return Number(num(x).toFixed(6));
  }

  const STATE_CLASS = {
    active: "ok", running: "info", completed: "ok", complete: "ok", succeeded: "ok", done: "ok",
    listening: "ok", up: "ok", ready: "ok", canary: "info", shadow: "info", candidate: "info",
    queued: "neutral", pending: "warn", disabled: "neutral", stopped: "neutral", inactive: "neutral",
    failed: "bad", error: "bad", down: "bad", cancelled: "neutral",
  };
  function badge(text, kind) {
    const t = str(text) || "—";
    return el("span", { cls: "badge badge-" + (kind || STATE_CLASS[t.toLowerCase()] || "neutral"), text: t });
  }

  // ---------- token ----------
  //
  // Every data request needs a token: the viewer token (read-only) or the
  // admin token (which may also reprocess). Without one, or when the gateway
  // answers 401, the page shows a prompt instead of data.

  const tokenInput = $("[data-token-input]");
  const tokenState = $("[data-token-state]");
  let appliedToken = "";  // the token the data requests use
  let tokenGen = 0;       // bumped when appliedToken changes; answers for an older one are dropped
  let tokenRole = null;   // "viewer" | "admin" once an action told us, for this token
  let applyTimer = null;

  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  }
  function storeToken(v) {
    try {
      if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage unavailable: the token lives in the input only */ }
  }
  function fieldToken() {
    return tokenInput.value.trim();
  }
  function setTokenState(text, kind) {
    tokenState.textContent = text;
    tokenState.className = "token-state" + (kind ? " token-" + kind : "");
  }
  function showTokenRole() {
    if (tokenRole === "admin") setTokenState("admin", "ok");
    else if (tokenRole === "viewer") setTokenState("viewer · read-only", "info");
    else setTokenState("accepted", "ok");
  }

  // Use what is in the field now: a new token drops everything shown for the
  // old one as soon as the gateway refuses it, and reloads the data otherwise.
  function applyToken() {
    clearTimeout(applyTimer);
    const t = fieldToken();
    if (t === appliedToken && t !== "") { refresh(); return; }
    appliedToken = t;
    storeToken(t);
    tokenGen++;
    tokenRole = null;
    outcomes.clear();
    document.body.dataset.loaded = "false";
    if (!t) { lockOut(null); return; }
    setTokenState("checking…", "");
    if (authBox.dataset.auth !== "ok") showAuth("checking");
    refresh();
  }

  tokenInput.addEventListener("input", () => {
    clearTimeout(applyTimer);
    applyTimer = setTimeout(applyToken, APPLY_DELAY_MS);
  });
  tokenInput.addEventListener("change", applyToken);
  tokenInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); applyToken(); }
  });
  $("[data-token-clear]").addEventListener("click", () => {
    tokenInput.value = "";
    applyToken();
  });

  // ---------- fetching ----------

  class HttpError extends Error {
    constructor(message, status, detail) {
      super(message);
      this.status = status;
      this.detail = detail;
    }
  }

  async function getJSON(url, token) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    const path = url.split("?")[0];
    try {
      let r;
      try {
        r = await fetch(url, {
          cache: "no-store",
          signal: ctl.signal,
          headers: { Accept: "application/json", Authorization: "Bearer " + token },
        });
      } catch (e) {
        throw new Error(path + (e.name === "AbortError" ? ": timed out" : ": unreachable"));
      }
      if (!r.ok) {
        let detail = "";
        try {
          const b = await r.json();
          detail = str(b && (b.message || b.error));
        } catch (_) { /* not JSON */ }
        throw new HttpError(path + ": HTTP " + r.status + (detail ? " (" + detail + ")" : ""), r.status, detail);
      }
      try {
        return await r.json();
      } catch (e) {
        throw new Error(path + (e.name === "AbortError" ? ": timed out" : ": answer is not JSON"));
      }
    } finally {
      clearTimeout(timer);
    }
  }

  // ---------- tables ----------

  // Re-render a table only when its content changed, so buttons are not
  // replaced under the pointer every 5 s.
  const tableSigs = {};
  function renderTable(name, rows, columns, emptyText, sigExtra) {
    const table = $('[data-table="' + name + '"]');
    const count = $('[data-count="' + name + '"]');
    if (count) count.textContent = rows.length ? String(rows.length) : "";
    const sig = JSON.stringify([rows, sigExtra || null]);
    if (tableSigs[name] === sig) return;
    tableSigs[name] = sig;
    const tbody = el("tbody");
    if (!rows.length) {
      const td = el("td", { cls: "empty", text: emptyText });
      td.colSpan = columns.length;
      tbody.append(el("tr", null, [td]));
    }
    for (const row of rows) {
      const tr = el("tr");
      tr.dataset.row = "";
      if (row && row.id != null) tr.dataset.id = String(row.id);
      for (const col of columns) {
        const v = col.cell(row || {});
        const td = el("td", { cls: col.cls || "" });
        if (v instanceof Node) td.append(v); else td.textContent = v == null || v === "" ? "—" : String(v);
        if (col.title) td.title = str(col.title(row || {}));
        tr.append(td);
      }
      tbody.append(tr);
    }
    table.tBodies[0].replaceWith(tbody);
  }

  function ackCodes(acks) {
    const wrap = el("span", { cls: "chips" });
    if (!acks || typeof acks !== "object") return "—";
    const keys = Object.keys(acks).sort();
    if (!keys.length) return "—";
    for (const k of keys) {
      const kind = k === "AA" || k === "CA" ? "ok" : k === "AE" || k === "CE" ? "warn" : "bad";
      wrap.append(el("span", { cls: "chip chip-" + kind }, [el("b", { text: k }), " " + fmtInt(acks[k])]));
    }
    return wrap;
  }

  function progress(done, total) {
    if (!isNum(total) || total <= 0) return isNum(done) ? fmtInt(done) + " files" : "—";
    const p = el("progress");
    p.max = total;
    p.value = Math.min(num(done), total);
    const wrap = el("span", { cls: "progress" }, [p, el("span", { cls: "muted", text: fmtInt(done) + " / " + fmtInt(total) })]);
    wrap.title = Math.round((100 * num(done)) / total) + "% of files";
    return wrap;
  }

  function candidateText(c) {
    if (c == null) return "—";
    if (typeof c !== "object") return str(c);
    let t = str(c.version) || "?";
    const extra = [];
    if (c.mode) extra.push(str(c.mode));
    if (isNum(c.percent)) extra.push(c.percent + "%");
    return extra.length ? t + " · " + extra.join(" ") : t;
  }

  function renderOverview(o) {
    const ready = $("[data-ready]");
    if (o.ready === true) {
      ready.textContent = "Ready";
      ready.className = "badge badge-ok";
      ready.title = "";
    } else {
      ready.textContent = "Not ready" + (o.not_ready_reason ? ": " + str(o.not_ready_reason) : "");
      ready.className = "badge badge-bad";
      ready.title = str(o.not_ready_reason);
    }
    const flow = o.flow || {};
    for (const t of document.querySelectorAll("[data-flow]")) {
      const k = t.dataset.flow;
      t.textContent = fmtInt(flow[k]);
      const alert = (k === "failed" || k === "rejected" || k === "replay_pending") && num(flow[k]) > 0;
      t.classList.toggle("alert", alert);
    }

    const arr = (v) => (Array.isArray(v) ? v : []);
    renderTable("listeners", arr(o.listeners), [
      { cell: (l) => el("strong", { text: str(l.name) || "—" }) },
      { cell: (l) => l.kind },
      { cell: (l) => el("code", { text: str(l.bind) || "—" }) },
      { cell: (l) => l.adapter },
      { cell: (l) => (l.state != null ? badge(l.state) : "—") },
      { cell: (l) => fmtInt(l.received), cls: "num" },
      { cell: (l) => ackCodes(l.acks) },
      { cell: (l) => fmtMs(l.ack_p50_ms), cls: "num" },
      { cell: (l) => fmtMs(l.ack_p99_ms), cls: "num" },
    ], "No listeners configured.");

    renderTable("adapters", arr(o.adapters), [
      { cell: (a) => el("strong", { text: str(a.name) || "—" }) },
      { cell: (a) => badge(a.state) },
      { cell: (a) => a.active },
      { cell: (a) => (Array.isArray(a.versions) ? a.versions.map(str).join(", ") : "") },
      { cell: (a) => candidateText(a.candidate) },
    ], "No adapters installed.");

    renderTable("workflows", arr(o.workflows), [
      { cell: (w) => el("strong", { text: str(w.name) || "—" }) },
      { cell: (w) => fmtInt(w.triggered), cls: "num" },
      { cell: (w) => fmtInt(w.succeeded), cls: "num" },
      { cell: (w) => (num(w.failed) > 0 ? el("span", { cls: "text-bad", text: fmtInt(w.failed) }) : fmtInt(w.failed)), cls: "num" },
      { cell: (w) => fmtInt(w.open), cls: "num" },
    ], "No workflows configured.");

    renderTable("bulk_jobs", arr(o.bulk_jobs), [
      { cell: (b) => el("strong", { text: str(b.connection) || "—" }) },
      { cell: (b) => badge(b.state) },
      { cell: (b) => el("code", { text: str(b.export_id) || "—" }), title: (b) => b.export_id },
      { cell: (b) => progress(b.files_done, b.files_total) },
      { cell: (b) => fmtInt(b.resources), cls: "num" },
      { cell: (b) => fmtInt(b.quarantined), cls: "num" },
      { cell: (b) => fmtTime(b.started_at) },
      { cell: (b) => fmtTime(b.finished_at) },
    ], "No bulk jobs.");
  }

  // ---------- quarantine + reprocess ----------

  const outcomes = new Map(); // id -> {kind, text, busy}
  let lastQuarantine = [];

  function renderQuarantine(rows) {
    lastQuarantine = rows;
    const extra = [tokenRole, Array.from(outcomes.entries())];
    renderTable("quarantine", rows, [
      { cell: (q) => fmtTime(q.quarantined_at), cls: "nowrap" },
      { cell: (q) => q.source, cls: "nowrap" },
      { cell: (q) => q.adapter, cls: "nowrap" },
      { cell: (q) => badge(q.error_kind, "warn") },
      { cell: (q) => q.error_message, cls: "msg", title: (q) => q.error_message },
      { cell: (q) => (q.location ? el("code", { text: str(q.location) }) : "—") },
      { cell: statusCell },
      { cell: actionCell, cls: "action" },
    ], "Nothing in quarantine.", extra);
  }

  function statusCell(q) {
    if (q.reprocessed_at == null) return badge("pending", "warn");
    const wrap = el("span", { cls: "q-status" }, [badge("reprocessed", "ok")]);
    if (q.reprocess_outcome) wrap.append(el("span", { cls: "muted", text: str(q.reprocess_outcome) }));
    wrap.title = "Reprocessed at " + fmtTime(q.reprocessed_at) + " UTC" + (q.reprocess_outcome ? ": " + str(q.reprocess_outcome) : "");
    return wrap;
  }

  function actionCell(q) {
    const id = str(q.id);
    const wrap = el("span", { cls: "action-wrap" });
    const o = outcomes.get(id);
    if (q.reprocessed_at == null && id) {
      const b = el("button", { cls: "btn btn-small", text: o && o.busy ? "Reprocessing…" : "Reprocess" });
      b.type = "button";
      b.dataset.reprocess = id;
      b.disabled = !!(o && o.busy);
      if (tokenRole === "viewer") {
        b.classList.add("btn-locked");
        b.title = "The viewer token is read-only: enter the admin token to reprocess";
      } else {
        b.title = "Re-run this message through its adapter (needs the admin token)";
      }
      wrap.append(b);
    }
    if (o && o.text) wrap.append(el("span", { cls: "outcome outcome-" + o.kind, text: o.text, data: { outcome: o.kind } }));
    return wrap.childNodes.length ? wrap : "—";
  }

  function setOutcome(id, kind, text, busy) {
    outcomes.set(id, { kind, text, busy: !!busy });
    renderQuarantine(lastQuarantine);
  }

  async function reprocess(id) {
    const token = fieldToken() || appliedToken;
    if (!token) {
      setOutcome(id, "bad", "Not sent: reprocessing needs the admin token. Enter it above.");
      tokenInput.focus();
      return;
    }
    setOutcome(id, "info", "Reprocessing…", true);
    let r, body = null;
    try {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), 30000);
      r = await fetch("/v1/quarantine/" + encodeURIComponent(id) + "/reprocess", {
        method: "POST",
        cache: "no-store",
        signal: ctl.signal,
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      });
      clearTimeout(timer);
      try { body = await r.json(); } catch (_) { body = null; }
    } catch (e) {
      setOutcome(id, "bad", "Failed: " + (e.name === "AbortError" ? "no answer within 30 s" : "network error"));
      return;
    }
    if (r.ok && body) {
      if (token === appliedToken) tokenRole = "admin";
      if (body.reprocessed === true) setOutcome(id, "ok", "Reprocessed: " + (str(body.outcome) || "ok"));
      else setOutcome(id, "warn", "Still failing: " + (str(body.outcome) || "no detail"));
      refresh();
      return;
    }
    const msg = body && (body.message || body.error) ? str(body.message || body.error) : r.statusText;
    if (r.status === 403) {
      if (token === appliedToken) { tokenRole = "viewer"; showTokenRole(); }
      setOutcome(id, "bad", "Refused (403): " + (msg || "forbidden") + (/token/i.test(msg) ? "" : " (reprocessing needs the admin token)"));
    } else if (r.status === 401) {
      setOutcome(id, "bad", "Refused (401): " + (msg || "unauthorized") + (/token/i.test(msg) ? "" : " (check the token)"));
      refresh(); // the data requests will tell whether this token still works at all
    } else {
      setOutcome(id, "bad", "Failed (HTTP " + r.status + ")" + (msg ? ": " + msg : ""));
    }
  }

  $('[data-table="quarantine"]').addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-reprocess]");
    if (b && !b.disabled) reprocess(b.dataset.reprocess);
  });

  // ---------- charts ----------

  const COLORS = { blue: "#2563eb", green: "#16a34a", red: "#dc2626", amber: "#d97706", violet: "#7c3aed", teal: "#0d9488" };
  const charts = {}; // name -> uPlot instance
  let xWindow = [0, 0]; // x range in unix seconds, set from the KPI answer

  function aggregate(rows) {
    const byMin = new Map();
    for (const r of rows) {
      const t = Date.parse(r && r.minute);
      if (isNaN(t)) continue;
      const x = Math.floor(t / 1000);
      let m = byMin.get(x);
      if (!m) {
        m = { received: 0, accepted: 0, quarantined: 0, p50: null, p95: null, units: 0, met: 0 };
        byMin.set(x, m);
      }
      m.received += num(r.received);
      m.accepted += num(r.accepted);
      m.quarantined += num(r.quarantined);
      if (isNum(r.ack_p50_ms)) m.p50 = m.p50 == null ? r.ack_p50_ms : Math.max(m.p50, r.ack_p50_ms);
      if (isNum(r.ack_p95_ms)) m.p95 = m.p95 == null ? r.ack_p95_ms : Math.max(m.p95, r.ack_p95_ms);
      m.units += num(r.sla_units);
      m.met += num(r.sla_met);
    }
    const minutes = Array.from(byMin.keys()).sort((a, b) => a - b);
    // Minutes without rows had no traffic: put a null point after each such
    // gap so lines break there instead of bridging it.
    const xs = [];
    const ms = [];
    const GAP = { received: null, accepted: null, quarantined: 0, p50: null, p95: null, units: 0, met: 0 };
    minutes.forEach((x, i) => {
      if (i > 0 && x - minutes[i - 1] > 60) { xs.push(minutes[i - 1] + 60); ms.push(GAP); }
      xs.push(x);
      ms.push(byMin.get(x));
    });
    return {
      points: minutes.length,
      xMin: minutes.length ? minutes[0] : null,
      xMax: minutes.length ? minutes[minutes.length - 1] : null,
      throughput: [xs, ms.map((m) => m.received), ms.map((m) => m.accepted)],
      error_rate: [xs, ms.map((m) => (m.received > 0 ? (100 * m.quarantined) / m.received : null))],
      ack_latency: [xs, ms.map((m) => m.p95), ms.map((m) => m.p50)],
      sla: [xs, ms.map((m) => (m.units > 0 ? (100 * m.met) / m.units : null))],
    };
  }

  const zeroTo = (pad) => (u, min, max) => [0, max > 0 ? max * pad : 1];
  // Legend values: the value under the cursor, or the latest one when the
  // cursor is off the chart.
  function latest(u, si) {
    const d = u.data[si];
    for (let i = d.length - 1; i >= 0; i--) if (d[i] != null) return d[i];
    return null;
  }
  const legendValue = (fmt) => (u, v, si, idx) => {
    const x = idx == null ? latest(u, si) : v;
    return x == null ? "—" : fmt(x);
  };
  const fmtPct = legendValue((v) => v.toFixed(1) + " %");
  const fmtMsV = legendValue((v) => v.toFixed(1) + " ms");
  const fmtCnt = legendValue(fmtInt);
  const fmtX = legendValue((v) => fmtTime(v * 1000, true).slice(0, 5));

  function line(label, color, value, fill) {
    return { label, stroke: color, width: 2, fill: fill ? color + "14" : undefined, value, points: { show: true, size: 5, fill: color }, spanGaps: false };
  }

  const CHART_DEFS = {
    throughput: { series: [line("Received", COLORS.blue, fmtCnt, true), line("Accepted", COLORS.green, fmtCnt)], range: zeroTo(1.15), unit: (v) => fmtInt(v) },
    error_rate: { series: [line("Error rate", COLORS.red, fmtPct, true)], range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.2)], unit: (v) => v + " %" },
    ack_latency: { series: [line("p95", COLORS.violet, fmtMsV, true), line("p50", COLORS.teal, fmtMsV)], range: zeroTo(1.15), unit: (v) => v + " ms" },
    sla: { series: [line("Within SLA", COLORS.green, fmtPct, true)], range: () => [0, 105], unit: (v) => (v > 100 ? "" : v + " %") },
  };

  function chartOpts(name, width) {
    const def = CHART_DEFS[name];
    const axis = { stroke: "#64748b", grid: { stroke: "#e9edf2", width: 1 }, ticks: { stroke: "#e2e8f0", width: 1 }, font: "11px system-ui, sans-serif" };
    return {
      width,
      height: 190,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      cursor: { drag: { x: false, y: false }, points: { size: 7 } },
      legend: { live: true },
      scales: {
        x: { time: true, range: () => [xWindow[0], xWindow[1]] },
        y: { range: def.range },
      },
      series: [{ label: "UTC", value: fmtX }].concat(def.series),
      axes: [
        Object.assign({}, axis, { values: (u, splits) => splits.map((v) => fmtTime(v * 1000, true).slice(0, 5)) }),
        Object.assign({}, axis, { size: 58, values: (u, vals) => vals.map(def.unit) }),
      ],
    };
  }

  function chartWidth(box) {
    return Math.max(240, Math.floor(box.getBoundingClientRect().width));
  }

  function renderChart(name, data, points) {
    const box = $('[data-chart="' + name + '"]');
    const main = data[1].reduce((s, v) => s + num(v), 0);
    if (points === 0) {
      if (charts[name]) { charts[name].destroy(); delete charts[name]; }
      box.replaceChildren(el("div", { cls: "no-data", text: "No traffic in the window." }));
    } else if (typeof uPlot === "undefined") {
      box.replaceChildren(el("div", { cls: "no-data", text: "Chart library failed to load." }));
    } else if (charts[name]) {
      charts[name].setData(data);
    } else {
      box.replaceChildren();
      charts[name] = new uPlot(chartOpts(name, chartWidth(box)), data, box);
    }
    box.dataset.points = String(points);
    box.dataset.seriesSum = String(round6(main));
  }

  function renderKpi(k) {
    const rows = Array.isArray(k.rows) ? k.rows : [];
    const agg = aggregate(rows);
    // The x axis always spans the whole window, ending at the KPI refresh time.
    const end = Math.max(Math.floor(Date.parse(k.refreshed_at) / 1000) || 0, agg.xMax || 0);
    xWindow = [Math.min(end - KPI_WINDOW_MIN * 60, agg.xMin != null ? agg.xMin : end), end];
    for (const name of Object.keys(CHART_DEFS)) renderChart(name, agg[name], agg.points);
    const sla = isNum(k.sla_minutes) ? k.sla_minutes : null;
    $("[data-sla-caption]").textContent = "Share of accepted units in silver within " + (sla != null ? "the " + sla + "-minute SLA" : "the SLA") + ", per minute.";
    $("[data-kpi-refreshed]").textContent = k.refreshed_at ? "KPIs as of " + fmtTime(k.refreshed_at) + " UTC" : "";
  }

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const name in charts) {
        const box = $('[data-chart="' + name + '"]');
        charts[name].setSize({ width: chartWidth(box), height: 190 });
      }
    }, 100);
  });

  // ---------- auth prompt, clearing ----------

  const authBox = $("[data-auth]");
  const dashboard = $("[data-dashboard]");

  // state: "required" (prompt shown, no data), "checking" (prompt shown while a
  // new token is tried) or "ok" (prompt hidden, data shown).
  function showAuth(state, reason) {
    authBox.dataset.auth = state;
    authBox.hidden = state === "ok";
    dashboard.hidden = state !== "ok";
    $("[data-auth-title]").textContent = state === "checking" ? "Checking the token…" : "Token needed";
    $("[data-auth-reason]").textContent = reason || "";
  }

  // Forget everything shown so far: it belongs to a token that no longer works.
  function clearData() {
    for (const name in charts) { charts[name].destroy(); delete charts[name]; }
    for (const box of document.querySelectorAll("[data-chart]")) {
      box.replaceChildren();
      box.dataset.points = "0";
      box.dataset.seriesSum = "0";
    }
    for (const t of document.querySelectorAll("[data-flow]")) { t.textContent = "—"; t.classList.remove("alert"); }
    for (const table of document.querySelectorAll("[data-table]")) {
      table.tBodies[0].replaceChildren();
      delete tableSigs[table.dataset.table];
    }
    for (const c of document.querySelectorAll("[data-count]")) c.textContent = "";
    outcomes.clear();
    lastQuarantine = [];
    $("[data-kpi-refreshed]").textContent = "";
    $("[data-refreshed]").textContent = "";
    haveData = false;
  }

  // No token, or the gateway refused it (reason: {status, detail}).
  function lockOut(reason) {
    clearData();
    showError([]);
    document.body.dataset.loaded = "false";
    const ready = $("[data-ready]");
    ready.textContent = "Token needed";
    ready.className = "badge badge-neutral";
    ready.title = "";
    if (reason) {
      showAuth("required", "The gateway did not accept this token (HTTP " + reason.status + (reason.detail ? ": " + reason.detail : "") + ").");
      setTokenState("refused", "bad");
    } else {
      showAuth("required", "");
      setTokenState("no token", "");
    }
  }

  // ---------- refresh loop ----------

  const banner = $("[data-error]");
  let timer = null;
  let inFlight = false;
  let again = false;
  let haveData = false;

  function showError(msgs) {
    if (!msgs.length) { banner.hidden = true; banner.textContent = ""; return; }
    banner.hidden = false;
    banner.textContent = "Refresh failed at " + fmtTime(new Date().toISOString(), true) + " UTC: " + msgs.join("; ") + "." +
      (haveData ? " Showing the last data received." : "");
  }

  async function refresh() {
    if (inFlight) { again = true; return; }
    clearTimeout(timer);
    const token = appliedToken;
    if (!token) return; // the prompt is up; entering a token starts the loop again
    const gen = tokenGen;
    inFlight = true;
    again = false;
    const results = await Promise.allSettled([
      getJSON("/v1/console/overview", token),
      getJSON("/v1/console/kpi?since=" + KPI_WINDOW_MIN, token),
      getJSON("/v1/console/quarantine?limit=" + QUARANTINE_LIMIT, token),
    ]);
    inFlight = false;
    if (gen !== tokenGen) { refresh(); return; } // answers for a token no longer in use
    try {
      render(results);
    } finally {
      clearTimeout(timer);
      if (again) refresh(); else if (appliedToken) timer = setTimeout(refresh, REFRESH_MS);
    }
  }

  function render([ov, kpi, qr]) {
    const denied = [ov, kpi, qr].find((r) => r.status === "rejected" && r.reason instanceof HttpError &&
      (r.reason.status === 401 || r.reason.status === 403));
    if (denied) {
      lockOut({ status: denied.reason.status, detail: denied.reason.detail });
      return;
    }
    const errors = [];
    const ok = [ov, kpi, qr].some((r) => r.status === "fulfilled");
    // Show the data area before drawing: charts size themselves to it.
    if (ok) { showAuth("ok"); showTokenRole(); }
    const run = (res, fn) => {
      if (res.status !== "fulfilled") { errors.push(str(res.reason && res.reason.message) || "error"); return; }
      try { fn(res.value || {}); } catch (e) { errors.push("render: " + str(e.message)); console.error(e); }
    };
    run(ov, renderOverview);
    run(kpi, renderKpi);
    run(qr, (q) => renderQuarantine(Array.isArray(q.rows) ? q.rows : []));
    if (ok) haveData = true;
    showError(errors);
    if (errors.length === 0) {
      $("[data-refreshed]").textContent = "Refreshed " + fmtTime(new Date().toISOString(), true) + " UTC" +
        (ov.value && ov.value.generated_at ? " · data " + fmtTime(ov.value.generated_at, true) : "");
      document.body.dataset.loaded = "true";
    } else if (ov.status !== "fulfilled") {
      const ready = $("[data-ready]");
      ready.textContent = "Unreachable";
      ready.className = "badge badge-warn";
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
  $("[data-window]").textContent = String(KPI_WINDOW_MIN);
  tokenInput.value = storedToken();
  applyToken();
})();
