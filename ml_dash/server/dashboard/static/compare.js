// Several runs overlaid: one line per run, or per group (a param's value, or the folder) with the
// group's mean and a min–max or ±std band.
"use strict";

(() => {
  const { h, api, boot } = D;
  const prefixes = boot.prefixes || [];
  const $ = (id) => document.getElementById(id);
  const grid = new Charts.Grid($("charts"));
  const view = Charts.view;
  const groupSel = $("group-by"), bandSel = $("band");
  const runs = new Map(); // prefix -> {exp, summary, params, color}

  function flatten(obj, base, out) {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = base ? `${base}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
      else out[key] = v;
    }
    return out;
  }

  function groupOf(prefix) {
    const g = view.groupBy;
    if (g === "folder") return prefix.split("/").slice(0, -1).join("/");
    if (g.startsWith("p:")) {
      const v = runs.get(prefix).params[g.slice(2)];
      return `${g.slice(2)}=${v === undefined ? "—" : D.fmtValue(v)}`;
    }
    return prefix;
  }

  function regroup() {
    grid.panels.forEach((p) => p.sources.forEach((s) => { s.group = groupOf(s.prefix); }));
    const groups = [...new Set(prefixes.filter((p) => runs.has(p)).map(groupOf))].sort();
    const color = new Map(groups.map((g, i) => [g, Charts.PALETTE[i % Charts.PALETTE.length]]));
    view.groupColor = (g) => color.get(g) || "#888888";
    const legend = $("group-legend");
    legend.hidden = !view.groupBy;
    legend.replaceChildren(...(view.groupBy ? groups.map((g) => h("li", {},
      h("span", { class: "swatch", style: { background: color.get(g) } }),
      `${g} (${prefixes.filter((p) => runs.has(p) && groupOf(p) === g).length})`)) : []));
    grid.redrawAll();
  }

  function runList() {
    $("run-list").replaceChildren(...prefixes.map((p) => {
      const r = runs.get(p);
      return h("li", {}, h("span", { class: "swatch", style: { background: r ? r.color : "transparent" } }),
        h("a", { href: D.expHref(p), text: p }), " ", r ? D.statusEl(r.exp.status) : h("span", { class: "status unknown", text: "not found" }));
    }));
  }

  function panels() {
    const xFields = new Set();
    const byKey = new Map();
    for (const p of prefixes) {
      const r = runs.get(p);
      if (!r) continue;
      const t0 = D.timeMs(r.exp.started_at || r.exp.startedAt);
      for (const m of r.summary.metrics) {
        const numeric = Object.entries(m.fields).filter(([, f]) => f.numeric).map(([k]) => k);
        for (const f of numeric) {
          if (f === "_ts") continue;
          xFields.add(f);
          const key = `${m.name ?? ""}:${f}`;
          if (!byKey.has(key)) byKey.set(key, { key, title: m.name ? `${m.name}/${f}` : f, metric: m.name, field: f, xFields: new Set(), sources: [] });
          const spec = byKey.get(key);
          numeric.forEach((x) => spec.xFields.add(x));
          spec.sources.push({ prefix: p, label: p.split("/").pop(), color: r.color, t0: t0 === null ? undefined : t0 / 1000, group: groupOf(p) });
        }
      }
    }
    // curves first, counters (step, epoch) after them, as on the experiment page
    const late = (spec) => (/^(step|steps|global_step|epoch|epochs|iter|iteration|it|batch_idx)$/i.test(spec.field) ? 1 : 0);
    [...byKey.values()].sort((a, b) => late(a) - late(b) || a.title.localeCompare(b.title))
      .forEach((spec) => grid.add({ ...spec, xFields: [...spec.xFields] }));
    ctl.setXFields([...xFields]);
    if (!byKey.size) $("charts").replaceChildren(h("p", { class: "empty", text: prefixes.length ? "These runs have no metrics." : "Pick runs to compare in the experiments table." }));
  }

  function groupOptions() {
    // Params whose values differ between the runs first: those are what one groups by.
    const keys = new Map();
    runs.forEach((r) => Object.entries(r.params).forEach(([k, v]) => {
      if (!keys.has(k)) keys.set(k, new Set());
      keys.get(k).add(JSON.stringify(v));
    }));
    const varying = [...keys.entries()].filter(([, s]) => s.size > 1).map(([k]) => k).sort();
    const same = [...keys.entries()].filter(([, s]) => s.size <= 1).map(([k]) => k).sort();
    const opt = (k) => h("option", { value: "p:" + k, text: `param ${k}` });
    if (varying.length) groupSel.append(h("optgroup", { label: "params that differ" }, varying.map(opt)));
    if (same.length) groupSel.append(h("optgroup", { label: "other params" }, same.slice(0, 200).map(opt)));
  }

  const ctl = Charts.controls(grid);
  groupSel.addEventListener("change", () => { view.groupBy = groupSel.value; regroup(); });
  bandSel.addEventListener("change", () => { view.band = bandSel.value; grid.redrawAll(); });

  async function live() {
    $("live").hidden = false;
    D.every(1000, async () => {
      const running = prefixes.filter((p) => runs.get(p) && runs.get(p).exp.status === "RUNNING");
      if (!running.length) { $("live").hidden = true; return false; }
      const got = await Promise.all(running.map((p) => Promise.all([api("/api/v1/experiment", { prefix: p }), api("/api/v1/summary", { prefix: p })])));
      const cursor = new Map(); // metric -> {prefix: last_index}
      got.forEach(([e, s], i) => {
        const r = runs.get(running[i]);
        r.exp = e; r.summary = s;
        s.metrics.forEach((m) => {
          const k = m.name ?? "";
          if (!cursor.has(k)) cursor.set(k, {});
          cursor.get(k)[running[i]] = m.last_index;
        });
      });
      runList();
      panels();
      await Promise.all([...grid.panels.values()].map((p) => {
        const c = { ...(cursor.get(p.spec.metric ?? "") || {}) };
        p.sources.forEach((s) => { if (!(s.prefix in c)) c[s.prefix] = s.lastIndex ?? -1; }); // finished runs: nothing new
        return p.live(c);
      }));
    });
  }

  (async () => {
    try {
      const got = await Promise.all(prefixes.map((p) => Promise.all([
        api("/api/v1/experiment", { prefix: p }), api("/api/v1/summary", { prefix: p }), api("/api/v1/params", { prefix: p }),
      ]).catch((e) => { D.showError(e); return null; })));
      got.forEach((g, i) => {
        if (g) runs.set(prefixes[i], { exp: g[0], summary: g[1], params: flatten(g[2].data, "", {}), color: Charts.PALETTE[i % Charts.PALETTE.length] });
      });
      runList();
      groupOptions();
      panels();
      if ([...runs.values()].some((r) => r.exp.status === "RUNNING")) live();
    } catch (e) { D.showError(e); }
  })();
})();
