"""Configuration: one frozen dataclass, read from ``ML_DASH_*`` environment variables here only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Mapping, Optional

__all__ = ["Config", "load_config"]


def _default_spool_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ml-dash", "spool")


@dataclass(frozen=True)
class Config:
    """Every tunable of ml-dash.

    Each field can be set by the environment variable ``ML_DASH_<FIELD NAME IN CAPITALS>``;
    an explicit argument to :class:`~ml_dash.Experiment` wins over the environment.
    """

    #: Root of local mode's store (``ML_DASH_ROOT``).
    dash_root: str = ".dash"
    #: Server URL for remote mode; None means local mode (``ML_DASH_URL``).
    dash_url: Optional[str] = None
    #: Bearer token for the server. Never written to the spool, logs or URLs (``ML_DASH_TOKEN``).
    token: Optional[str] = field(default=None, repr=False)
    #: User name for ``RUN.user`` (``ML_DASH_USER``, else ``$USER``).
    user: str = "unknown"
    #: Events one in-process queue (each metric has its own) holds before backpressure starts.
    #: A queued metric row costs ~250 bytes, so this bounds the queue near 12 MB per metric.
    queue_max_events: int = 50_000
    #: Approximate bytes of large payloads (log text, file bytes) the queue holds.
    queue_max_bytes: int = 256 * 1024 * 1024
    #: Events that wake the background worker early (one wake-up per this many events); the call
    #: that fills a batch waits briefly for it to be written (``ml_dash._pipeline``).
    batch_events: int = 2048
    #: Longest time an event waits in the queue before the worker writes it, seconds.
    flush_interval: float = 0.5
    #: Run one full garbage collection at the process's first run start (``ML_DASH_GC_AT_START``),
    #: so that the one the process owes for its imports does not fall due inside a ``log`` call
    #: (``ml_dash._pipeline.collect_once``). Off: no collection of ours; none when gc is disabled.
    gc_at_start: bool = True
    #: With "block": after this long waiting on a full queue, say so once on stderr. With "drop" or
    #: "raise": how long a caller waits before the policy applies; after one such timeout, calls
    #: that find the queue still full drop (or raise) at once until the worker catches up. Seconds.
    backpressure_timeout: float = 10.0
    #: A full queue: "block" (default: the caller waits for the writer; nothing is lost), or,
    #: opted into, "drop" (counted by reason, reported at close) or "raise" (QueueFull).
    drop_policy: str = "block"
    #: One deadline for everything that happens at exit (flush, upload), seconds. Schedulers send
    #: SIGKILL 30 s after SIGTERM by default (Kubernetes' grace period, Slurm's KillWait): 20 s
    #: leaves time to print what is left and the flush command before that.
    shutdown_timeout: float = 20.0
    #: Largest string accepted in a log message or field, bytes (UTF-8 length is checked as chars).
    max_string_bytes: int = 1024 * 1024
    #: Where remote mode keeps its write-ahead spool (``ML_DASH_SPOOL_DIR``).
    spool_dir: str = field(default_factory=_default_spool_dir)
    #: Remote mode: spool only, upload later with ``ml-dash-agent flush``.
    offline: bool = False
    #: Group-commit window of the spool: records are fsynced at most this long after write, seconds.
    fsync_interval: float = 1.0
    #: Spool size at which a warning is printed, bytes.
    spool_warn_bytes: int = 10 * 1024 * 1024 * 1024
    #: Spool size at which new events are dropped (counted, reported), bytes (``ML_DASH_SPOOL_MAX_BYTES``).
    spool_max_bytes: int = 20 * 1024 * 1024 * 1024
    #: Longest wait between two tries of an upload, and between rounds while the server is down, seconds.
    retry_max_wait: float = 10.0
    #: An upload request without an answer for this long is abandoned and retried, seconds.
    request_timeout: float = 60.0
    #: Remote mode: who uploads the spool. "auto" (default): the user's ``ml-dash-agent serve``
    #: when one serves the spool, else a sender thread in this process. "agent": the same, and
    #: when none serves it, start one (detached) for the next runs. "process": always a sender
    #: thread here. A run whose agent dies uploads in process (``ML_DASH_UPLOADER``).
    uploader: str = "auto"
    #: An agent started by a run exits after this many seconds with no run to upload (``ML_DASH_AGENT_IDLE``).
    agent_idle: float = 600.0
    #: Remote mode: print the run's dashboard URL (one line on stderr) at start (``ML_DASH_PRINT_URL``).
    print_url: bool = True
    # -- automatic capture (ml_dash/_capture/), each off unless switched on -------------------------
    #: Tee stdout and stderr into the run's logs, line by line (``ML_DASH_CAPTURE_CONSOLE``).
    capture_console: bool = False
    #: Sample process and machine load (psutil; GPUs through NVML when present) as ``system/...``
    #: metrics (``ML_DASH_CAPTURE_SYSTEM``).
    capture_system: bool = False
    #: Seconds between two system samples (``ML_DASH_SYSTEM_INTERVAL``).
    system_interval: float = 10.0
    #: Record git state, command line, Python and host in the experiment's metadata at start
    #: (``ML_DASH_CAPTURE_ENV``).
    capture_env: bool = False
    #: With ``capture_env``: also record the installed packages (``ML_DASH_CAPTURE_PACKAGES``).
    capture_packages: bool = False
    #: With ``capture_env``: the ``git diff`` of a dirty tree is saved as a file, cut at this many bytes.
    git_diff_max_bytes: int = 1024 * 1024
    #: ``exp.logs.info(...)`` and the other level helpers print the line as upstream does
    #: (``ML_DASH_LOG_ECHO``); ``exp.log(...)`` never prints.
    log_echo: bool = True
    #: Prefix of the experiment a framework hook creates when it is given none (``ML_DASH_PREFIX``).
    prefix: Optional[str] = None

    def with_overrides(self, **overrides: Any) -> "Config":
        """A copy with the given fields replaced; None values are ignored."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_TRUE = {"1", "true", "yes", "on"}


def _convert(raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in _TRUE
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def load_config(environ: Optional[Mapping[str, str]] = None) -> Config:
    """Build a :class:`Config` from ``ML_DASH_*`` variables (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    values = {}
    defaults = Config()
    aliases = {"dash_root": "ML_DASH_ROOT", "dash_url": "ML_DASH_URL"}
    for f in fields(Config):
        name = aliases.get(f.name, "ML_DASH_" + f.name.upper())
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _convert(raw, getattr(defaults, f.name))
        except ValueError as exc:
            raise ValueError(f"{name}={raw!r}: {exc}") from None
    if "user" not in values:
        values["user"] = env.get("USER") or env.get("USERNAME") or "unknown"
    if values.get("uploader", "auto") not in ("auto", "agent", "process"):
        raise ValueError("ML_DASH_UPLOADER must be 'auto', 'agent' or 'process'")
    if values.get("drop_policy", "block") not in ("block", "drop", "raise"):
        raise ValueError("ML_DASH_DROP_POLICY must be 'block', 'drop' or 'raise'")
    for name in ("system_interval", "git_diff_max_bytes"):
        if name in values and values[name] <= 0:
            raise ValueError(f"ML_DASH_{name.upper()} must be positive")
    if "spool_dir" in values:
        values["spool_dir"] = os.path.expanduser(values["spool_dir"])
    return Config(**values)
