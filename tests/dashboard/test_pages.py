"""The pages in headless Chromium: what a person sees, read back from the page itself."""

from __future__ import annotations

import os
import urllib.parse

import pytest

from ml_dash.server import create_token, run_in_thread

from ..conftest import wait_for
from ..server._client import request
from ._seed import SWEEP, killed_runs, quiet_since, seed

LOSS = '.chart[data-key="train:loss"]'
# Pixels of the first palette colour (#3b7ddd) on a chart's canvas: the line and its band.
COUNT_LINE_PIXELS = """(sel) => {
  const c = document.querySelector(sel + " canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (d[i + 3] > 160 && Math.abs(d[i] - 0x3b) < 48 && Math.abs(d[i + 1] - 0x7d) < 48 && Math.abs(d[i + 2] - 0xdd) < 48) n++;
  return n;
}"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages") / ".dash"
    prefixes = seed(root, extra_runs=52)
    return root, prefixes


@pytest.fixture
def local(store):
    handle = run_in_thread(store[0], auth=False, read_only=True)
    yield handle
    handle.stop()


def _rows(page):
    return page.eval_on_selector_all("#runs tbody tr[data-prefix]", "trs => trs.map(t => t.dataset.prefix)")


def test_table_lists_filters_sorts_pages_and_selects(browser, tab, local, store):
    t = tab(local.url)
    page = t.goto("/?sort=prefix&order=asc")
    wait_for(lambda: len(_rows(page)) == 50, what="the first page of 50 rows")
    assert _rows(page) == sorted(store[1])[:50]
    assert page.inner_text("#count") == "1–50 of 55"
    t.shot("table")
    page.click("#next")
    wait_for(lambda: _rows(page) == sorted(store[1])[50:], what="the second page")
    page.fill("#glob", "alice/*")
    wait_for(lambda: _rows(page) == sorted(SWEEP), what="the glob filter")
    assert "glob=alice%2F*" in page.url  # shareable
    page.click("#runs thead th:nth-child(2)")  # experiment: sorted descending now
    wait_for(lambda: _rows(page) == sorted(SWEEP, reverse=True), what="the sort")
    page.select_option("#add-column", "m:train:loss")
    page.wait_for_selector("#runs thead th:has-text('train/loss')")
    page.select_option("#add-column", "p:lr")
    wait_for(
        lambda: page.inner_text(f'#runs tr[data-prefix="{SWEEP[0]}"] td:nth-last-child(2)') == "0.1",
        what="the lr column",
    )
    page.fill("#q", "vit")
    wait_for(lambda: _rows(page) == [SWEEP[2]], what="the search")
    page.fill("#q", "")
    wait_for(lambda: len(_rows(page)) == 3, what="the search cleared")
    page.click(f'#runs tr[data-prefix="{SWEEP[2]}"] .tag:has-text("vit")')
    wait_for(lambda: _rows(page) == [SWEEP[2]] and page.input_value("#q") == "vit", what="the tag as a search")
    page.fill("#q", "")
    wait_for(lambda: len(_rows(page)) == 3, what="the search cleared again")
    page.check(f'#runs tr[data-prefix="{SWEEP[0]}"] input')
    page.check(f'#runs tr[data-prefix="{SWEEP[1]}"] input')
    assert page.inner_text("#compare") == "Compare 2"
    page.click("#compare")
    page.wait_for_url("**/compare?**")
    assert sorted(urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)["p"]) == SWEEP[:2]
    assert t.errors == []


def test_experiment_page_draws_metrics_logs_and_files(browser, tab, local):
    t = tab(local.url)
    page = t.goto("/e/" + SWEEP[1])
    page.wait_for_selector(LOSS + " canvas")
    wait_for(lambda: page.get_attribute(LOSS, "data-points") not in (None, "0"), what="the loss chart's data")
    page.wait_for_timeout(100)  # one animation frame for uPlot to paint
    assert page.evaluate(COUNT_LINE_PIXELS, LOSS) > 200
    titles = page.eval_on_selector_all(".chart .title b", "bs => bs.map(b => b.textContent)")
    assert sorted(titles[:2]) == ["eval/acc", "train/loss"]  # curves first, counters (step) after them
    assert sorted(titles[2:]) == ["eval/step", "train/step"]
    assert page.inner_text("#params").count("model.arch") == 1
    page.fill("#param-filter", "lay")
    assert page.eval_on_selector_all("#params tr:not([hidden])", "trs => trs.length") == 1
    wait_for(lambda: page.locator("#logs .line").count() == 2, what="two log lines")
    page.select_option("#log-level", "warn")
    wait_for(lambda: page.locator("#logs .line").count() == 1, what="the warn filter")
    assert "loss is high" in page.inner_text("#logs")
    page.click("#files tr:has-text('config.yaml') button")
    page.wait_for_selector("#preview pre")
    assert page.inner_text("#preview pre").startswith("lr: 0.1")
    page.click("#files tr:has-text('curve.png') button")
    page.wait_for_function(
        "() => { const i = document.querySelector('#preview img'); return i && i.complete && i.naturalWidth === 24; }"
    )
    page.click("#files tr:has-text('evil.html') a")  # a download, never rendered as this origin
    assert page.evaluate("window.pwned") is None
    t.shot("experiment")
    assert t.errors == []


def test_zoom_refetches_the_range_at_full_resolution(browser, tab, local):
    t = tab(local.url)
    page = t.goto("/e/" + SWEEP[0])
    wait_for(lambda: page.get_attribute(LOSS, "data-points") not in (None, "0"), what="the loss chart")
    full = int(page.get_attribute(LOSS, "data-points"))
    assert full < 3000  # downsampled to about the chart's width
    box = page.locator(LOSS + " .u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    with page.expect_request(lambda r: "/api/v1/series" in r.url and "start=" in r.url) as zoomed:
        page.mouse.move(box["x"] + box["width"] * 0.46, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.53, y, steps=5)
        page.mouse.up()
    q = urllib.parse.urlsplit(zoomed.value.url)
    answer = request(local.url, "GET", f"{q.path}?{q.query}").json
    assert answer["mode"] == "raw" and 100 < answer["count"] < 400
    assert answer["points"]["x"][0] <= 1500 <= answer["points"]["x"][-1]  # the spike is in the range
    wait_for(lambda: page.get_attribute(LOSS, "data-points") == str(answer["count"]), what="the zoomed points drawn")
    page.click(LOSS + " button:has-text('reset zoom')")
    wait_for(lambda: page.get_attribute(LOSS, "data-points") == str(full), what="the zoom reset")
    # x = a field of the metric: the last point is at the last step (rows log step = 2 * index)
    page.select_option("#x-axis", "step")
    wait_for(lambda: page.get_attribute(LOSS, "data-last-x") == "5998", what="x = step")
    page.select_option("#x-axis", "_rel")
    wait_for(
        lambda: 0 <= float(page.get_attribute(LOSS, "data-last-x") or -1) < 120, what="x = seconds since the start"
    )
    page.check("#log-y")
    page.fill("#smooth", "0.9")
    page.dispatch_event("#smooth", "input")
    wait_for(lambda: page.get_attribute(LOSS, "data-lines") == "1", what="the smoothed chart")
    assert page.evaluate(COUNT_LINE_PIXELS, LOSS) > 200
    assert t.errors == []


def test_compare_draws_one_line_per_run_and_groups(browser, tab, local):
    t = tab(local.url)
    page = t.goto("/compare?" + "&".join("p=" + urllib.parse.quote(p) for p in SWEEP))
    wait_for(lambda: page.get_attribute(LOSS, "data-lines") == "3", what="three lines")
    assert page.locator("#run-list li").count() == 3
    t.shot("compare")
    page.select_option("#group-by", "p:model.arch")
    wait_for(lambda: page.get_attribute(LOSS, "data-lines") == "2", what="two groups (resnet, vit)")
    assert page.inner_text("#group-legend").split("\n") == ["model.arch=resnet (2)", "model.arch=vit (1)"]
    page.select_option("#band", "std")
    page.select_option("#group-by", "folder")
    wait_for(lambda: page.get_attribute(LOSS, "data-lines") == "1", what="one folder")
    assert t.errors == []


def test_live_run_updates_charts_and_logs_without_reload(browser, tab, tmp_path):
    import subprocess
    import sys

    root, stop = tmp_path / ".dash", tmp_path / "stop"
    code = f"""
