"""The HTML of the dashboard's pages. Values are escaped here; scripts add only text nodes."""

from __future__ import annotations

import datetime as _dt
import html
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote, urlencode

import orjson

__all__ = [
    "table_page",
    "experiment_page",
    "compare_page",
    "login_page",
    "error_page",
    "experiment_href",
    "flatten_params",
]

_STATUS_CLASS = {"RUNNING": "running", "COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled"}


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def experiment_href(prefix: str) -> str:
    return "/e/" + "/".join(quote(seg, safe="") for seg in prefix.split("/"))


def _boot(data: Dict[str, Any]) -> str:
    # "<" escaped so no value can close the script element early.
    text = orjson.dumps(data).decode().replace("<", "\\u003c")
    return f'<script type="application/json" id="boot">{text}</script>'


def _layout(
    title: str,
    page: str,
    body: str,
    boot: Dict[str, Any],
    *,
    asset_v: str,
    crumbs: Iterable[Tuple[str, Optional[str]]] = (),
    logout: bool = False,
    charts: bool = False,
    preload: Iterable[str] = (),
    parts: Iterable[str] = (),
) -> str:
    nav = []
    for label, href in crumbs:
        nav.append(f'<a href="{_e(href)}">{_e(label)}</a>' if href else f"<span>{_e(label)}</span>")
    logout_html = (
        '<form method="post" action="/logout" class="logout"><button type="submit">Log out</button></form>'
        if logout
        else ""
    )
    v = f"?v={asset_v}"
    uplot = f'<link rel="stylesheet" href="/static/vendor/uplot/uPlot.min.css{v}">' if charts else ""
    # API answers the page's script asks for first: fetched while the scripts load, not after.
    uplot += "".join(f'<link rel="preload" href="{_e(u)}" as="fetch" crossorigin="anonymous">' for u in preload)
    scripts = f'<script src="/static/vendor/uplot/uPlot.iife.min.js{v}"></script>' if charts else ""
    scripts += f'<script src="/static/common.js{v}"></script>'
    if charts:
        scripts += f'<script src="/static/charts.js{v}"></script>'
    # parts: scripts of sections the page's own script puts together
    scripts += "".join(f'<script src="/static/{part}.js{v}"></script>' for part in parts)
    scripts += f'<script src="/static/{page}.js{v}"></script>' if page else ""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="color-scheme" content="light dark">'
        f"<title>{_e(title)} · ml-dash</title>"
        f'<link rel="icon" href="/static/favicon.svg{v}" type="image/svg+xml">'
        f'{uplot}<link rel="stylesheet" href="/static/dash.css{v}">'
        f'</head><body data-page="{_e(page)}">'
        f'<header class="top"><a class="brand" href="/">ml-dash</a>'
        f'<nav class="crumbs">{"<i>/</i>".join(nav)}</nav><span class="grow"></span>{logout_html}</header>'
        f"<main>{body}</main>{_boot(boot)}{scripts}</body></html>"
    )


def _status(status: Optional[str]) -> str:
    cls = _STATUS_CLASS.get(status or "", "unknown")
    return f'<span class="status {cls}">{_e(status or "—")}</span>'


def table_page(boot: Dict[str, Any], asset_v: str, logout: bool) -> str:
    body = """
<section class="table-page">
  <div class="toolbar">
    <input id="glob" type="search" placeholder="prefix glob, e.g. alice/vision/**" spellcheck="false" autocomplete="off">
    <input id="q" type="search" placeholder="search prefix, description, tags" spellcheck="false" autocomplete="off">
    <span id="status-filter" class="chips"></span>
    <span class="grow"></span>
    <select id="add-column" title="add a column: last value of a metric field, or a param"></select>
    <button id="compare" type="button" disabled>Compare</button>
  </div>
  <div id="tree" class="tree"></div>
  <div class="table-wrap"><table id="runs" class="runs"><thead></thead><tbody></tbody></table></div>
  <div class="pager"><span id="count"></span><span class="grow"></span>
    <button id="prev" type="button">&larr; Prev</button><button id="next" type="button">Next &rarr;</button></div>
  <p id="error" class="error" hidden></p>
</section>"""
    return _layout("Experiments", "table", body, boot, asset_v=asset_v, crumbs=[("experiments", None)], logout=logout)


