"""What a logged value may be, and how it is stored.

* Python ``bool``, ``int`` (64-bit), ``float``, ``str``, ``None``, and lists, tuples and
  str-keyed dicts of them are stored as they are.
* numpy, torch and jax scalars and 0-d arrays become Python numbers; they are recognised by
  duck typing (``.item()``), so none of those libraries is imported here.
* An integer that does not fit in 64 bits is stored as its decimal string (lossless, and every
  JSON reader agrees on it).
* Non-finite floats are stored as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` so that
  every file stays strict JSON; our reader turns them back into floats. (Upstream wrote bare
  ``NaN`` literals; our reader accepts those too.)
* Anything else raises :class:`InvalidValue` at the call, in the caller's thread.
* A string longer than ``Config.max_string_bytes`` characters raises :class:`ValueTooLarge`.
"""

from __future__ import annotations

import math

from ._errors import InvalidValue, ValueTooLarge

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict

__all__ = ["normalize_fields", "normalize_value", "encode_nonfinite", "decode_nonfinite", "FAST_TYPES"]

#: Types the caller's fast path lets through without a closer look.
FAST_TYPES = frozenset((float, int, bool))

_INT64_MIN, _INT64_MAX = -(2**63), 2**64 - 1
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def normalize_value(value: Any, limit: int, where: str) -> Any:
    t = type(value)
    if t is float or t is bool or value is None:
        return value
    if t is int:
        # JSON readers differ beyond 64 bits; the decimal string keeps every digit.
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if t is str:
        if len(value) > limit:
            raise ValueTooLarge(f"{where}: string of {len(value):,} characters is over the limit of {limit:,}")
        return value
    if isinstance(value, (list, tuple)):
        return [normalize_value(v, limit, where) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidValue(f"{where}: dict keys must be str, got {type(k).__name__}")
            out[k] = normalize_value(v, limit, f"{where}.{k}")
        return out
    # numpy / torch / jax scalars and 0-d arrays, without importing them.
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", 0) == 0 and getattr(value, "shape", ()) == ():
        try:
            plain = item()
        except Exception as exc:  # a 0-d tensor on a device that cannot be read, etc.
            raise InvalidValue(f"{where}: {type(value).__name__}.item() failed: {exc}") from None
        if type(plain) in (float, int, bool):
            return normalize_value(plain, limit, where)
    if isinstance(value, (float, int)):  # subclasses such as numpy.float64, IntEnum
        return normalize_value(float(value) if isinstance(value, float) else int(value), limit, where)
    raise InvalidValue(
        f"{where}: cannot store a value of type {type(value).__module__}.{type(value).__qualname__}; "
        "use numbers, bools, strings, None, or lists/dicts of them"
    )


def normalize_fields(fields: Dict[str, Any], limit: int, what: str) -> Dict[str, Any]:
    """Validate and convert every field; raise at the first bad one, naming it."""
    return {k: normalize_value(v, limit, f"{what} field {k!r}") for k, v in fields.items()}


def encode_nonfinite(value: Any) -> Any:
    """Replace non-finite floats (recursively) by their string names, for strict JSON."""
    t = type(value)
    if t is float:
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if t is dict:
        return {k: encode_nonfinite(v) for k, v in value.items()}
    if t is list:
        return [encode_nonfinite(v) for v in value]
    return value


def decode_nonfinite(value: Any) -> Any:
    """Inverse of :func:`encode_nonfinite` for values read back."""
    t = type(value)
    if t is str:
        return _NONFINITE.get(value, value)
    if t is dict:
        return {k: decode_nonfinite(v) for k, v in value.items()}
    if t is list:
        return [decode_nonfinite(v) for v in value]
    return value
