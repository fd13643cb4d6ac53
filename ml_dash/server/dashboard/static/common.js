// Shared helpers of the dashboard pages: the API client, element building (text only, never HTML
// from data), number and time formatting.
"use strict";

const D = (() => {
  const bootEl = document.getElementById("boot");
  const boot = bootEl ? JSON.parse(bootEl.textContent || "{}") : {};

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  function url(path, params) {
    const u = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === null || v === undefined || v === "") continue;
      if (Array.isArray(v)) v.forEach((x) => u.searchParams.append(k, x));
      else u.searchParams.set(k, v);
    }
    return u;
  }

  async function api(path, params, opts) {
    const r = await fetch(url(path, params), { credentials: "same-origin", headers: { Accept: "application/json" }, ...(opts || {}) });
    if (r.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new Error("login needed");
    }
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const err = new Error((body && body.error && body.error.message) || `${r.status} ${r.statusText}`);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  // Non-finite floats travel as strings; everything else that is not a number is null.
  function num(v) {
    if (typeof v === "number") return v;
    if (typeof v === "boolean") return v ? 1 : 0;
    if (v === "NaN") return NaN;
    if (v === "Infinity") return Infinity;
    if (v === "-Infinity") return -Infinity;
    return null;
  }
  const nums = (arr) => (arr || []).map(num);

  function fmtNum(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "string") return v;
    if (typeof v !== "number") return JSON.stringify(v);
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(parseFloat(v.toPrecision(5)));
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number" || v === "NaN" || v === "Infinity" || v === "-Infinity") return fmtNum(num(v));
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function fmtDuration(sec) {
    if (sec === null || sec === undefined || !Number.isFinite(sec)) return "";
    if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)}s`;
    const m = Math.floor(sec / 60), s = Math.floor(sec % 60);
    if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
    const hh = Math.floor(m / 60);
    if (hh < 48) return `${hh}h ${String(m % 60).padStart(2, "0")}m`;
    return `${Math.floor(hh / 24)}d ${hh % 24}h`;
  }

  // ISO text or epoch seconds -> epoch milliseconds (or null).
  function timeMs(v) {
    if (v === null || v === undefined || v === "") return null;
    if (typeof v === "number") return v * 1000;
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(ms) {
    if (ms === null) return "";
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fmtAgo(ms) {
    if (ms === null) return "";
    const s = (Date.now() - ms) / 1000;
    if (s < 45) return "just now";
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    if (s < 86400 * 14) return `${Math.round(s / 86400)} d ago`;
    return fmtTime(ms).slice(0, 10);
  }
  function fmtBytes(n) {
    if (n === null || n === undefined) return "";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${u[i]}`;
  }

  const expHref = (prefix) => "/e/" + prefix.split("/").map(encodeURIComponent).join("/");
  const compareHref = (prefixes) => "/compare?" + prefixes.map((p) => "p=" + encodeURIComponent(p)).join("&");

  // ``activity``: a table row or a run summary ({lastActivity, stale}, from the server, which
  // decides staleness: see STALE_AFTER in PROTOCOL.md); its exact time goes in the tooltip.
  function statusEl(status, activity) {
    const cls = { RUNNING: "running", COMPLETED: "completed", FAILED: "failed", CANCELLED: "cancelled" }[status] || "unknown";
    const at = activity ? timeMs(activity.lastActivity) : null;
    const title = at === null ? null : `last activity ${fmtTime(at)}`;
    if (status === "RUNNING" && activity && activity.stale && at !== null) {
      return h("span", { class: "status running stale", title,
                         text: `RUNNING · no activity for ${fmtIdle((Date.now() - at) / 1000)}` });
    }
    return h("span", { class: `status ${cls}`, text: status || "—", title });
  }

  function fmtIdle(s) {
    const m = Math.max(0, Math.floor(s / 60));
    if (m < 60) return `${m} min`;
    if (m < 48 * 60) return `${Math.floor(m / 60)} h ${m % 60} min`;
    return `${Math.floor(m / 1440)} d`;
  }

  function showError(err) {
    const el = document.getElementById("error");
    if (!el) return;
    if (!err) { el.hidden = true; return; }
    el.textContent = String(err.message || err);
    el.hidden = false;
  }

  function debounce(fn, ms) {
    let t = null;
    return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  }

  // Runs fn every `ms` while the page is visible; fn returning false stops it.
  function every(ms, fn) {
    let stopped = false, timer = null;
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) {
        try { if ((await fn()) === false) { stopped = true; return; } } catch (e) { console.warn(e); }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    timer = setTimeout(tick, ms);
    return () => { stopped = true; clearTimeout(timer); };
  }

  return { boot, h, url, api, num, nums, fmtNum, fmtValue, fmtDuration, timeMs, fmtTime, fmtAgo, fmtBytes,
           expHref, compareHref, statusEl, showError, debounce, every };
})();
