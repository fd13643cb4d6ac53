"""The README's framework examples (fenced ``py``: they need the frameworks, so the README test,
which runs in the main environment, leaves them out) run as written where the frameworks are
installed, and each leaves a completed experiment with metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ml_dash._store import ExperimentReader

from ._frameworks import require

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras picks its backend at import

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```py\n(.*?)^```$", README.read_text(), flags=re.S | re.M)
EXPECTED = {
    "lightning": "alice/project/lightning",
    "transformers": "alice/project/bert",
    "keras": "alice/project/keras",
}


def test_the_readme_has_one_example_per_framework():
    assert len(BLOCKS) == 3
    assert [next(f for f in EXPECTED if f"ml_dash.integrations.{f}" in b) for b in BLOCKS] == list(EXPECTED)


@pytest.mark.parametrize("framework", list(EXPECTED))
def test_readme_example_runs_as_written(framework, tmp_path):
    require({"lightning": "lightning.pytorch"}.get(framework, framework))
    require("torch")
    (code,) = [b for b in BLOCKS if f"ml_dash.integrations.{framework}" in b]
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env.update(HF_HUB_OFFLINE="1", HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reader = ExperimentReader(tmp_path / ".dash", EXPECTED[framework])
    assert reader.experiment()["status"] == "COMPLETED"
    names = reader.metric_names()
    assert names and all(len(reader.metric_rows(n)) > 0 for n in names)