import os, time
from ml_dash import Experiment
with Experiment(prefix="alice/live/run", dash_root={str(root)!r}).run as exp:
    i = 0
    while not os.path.exists({str(stop)!r}):
        exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        if i % 10 == 0:
            exp.log(f"row {{i}}")
        i += 1
        time.sleep(0.02)
"""
    writer = subprocess.Popen(
        [sys.executable, "-c", code], env={k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    )
    handle = run_in_thread(root, auth=False, read_only=True)
    try:
        wait_for(lambda: (root / "alice/live/run/metrics/train/data.jsonl").exists(), what="the first rows")
        t = tab(handle.url)
        page = t.goto("/e/alice/live/run")
        page.wait_for_selector("#live:not([hidden])")
        wait_for(lambda: page.get_attribute(LOSS, "data-last-x") not in (None, ""), what="the first points")
        first = float(page.get_attribute(LOSS, "data-last-x"))
        lines = page.locator("#logs .line").count()
        wait_for(
            lambda: float(page.get_attribute(LOSS, "data-last-x")) >= first + 50, timeout=30, what="the chart advancing"
        )
        wait_for(lambda: page.locator("#logs .line").count() > lines, what="new log lines")
        series = [u for u in t.requests if "/api/v1/series" in u]
        assert any("after=" in u for u in series)
        assert len([u for u in series if "after=" not in u]) <= 2  # the first load (train/loss, train/step)
        t.shot("experiment-live")
        stop.touch()
        assert writer.wait(30) == 0
        page.wait_for_selector("#live[hidden]", state="attached", timeout=20000)
        assert page.inner_text(".exp-head .status") == "COMPLETED"
        assert t.errors == []
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        handle.stop()


def test_login_flow_in_the_browser(browser, tab, tmp_path):
    root = tmp_path / "server"
    token = create_token(root, "alice")
    from ml_dash import Experiment

    handle = run_in_thread(root)
    try:
        with Experiment(prefix="alice/p/remote-run", dash_url=handle.url, token=token).run as exp:
            exp.metrics("train").log(loss=0.5)
        t = tab(handle.url)
        page = t.goto("/")
        assert urllib.parse.unquote(page.url) == handle.url + "/login?next=/"
        page.fill("#token", "mld_wrong")
        page.click("button[type=submit]")
        page.wait_for_selector("#login-error")
        assert "not valid" in page.inner_text("#login-error")
        t.shot("login-refused")
        page.fill("#token", token)
        page.click("button[type=submit]")
        wait_for(lambda: _rows(page) == ["alice/p/remote-run"], what="the table after login")
        cookie = next(c for c in t.context.cookies() if c["name"] == "ml_dash_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and token not in cookie["value"]
        assert page.evaluate("document.cookie") == ""
        assert [e for e in t.errors if "401" not in e] == []  # the refused login answers 401 on purpose
    finally:
        handle.stop()


def test_a_killed_run_is_shown_stale_and_a_live_one_is_not(browser, tab, tmp_path):
    import re

    root = tmp_path / ".dash"
    killed_runs(root, ["alice/crash/killed", "alice/crash/alive"])  # both stay RUNNING on disk
    quiet_since(root / "alice/crash/killed", 750)  # the killed one went quiet 12.5 minutes ago
    handle = run_in_thread(root, auth=False, read_only=True)
    try:
        t = tab(handle.url)
        page = t.goto("/?sort=prefix")
        killed = '#runs tr[data-prefix="alice/crash/killed"] .status'
        alive = '#runs tr[data-prefix="alice/crash/alive"] .status'
        page.wait_for_selector(killed)
        page.wait_for_selector(alive)
        label = page.inner_text(killed)
        assert re.fullmatch(r"RUNNING · no activity for 1[23] min", label), label
        assert "stale" in page.get_attribute(killed, "class")
        assert page.get_attribute(killed, "title").startswith("last activity ")
        assert page.inner_text(alive) == "RUNNING"
        assert "stale" not in page.get_attribute(alive, "class")
        t.shot("table-stale")
        page = t.goto("/e/alice/crash/killed")
        page.wait_for_selector(".exp-head h1 .status.stale")
        assert re.fullmatch(r"RUNNING · no activity for 1[23] min", page.inner_text(".exp-head h1 .status"))
        t.shot("experiment-stale")
        page = t.goto("/e/alice/crash/alive")
        page.wait_for_selector("#live:not([hidden])")
        assert page.inner_text(".exp-head h1 .status") == "RUNNING"
        assert t.errors == []
    finally:
        handle.stop()
