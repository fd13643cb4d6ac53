"""``Experiment``, its ``run`` control, and the ``ml_dash_experiment`` decorator."""

from __future__ import annotations

from . import _capture
from ._dropin import Bindrs, resolve_prefix
from ._errors import InvalidDashUrl, InvalidValue
from ._events import STATUSES
from ._logs import LogBuilder, merge_metadata
from ._ops import Files, Logs, Metrics, Params, make_log_event
from ._recorder import Recorder
from ._tracks import Tracks
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType
    from typing import Any, Callable, Dict, List, Literal, Optional, Union

    from ._config import Config
    from ._mode import OperationMode

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
        self._rec.captures = _capture.start(
            self._exp, self._rec.merge_metadata
        )  # console, system, environment: as Config says
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

    # -- upstream's RUN attributes, for this experiment ----------------------------------------------

    @property
    def prefix(self) -> str:
        return self._exp.prefix

    @property
    def owner(self) -> str:
        return self._exp.owner

    @property
    def project(self) -> str:
        return self._exp.project

    @property
    def name(self) -> str:
        return self._exp.name

    @property
    def id(self) -> str:
        """A snowflake id for this run (made once per Experiment object)."""
        return self._exp._run_id

    @property
    def now(self) -> Any:
        from ._run_info import RUN

        return RUN.now

    @property
    def job_name(self) -> str:
        from ._run_info import RUN

        return RUN.job_name

    @property
    def user(self) -> str:
        from ._run_info import RUN

        return RUN.user

    @property
    def entry(self) -> Any:
        from ._run_info import RUN

        return RUN.entry

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``@exp.run``: run ``fn`` inside the experiment, passing the experiment in (upstream's decorator)."""
        return _wrap(fn, lambda: self._exp)

    def __enter__(self) -> "Experiment":
        return self.start()

    def __exit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> Literal[False]:
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
        prefix: Optional[str] = None,
        *,
        dash_root: Optional[str] = None,
        dash_url: Union[str, bool, None] = None,
        token: Optional[str] = None,
        description: Optional[str] = None,
        readme: Optional[str] = None,
        tags: Optional[List[str]] = None,
        bindrs: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        offline: Optional[bool] = None,
        config: Optional[Config] = None,
        remote: Union[str, bool, None] = None,
        local_path: Optional[str] = None,
        **run_params: Any,
    ):
        if remote is not None or local_path is not None:
            import warnings

            warnings.warn(
                "Experiment(remote=..., local_path=...) are upstream's old names: use dash_url= and dash_root=",
                DeprecationWarning,
                stacklevel=2,
            )
            dash_url = remote if dash_url is None else dash_url
            dash_root = local_path if dash_root is None else dash_root
        if config is None:
            from ._config import load_config  # dataclasses: loaded by the first Experiment, not by the import

            config = load_config()
        base = config
        if dash_url is True:  # upstream's "the default server": ours is the configured one
            if not base.dash_url:
                raise InvalidDashUrl("dash_url=True means the configured server, and ML_DASH_URL is not set")
            dash_url = base.dash_url
        elif dash_url is False:
            dash_url = None
        hybrid = bool(dash_url) and dash_root is not None
        if dash_root is not None and dash_url is None and base.dash_url is not None:
            # An explicit dash_root means local mode, even when ML_DASH_URL is set.
            import dataclasses

            base = dataclasses.replace(base, dash_url=None)
        self.config: Config = base.with_overrides(dash_root=dash_root, dash_url=dash_url, token=token, offline=offline)
        remote_side = bool(self.config.dash_url)
        self._prefix = resolve_prefix(prefix, self.config, run_params, two_segments=not remote_side)
        if self.config.dash_url:  # remote_side
            from ._urls import check_dash_url  # remote mode only: keeps `import ml_dash` light

            check_dash_url(self.config.dash_url)  # a typo fails here, not 20 s into the exit
        if description is not None and readme is not None and description != readme:
            raise InvalidValue("readme= is another name for description=: give one of them")
        self._fields: Dict[str, Any] = {
            "description": description if description is not None else readme,
            "tags": _str_list(tags, "tags"),
            "bindrs": _str_list(bindrs, "bindrs"),
            "metadata": normalize_fields(metadata, self.config.max_string_bytes, "metadata") if metadata else None,
        }
        self._rec = Recorder(self._prefix, self.config, self._fields)
        self._rec.hybrid = hybrid
        self._display_name: Optional[str] = None
        self.run = RunControl(self, self._rec)
        self.params = Params(self._rec)
        self.metrics = Metrics(self._rec)
        self.logs = Logs(self._rec)
        self.files = Files(self._rec)
        self.tracks = Tracks(self._rec)
        from ._files import new_file_id

        self._run_id: str = new_file_id()

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
        """The last prefix segment; may be set to another display name (the data stays at the prefix)."""
        return self._display_name or self._prefix.name

    @name.setter
    def name(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise InvalidValue("an experiment name is a non-empty str")
        self._display_name = value

    @property
    def folder(self) -> str:
        """Path segments between project and name ('' when none)."""
        return self._prefix.folder

    @property
    def mode(self) -> OperationMode:
        """OperationMode.LOCAL, REMOTE or HYBRID (compares equal to "local", "remote", "hybrid")."""
        from ._mode import OperationMode

        return OperationMode(self._rec.mode)

    @property
    def status(self) -> Optional[str]:
        """RUNNING while the run is open; COMPLETED, FAILED or CANCELLED once it ended (None before)."""
        return self._rec.status

    @property
    def description(self) -> Optional[str]:
        description: Optional[str] = self._fields["description"]
        return description

    readme = description  # upstream's name

    @property
    def metadata(self) -> Optional[Dict[str, Any]]:
        """The metadata given to the constructor (the stored record merges with earlier runs': ``info()``)."""
        metadata: Optional[Dict[str, Any]] = self._fields["metadata"]
        return metadata

    @property
    def tags(self) -> List[str]:
        return self._fields["tags"] or []

    @property
    def bindrs(self) -> Bindrs:
        """The experiment's bindrs (a list); ``exp.bindrs(name).list()`` lists one bindr's files."""
        return Bindrs(self._fields["bindrs"] or [], self.files)

    @property
    def id(self) -> Optional[str]:
        """Upstream's server-side id: None in local mode (as upstream); the prefix, which is how our
        server names an experiment, when a server is involved."""
        return None if self._rec.mode == "local" else self.prefix

    @property
    def data(self) -> Optional[Dict[str, Any]]:
        """Upstream's server answer at start: None in local mode; ``{"experiment": info()}`` otherwise."""
        if self._rec.mode == "local" or not self._rec.running:
            return None
        return {"experiment": self.info()}

    @property
    def local_path(self) -> Optional[Path]:
        """The experiment's folder in local and hybrid mode (None in remote mode)."""
        if self._rec.mode == "remote":
            return None
        from pathlib import Path

        return Path(self.config.dash_root).joinpath(*self._prefix.parts)

    def __repr__(self) -> str:
        where = self.config.dash_url or self.config.dash_root
        return f"<Experiment {self.prefix} {self.mode}:{where} status={self.status}>"

    # -- writing -------------------------------------------------------------------------------------

    def log(
        self,
        message: Optional[str] = None,
        level: str = "info",
        metadata: Optional[Dict[str, Any]] = None,
        **extra: Any,
    ) -> Any:
        """Append a log line. ``level``: debug, info, warn (or warning), error, fatal. The line's
        metadata is ``metadata`` (a dict, upstream's keyword) with the keyword arguments over it.

        Without a message, upstream's deprecated builder: ``exp.log(metadata={...}).info("text")``.
        """
        if message is None:
            import warnings

            warnings.warn(
                "exp.log() without a message is deprecated upstream: use exp.logs.info(...)",
                DeprecationWarning,
                stacklevel=2,
            )
            return LogBuilder(self.logs, merge_metadata(metadata, extra))
        if metadata is not None:
            extra = merge_metadata(metadata, extra)
        self._rec.pipe.put_log(make_log_event(message, level, extra, self.config.max_string_bytes))
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

    def __exit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> Literal[False]:
        return self.run.__exit__(exc_type, exc, tb)


def ml_dash_experiment(prefix: str, **experiment_kwargs: Any) -> Callable[..., Any]:
    """Decorator: run the function inside an experiment and pass the experiment in.

    The experiment goes to the parameter named ``experiment`` (or ``exp``) if the function has
    one, else as the first positional argument. Other arguments and the return value pass through.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        return _wrap(fn, lambda: Experiment(prefix=prefix, **experiment_kwargs))

    return decorate


def _wrap(fn: Callable[..., Any], make: Callable[[], Experiment]) -> Callable[..., Any]:
    """``fn`` run inside the experiment ``make()`` returns, which it receives as ``experiment`` (or
    ``exp``) if it has such a parameter, else as its first positional argument."""
    import functools
    import inspect

    params = inspect.signature(fn).parameters
    kwarg = next((n for n in ("experiment", "exp") if n in params), None)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        exp = make()
        with exp.run:
            if kwarg is not None:
                kwargs[kwarg] = exp
                return fn(*args, **kwargs)
            return fn(exp, *args, **kwargs)

    return wrapper
