"""``exp.params``: hyper-parameters, stored flattened with a separator (``.``).

Values may be nested dicts (flattened to ``a.b.c``), classes whose public attributes are the
parameters (the params-proto style: ``exp.params.set(Args=Args)``), or objects that carry their
parameters as attributes (dataclass instances, ``argparse.Namespace``, instances of such classes).
"""

from __future__ import annotations

import time

from ._errors import InvalidValue
from ._events import ParamsEvent
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict

    from ._recorder import Recorder

__all__ = ["Params", "flatten", "unflatten", "params_of"]

#: Values stored as they are, never taken apart for their attributes.
_PLAIN = (str, bytes, int, float, bool, list, tuple, dict, type(None))


def flatten(d: Dict[str, Any], parent: str = "", sep: str = ".") -> Dict[str, Any]:
    """``{"model": {"layers": 2}}`` -> ``{"model.layers": 2}``. An empty dict is kept as a value."""
    out: Dict[str, Any] = {}
    for key, value in d.items():
        if not isinstance(key, str):
            raise InvalidValue(f"parameter names must be str, got {type(key).__name__}")
        full = f"{parent}{sep}{key}" if parent else key
        value = params_of(value)
        if isinstance(value, dict) and value:
            out.update(flatten(value, full, sep))
        else:
            out[full] = value
    return out


def unflatten(d: Dict[str, Any], sep: str = ".") -> Dict[str, Any]:
    """Inverse of :func:`flatten`."""
    out: Dict[str, Any] = {}
    for key, value in d.items():
        node = out
        *parents, last = key.split(sep)
        for p in parents:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[last] = value
    return out


def _public(attrs: Dict[str, Any]) -> Dict[str, Any]:
    """Public, non-callable attributes (upstream's rule for a params class); nested types skipped."""
    return {
        k: v
        for k, v in attrs.items()
        if not k.startswith("_") and not callable(v) and not isinstance(v, (type, staticmethod, classmethod, property))
    }


def params_of(value: Any) -> Any:
    """A class or an attribute-carrying object as the dict of its parameters; anything else as is.

    * a class: its own public, non-callable class attributes, as upstream takes a params-proto
      class (``Args.lr``);
    * a dataclass instance: its fields;
    * another object with a ``__dict__`` (``argparse.Namespace``, an instance of a params class):
      its class's public attributes, overridden by its own.
    Plain values (numbers, strings, lists, dicts, None) and array scalars are returned unchanged.
    """
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, type):
        return _public(dict(vars(value)))
    fields = getattr(type(value), "__dataclass_fields__", None)
    if fields is not None:
        return {name: getattr(value, name) for name in fields}
    own = getattr(value, "__dict__", None)
    if isinstance(own, dict) and getattr(value, "item", None) is None:  # not a numpy/torch scalar
        merged: Dict[str, Any] = {}
        for klass in reversed(type(value).__mro__[:-1]):
            merged.update(_public(dict(vars(klass))))
        merged.update(_public(own))
        return merged
    return value


class Params:
    """``exp.params``: hyper-parameters, stored flattened with dots."""

    def __init__(self, rec: Recorder):
        self._rec = rec

    def set(self, **params: Any) -> "Params":
        """Merge parameters. Nested dicts are flattened to ``a.b.c`` keys; a class or object whose
        attributes are the parameters (``set(Args=Args)``) is taken as the dict of them."""
        flat = flatten(params)
        if not flat:
            return self
        flat = normalize_fields(flat, self._rec.config.max_string_bytes, "params")
        self._rec.pipe.put(ParamsEvent(time.time(), flat))
        return self

    log = set  # upstream's alias

    def get(self, flatten: bool = True) -> Dict[str, Any]:
        """Every parameter stored so far (by any run of this experiment)."""
        data = self._rec.reader().params()
        return data if flatten else unflatten(data)

    #: Upstream's static helpers, with its custom separator.
    flatten_dict = staticmethod(lambda d, parent_key="", sep=".": flatten(d, parent_key, sep))
    unflatten_dict = staticmethod(lambda d, sep=".": unflatten(d, sep))
