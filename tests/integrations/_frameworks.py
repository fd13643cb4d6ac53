"""Import a framework for its tests: skip with the reason when it is absent, except in CI
(``ML_DASH_REQUIRE_FRAMEWORKS=1``, set by ``.ci/integrations.sh``), where a missing one fails."""

from __future__ import annotations

import importlib
import os

import pytest

INSTALL = "pip install torch==2.13.0 && pip install -e '.[integrations]' (or run .ci/integrations.sh)"


def require(module: str):
    if os.environ.get("ML_DASH_REQUIRE_FRAMEWORKS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed: {INSTALL}")
