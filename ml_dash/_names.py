"""Validation of every user-given name that becomes a path: prefixes, metric names, file paths.

Rules (one place, so local mode, the agent and the server agree):

* a segment is non-empty, not ``.`` or ``..``, has no ``/`` or ``\\``, no control character
  (below U+0020, or U+007F) and is at most 255 bytes in UTF-8;
* a prefix is ``owner/project/path.../name``: at least three segments, relative (no leading ``/``);
* a metric name or file path may have ``/`` between valid segments (it becomes sub-folders);
* a file name is one segment;
* a metric name never lands on the store's own names: no segment is ``data.jsonl`` or
  ``metadata.json`` (files every metric folder has) and the name is not ``None`` (the unnamed
  metric's folder); a file path does not start with ``.files_metadata.json`` (the file listing).
  The server refuses the same names (``invalid_name``); the SDK refuses them at the call.
"""

from __future__ import annotations

from ._errors import InvalidPrefix

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Tuple

__all__ = [
    "Prefix",
    "parse_prefix",
    "check_segment",
    "check_relpath",
    "check_filename",
    "check_metric_name",
    "check_file_path",
    "METRIC_FILES",
    "FILES_LISTING",
    "UNNAMED_METRIC",
]

_MAX_SEGMENT_BYTES = 255
_MAX_PREFIX_BYTES = 1024

#: Files the store keeps in every metric folder (``metrics/<name>/``).
METRIC_FILES = frozenset(("data.jsonl", "metadata.json"))
#: The experiment's file listing, in ``files/``.
FILES_LISTING = ".files_metadata.json"
#: The folder of the unnamed metric (``exp.metrics.log(...)``), as upstream names it.
UNNAMED_METRIC = "None"


def check_segment(segment: object, what: str) -> str:
    """Return ``segment`` if it is a safe single path segment, else raise InvalidPrefix."""
    if not isinstance(segment, str):
        raise InvalidPrefix(f"{what} must be a str, got {type(segment).__name__}")
    if segment == "":
        raise InvalidPrefix(f"{what} has an empty segment")
    if segment in (".", ".."):
        raise InvalidPrefix(f"{what} may not contain the segment {segment!r}")
    if "/" in segment or "\\" in segment:
        raise InvalidPrefix(f"{what} segment {segment!r} may not contain '/' or '\\'")
    for ch in segment:
        if ch < " " or ch == "\x7f":
            raise InvalidPrefix(f"{what} segment {segment!r} contains a control character")
    if len(segment.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT_BYTES:
        raise InvalidPrefix(f"{what} segment is longer than {_MAX_SEGMENT_BYTES} bytes")
    return segment


def _split(value: object, what: str) -> Tuple[str, ...]:
    if not isinstance(value, str):
        raise InvalidPrefix(f"{what} must be a str, got {type(value).__name__}")
    if value == "":
        raise InvalidPrefix(f"{what} is empty")
    if "\\" in value:
        raise InvalidPrefix(f"{what} {value!r} may not contain a backslash")
    if value.startswith("/"):
        raise InvalidPrefix(f"{what} {value!r} must be relative, not an absolute path")
    if len(value.encode("utf-8", "surrogatepass")) > _MAX_PREFIX_BYTES:
        raise InvalidPrefix(f"{what} is longer than {_MAX_PREFIX_BYTES} bytes")
    parts = tuple(value.split("/"))
    for part in parts:
        check_segment(part, what)
    return parts


def check_relpath(value: object, what: str) -> str:
    """A relative path of safe segments (metric names, file folders). Leading/trailing '/' are trimmed."""
    stripped = value.strip("/") if isinstance(value, str) else value
    return "/".join(_split(stripped, what))


def check_metric_name(value: str) -> str:
    """A metric name as stored (segments checked, outer '/' trimmed) that cannot land on a file the
    store keeps in every metric folder, nor on the unnamed metric's folder; else InvalidPrefix."""
    rel = check_relpath(value, "metric name")
    if rel == UNNAMED_METRIC:
        raise InvalidPrefix(f"metric name {UNNAMED_METRIC!r} is reserved for the unnamed metric (log without a name)")
    for seg in rel.split("/"):
        if seg in METRIC_FILES:
            raise InvalidPrefix(f"metric name {value!r}: the segment {seg!r} is a file every metric folder has")
    return rel


def check_file_path(value: str) -> str:
    """A file folder as stored (segments checked, outer '/' trimmed) that does not start with the
    experiment's file listing; else InvalidPrefix."""
    rel = check_relpath(value, "file path")
    if rel.split("/", 1)[0] == FILES_LISTING:
        raise InvalidPrefix(f"file path {value!r}: {FILES_LISTING!r} is the experiment's file listing")
    return rel


def check_filename(value: object) -> str:
    """A file name: exactly one safe segment."""
    return check_segment(value, "file name")


class Prefix:
    """A parsed experiment prefix ``owner/project/path.../name`` (immutable, hashable)."""

    __slots__ = ("parts",)
    parts: Tuple[str, ...]

    def __init__(self, parts: Tuple[str, ...]):
        object.__setattr__(self, "parts", tuple(parts))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Prefix is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prefix) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __repr__(self) -> str:
        return f"Prefix({str(self)!r})"

    @property
    def owner(self) -> str:
        return self.parts[0]

    @property
    def project(self) -> str:
        return self.parts[1]

    @property
    def name(self) -> str:
        return self.parts[-1]

    @property
    def folder(self) -> str:
        """The path between project and name ('' when there is none)."""
        return "/".join(self.parts[2:-1])

    def __str__(self) -> str:
        return "/".join(self.parts)


def parse_prefix(prefix: str, min_segments: int = 3) -> Prefix:
    """Parse and validate ``owner/project/path.../name``; raise InvalidPrefix naming the problem.

    ``min_segments=2`` also accepts upstream's ``owner/name`` (local mode): the project is then
    the name, and the experiment's folder is ``<root>/owner/name``.
    """
    if isinstance(prefix, str):
        prefix = prefix.rstrip("/") if prefix.strip("/") else prefix
    parts = _split(prefix, "prefix")
    if len(parts) < min_segments:
        raise InvalidPrefix(
            f"prefix {prefix!r} has {len(parts)} segment(s); it needs at least {min_segments}: "
            + ("owner/project/name" if min_segments >= 3 else "owner/name or owner/project/name")
        )
    return Prefix(parts)
