"""Headless Chromium (Debian's package, driven by Playwright) for the page tests.

Skips cleanly when Playwright or the browser is absent; CI installs both (see .ci/). Screenshots
of every page go to ``.screenshots/`` at the top of the checkout (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import List

import pytest

CHROMIUM = os.environ.get("ML_DASH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / ".screenshots"
# No background traffic: the page must work with no internet, and tests must not wait on it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--metrics-recording-only",
    "--disable-domain-reliability",
    "--no-default-browser-check",
]


def _missing(reason: str):
    if os.environ.get("ML_DASH_REQUIRE_BROWSER") == "1":  # CI: the page tests must really run
        pytest.fail(reason + " and ML_DASH_REQUIRE_BROWSER=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    if not os.path.exists(CHROMIUM):
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A browser tab that records console errors, uncaught exceptions and API requests."""

    def __init__(self, browser, base: str, **context):
        self.base = base
        self.context = browser.new_context(viewport={"width": 1400, "height": 900}, **context)
        self.page = self.context.new_page()
        self.errors: List[str] = []
        self.requests: List[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def goto(self, path: str):
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str, full_page: bool = False) -> Path:
        SHOTS.mkdir(exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self):
        self.context.close()


@pytest.fixture
def tab(browser):
    tabs = []

    def open_tab(base: str, **context) -> Page:
        t = Page(browser, base, **context)
        tabs.append(t)
        return t

    yield open_tab
    for t in tabs:
        t.close()
