"""``RUN``: facts about the current run that prefixes are built from.

Rule for ``RUN.path_stem`` (documented in the README): take the entry's folder (the file's parent
folder for a file, the folder itself for a directory), make it relative to the project root, and
drop a leading ``experiments/`` folder if there is one. So ``my-project/experiments/vision/resnet/train.py``
gives ``vision/resnet``; ``my-project/sweeps/lr/`` gives ``sweeps/lr``.

The project root is the nearest folder, walking up from the entry, that holds one of
``pyproject.toml``, ``setup.py``, ``setup.cfg``, ``requirements.txt`` or ``.git``; ``RUN.project`` is
that folder's name.
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    import datetime as _dt
    from pathlib import Path
    from typing import Optional, Union

__all__ = ["RUN", "RunInfo", "find_project_root"]

PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt", ".git")
#: A leading folder of this name is dropped from ``path_stem``.
EXPERIMENTS_FOLDER = "experiments"


def find_project_root(start: Union[str, os.PathLike[str]]) -> Path:
    """Nearest folder at or above ``start`` holding a project marker; the start folder if none does."""
    from pathlib import Path

    start = Path(start).resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return folder


#: Upstream's template for an experiment created without a prefix (and without ML_DASH_PREFIX).
DEFAULT_PREFIX = "{user}/scratch/{now:%Y/%m-%d}/{path_stem}/{job_name}"
DEFAULT_JOB_NAME = "{now:%H.%M.%S}/{job_counter:03d}"


class RunInfo:
    """The type of :data:`RUN`. Set ``entry`` first; the other attributes follow from it.

    Upstream's attributes are here too: ``prefix`` (``ML_DASH_PREFIX``, else the template
    :data:`DEFAULT_PREFIX`), ``owner`` and ``name`` (its first and last segments), ``job_name``,
    ``job_counter``, ``id``, ``date``, ``datetime_str``, ``api_url``; calling ``RUN(**attrs)`` sets
    attributes and returns ``RUN``.
    """

    def __init__(self) -> None:
        self._import_time = time.time()
        self._now: Optional[_dt.datetime] = None
        self._entry: Optional[Path] = None
        self._project_root: Optional[Path] = None
        self._user: Optional[str] = None
        self._prefix: Optional[str] = None
        #: Upstream's job naming: ``{now:%H.%M.%S}/{job_counter:03d}``; the counter counts the
        #: experiments this process made from the template (the first is 1).
        self.job_name: str = DEFAULT_JOB_NAME
        self.job_counter: int = 0
        self.readme: Optional[str] = None
        self._id: Optional[str] = None

    @property
    def now(self) -> _dt.datetime:
        """Local time of ``import ml_dash`` (a naive datetime, as upstream's); settable."""
        if self._now is None:
            import datetime  # ~1 ms: made when first asked for, not at import

            self._now = datetime.datetime.fromtimestamp(self._import_time)
        return self._now

    @now.setter
    def now(self, value: _dt.datetime) -> None:
        self._now = value

    def __call__(self, **attrs: object) -> "RunInfo":
        """Set attributes (``RUN(entry=__file__, user="alice")``) and return RUN, as upstream's call does."""
        for key, value in attrs.items():
            if key.startswith("_") or not hasattr(self, key):
                raise AttributeError(f"RUN has no attribute {key!r}")
            setattr(self, key, value)
        return self

    # -- upstream's prefix and its parts -------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The prefix an experiment without one gets: set here, else ``$ML_DASH_PREFIX``, else the
        template :data:`DEFAULT_PREFIX` filled in (as it would be now, without counting a job)."""
        if self._prefix is not None:
            return self._prefix
        return os.environ.get("ML_DASH_PREFIX") or self._fill(DEFAULT_PREFIX, self.job_counter or 1)

    @prefix.setter
    def prefix(self, value: Optional[str]) -> None:
        self._prefix = value

    def template_prefix(self, **overrides: object) -> str:
        """The prefix of a new experiment made without one: counts a job (``job_counter``)."""
        self.job_counter += 1
        if self._prefix is not None:
            return self._prefix
        saved = dict(self.__dict__)
        try:
            for key, value in overrides.items():
                setattr(self, key, value)
            return self._fill(DEFAULT_PREFIX, self.job_counter)
        finally:
            self.__dict__.update(saved)

    def _fill(self, template: str, counter: int) -> str:
        if self._entry is None:  # the running script, else the working folder
            from pathlib import Path

            import __main__

            root = self._project_root
            self._entry = Path(getattr(__main__, "__file__", None) or os.getcwd()).resolve()
            try:  # the project too: read after the restore, it would cache the working folder's root
                stem, project = self.path_stem, self.project
            finally:
                self._entry, self._project_root = None, root
        else:
            stem, project = self.path_stem, self.project
        job = self.job_name.format(now=self.now, job_counter=counter)
        return template.format(
            user=self.user, now=self.now, path_stem=stem, job_name=job, project=project, job_counter=counter
        )

    @property
    def owner(self) -> str:
        return self.prefix.strip("/").split("/")[0]

    @property
    def name(self) -> str:
        return self.prefix.strip("/").split("/")[-1]

    @property
    def id(self) -> str:
        """A snowflake id for this process's run, made on first use."""
        if self._id is None:
            from ._files import new_file_id

            self._id = new_file_id()
        return self._id

    @property
    def date(self) -> str:
        return self.now.strftime("%Y%m%d")

    @property
    def datetime_str(self) -> str:
        return self.now.strftime("%Y%m%d.%H%M%S")

    @property
    def api_url(self) -> Optional[str]:
        """The configured server (``ML_DASH_URL``), or None."""
        return os.environ.get("ML_DASH_URL") or None

    @property
    def entry(self) -> Optional[Path]:
        """Entry point: a script (``__file__``) or a sweep directory."""
        return self._entry

    @entry.setter
    def entry(self, value: Union[str, os.PathLike[str], None]) -> None:
        from pathlib import Path  # pathlib costs ~10 ms to import: only when RUN is used

        self._entry = None if value is None else Path(value).resolve()
        self._project_root = None

    @property
    def project_root(self) -> Path:
        """Auto-detected from ``entry`` (or the working folder); may be set explicitly."""
        if self._project_root is None:
            root = find_project_root(self._entry or os.getcwd())
            if self._entry is None:  # the working folder's: not kept, the entry found later has its own
                return root
            self._project_root = root
        return self._project_root

    @project_root.setter
    def project_root(self, value: Union[str, os.PathLike[str]]) -> None:
        from pathlib import Path

        self._project_root = Path(value).resolve()

    @property
    def project(self) -> str:
        """The project root folder's name."""
        return self.project_root.name

    @property
    def path_stem(self) -> str:
        """The entry's folder relative to the project root, without a leading ``experiments/``."""
        if self._entry is None:
            raise RuntimeError("RUN.path_stem needs RUN.entry: set RUN.entry = __file__ first")
        folder = self._entry if self._entry.is_dir() else self._entry.parent
        try:
            rel = folder.relative_to(self.project_root)
        except ValueError:
            raise RuntimeError(f"RUN.entry {self._entry} is not inside RUN.project_root {self.project_root}") from None
        parts = rel.parts
        if parts and parts[0] == EXPERIMENTS_FOLDER and len(parts) > 1:
            parts = parts[1:]
        return "/".join(parts) if parts else self.project_root.name

    @property
    def user(self) -> str:
        """``$ML_DASH_USER``, else ``$USER`` (``$USERNAME`` on Windows), else the login name of the
        process's user (a container or a batch job often sets no ``$USER``), else ``"unknown"``;
        may be set explicitly."""
        if self._user is not None:
            return self._user
        env = os.environ
        return env.get("ML_DASH_USER") or env.get("USER") or env.get("USERNAME") or _login_name() or "unknown"

    @user.setter
    def user(self, value: str) -> None:
        self._user = value

    def __repr__(self) -> str:
        return f"RUN(entry={self._entry}, user={self.user!r}, now={self.now:%Y-%m-%d %H:%M:%S})"


#: The process-wide run facts. ``RUN.now`` is the time ``ml_dash`` was imported.
RUN = RunInfo()


def _login_name() -> str:
    """The name the password database gives the process's user id; "" when there is none (an id
    a container made up) or no such database (Windows)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return ""
