"""Every static file of the dashboard ships in the wheel, and uPlot ships with its licence."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

import ml_dash.server.dashboard as dashboard

REPO = Path(__file__).resolve().parents[2]


def test_static_files_are_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "ml_dash.server.dashboard" in conf["packages"]
    globs = conf["package-data"]["ml_dash.server.dashboard"]
    pkg = Path(dashboard.__file__).parent
    files = [p.relative_to(pkg).as_posix() for p in (pkg / "static").rglob("*") if p.is_file()]
    assert len(files) >= 8
    left_out = [f for f in files if not any(fnmatch.fnmatchcase(f, g) for g in globs)]
    assert left_out == []


def test_uplot_is_vendored_with_its_licence():
    vendor = Path(dashboard.__file__).parent / "static" / "vendor" / "uplot"
    assert "MIT License" in (vendor / "LICENSE").read_text()
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 30_000
