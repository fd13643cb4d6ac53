// The experiment page's Tracks section (exp.tracks(topic).append(...)): the topics, one topic's
// entries newest first in pages, a chart per numeric column against the entry timestamp, and,
// while the run is RUNNING, the entries that arrive. Topics, columns and values are the user's:
// they only ever become text nodes (D.h's "text"), as log lines do.
"use strict";

const Tracks = (() => {
  const { h, api } = D;
  const PAGE = 50; // table rows per page
  const WINDOW = 5000; // the newest entries kept in the page: the charts and the first pages
  const MAX_CHARTS = 12;
  const CELL_CHARS = 120; // a longer value is cut in its cell
  const EPOCH = 1e9; // timestamps from here on are epoch seconds (2001 on); below, a run's own clock
  const NONFINITE = new Set(["NaN", "Infinity", "-Infinity"]);
  const isNum = (v) => typeof v === "number" || NONFINITE.has(v);
  const pad3 = (n) => String(n).padStart(3, "0");

  function fmtStamp(t) {
    if (typeof t !== "number") return D.fmtValue(t);
    if (t < EPOCH) return String(parseFloat(t.toPrecision(12))); // 5.85, not 5.8500000000000005 (the title has it all)
    const ms = Math.round(t * 1000);
    return `${D.fmtTime(ms)}.${pad3(((ms % 1000) + 1000) % 1000)}`;
  }

  // Columns of entries in the order they first appear, "timestamp" left out.
  function columnsOf(entries, into) {
    const seen = new Set(into);
    for (const e of entries) for (const k of Object.keys(e)) if (k !== "timestamp" && !seen.has(k)) { seen.add(k); into.push(k); }
    return into;
  }

  // A column is charted when each of its values is a number (or null) and one at least is finite.
  function numericColumns(entries, cols) {
    return cols.filter((c) => {
      let finite = false;
      for (const e of entries) {
        const v = e[c];
        if (v === null || v === undefined) continue;
        if (!isNum(v)) return false;
        if (typeof v === "number" && Number.isFinite(v)) finite = true;
      }
      return finite;
    });
  }

  // A chart of one column against the entry timestamp, from entries the page holds (no fetching,
  // zoom or smoothing; uPlot and the metric charts' look). set() redraws; the newest value is read
  // out in the title, or the one under the cursor.
  class Line {
    constructor(parent, { key, title, color }) {
      this.color = color || Charts.PALETTE[0];
      this.u = null;
      this.time = null;
      this.readout = h("span", { class: "last" });
      this.plot = h("div", { class: "plot" });
      this.el = h("div", { class: "chart", "data-key": key }, h("div", { class: "title" }, h("b", { text: title }), this.readout), this.plot);
      parent.append(this.el);
    }

    // xs: numbers in order; ys: numbers or null; time: x is epoch seconds (a date axis)
    set(xs, ys, time) {
      const n = xs.length;
      this.el.dataset.points = String(ys.reduce((k, v) => k + (v === null ? 0 : 1), 0));
      this.el.dataset.lastX = n ? String(xs[n - 1]) : "";
      this.xs = xs;
      this.ys = ys;
      this.showLast();
      const data = [xs, ys];
      const key = `${time}|${n <= 16}`; // a few points are drawn as dots too (a single one is otherwise invisible)
      if (this.u && this.key === key) { this.u.setData(data); return; }
      if (this.u) this.u.destroy();
      this.key = key;
      this.time = time;
      this.u = new uPlot(this.options(time, n <= 16), data, this.plot);
    }

    fmtX(v) { return this.time ? D.fmtTime(v * 1000) : D.fmtNum(v); }

    showLast() {
      for (let i = this.ys.length - 1; i >= 0; i--) if (this.ys[i] !== null) { this.readout.textContent = D.fmtNum(this.ys[i]); return; }
      this.readout.textContent = "no data";
    }

    options(time, sparse) {
      const axis = Charts.axisStyle();
      const self = this;
      return {
        width: Math.max(200, this.plot.clientWidth || 400),
        height: 150,
        legend: { show: false },
        cursor: { drag: { x: false, y: false }, points: { size: 5 } },
        scales: { x: { time } },
        axes: [{ ...axis, values: time ? undefined : (u, vals) => vals.map((v) => D.fmtNum(v)) },
               { ...axis, size: 56, values: (u, vals) => vals.map((v) => D.fmtNum(v)) }],
        series: [{}, { stroke: this.color, width: 1.5, spanGaps: true, points: { show: sparse, size: 5, fill: this.color } }],
        hooks: {
          setCursor: [(u) => {
            const i = u.cursor.idx;
            if (i === null || i === undefined || u.data[1][i] === null) { self.showLast(); return; }
            self.readout.textContent = `${self.fmtX(u.data[0][i])} → ${D.fmtNum(u.data[1][i])}`;
          }],
        },
      };
    }

    resize() { if (this.u) this.u.setSize({ width: Math.max(200, this.plot.clientWidth), height: 150 }); }

    destroy() { if (this.u) this.u.destroy(); this.el.remove(); }
  }

  class Section {
    constructor(prefix) {
      const $ = (id) => document.getElementById(id);
      this.prefix = prefix;
      this.countEl = $("track-count");
      this.topicsEl = $("track-topics");
      this.viewEl = $("track-view");
      this.chartsEl = $("track-charts");
      this.noteEl = $("track-note");
      this.rangeEl = $("track-range");
      this.table = $("track-table");
      this.newer = $("track-newer");
      this.older = $("track-older");
      this.topics = [];
      this.topic = null;
      this.gen = 0; // a newer choice of topic makes older answers void
      this.busy = false;
      this.lines = new Map();
      this.newer.addEventListener("click", () => this.showPage(this.page - 1).catch(D.showError));
      this.older.addEventListener("click", () => this.showPage(this.page + 1).catch(D.showError));
      this.ro = new ResizeObserver(D.debounce(() => this.lines.forEach((l) => l.resize()), 100));
      this.ro.observe(this.chartsEl);
    }

    ask(start, limit) { return api("/api/v1/track", { prefix: this.prefix, topic: this.topic, start, limit }); }

    // Entries [start, start + count) (fewer at the end), following `next` when the server pages.
    async range(start, count) {
      const out = [];
      let r = null, at = start;
      while (out.length < count) {
        r = await this.ask(at, count - out.length);
        out.push(...r.entries);
        if (r.next === null || r.next === undefined || !r.entries.length) break;
        at = r.next;
      }
      return { entries: out, total: r ? r.total : 0 };
    }

    async init() {
      const r = await api("/api/v1/tracks", { prefix: this.prefix });
      this.setTopics(r.tracks);
      const want = new URLSearchParams(location.search).get("track");
      if (this.topics.length) await this.choose(this.topics.includes(want) ? want : this.topics[0], false);
    }

    setTopics(topics) {
      const same = topics.length === this.topics.length && topics.every((t, i) => t === this.topics[i]);
      this.topics = topics;
      this.countEl.textContent = topics.length ? String(topics.length) : "";
      if (same && this.topicsEl.childElementCount) return;
      if (!topics.length) {
        this.topicsEl.replaceChildren(h("p", { class: "empty", text: "No tracks." }));
        this.viewEl.hidden = true;
        return;
      }
      this.topicsEl.replaceChildren(...topics.map((t) => h("button", {
        type: "button", class: "topic", "data-topic": t, "aria-pressed": String(t === this.topic), text: t,
        onclick: () => this.choose(t, true).catch(D.showError),
      })));
    }

    async choose(topic, remember) {
      const gen = ++this.gen;
      this.topic = topic;
      this.topicsEl.querySelectorAll("button.topic").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.topic === topic)));
      if (remember) {
        const u = new URL(location.href);
        u.searchParams.set("track", topic);
        history.replaceState(null, "", u);
      }
      this.busy = true;
      try {
        let got = await this.range(0, WINDOW);
        if (got.total > got.entries.length) got = await this.range(Math.max(0, got.total - WINDOW), WINDOW);
        if (gen !== this.gen) return;
        this.total = got.total;
        this.win = got.entries; // the newest entries, in timestamp order: indices total - win.length .. total - 1
        this.cols = columnsOf(this.win, []);
        this.lines.forEach((l) => l.destroy());
        this.lines.clear();
        this.viewEl.hidden = false;
        this.drawCharts();
        await this.showPage(0);
      } finally { if (gen === this.gen) this.busy = false; }
    }

    drawCharts() {
      const numeric = numericColumns(this.win, this.cols);
      const shown = numeric.slice(0, MAX_CHARTS);
      const xs = this.win.map((e) => e.timestamp);
      const time = xs.length > 0 && xs[0] >= EPOCH;
      shown.forEach((c, i) => {
        let line = this.lines.get(c);
        if (!line) {
          line = new Line(this.chartsEl, { key: `track:${c}`, title: c, color: Charts.PALETTE[i % Charts.PALETTE.length] });
          this.lines.set(c, line);
        }
        line.set(xs, this.win.map((e) => { const v = D.num(e[c] ?? null); return v !== null && Number.isFinite(v) ? v : null; }), time);
      });
      const notes = [];
      if (this.total > this.win.length) notes.push(`charts: the newest ${this.win.length.toLocaleString()} of ${this.total.toLocaleString()} entries`);
      if (numeric.length > shown.length) notes.push(`${numeric.length - shown.length} more numeric columns not charted`);
      if (!numeric.length) notes.push("no numeric columns to chart");
      this.noteEl.textContent = notes.join("; ");
    }

    // Page p of the table, newest first: entries total-1-p*PAGE down to PAGE of them.
    async showPage(p) {
      const pages = Math.max(1, Math.ceil(this.total / PAGE));
      p = Math.max(0, Math.min(p, pages - 1));
      const hi = this.total - 1 - p * PAGE, lo = Math.max(0, hi - PAGE + 1);
      const first = this.total - this.win.length;
      let rows;
      if (lo >= first) rows = this.win.slice(lo - first, hi - first + 1);
      else {
        const gen = this.gen;
        rows = (await this.range(lo, hi - lo + 1)).entries;
        if (gen !== this.gen) return;
      }
      this.page = p;
      this.renderTable(rows.reverse(), hi);
      this.rangeEl.textContent = this.total
        ? `${(p * PAGE + 1).toLocaleString()}–${(p * PAGE + rows.length).toLocaleString()} of ${this.total.toLocaleString()} ${this.total === 1 ? "entry" : "entries"}, newest first`
        : "no entries";
      this.newer.disabled = p === 0;
      this.older.disabled = p >= pages - 1;
    }

    renderTable(rows, hi) {
      const cols = columnsOf(rows, this.cols.slice());
      const numeric = new Set(numericColumns(rows, cols));
      this.table.tHead.replaceChildren(h("tr", {}, h("th", { text: "timestamp" }),
        ...cols.map((c) => h("th", { class: numeric.has(c) ? "num" : null, text: c }))));
      const body = rows.map((e, i) => h("tr", { "data-index": hi - i },
        h("td", { class: "ts", text: fmtStamp(e.timestamp), title: String(e.timestamp) }),
        ...cols.map((c) => {
          const v = e[c];
          const full = typeof v === "number" ? String(v) : D.fmtValue(v);
          let text = D.fmtValue(v);
          if (text.length > CELL_CHARS) text = text.slice(0, CELL_CHARS) + "…"; // the whole value in the tooltip
          return h("td", { class: isNum(v) ? "num" : null, text, title: full !== text ? full.slice(0, 4096) : null });
        })));
      this.table.tBodies[0].replaceChildren(...body);
    }

    // One live tick: the topics again, and the chosen topic's entries after the ones held. Entries
    // with the newest timestamp may still merge (same-timestamp appends), so the last one is asked
    // again; an entry that lands before it (an older timestamp) reloads the topic.
    async live() {
      if (this.busy) return;
      const r = await api("/api/v1/tracks", { prefix: this.prefix });
      this.setTopics(r.tracks);
      if (!this.topic) {
        if (this.topics.length) await this.choose(this.topics[0], false);
        return;
      }
      if (!this.win) return this.choose(this.topic, false); // its first load failed: again
      const gen = this.gen;
      const from = Math.max(0, this.total - 1);
      const got = await this.ask(from, WINDOW);
      if (gen !== this.gen || this.busy) return;
      const last = this.win[this.win.length - 1];
      const head = got.entries[0];
      if (got.total < this.total || (got.next ?? null) !== null || (last && (!head || head.timestamp !== last.timestamp))) {
        return this.choose(this.topic, false);
      }
      if (got.total === this.total && (!last || JSON.stringify(head) === JSON.stringify(last))) return;
      if (last) this.win[this.win.length - 1] = head;
      this.win.push(...got.entries.slice(last ? 1 : 0));
      if (this.win.length > WINDOW) this.win.splice(0, this.win.length - WINDOW);
      this.total = got.total;
      columnsOf(got.entries, this.cols);
      this.drawCharts();
      // the newest page follows the run; an older page a person is reading stays as it is
      if (this.page === 0) await this.showPage(0);
    }
  }

  return { Section, fmtStamp };
})();
