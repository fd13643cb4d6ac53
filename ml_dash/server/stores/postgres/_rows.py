"""What the stores' SQL reads back."""

from __future__ import annotations

from typing import Optional, TypeVar

__all__ = ["one"]

T = TypeVar("T")


def one(row: Optional[T]) -> T:
    """The row of a statement that always returns one (an aggregate, or a row the same transaction
    has just made sure of); a missing one is a bug, said as such."""
    if row is None:
        raise RuntimeError("the database returned no row where one always exists")
    return row
