"""The framework benchmark's measured code runs and its data reads back (speed is never judged here;
``python -m benchmarks.integrations`` measures it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ._frameworks import require

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras picks its backend at import


@pytest.mark.parametrize("framework", ["lightning", "transformers", "keras"])
def test_each_variant_trains_and_reads_back(framework, tmp_path, monkeypatch):
    require("torch")
    require({"lightning": "lightning.pytorch"}.get(framework, framework))
    from benchmarks.integrations import CALL_VARIANTS, FRAMEWORKS, _check
    from benchmarks.probes import frameworks

    monkeypatch.chdir(tmp_path)  # the probes work in their own folder; put the test's back afterwards
    for variant in FRAMEWORKS[framework]:
        if variant == "tensorboard" and not _tensorboard_writer():
            continue
        workdir = tmp_path / f"run-{variant}"
        res = frameworks.run(
            {
                "framework": framework,
                "variant": variant,
                "steps": 12,
                "workdir": str(workdir),
                "prefix": f"bench/{framework}/run",
            }
        )
        assert res["steps_timed"] == 11 and len(res["step_s"]) == len(res["step_cpu_s"]) == 11
        assert "✗" not in _check(framework, variant, workdir, 12), (variant, _check(framework, variant, workdir, 12))
    for variant in CALL_VARIANTS[framework]:
        if variant == "tensorboard" and not _tensorboard_writer():
            continue
        workdir = tmp_path / f"calls-{variant}"
        res = frameworks.calls(
            {
                "framework": framework,
                "variant": variant,
                "n": 50,
                "workdir": str(workdir),
                "prefix": f"bench/{framework}/run",
            }
        )
        assert res["median_us"] >= 0 and res["p99_us"] >= res["median_us"] - res["timer_us"]
        check = _check(framework, variant, Path(workdir), 50, calls=True)
        assert "✗" not in check and (variant != "ml-dash" or check.startswith("50 rows")), check


def _tensorboard_writer() -> bool:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return False
    return True
