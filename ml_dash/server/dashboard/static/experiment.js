// One experiment: params filter, a chart per metric field, logs with a level filter and a live
// tail, tracks (tracks.js), files with download and preview. While RUNNING, everything asks only
// for what is new.
"use strict";

(() => {
  const { h, api, boot } = D;
  const prefix = boot.prefix;
  let exp = boot.experiment || {};
  const $ = (id) => document.getElementById(id);
  const startedMs = () => D.timeMs(exp.started_at || exp.startedAt);
  const endedMs = () => D.timeMs(exp.ended_at || exp.endedAt);

  // -- header: duration (ticking while running) --------------------------------------------------
  function duration() {
    const s = startedMs();
    if (s === null) return;
    const e = endedMs() || (exp.status === "RUNNING" ? Date.now() : null);
    $("duration").textContent = e ? `duration ${D.fmtDuration((e - s) / 1000)}` : "";
  }
  duration();
  document.querySelectorAll("[data-time]").forEach((el) => {
    const ms = D.timeMs(el.dataset.time);
    if (ms !== null) el.querySelector("b").textContent = D.fmtTime(ms);
  });

  // -- params -------------------------------------------------------------------------------------
  const paramRows = [...document.querySelectorAll("#params tr")];
  $("param-filter").addEventListener("input", (ev) => {
    const t = ev.target.value.trim().toLowerCase();
    paramRows.forEach((tr) => { tr.hidden = !!t && !tr.textContent.toLowerCase().includes(t); });
  });

  // -- charts -------------------------------------------------------------------------------------
  const grid = new Charts.Grid($("charts"));
  const ctl = Charts.controls(grid);
  let summary = null;
  const COUNTERS = /^(step|steps|global_step|epoch|epochs|iter|iteration|it|batch_idx)$/i;

  function addPanels(sum) {
    const xFields = new Set();
    const t0 = startedMs() === null ? undefined : startedMs() / 1000;
    const specs = [];
    for (const m of sum.metrics) {
      const numeric = Object.entries(m.fields).filter(([, f]) => f.numeric).map(([k]) => k);
      numeric.forEach((f) => { if (f !== "_ts") xFields.add(f); });
      for (const f of numeric) {
        if (f === "_ts") continue;
        const title = m.name ? `${m.name}/${f}` : f;
        specs.push({ key: `${m.name ?? ""}:${f}`, title, metric: m.name, field: f, xFields: numeric,
                     sources: [{ prefix, label: title, color: Charts.PALETTE[0], t0 }] });
      }
    }
    // counters (step, epoch) are x axes more than curves: their charts go after the others
    const late = (s) => (COUNTERS.test(s.field) ? 1 : 0);
    specs.sort((a, b) => late(a) - late(b)).forEach((s) => grid.add(s));
    ctl.setXFields([...xFields]);
    if (!grid.panels.size) $("charts").replaceChildren(h("p", { class: "empty", text: "No metrics logged yet." }));
    else $("charts").querySelector(".empty")?.remove();
  }

  function cursors(sum) {
    const out = new Map();
    sum.metrics.forEach((m) => out.set(m.name ?? "", { [prefix]: m.last_index }));
    return out;
  }

  // -- logs ---------------------------------------------------------------------------------------
  const logsEl = $("logs"), levelSel = $("log-level"), follow = $("log-follow"), logSearch = $("log-search");
  const MAX_LINES = 3000, TAIL = 500;
  let logCursor = 0;

  function logLine(r) {
    const ms = D.timeMs(r.timestamp);
    const meta = r.metadata && Object.keys(r.metadata).length ? "  " + JSON.stringify(r.metadata) : "";
    const el = h("div", { class: "line" }, h("span", { class: "seq", text: r.sequenceNumber }),
      h("span", { class: "ts", text: ms ? D.fmtTime(ms) : "" }),
      h("span", { class: `lv ${r.level}`, text: r.level }), h("span", { class: "msg", text: String(r.message ?? "") + meta }));
    const t = logSearch.value.trim().toLowerCase();
    if (t && !el.textContent.toLowerCase().includes(t)) el.hidden = true;
    return el;
  }

  function appendLogs(rows) {
    if (!rows.length) return;
    const atBottom = logsEl.scrollTop + logsEl.clientHeight >= logsEl.scrollHeight - 4;
    logsEl.querySelector(".empty")?.remove();
    logsEl.append(...rows.map(logLine));
    while (logsEl.childElementCount > MAX_LINES) logsEl.firstElementChild.remove();
    if (follow.checked && atBottom) logsEl.scrollTop = logsEl.scrollHeight;
  }

  async function loadLogs(count) {
    const start = Math.max(0, (count || 0) - TAIL);
    const r = await api("/api/v1/logs", { prefix, start, limit: TAIL, level: levelSel.value });
    logsEl.replaceChildren();
    if (!r.logs.length) logsEl.append(h("div", { class: "empty", text: levelSel.value ? `No ${levelSel.value} lines.` : "No logs." }));
    appendLogs(r.logs);
    logsEl.scrollTop = logsEl.scrollHeight;
    logCursor = r.logs.length ? r.logs[r.logs.length - 1].sequenceNumber + 1 : start;
    if (r.next !== null && r.next !== undefined) logCursor = r.next;
    $("log-count").textContent = count ? `${count} lines${count > TAIL ? `, the last ${TAIL} shown` : ""}` : "";
  }

  async function tailLogs() {
    const r = await api("/api/v1/logs", { prefix, start: logCursor, limit: 1000, level: levelSel.value });
    if (r.logs.length) logCursor = r.logs[r.logs.length - 1].sequenceNumber + 1;
    if (r.next !== null && r.next !== undefined) logCursor = r.next;
    appendLogs(r.logs);
  }
  levelSel.addEventListener("change", () => loadLogs(summary && summary.logs).catch(D.showError));
  logSearch.addEventListener("input", D.debounce(() => {
    const t = logSearch.value.trim().toLowerCase();
    logsEl.querySelectorAll(".line").forEach((el) => { el.hidden = !!t && !el.textContent.toLowerCase().includes(t); });
  }, 150));

  // -- files --------------------------------------------------------------------------------------
  const TEXT_EXT = /\.(txt|log|json|jsonl|ya?ml|csv|tsv|md|py|sh|toml|ini|cfg|xml)$/i;
  const fileUrl = (f, download) => D.url("/api/v1/file", { prefix, id: f.id, download: download ? 1 : "" }).toString();

  async function preview(f) {
    const box = $("preview");
    const close = h("button", { type: "button", text: "close", onclick: () => { box.hidden = true; } });
    const bar = h("div", { class: "bar" }, h("b", { text: `${f.path || ""}/${f.filename}`.replace(/^\/+/, "") }), h("span", { class: "grow" }), close);
    box.hidden = false;
    const type = String(f.contentType || "");
    if (type.startsWith("image/")) {
      box.replaceChildren(bar, h("img", { src: fileUrl(f, false), alt: f.filename }));
      return;
    }
    const r = await fetch(fileUrl(f, false), { credentials: "same-origin", headers: { Range: "bytes=0-262143" } });
    const text = await r.text();
    const cut = (f.sizeBytes || 0) > 262144 ? `\n… (first 256 KiB of ${D.fmtBytes(f.sizeBytes)})` : "";
    box.replaceChildren(bar, h("pre", { text: text + cut }));
  }

  async function loadFiles() {
    const r = await api("/api/v1/files", { prefix });
    const tbody = document.querySelector("#files tbody");
    $("file-count").textContent = r.files.length ? String(r.files.length) : "";
    if (!r.files.length) {
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty", text: "No files." })));
      return;
    }
    tbody.replaceChildren(...r.files.map((f) => {
      const type = String(f.contentType || "");
      const canPreview = type.startsWith("image/") || type.startsWith("text/") || /json|yaml|csv|xml/.test(type) || TEXT_EXT.test(f.filename);
      return h("tr", {}, h("td", { class: "mono", text: f.path || "/" }), h("td", { class: "mono", text: f.filename }),
        h("td", { text: D.fmtBytes(f.sizeBytes) }), h("td", { text: type }),
        h("td", { text: D.fmtTime(D.timeMs(f.uploadedAt)) }),
        h("td", {}, canPreview ? h("button", { type: "button", text: "preview", onclick: () => preview(f).catch(D.showError) }) : null,
          " ", h("a", { href: fileUrl(f, true), text: "download" })));
    }));
  }

  // -- tracks (tracks.js) -------------------------------------------------------------------------
  const tracks = new Tracks.Section(prefix);

  // -- live ---------------------------------------------------------------------------------------
  function setStatus(status, sum) {
    const badge = document.querySelector(".exp-head h1 .status");
    const fresh = D.statusEl(status, sum);
    if (badge && (badge.textContent !== fresh.textContent || badge.title !== fresh.title)) badge.replaceWith(fresh);
  }

  async function live() {
    $("live").hidden = false;
    const stop = D.every(1000, async () => {
      const [e, sum] = await Promise.all([api("/api/v1/experiment", { prefix }), api("/api/v1/summary", { prefix })]);
      exp = e;
      summary = sum;
      setStatus(e.status, sum);
      duration();
      addPanels(sum);
      const cur = cursors(sum);
      await Promise.all([...grid.panels.values()].map((p) => p.live(cur.get(p.spec.metric ?? ""))).concat([tailLogs(), tracks.live()]));
      if (e.status !== "RUNNING") {
        $("live").hidden = true;
        loadFiles().catch(D.showError);
        return false;
      }
    });
    return stop;
  }

  (async () => {
    try {
      summary = await api("/api/v1/summary", { prefix });
      setStatus(exp.status, summary);
      addPanels(summary);
      await Promise.all([loadLogs(summary.logs), loadFiles(), tracks.init()]);
      if (exp.status === "RUNNING") live();
    } catch (e) { D.showError(e); }
  })();
})();
