"""What an upload did, counted: for progress lines, the exit summary and ``flush``."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Tally"]


@dataclass
class Tally:
    """What a session's upload did, for progress and the final summary."""

    events: int = 0
    bytes: int = 0
    duplicates: int = 0
    quarantined: int = 0

    def add(self, other: "Tally") -> None:
        self.events += other.events
        self.bytes += other.bytes
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
