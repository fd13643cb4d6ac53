"""The experiment page's Tracks section in headless Chromium, on each store: topics, a topic's
entries newest first and paged, a chart per numeric column, user text kept as text, and the live
growth of a running experiment's track (written by a real SDK process in remote mode)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from ml_dash import Experiment
from ml_dash.server import create_token, run_in_thread

from ..conftest import wait_for
from ..server._client import get

RUN = "alice/robot/run1"
BARE = "alice/robot/bare"
POSE = "robot/pose"
HOSTILE_TOPIC = "<img src=x onerror=window.pwned=1>"
HOSTILE_VALUE = "<script>window.pwned=2</script>&amp;"
HOSTILE_FIELD = "<b>bold</b>"
ENTRIES = 120
LONG = "ab" * 300  # cut in its cell, whole in the tooltip
# Pixels of a colour on a chart's canvas (the line drawn), as in test_pages.py.
COUNT_PIXELS = """([sel, rgb]) => {
  const c = document.querySelector(sel + " canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (d[i + 3] > 160 && Math.abs(d[i] - rgb[0]) < 48 && Math.abs(d[i + 1] - rgb[1]) < 48 && Math.abs(d[i + 2] - rgb[2]) < 48) n++;
  return n;
}"""
BLUE = [0x3B, 0x7D, 0xDD]  # the first palette colour


def _no_ml_dash_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}


@pytest.fixture
def server(tmp_path, store_settings):
    root = tmp_path / "server-root"
    token = create_token(root, "alice", settings=store_settings)
    handle = run_in_thread(root, port=0, settings=store_settings)
    try:
        yield handle, token
    finally:
        handle.stop()


def _login(tab, url, token, path):
    t = tab(url)
    page = t.goto("/login?next=" + path)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#tracks")
    return t, page


def _seed(url, token):
    """RUN: a pose topic of ENTRIES entries on simulation time (nested and list fields, a string),
    a topic on wall time, a topic whose name and values are markup. BARE: metrics, no tracks."""
    with Experiment(prefix=RUN, dash_url=url, token=token).run as exp:
        pose = exp.tracks(POSE)
        for i in range(ENTRIES):
            pose.append(x=float(i), y=i * i / 100, pose={"theta": -i / 10}, q=[i, i + 1], label=f"p{i}", _ts=i / 10)
        t0 = time.time()
        for i in range(5):
            exp.tracks("camera/frames").append(frame=i, _ts=t0 + i * 0.25)
        exp.tracks(HOSTILE_TOPIC).append(**{"note": HOSTILE_VALUE, HOSTILE_FIELD: 1, "long": LONG}, _ts=1.0)
    with Experiment(prefix=BARE, dash_url=url, token=token).run as exp:
        exp.metrics("train").log(loss=0.5)


def _cells(page, col):
    return page.eval_on_selector_all(f"#track-table tbody tr td:nth-child({col})", "tds => tds.map(t => t.textContent)")


def _choose(page, topic):
    page.evaluate(
        "(t) => [...document.querySelectorAll('#track-topics button.topic')].find(b => b.dataset.topic === t).click()",
        topic,
    )
    wait_for(
        lambda: (
            page.evaluate("() => document.querySelector('#track-topics [aria-pressed=true]')?.dataset.topic") == topic
        ),
        what=f"{topic!r} chosen",
    )


def test_topics_entries_pages_charts_and_markup_as_text(browser, tab, server):
    handle, token = server
    _seed(handle.url, token)
    topics = get(handle.url, token, "tracks", prefix=RUN).json["tracks"]
    assert sorted(topics) == sorted([POSE, "camera/frames", HOSTILE_TOPIC])
    answer = get(handle.url, token, "track", prefix=RUN, topic=POSE, start=115, limit=2).json
    assert answer["total"] == ENTRIES and [e["x"] for e in answer["entries"]] == [115.0, 116.0]

    t, page = _login(tab, handle.url, token, f"/e/{RUN}?track={POSE}")
    wait_for(lambda: len(_cells(page, 1)) == 50, what="the first page of entries")
    shown = page.eval_on_selector_all("#track-topics button.topic", "bs => bs.map(b => b.textContent)")
    assert shown == topics  # in the server's order, each once
    assert page.inner_text("#track-count") == "3"
    heads = page.eval_on_selector_all("#track-table thead th", "ths => ths.map(t => t.textContent)")
    assert heads == ["timestamp", "x", "y", "pose.theta", "q", "label"]  # nested fields flattened with dots
    # newest first: entry 119 at the top, on the run's own clock (simulation seconds)
    assert _cells(page, 1)[:3] == ["11.9", "11.8", "11.7"]
    assert _cells(page, 2)[:2] == ["119", "118"]
    assert _cells(page, 3)[0] == "141.61" and _cells(page, 4)[0] == "-11.9"
    assert _cells(page, 5)[0] == "[119,120]" and _cells(page, 6)[0] == "p119"
    assert page.inner_text("#track-range") == "1–50 of 120 entries, newest first"
    assert page.is_disabled("#track-newer")
    # a chart per numeric column (x, y, pose.theta); the list and the string are not charted
    keys = page.eval_on_selector_all("#track-charts .chart", "cs => cs.map(c => c.dataset.key)")
    assert keys == ["track:x", "track:y", "track:pose.theta"]
    x_chart = '#track-charts .chart[data-key="track:x"]'
    page.wait_for_selector(x_chart + " canvas")
    assert page.get_attribute(x_chart, "data-points") == str(ENTRIES)
    assert float(page.get_attribute(x_chart, "data-last-x")) == pytest.approx(11.9)
    page.wait_for_timeout(100)  # one animation frame for uPlot to paint
    assert page.evaluate(COUNT_PIXELS, [x_chart, BLUE]) > 100
    assert page.inner_text(x_chart + " .title .last") == "119"
    t.shot("experiment-tracks", full_page=True)

    page.click("#track-older")
    wait_for(lambda: _cells(page, 2)[:1] == ["69"], what="the second page")
    assert _cells(page, 2)[-1] == "20" and len(_cells(page, 2)) == 50
    page.click("#track-older")
    wait_for(lambda: _cells(page, 2)[:1] == ["19"], what="the last page")
    assert _cells(page, 2) == [str(i) for i in range(19, -1, -1)]
    assert page.inner_text("#track-range") == "101–120 of 120 entries, newest first"
    assert page.is_disabled("#track-older")

    # wall-clock timestamps read as dates; one numeric column, one chart
    _choose(page, "camera/frames")
    wait_for(lambda: _cells(page, 2) == ["4", "3", "2", "1", "0"], what="the camera entries")
    stamps = _cells(page, 1)
    assert all(c[:2] == "20" and len(c) == 23 for c in stamps) and stamps == sorted(stamps, reverse=True)
    assert len(set(stamps)) == 5  # YYYY-MM-DD HH:MM:SS.mmm, a quarter second apart
    assert page.eval_on_selector_all("#track-charts .chart", "cs => cs.map(c => c.dataset.key)") == ["track:frame"]
    assert "track=camera%2Fframes" in page.url  # the chosen topic is in the address
    t.shot("experiment-tracks-wallclock")

    # markup in a topic, a field name and a value stays text: nothing of it runs or is parsed
    _choose(page, HOSTILE_TOPIC)
    wait_for(lambda: _cells(page, 2) == [HOSTILE_VALUE], what="the hostile entry")
    assert page.eval_on_selector_all("#track-table thead th", "ths => ths.map(t => t.textContent)") == [
        "timestamp",
        "note",
        HOSTILE_FIELD,
        "long",
    ]
    assert page.inner_text("#track-range") == "1–1 of 1 entry, newest first"
    long_cell = "#track-table tbody tr td:nth-child(4)"
    assert page.inner_text(long_cell) == LONG[:120] + "…" and page.get_attribute(long_cell, "title") == LONG
    assert page.evaluate("window.pwned") is None
    t.shot("experiment-tracks-markup")
    assert page.eval_on_selector_all("#tracks img, #tracks script, #track-table b", "els => els.length") == 0
    assert page.eval_on_selector_all("#track-charts .title b", "bs => bs.map(b => b.textContent)") == [HOSTILE_FIELD]
    assert t.errors == []

    # no tracks: the empty state, after one request
    page = t.goto(f"/e/{BARE}")
    page.wait_for_selector("#track-topics .empty")
    assert page.inner_text("#track-topics") == "No tracks."
    assert page.is_hidden("#track-view")
    asked = [u for u in t.requests if "/api/v1/track" in u and "prefix=alice%2Frobot%2Fbare" in u]
    assert len(asked) == 1 and "/api/v1/tracks?" in asked[0]
    assert t.errors == []


WRITER = """
import os, sys, time
from ml_dash import Experiment
url, token, go, stop = sys.argv[1:5]
with Experiment(prefix="alice/robot/live", dash_url=url, token=token).run as exp:
    exp.log("waiting")
    exp.flush()
    while not os.path.exists(go):
        time.sleep(0.02)
    track = exp.tracks("arm/joint")
    i = 0
    while not os.path.exists(stop):
        track.append(angle=i / 10, _ts=i * 0.05)
        if i % 10 == 0:
            exp.tracks.flush()
        i += 1
        time.sleep(0.02)
"""


def test_a_running_experiments_track_grows_on_the_page(browser, tab, server, tmp_path):
    handle, token = server
    go, stop = tmp_path / "go", tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, handle.url, token, str(go), str(stop)], env=_no_ml_dash_env()
    )
    try:
        wait_for(
            lambda: get(handle.url, token, "logs", prefix="alice/robot/live").json.get("logs"),
            timeout=30,
            what="the run on the server",
        )
        t, page = _login(tab, handle.url, token, "/e/alice/robot/live")
        page.wait_for_selector("#live:not([hidden])")
        page.wait_for_selector("#track-topics .empty")  # no tracks yet
        go.touch()  # the run starts its track: the topic appears, chosen, without a reload
        page.wait_for_selector('#track-topics button.topic[aria-pressed="true"]', timeout=30000)
        assert page.inner_text("#track-topics") == "arm/joint"
        chart = '#track-charts .chart[data-key="track:angle"]'
        page.wait_for_selector(chart)

        def top():  # the index of the entry in the table's first row
            return int(page.get_attribute("#track-table tbody tr", "data-index"))

        first, points = top(), int(page.get_attribute(chart, "data-points"))
        wait_for(lambda: top() >= max(first + 30, 60), timeout=30, what="new entries at the top of the table")
        assert int(page.get_attribute(chart, "data-points")) > points
        # the rows on the page are the server's, newest first, with no gap or repeat
        idx = page.eval_on_selector_all("#track-table tbody tr", "trs => trs.map(t => +t.dataset.index)")
        assert idx == list(range(idx[0], idx[0] - len(idx), -1)) and len(idx) == 50
        angles = [float(a) for a in _cells(page, 2)]
        assert angles == [pytest.approx(i / 10) for i in idx]
        # live ticks ask only for what is new: from the last entry held on, never the whole topic
        seen, now = len(t.requests), top()
        wait_for(lambda: top() >= now + 20, timeout=30, what="more entries")
        starts = [int(parse_qs(urlsplit(u).query)["start"][0]) for u in t.requests[seen:] if "/api/v1/track?" in u]
        assert starts and min(starts) >= now
        t.shot("experiment-tracks-live")
        stop.touch()
        assert writer.wait(60) == 0
        page.wait_for_selector("#live[hidden]", state="attached", timeout=20000)
        total = get(handle.url, token, "track", prefix="alice/robot/live", topic="arm/joint").json["total"]
        wait_for(lambda: top() == total - 1, what="the last entry shown")
        assert int(page.get_attribute(chart, "data-points")) == total
        assert t.errors == []
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