def flatten_params(d: Dict[str, Any], base: str = "") -> List[Tuple[str, Any]]:
    out: List[Tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{base}.{k}" if base else str(k)
        if isinstance(v, dict) and v:
            out.extend(flatten_params(v, key))
        else:
            out.append((key, v))
    return out


def _fmt_value(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return orjson.dumps(v).decode()
    if v is None:
        return "null"
    return str(v)


def _fmt_time(v: Any) -> str:
    if isinstance(v, (int, float)):
        return _dt.datetime.fromtimestamp(v, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if v is None else str(v)


def _crumbs(prefix: str) -> List[Tuple[str, Optional[str]]]:
    segs = prefix.split("/")
    out: List[Tuple[str, Optional[str]]] = [("experiments", "/")]
    for i, seg in enumerate(segs[:-1]):
        out.append((seg, "/?glob=" + quote("/".join(segs[: i + 1]) + "/*", safe="")))
    out.append((segs[-1], None))
    return out


def experiment_page(prefix: str, exp: Dict[str, Any], params: Dict[str, Any], asset_v: str, logout: bool) -> str:
    tags = "".join(f'<span class="tag">{_e(t)}</span>' for t in exp.get("tags") or [])
    rows = "".join(
        f'<tr><td class="k">{_e(k)}</td><td class="v">{_e(_fmt_value(v))}</td></tr>'
        for k, v in sorted(flatten_params(params))
    )
    times = []
    for label, keys in (("started", ("started_at", "startedAt")), ("ended", ("ended_at", "endedAt"))):
        when = next((exp[k] for k in keys if exp.get(k)), None)
        if when:
            times.append(
                f'<span class="when" data-time="{_e(when)}" title="{_e(when)}">'
                f"{label} <b>{_e(_fmt_time(when))}</b></span>"
            )
    why = exp.get("status_reason") or exp.get("statusReason")
    reason = f'<span class="reason">{_e(why)}</span>' if why else ""
    desc = f'<p class="desc">{_e(exp.get("description"))}</p>' if exp.get("description") else ""
    body = f"""
<section class="exp-head">
  <h1>{_e(prefix.rsplit("/", 1)[-1])} {_status(exp.get("status"))}</h1>
  <div class="meta"><span class="prefix">{_e(prefix)}</span>{"".join(times)}<span id="duration" class="when"></span>{reason}</div>
  {desc}<div class="tags">{tags}</div>
</section>
<section class="exp-body">
  <aside class="params">
    <h2>Params <small>{len(params and flatten_params(params))}</small></h2>
    <input id="param-filter" type="search" placeholder="filter params" spellcheck="false" autocomplete="off">
    <table id="params"><tbody>{rows or '<tr><td class="empty">no params</td></tr>'}</tbody></table>
  </aside>
  <div class="main-col">
    <div class="chart-controls toolbar">
      <label>x <select id="x-axis"><option value="index">index</option><option value="_ts">wall time</option>
        <option value="_rel">relative time</option></select></label>
      <label><input id="log-y" type="checkbox"> log y</label>
      <label>smoothing <input id="smooth" type="range" min="0" max="0.99" step="0.01" value="0"><output id="smooth-v">0</output></label>
      <input id="chart-filter" type="search" placeholder="filter charts" spellcheck="false" autocomplete="off">
      <span class="grow"></span><span id="live" class="live" hidden>live</span>
    </div>
    <div id="charts" class="charts"></div>
    <h2>Logs <small id="log-count"></small></h2>
    <div class="toolbar"><label>level <select id="log-level"><option value="">all</option><option>debug</option>
      <option>info</option><option>warn</option><option>error</option><option>fatal</option></select></label>
      <input id="log-search" type="search" placeholder="filter shown lines" spellcheck="false" autocomplete="off">
      <label><input id="log-follow" type="checkbox" checked> follow</label></div>
    <div id="logs" class="logs"></div>
    <h2>Tracks <small id="track-count"></small></h2>
    <div id="tracks" class="tracks">
      <div id="track-topics" class="topics"></div>
      <div id="track-view" hidden>
        <div id="track-charts" class="charts track-charts"></div>
        <p id="track-note" class="note"></p>
        <div class="toolbar"><span id="track-range" class="muted"></span><span class="grow"></span>
          <button id="track-newer" type="button">&larr; Newer</button><button id="track-older" type="button">Older &rarr;</button></div>
        <div class="table-wrap"><table id="track-table" class="files track-table"><thead></thead><tbody></tbody></table></div>
      </div>
    </div>
    <h2>Files <small id="file-count"></small></h2>
    <table id="files" class="files"><thead><tr><th>path</th><th>name</th><th>size</th><th>type</th><th>saved</th><th></th></tr></thead>
      <tbody></tbody></table>
    <div id="preview" class="preview" hidden></div>
  </div>
</section>
<p id="error" class="error" hidden></p>"""
    boot = {"prefix": prefix, "experiment": exp}
    return _layout(
        prefix,
        "experiment",
        body,
        boot,
        asset_v=asset_v,
        crumbs=_crumbs(prefix),
        logout=logout,
        charts=True,
        preload=["/api/v1/summary?" + urlencode({"prefix": prefix})],
        parts=["tracks"],
    )


def compare_page(prefixes: List[str], asset_v: str, logout: bool) -> str:
    items = "".join(f'<li><a href="{_e(experiment_href(p))}">{_e(p)}</a></li>' for p in prefixes)
    body = f"""
<section class="compare-head">
  <h1>Compare <small>{len(prefixes)} runs</small></h1>
  <ul id="run-list" class="run-list">{items}</ul>
</section>
<div class="chart-controls toolbar">
  <label>x <select id="x-axis"><option value="index">index</option><option value="_ts">wall time</option>
    <option value="_rel">relative time</option></select></label>
  <label><input id="log-y" type="checkbox"> log y</label>
  <label>smoothing <input id="smooth" type="range" min="0" max="0.99" step="0.01" value="0"><output id="smooth-v">0</output></label>
  <label>group by <select id="group-by"><option value="">none (one line per run)</option>
    <option value="folder">folder</option></select></label>
  <label>band <select id="band"><option value="minmax">min–max</option><option value="std">± std</option></select></label>
  <input id="chart-filter" type="search" placeholder="filter charts" spellcheck="false" autocomplete="off">
  <span class="grow"></span><span id="live" class="live" hidden>live</span>
</div>
<ul id="group-legend" class="run-list groups" hidden></ul>
<div id="charts" class="charts"></div>
<p id="error" class="error" hidden></p>"""
    return _layout(
        "Compare",
        "compare",
        body,
        {"prefixes": prefixes},
        asset_v=asset_v,
        crumbs=[("experiments", "/"), ("compare", None)],
        logout=logout,
        charts=True,
    )


def login_page(next_url: str, message: Optional[str], asset_v: str) -> str:
    msg = f'<p class="error" id="login-error">{_e(message)}</p>' if message else ""
    body = f"""
<section class="login">
  <h1>Log in</h1>
  <p>Paste a token of this server (<code>ml-dash server token create --owner NAME</code> prints one).
     It is checked once; the browser then keeps a login cookie that can only read.</p>
  {msg}
  <form method="post" action="/login">
    <input type="hidden" name="next" value="{_e(next_url)}">
    <input type="password" name="token" id="token" placeholder="mld_..." autocomplete="current-password" required autofocus>
    <button type="submit">Log in</button>
  </form>
</section>"""
    return _layout("Log in", "", body, {}, asset_v=asset_v, crumbs=[("log in", None)])


def error_page(title: str, message: str, asset_v: str, logout: bool) -> str:
    body = f'<section class="login"><h1>{_e(title)}</h1><p>{_e(message)}</p><p><a href="/">All experiments</a></p></section>'
    return _layout(title, "", body, {}, asset_v=asset_v, crumbs=[("experiments", "/")], logout=logout)
