// Chart panels on uPlot: one metric field, one line per source (a run, or a group's mean), the
// min–max band of each downsampling bucket (spikes stay visible), x modes, log y, smoothing,
// zoom that re-fetches the range at full resolution, and live appends after a row cursor.
"use strict";

const Charts = (() => {
  const { h, api, num } = D;
  const PALETTE = ["#3b7ddd", "#e8743b", "#19a979", "#d64e7e", "#8e6cc7", "#c9a227", "#13a4b4", "#6c8893",
                   "#b5534a", "#5aa13c", "#a05dab", "#dc8b2d"];
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const finite = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const MAX_LIVE_POINTS = 4; // live appends past this many times the bucket count trigger a re-downsample

  // Settings every panel of a page shares.
  // groupColor(group) -> colour: set by the compare page, so a group has one colour in every chart
  const view = { x: "index", logY: false, smooth: 0, groupBy: "", band: "minmax", groupColor: null };

  function xParam(x) { return x === "_rel" ? "_ts" : x; }

  function emaSmooth(ys, alpha) {
    if (!alpha) return ys;
    const out = new Array(ys.length);
    let s = 0, w = 0;
    for (let i = 0; i < ys.length; i++) {
      const y = ys[i];
      if (y === null) { out[i] = null; continue; }
      s = alpha * s + (1 - alpha) * y;
      w = alpha * w + (1 - alpha);
      out[i] = s / w; // debiased, so the start is not pulled to zero
    }
    return out;
  }

  // Merge several (x, ys...) sources onto one sorted x array (uPlot needs one shared x).
  function align(sources) {
    if (sources.length === 1) return { x: sources[0].x, cols: [sources[0].cols] };
    const xs = [...new Set(sources.flatMap((s) => s.x))].sort((a, b) => a - b);
    const pos = new Map(xs.map((v, i) => [v, i]));
    const cols = sources.map((s) => s.cols.map((col) => {
      const out = new Array(xs.length).fill(null);
      s.x.forEach((v, i) => { out[pos.get(v)] = col[i]; });
      return out;
    }));
    return { x: xs, cols };
  }

  // Value of a run's line at x: linear between its points, null outside its range.
  function interp(xs, ys, grid) {
    const out = new Array(grid.length).fill(null);
    let j = 0;
    for (let i = 0; i < grid.length; i++) {
      const g = grid[i];
      while (j < xs.length - 1 && xs[j + 1] <= g) j++;
      if (!xs.length || g < xs[0] || g > xs[xs.length - 1]) continue;
      if (xs[j] === g || j === xs.length - 1) { out[i] = ys[j]; continue; }
      const a = ys[j], b = ys[j + 1];
      if (a === null || b === null) { out[i] = a; continue; }
      out[i] = a + ((b - a) * (g - xs[j])) / (xs[j + 1] - xs[j]);
    }
    return out;
  }

  // One source of a panel: a run's field, fetched whole (downsampled), zoomed, or appended live.
  class Source {
    constructor(spec) {
      Object.assign(this, spec); // prefix, name, field, label, color, t0 (seconds, for relative time), group
      this.reset();
    }
    reset() { this.x = []; this.last = []; this.min = []; this.max = []; this.lastIndex = null; this.appended = 0; this.mode = null; this.total = 0; }
    xOf(v) { return view.x === "_rel" && v !== null ? v - (this.t0 || 0) : v; }
    toServerX(v) { return view.x === "_rel" ? v + (this.t0 || 0) : v; }

    async fetch(range, buckets) {
      const q = { prefix: this.prefix, name: this.name, field: this.field, x: xParam(this.xField), buckets };
      if (range) { q.start = this.toServerX(range[0]); q.end = this.toServerX(range[1]); }
      const r = await api("/api/v1/series", q);
      this.reset();
      this.total = r.total;
      this.lastIndex = r.last_index;
      this.mode = r.mode;
      const p = r.points;
      if (view.x === "_rel" && this.t0 === undefined && p.x.length && !range) this.t0 = p.x[0];
      this.x = p.x.map((v) => this.xOf(v));
      if (r.mode === "raw") {
        this.last = p.y.map((v) => finite(num(v)));
        this.min = this.max = null;
      } else {
        this.last = p.last.map((v) => finite(num(v)));
        this.min = p.min.map((v) => finite(num(v)));
        this.max = p.max.map((v) => finite(num(v)));
      }
      return r;
    }

    // Rows after the cursor; true when something was added.
    async tail() {
      if (this.lastIndex === null && this.mode === null) return false;
      const r = await api("/api/v1/series", { prefix: this.prefix, name: this.name, field: this.field,
        x: xParam(this.xField), after: this.lastIndex === null ? -1 : this.lastIndex, limit: 5000 });
      if (r.last_index !== null && r.last_index !== undefined) this.lastIndex = r.last_index;
      this.total = r.total;
      const p = r.points;
      if (!p.x.length) return false;
      if (view.x === "_rel" && this.t0 === undefined) this.t0 = p.x[0];
      p.x.forEach((v, i) => {
        this.x.push(this.xOf(v));
        const y = finite(num(p.y[i]));
        this.last.push(y);
        if (this.min) { this.min.push(y); this.max.push(y); }
      });
      this.appended += p.x.length;
      return true;
    }
  }

  class Panel {
    // spec: {title, metric (name or null), field, sources: [Source specs], xFields (fields of the metric)}
    constructor(grid, spec) {
      this.spec = spec;
      this.sources = spec.sources.map((s) => new Source({ ...s, name: spec.metric, field: spec.field }));
      this.zoom = null;
      this.u = null;
      this.visible = false;
      this.loaded = false;
      this.busy = null;
      this.readout = h("span", { class: "last" });
      this.resetBtn = h("button", { type: "button", hidden: true, text: "reset zoom", onclick: () => this.setZoom(null) });
      this.note = h("div", { class: "note" });
      this.plot = h("div", { class: "plot" });
      this.el = h("div", { class: "chart", "data-key": spec.key },
        h("div", { class: "title" }, h("b", { text: spec.title }), this.resetBtn, this.readout), this.plot, this.note);
      grid.append(this.el);
    }

    xFieldFor() {
      const want = xParam(view.x);
      if (want === "index" || want === "_ts" || (this.spec.xFields || []).includes(want)) return want;
      return "index";
    }

    buckets() { return Math.max(100, Math.min(2000, Math.round(this.el.clientWidth || 600))); }

    async load() {
      const xf = this.xFieldFor();
      this.note.textContent = xf !== xParam(view.x) ? `x: index (this metric has no ${view.x})` : "";
      this.sources.forEach((s) => { s.xField = xf; });
      const run = (async () => {
        await Promise.all(this.sources.map((s) => s.fetch(this.zoom, this.buckets())));
        this.loaded = true;
        this.draw();
      })();
      this.busy = run;
      try { await run; } catch (e) { this.note.textContent = String(e.message || e); } finally { if (this.busy === run) this.busy = null; }
    }

    async live(cursor) {
      // cursor: the metric's last_index now (from the summary); nothing to ask when we have it all
      if (!this.loaded || this.zoom || this.busy || !this.visible) return;
      const stale = this.sources.filter((s) => cursor === undefined || s.lastIndex === null || cursor[s.prefix] > s.lastIndex);
      if (!stale.length) return;
      const got = await Promise.all(stale.map((s) => s.tail()));
      if (this.sources.some((s) => s.appended > MAX_LIVE_POINTS * this.buckets())) return this.load();
      if (got.some(Boolean)) this.draw();
    }

    setZoom(range) {
      this.zoom = range;
      this.resetBtn.hidden = !range;
      this.load();
    }

    series() {
      // Lines (one per source or group) with their bands; returns uPlot data and series options.
      const smooth = view.smooth;
      const logY = view.logY;
      const clean = (ys) => (logY ? ys.map((v) => (v !== null && v > 0 ? v : null)) : ys);
      let lines;
      if (view.groupBy) lines = this.groupLines();
      else {
        lines = this.sources.map((s) => ({ label: s.label, color: s.color, x: s.x, y: s.last, lo: s.min, hi: s.max }));
      }
      const srcs = lines.map((l) => ({ x: l.x, cols: [clean(emaSmooth(l.y, smooth)), l.lo ? clean(l.lo) : null, l.hi ? clean(l.hi) : null, smooth && lines.length === 1 ? clean(l.y) : null] }));
      const al = align(srcs.map((s) => ({ x: s.x, cols: s.cols.map((c) => c || new Array(s.x.length).fill(null)) })));
      const data = [al.x];
      const opts = [{}];
      const bands = [];
      lines.forEach((l, i) => {
        const [y, lo, hi, raw] = al.cols[i];
        const base = data.length;
        data.push(y);
        // a line of a few points draws its points too: a single logged value is otherwise invisible
        const sparse = y.reduce((n, v) => n + (v === null ? 0 : 1), 0) <= 16;
        opts.push({ label: l.label, stroke: l.color, width: 1.5, spanGaps: true, points: { show: sparse, size: 5, fill: l.color } });
        if (lines[i].lo) {
          data.push(lo, hi);
          // the band's edges are drawn too: a one-bucket spike is a thin sliver of fill, easy to miss
          opts.push({ label: "min", stroke: l.color + "66", width: 1, spanGaps: true, points: { show: false } },
                    { label: "max", stroke: l.color + "66", width: 1, spanGaps: true, points: { show: false } });
          bands.push({ series: [base + 2, base + 1], fill: l.color + "33" });
        }
        if (srcs[i].cols[3]) {
          data.push(raw);
          opts.push({ label: "raw", stroke: l.color + "55", width: 1, spanGaps: true, points: { show: false } });
        }
      });
      return { data, opts, bands, lines };
    }

    groupLines() {
      const groups = new Map();
      this.sources.forEach((s) => {
        if (!groups.has(s.group)) groups.set(s.group, []);
        groups.get(s.group).push(s);
      });
      const out = [];
      [...groups.entries()].forEach(([g, members], gi) => {
        const grid = [...new Set(members.flatMap((m) => m.x))].sort((a, b) => a - b);
        const cols = members.map((m) => interp(m.x, emaSmooth(m.last, 0), grid));
        const mean = [], lo = [], hi = [];
        grid.forEach((_, i) => {
          const vals = cols.map((c) => c[i]).filter((v) => v !== null);
          if (!vals.length) { mean.push(null); lo.push(null); hi.push(null); return; }
          const m = vals.reduce((a, b) => a + b, 0) / vals.length;
          mean.push(m);
          if (view.band === "std") {
            const sd = Math.sqrt(vals.reduce((a, b) => a + (b - m) * (b - m), 0) / vals.length);
            lo.push(m - sd); hi.push(m + sd);
          } else { lo.push(Math.min(...vals)); hi.push(Math.max(...vals)); }
        });
        const color = view.groupColor ? view.groupColor(g) : PALETTE[gi % PALETTE.length];
        out.push({ label: `${g} (${members.length})`, color, x: grid, y: mean,
                   lo: members.length > 1 ? lo : null, hi: members.length > 1 ? hi : null });
      });
      return out;
    }

    draw() {
      const { data, opts, bands, lines } = this.series();
      const n = data[0].length;
      const lastX = n ? data[0][n - 1] : null;
      this.el.dataset.points = String(n);
      this.el.dataset.lastX = lastX === null ? "" : String(lastX);
      this.el.dataset.lines = String(lines.length);
      this.showLast(lines);
      const key = `${opts.length}|${view.logY}|${view.x}|${opts.map((o) => o.stroke).join(",")}`;
      if (this.u && this.key === key) { this.u.setData(data); return; }
      if (this.u) this.u.destroy();
      this.key = key;
      this.u = new uPlot(this.options(opts, bands), data, this.plot);
    }

    showLast(lines) {
      if (lines.length !== 1) { this.readout.textContent = lines.length ? `${lines.length} lines` : "no data"; return; }
      const ys = lines[0].y;
      for (let i = ys.length - 1; i >= 0; i--) if (ys[i] !== null) { this.readout.textContent = D.fmtNum(ys[i]); return; }
      this.readout.textContent = "no data";
    }

    options(series, bands) {
      const axis = axisStyle();
      const rel = view.x === "_rel";
      const self = this;
      return {
        width: Math.max(200, this.plot.clientWidth || this.el.clientWidth - 12 || 400),
        height: 190,
        legend: { show: false },
        cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 5 } },
        scales: { x: { time: view.x === "_ts" }, y: view.logY ? { distr: 3 } : {} },
        axes: [
          { ...axis, values: rel ? (u, vals) => vals.map((v) => D.fmtDuration(v)) : undefined },
          { ...axis, size: 56, values: (u, vals) => vals.map((v) => D.fmtNum(v)) },
        ],
        series,
        bands,
        hooks: {
          setSelect: [(u) => {
            if (u.select.width < 4) return;
            const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
            self.setZoom([a, b]);
          }],
          setCursor: [(u) => {
            const i = u.cursor.idx;
            if (i === null || i === undefined) { self.showLast(self.series().lines); return; }
            const xv = u.data[0][i];
            const xs = view.x === "_ts" ? D.fmtTime(xv * 1000) : rel ? D.fmtDuration(xv) : D.fmtNum(xv);
            const vals = [];
            for (let s = 1; s < u.series.length; s++) {
              const lab = u.series[s].label;
              if (lab === "min" || lab === "max" || lab === "raw") continue;
              const v = u.data[s][i];
              if (v !== null && v !== undefined) vals.push(u.series.length > 4 ? `${lab}: ${D.fmtNum(v)}` : D.fmtNum(v));
            }
            self.readout.textContent = `${xs} → ${vals.slice(0, 4).join("  ")}`;
          }],
        },
      };
    }

    resize() {
      if (this.u) this.u.setSize({ width: Math.max(200, this.plot.clientWidth), height: 190 });
    }

    destroy() { if (this.u) this.u.destroy(); this.el.remove(); }
  }

  // Axis colours and font of every chart, from the page's light or dark theme.
  function axisStyle() {
    const muted = css("--muted") || "#888", line = css("--line") || "#ddd";
    return { stroke: muted, grid: { stroke: line, width: 1 }, ticks: { stroke: line, width: 1 }, font: "11px system-ui, sans-serif" };
  }

  // A grid of panels that fetch when they scroll into view and redraw on resize.
  class Grid {
    constructor(el) {
      this.el = el;
      this.panels = new Map();
      this.io = new IntersectionObserver((entries) => {
        for (const e of entries) {
          const p = this.byEl.get(e.target);
          if (!p) continue;
          p.visible = e.isIntersecting;
          if (p.visible && !p.loaded && !p.busy) p.load();
        }
      }, { rootMargin: "300px 0px" });
      this.byEl = new Map();
      this.ro = new ResizeObserver(D.debounce(() => this.panels.forEach((p) => p.resize()), 100));
      this.ro.observe(el);
    }
    add(spec) {
      if (this.panels.has(spec.key)) return this.panels.get(spec.key);
      const p = new Panel(this.el, spec);
      this.panels.set(spec.key, p);
      this.byEl.set(p.el, p);
      this.io.observe(p.el);
      return p;
    }
    reloadAll() { this.panels.forEach((p) => { p.loaded = false; if (p.visible) p.load(); }); }
    redrawAll() { this.panels.forEach((p) => { if (p.loaded) p.draw(); }); }
    filter(text) {
      const t = text.toLowerCase();
      this.panels.forEach((p) => { p.el.hidden = !!t && !p.spec.title.toLowerCase().includes(t); });
    }
  }

  // Wires the shared controls (x, log y, smoothing, chart filter) to a grid.
  function controls(grid, extra) {
    const $ = (id) => document.getElementById(id);
    const qs = new URLSearchParams(location.search);
    const xSel = $("x-axis"), logY = $("log-y"), smooth = $("smooth"), smoothV = $("smooth-v"), filter = $("chart-filter");
    if (qs.get("x")) view.x = qs.get("x");
    xSel.addEventListener("change", () => { view.x = xSel.value; grid.reloadAll(); });
    logY.addEventListener("change", () => { view.logY = logY.checked; grid.redrawAll(); });
    smooth.addEventListener("input", () => { view.smooth = parseFloat(smooth.value) || 0; smoothV.textContent = smooth.value; grid.redrawAll(); });
    filter.addEventListener("input", D.debounce(() => grid.filter(filter.value.trim()), 150));
    return {
      setXFields(fields) {
        const have = new Set([...xSel.options].map((o) => o.value));
        fields.filter((f) => !have.has(f)).sort().forEach((f) => xSel.append(h("option", { value: f, text: f })));
        xSel.value = view.x;
        if (xSel.value !== view.x) { view.x = "index"; xSel.value = "index"; }
      },
      ...(extra || {}),
    };
  }

  return { view, PALETTE, Grid, controls, axisStyle };
})();
