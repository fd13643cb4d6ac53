"""``Experiment``, its ``run`` control, and the ``ml_dash_experiment`` decorator."""

from __future__ import annotations

import functools

from . import _capture
from ._config import Config, load_config
from ._errors import InvalidValue
from ._events import STATUSES
from ._names import parse_prefix
from ._ops import Files, Logs, Metrics, Params, make_log_event
from ._recorder import Recorder
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional
    from pathlib import Path

__all__ = ["Experiment", "RunControl", "ml_dash_experiment", "STATUSES"]


def _str_list(value: Optional[List[str]], what: str) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InvalidValue(f"{what} must be a list of str")
    return list(value)


class RunControl:
    """``exp.run``: start and end the run. Also a context manager that yields the experiment."""

    def __init__(self, exp: "Experiment", rec: Recorder):
        self._exp = exp
        self._rec = rec

    def start(self) -> "Experiment":
        """Open the experiment (status RUNNING). Creating or resuming is by prefix (upsert)."""
        self._rec.start()
        self._rec.captures = _capture.start(self._exp)  # console, system, environment: as Config says
        return self._exp

    def complete(self) -> None:
        """Drain everything, mark COMPLETED and close."""
        self._rec.end("COMPLETED", None)

    def fail(self, reason: Optional[str] = None) -> None:
        """Drain everything, mark FAILED and close."""
        self._rec.end("FAILED", reason)

    def cancel(self, reason: Optional[str] = None) -> None:
        """Drain everything, mark CANCELLED and close."""
        self._rec.end("CANCELLED", reason)

    @property
    def status(self) -> Optional[str]:
        return self._rec.status

    def __enter__(self) -> "Experiment":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.complete()
        elif issubclass(exc_type, KeyboardInterrupt):
            self._rec.end("CANCELLED", "KeyboardInterrupt")
        else:
            self._rec.end("FAILED", f"{exc_type.__name__}: {exc}")
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
        if self.config.dash_url:
            from ._urls import check_dash_url  # remote mode only: keeps `import ml_dash` light

            check_dash_url(self.config.dash_url)  # a typo fails here, not 20 s into the exit
        self._fields = {
            "description": description,
            "tags": _str_list(tags, "tags"),
            "bindrs": _str_list(bindrs, "bindrs"),
            "metadata": normalize_fields(metadata, self.config.max_string_bytes, "metadata") if metadata else None,
        }
        self._rec = Recorder(self._prefix, self.config, self._fields)
        self.run = RunControl(self, self._rec)
        self.params = Params(self._rec)
        self.metrics = Metrics(self._rec)
        self.logs = Logs(self._rec)
        self.files = Files(self._rec)

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
        return self._rec.mode

    @property
    def status(self) -> Optional[str]:
        """RUNNING while the run is open; COMPLETED, FAILED or CANCELLED once it ended (None before)."""
        return self._rec.status

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
        self._rec.pipe.put_log(make_log_event(message, level, metadata, self.config.max_string_bytes))
        return self

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until everything logged before this call is stored (local: on disk; remote: acknowledged).

        Returns False if ``timeout`` (seconds) passed first.
        """
        return self._rec.flush(timeout)

    # -- reading -------------------------------------------------------------------------------------

    def info(self) -> Dict[str, Any]:
        """The stored experiment record (description, tags, status and its timestamps, ...)."""
        return self._rec.reader().experiment()

    def summary(self) -> Dict[str, Any]:
        """Every metric with its row count, last index and per field last/min/max value, and the
        numbers of log lines and files (``GET /api/v1/summary``, PROTOCOL.md)."""
        return self._rec.reader().summary()

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
