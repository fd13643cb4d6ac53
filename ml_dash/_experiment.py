"""``Experiment``, its ``run`` control, and the ``ml_dash_experiment`` decorator."""

from __future__ import annotations

import functools
import os
import sys
import time

from . import _lifecycle
from ._config import Config, load_config
from ._errors import ExperimentStateError, InvalidValue, NotFound
from ._names import parse_prefix
from ._ops import Files, Logs, Metrics, Params, make_log_item
from ._pipeline import Pipeline
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional
    from pathlib import Path

__all__ = ["Experiment", "RunControl", "ml_dash_experiment", "STATUSES"]

STATUSES = ("RUNNING", "COMPLETED", "FAILED", "CANCELLED")


def _str_list(value: Optional[List[str]], what: str) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InvalidValue(f"{what} must be a list of str")
    return list(value)


class RunControl:
    """``exp.run``: start and end the run. Also a context manager that yields the experiment."""

    def __init__(self, exp: "Experiment"):
        self._exp = exp

    def start(self) -> "Experiment":
        """Open the experiment (status RUNNING). Creating or resuming is by prefix (upsert)."""
        self._exp._start()
        return self._exp

    def complete(self) -> None:
        """Drain everything, mark COMPLETED and close."""
        self._exp._end("COMPLETED", None)

    def fail(self, reason: Optional[str] = None) -> None:
        """Drain everything, mark FAILED and close."""
        self._exp._end("FAILED", reason)

    def cancel(self, reason: Optional[str] = None) -> None:
        """Drain everything, mark CANCELLED and close."""
        self._exp._end("CANCELLED", reason)

    @property
    def status(self) -> Optional[str]:
        return self._exp.status

    def __enter__(self) -> "Experiment":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.complete()
        elif issubclass(exc_type, KeyboardInterrupt):
            self._exp._end("CANCELLED", "KeyboardInterrupt")
        else:
            self._exp._end("FAILED", f"{exc_type.__name__}: {exc}")
        return False  # never swallow the exception


