"""Automatic capture around a run: console, system metrics, environment. Each is off unless switched on.

``start(exp)`` is called once by :class:`~ml_dash.Experiment` when the run starts and returns a
handle (or None when nothing is switched on) whose ``stop(deadline)`` is called before the final
status is written, so that everything captured lands before the run is marked ended. Every piece
writes through the experiment's public paths (``exp.log``, ``exp.metrics``, ``exp.files``); none
of them adds work to the caller's logging calls. Nothing heavy is imported here: psutil, pynvml
and subprocess load only when their capture starts.

=========================  ==========================  =====================================
capture                    switch                      where it goes
=========================  ==========================  =====================================
console (stdout, stderr)   ``ML_DASH_CAPTURE_CONSOLE``  logs, ``metadata.stream``
system metrics             ``ML_DASH_CAPTURE_SYSTEM``   metrics ``system/process``, ``system/host``, ``system/gpu/<i>``
environment                ``ML_DASH_CAPTURE_ENV``      metadata ``environment``; file ``environment/git.diff``
=========================  ==========================  =====================================
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Protocol

    class _Part(Protocol):
        def stop(self, deadline: float) -> None: ...

    from .._experiment import Experiment

__all__ = ["start", "Captures"]


class Captures:
    """The captures started for one run; ``stop`` ends them in reverse order of starting."""

    def __init__(self) -> None:
        self._parts: List[_Part] = []

    def add(self, part: _Part) -> None:
        self._parts.append(part)

    def stop(self, deadline: float) -> None:
        """Stop every capture, each waiting at most until ``deadline`` (``time.monotonic()``)."""
        for part in reversed(self._parts):
            try:
                part.stop(deadline)
            except Exception as exc:  # a capture's trouble must never block closing the run
                from .._report import warn

                warn(f"stopping {type(part).__name__} failed: {exc}")
        self._parts.clear()


def start(exp: "Experiment", merge_metadata: "Callable[[Dict[str, Any]], None]") -> "Optional[Captures]":
    """Start the captures ``exp.config`` switches on; None when none is. ``merge_metadata`` adds
    keys to the run's stored metadata (the environment record goes there)."""
    cfg = exp.config
    if not (cfg.capture_console or cfg.capture_system or cfg.capture_env):
        return None
    captures = Captures()
    if cfg.capture_env:
        from ._environment import EnvironmentCapture

        captures.add(EnvironmentCapture.start(exp, merge_metadata))
    if cfg.capture_system:
        from ._system import SystemSampler

        sampler = SystemSampler.start(exp)
        if sampler is not None:
            captures.add(sampler)
    if cfg.capture_console:
        from ._console import ConsoleCapture

        captures.add(ConsoleCapture.start(exp))
    return captures
