// The experiments table: filters, sort, extra columns and paging live in the URL (shareable);
// rows come a page at a time from /api/v1/table.
"use strict";

(() => {
  const { h, api } = D;
  const STATUSES = ["RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
  const PAGE = 50;
  const qs = new URLSearchParams(location.search);
  const state = {
    glob: qs.get("glob") || "",
    q: qs.get("q") || "",
    status: qs.getAll("status").filter((s) => STATUSES.includes(s)),
    sort: qs.get("sort") || "startedAt",
    order: qs.get("order") || "desc",
    offset: Math.max(0, parseInt(qs.get("offset") || "0", 10) || 0),
    columns: (qs.get("columns") || "").split(",").filter(Boolean),
  };
  const selected = new Set();
  let last = null;
  let seq = 0;

  const $ = (id) => document.getElementById(id);
  const glob = $("glob"), q = $("q"), thead = document.querySelector("#runs thead"), tbody = document.querySelector("#runs tbody");
  glob.value = state.glob;
  q.value = state.q;

  function syncUrl() {
    const p = new URLSearchParams();
    if (state.glob) p.set("glob", state.glob);
    if (state.q) p.set("q", state.q);
    state.status.forEach((s) => p.append("status", s));
    if (state.sort !== "startedAt") p.set("sort", state.sort);
    if (state.order !== "desc") p.set("order", state.order);
    if (state.offset) p.set("offset", state.offset);
    if (state.columns.length) p.set("columns", state.columns.join(","));
    const s = p.toString();
    history.replaceState(null, "", s ? "?" + s : location.pathname);
  }

  function colLabel(key) {
    if (key.startsWith("p:")) return key.slice(2);
    const [, name, field] = key.split(":");
    return name ? `${name}/${field}` : field;
  }

  const BASE = [
    { key: "prefix", label: "experiment" },
    { key: "status", label: "status" },
    { key: "startedAt", label: "started" },
    { key: "duration", label: "duration" },
    { key: null, label: "rows" },
    { key: null, label: "tags" },
  ];

  function header() {
    const cells = [h("th", { class: "check" }, h("input", {
      type: "checkbox", title: "select all on this page",
      onchange: (ev) => {
        (last ? last.rows : []).forEach((r) => (ev.target.checked ? selected.add(r.prefix) : selected.delete(r.prefix)));
        render();
      },
    }))];
    const sortable = (key, label, extra) => h("th", {
      class: state.sort === key ? "sorted" : null, title: key ? "sort" : null,
      onclick: key ? () => {
        if (state.sort === key) state.order = state.order === "asc" ? "desc" : "asc";
        else { state.sort = key; state.order = key === "prefix" ? "asc" : "desc"; }
        state.offset = 0; load();
      } : null,
    }, label, state.sort === key ? (state.order === "asc" ? " ▲" : " ▼") : "", extra || null);
    BASE.forEach((c) => cells.push(sortable(c.key, c.label)));
    state.columns.forEach((c) => cells.push(sortable(c, colLabel(c), h("span", {
      class: "x", title: "remove column", text: "×",
      onclick: (ev) => { ev.stopPropagation(); state.columns = state.columns.filter((x) => x !== c); load(); },
    }))));
    cells.push(h("th", {}, "description"));
    thead.replaceChildren(h("tr", {}, cells));
  }

  function prefixCell(r) {
    const segs = r.prefix.split("/");
    return h("td", { class: "pre" }, h("a", { href: D.expHref(r.prefix) },
      h("span", { class: "dim", text: segs.slice(0, -1).join("/") + "/" }), segs[segs.length - 1]));
  }

  function row(r) {
    const started = D.timeMs(r.startedAt);
    let dur = r.duration;
    if ((dur === null || dur === undefined) && r.status === "RUNNING" && started) dur = (Date.now() - started) / 1000;
    const counts = r.counts || {};
    const tr = h("tr", { class: selected.has(r.prefix) ? "sel" : null, "data-prefix": r.prefix },
      h("td", { class: "check" }, h("input", {
        type: "checkbox", checked: selected.has(r.prefix),
        onchange: (ev) => { ev.target.checked ? selected.add(r.prefix) : selected.delete(r.prefix); render(); },
      })),
      prefixCell(r),
      h("td", {}, D.statusEl(r.status, r)),
      h("td", { title: started ? D.fmtTime(started) : "" }, D.fmtAgo(started)),
      h("td", { class: "num" }, D.fmtDuration(dur)),
      h("td", { class: "num", title: `${counts.metric_rows || 0} metric rows, ${counts.logs || 0} logs, ${counts.files || 0} files` },
        D.fmtNum(counts.metric_rows || 0)),
      h("td", {}, (r.tags || []).map((t) => h("span", { class: "tag clickable", text: t, title: "search for this tag",
        onclick: () => { state.q = t; q.value = t; state.offset = 0; load(); } }))),
      state.columns.map((c) => h("td", { class: "num" }, D.fmtValue((r.values || {})[c]))),
      h("td", { class: "desc", title: r.description || "" }, r.description || ""));
    return tr;
  }

  function statusChips() {
    $("status-filter").replaceChildren(...STATUSES.map((s) => {
      const chip = D.statusEl(s);
      chip.classList.add("chip");
      if (state.status.includes(s)) chip.classList.add("on");
      chip.title = "show only these (click again to clear)";
      chip.addEventListener("click", () => {
        state.status = state.status.includes(s) ? state.status.filter((x) => x !== s) : [...state.status, s];
        state.offset = 0; load();
      });
      return chip;
    }));
  }

  function columnPicker(avail) {
    const sel = $("add-column");
    const opts = [h("option", { value: "", text: "+ column" })];
    const groups = [["metrics (last value)", avail.metrics || []], ["params", avail.params || []]];
    for (const [label, keys] of groups) {
      const free = keys.filter((k) => !state.columns.includes(k));
      if (free.length) opts.push(h("optgroup", { label }, free.map((k) => h("option", { value: k, text: colLabel(k) }))));
    }
    sel.replaceChildren(...opts);
  }
  $("add-column").addEventListener("change", (ev) => {
    if (ev.target.value) { state.columns.push(ev.target.value); load(); }
  });

  // Owners and projects of what is listed, as one-click glob filters.
  function tree(rows) {
    const seen = new Map();
    for (const r of rows) {
      const segs = r.prefix.split("/");
      seen.set(segs[0] + "/*", segs[0]);
      seen.set(segs.slice(0, 2).join("/") + "/*", segs.slice(0, 2).join("/"));
    }
    const links = [h("a", { href: "#", class: state.glob ? null : "on", text: "all",
      onclick: (ev) => { ev.preventDefault(); setGlob(""); } })];
    [...seen.keys()].sort().slice(0, 40).forEach((g) => links.push(h("a", {
      href: "#", class: state.glob === g ? "on" : null, text: seen.get(g) + "/",
      onclick: (ev) => { ev.preventDefault(); setGlob(g); },
    })));
    $("tree").replaceChildren(...links);
  }
  function setGlob(g) { state.glob = g; glob.value = g; state.offset = 0; load(); }

  function render() {
    header();
    if (!last) return;
    tbody.replaceChildren(...(last.rows.length ? last.rows.map(row)
      : [h("tr", {}, h("td", { colspan: 8 + state.columns.length, class: "empty",
          text: state.glob || state.q || state.status.length ? "No experiment matches these filters." : "No experiments yet." }))]));
    const end = last.offset + last.rows.length;
    $("count").textContent = last.total ? `${last.offset + 1}–${end} of ${last.total}` : "0 experiments";
    $("prev").disabled = last.offset <= 0;
    $("next").disabled = end >= last.total;
    const btn = $("compare");
    btn.disabled = selected.size < 1;
    btn.textContent = selected.size ? `Compare ${selected.size}` : "Compare";
  }

  async function load(quiet) {
    syncUrl();
    statusChips();
    const my = ++seq;
    try {
      const data = await api("/api/v1/table", {
        glob: state.glob, q: state.q, status: state.status, sort: state.sort, order: state.order,
        offset: state.offset, limit: PAGE, columns: state.columns.join(","),
      });
      if (my !== seq) return; // an older answer arriving late
      last = data;
      D.showError(null);
      if (!quiet) { columnPicker(data.available || {}); tree(data.rows); }
      render();
    } catch (e) {
      if (my === seq) D.showError(e);
    }
  }

  glob.addEventListener("input", D.debounce(() => { state.glob = glob.value.trim(); state.offset = 0; load(); }, 250));
  q.addEventListener("input", D.debounce(() => { state.q = q.value.trim(); state.offset = 0; load(); }, 250));
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); load(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; load(); });
  $("compare").addEventListener("click", () => { location.href = D.compareHref([...selected]); });

  load();
  // While something on the page runs, keep its status, duration and last values fresh.
  D.every(5000, () => { if (last && last.rows.some((r) => r.status === "RUNNING")) load(true); });
})();