class Experiment:
    """One experiment, named by its prefix ``owner/project/path.../name``.

    Local mode (default) stores under ``dash_root``; remote mode (``dash_url=...``) sends to a
    server through the write-ahead spool. Nothing is written until the run starts.
    """

    def __init__(
        self,
        prefix: str,
        *,
        dash_root: Optional[str] = None,
        dash_url: Optional[str] = None,
        token: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        bindrs: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        offline: Optional[bool] = None,
        config: Optional[Config] = None,
    ):
        self._prefix = parse_prefix(prefix)
        base = config or load_config()
        if dash_root is not None and dash_url is None and base.dash_url is not None:
            # An explicit dash_root means local mode, even when ML_DASH_URL is set.
            import dataclasses

            base = dataclasses.replace(base, dash_url=None)
        self.config: Config = base.with_overrides(dash_root=dash_root, dash_url=dash_url, token=token, offline=offline)
        self._fields = {
            "description": description,
            "tags": _str_list(tags, "tags"),
            "bindrs": _str_list(bindrs, "bindrs"),
            "metadata": normalize_fields(metadata, self.config.max_string_bytes, "metadata") if metadata else None,
        }
        self.status: Optional[str] = None
        self._stored = False  # known to exist in the store (reads check once)
        self._owner_pid = os.getpid()
        self._sink: Any = None
        self._pipe = Pipeline(self.config, self.prefix)
        self.run = RunControl(self)
        self.params = Params(self)
        self.metrics = Metrics(self)
        self.logs = Logs(self)
        self.files = Files(self)

    # -- identity ------------------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return str(self._prefix)

    @property
    def owner(self) -> str:
        return self._prefix.owner

    @property
    def project(self) -> str:
        return self._prefix.project

    @property
    def name(self) -> str:
        return self._prefix.name

    @property
    def folder(self) -> str:
        """Path segments between project and name ('' when none)."""
        return self._prefix.folder

    @property
    def mode(self) -> str:
        return "remote" if self.config.dash_url else "local"

    @property
    def description(self) -> Optional[str]:
        return self._fields["description"]

    @property
    def tags(self) -> List[str]:
        return self._fields["tags"] or []

    @property
    def bindrs(self) -> List[str]:
        return self._fields["bindrs"] or []

    @property
    def local_path(self) -> Optional[Path]:
        """The experiment's folder in local mode (None in remote mode)."""
        if self.mode != "local":
            return None
        from pathlib import Path

        return Path(self.config.dash_root).joinpath(*self._prefix.parts)

    def __repr__(self) -> str:
        where = self.config.dash_url or self.config.dash_root
        return f"<Experiment {self.prefix} {self.mode}:{where} status={self.status}>"

    # -- writing -------------------------------------------------------------------------------------

    def log(self, message: str, level: str = "info", **metadata: Any) -> "Experiment":
        """Append a log line. ``level``: debug, info, warn (or warning), error, fatal."""
        self._pipe.put_log(make_log_item(message, level, metadata, self.config.max_string_bytes))
        return self

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until everything logged before this call is stored (local: on disk; remote: acknowledged).

        Returns False if ``timeout`` (seconds) passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._pipe.flush(timeout):
            return False
        wait = getattr(self._sink, "wait_delivered", None)
        if wait is None:
            return True
        return wait(None if deadline is None else max(0.0, deadline - time.monotonic()))

    # -- reading -------------------------------------------------------------------------------------

    def info(self) -> Dict[str, Any]:
        """The stored experiment record (description, tags, status and its timestamps, ...)."""
        return self._read().experiment()

    def summary(self) -> Dict[str, Any]:
        """Every metric with its row count, last index and per field last/min/max value, and the
        numbers of log lines and files (``GET /api/v1/summary``, PROTOCOL.md)."""
        return self._read().summary()

    def _read(self):
        """The reader, after a flush. Every read raises NotFound when nothing was ever stored under
        this prefix (instead of answering {} or [])."""
        if self._pipe.running:
            self.flush()
        if self._sink is None:
            self._sink = self._make_sink()
        reader = self._sink.reader()
        if not self._stored:
            if not reader.exists():
                where = self.config.dash_url or self.config.dash_root
                raise NotFound(f"no experiment {self.prefix} in {where}: nothing was stored under this prefix")
            self._stored = True
        return reader

    # -- lifecycle -----------------------------------------------------------------------------------

    def _make_sink(self):
        if self.mode == "remote":
            from .agent import open_remote_sink  # imports aiohttp: only in remote mode

            return open_remote_sink(self.config, self._prefix)
        from pathlib import Path

        from ._local_sink import LocalSink  # the store modules load at the first start, not at import

        return LocalSink(Path(self.config.dash_root), self._prefix)

    def _require_running(self) -> None:
        if not self._pipe.running:
            state = "closed" if self.status in STATUSES[1:] else "not started"
            raise ExperimentStateError(f"experiment {self.prefix} is {state}: use `with exp.run:` or exp.run.start()")

    def _start(self) -> None:
        if self._pipe.running:
            raise ExperimentStateError(f"experiment {self.prefix} is already running")
        if self._sink is None:
            self._sink = self._make_sink()
        self._sink.prepare()
        _lifecycle.register(self)
        self._pipe.start(self._sink)
        now = time.time()
        self._pipe.put(("e", now, dict(self._fields)))
        self._pipe.put(("s", now, "RUNNING", None))
        self.status = "RUNNING"

    def _end(self, status: str, reason: Optional[str]) -> None:
        self._require_running()
        self._close(status, reason, time.monotonic() + self.config.shutdown_timeout)

    def _close(self, status: str, reason: Optional[str], deadline: float) -> None:
        if not self._pipe.running:
            return
        if os.getpid() == self._owner_pid:
            self._pipe.put(("s", time.time(), status, reason))
            self.status = status
        self._pipe.close(deadline)
        _lifecycle.unregister(self)
        drops = {k: v for k, v in self._pipe.drops.items() if v}
        if drops:
            print(f"ml-dash: {self.prefix}: events not stored: {drops}", file=sys.stderr)

    def _after_fork_in_child(self) -> None:
        self._pipe.after_fork_in_child()

    def __enter__(self) -> "Experiment":
        return self.run.__enter__()

    def __exit__(self, exc_type, exc, tb) -> bool:
        return self.run.__exit__(exc_type, exc, tb)


def ml_dash_experiment(prefix: str, **experiment_kwargs: Any) -> Callable:
    """Decorator: run the function inside an experiment and pass the experiment in.

    The experiment goes to the parameter named ``experiment`` (or ``exp``) if the function has
    one, else as the first positional argument. Other arguments and the return value pass through.
    """

    def decorate(fn: Callable) -> Callable:
        import inspect

        params = inspect.signature(fn).parameters
        kwarg = next((n for n in ("experiment", "exp") if n in params), None)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            exp = Experiment(prefix=prefix, **experiment_kwargs)
            with exp.run:
                if kwarg is not None:
                    kwargs[kwarg] = exp
                    return fn(*args, **kwargs)
                return fn(exp, *args, **kwargs)

        return wrapper

    return decorate
