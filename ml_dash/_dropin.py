"""Upstream 0.11's parts of the Experiment object: ``exp.bindrs(name)`` and the prefix of an
experiment made without one (``OperationMode`` is in ``_mode``)."""

from __future__ import annotations

from ._errors import InvalidPrefix
from ._names import Prefix, parse_prefix

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

    from ._config import Config

    _Names = List[str]  # Bindrs' base, parametrized for type checkers only
else:
    _Names = list

__all__ = ["Bindrs", "resolve_prefix"]


class Bindrs(_Names):
    """``exp.bindrs``: the experiment's bindrs (a list); ``exp.bindrs(name).list()`` lists the files
    of one bindr (upstream's call)."""

    def __init__(self, values: List[str], files: Any):
        super().__init__(values)
        self._files = files

    def __call__(self, name: str) -> "_BindrFiles":
        return _BindrFiles(self._files, name)


class _BindrFiles:
    def __init__(self, files: Any, name: str):
        self._files = files
        self._name = name

    def list(self) -> List[Any]:
        """Files of the experiment that belong to this bindr."""
        return [f for f in self._files.list() if self._name in (f.get("bindrs") or [])]


#: Keyword arguments upstream hands to its RUN object; here they shape an omitted prefix.
_RUN_PARAMS = ("user", "job_name", "entry")


def resolve_prefix(prefix: Optional[str], config: Config, run_params: Dict[str, Any], two_segments: bool) -> Prefix:
    """The experiment's prefix: given, else ``ML_DASH_PREFIX``, else ``RUN.prefix`` (upstream's template).

    ``two_segments``: upstream's ``owner/name`` is accepted (local mode; the project is the name).
    """
    unknown = sorted(set(run_params) - set(_RUN_PARAMS))
    if unknown:
        raise TypeError(f"Experiment() got unexpected keyword argument(s) {', '.join(unknown)}")
    if prefix is None:
        prefix = config.prefix
    if prefix is None:
        from ._run_info import RUN

        prefix = RUN.template_prefix(**run_params)
    elif run_params:
        raise TypeError(f"{', '.join(run_params)} shape an omitted prefix; this Experiment was given prefix={prefix!r}")
    try:
        return parse_prefix(prefix, 2 if two_segments else 3)
    except InvalidPrefix as exc:
        if two_segments or not isinstance(prefix, str) or prefix.strip("/").count("/") != 1:
            raise
        raise InvalidPrefix(f"{exc}; upstream's two-segment owner/name is accepted in local mode only") from None
