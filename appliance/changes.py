"""Changes from every input, waiting for the control loop.

Inputs (scenario, command line, and later MIDI and GPIO callbacks) only put a
change here; the control loop takes them all at once and applies them.  Values
are coalesced per parameter: a flood of knob messages keeps only the latest
value of each parameter, so the queue can never grow beyond one entry per
parameter, however fast the messages come.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    name: str
    value: float
    source: str
    time: float | None = None     # when the input that caused it entered the process


class Changes:
    def __init__(self) -> None:
        self._pending: dict[str, Change] = {}
        self._lock = threading.Lock()
        self.received = 0
        self.coalesced = 0

    def put(self, name: str, value: float, source: str, at: float | None = None) -> None:
        """Thread-safe, O(1), never blocks for long: safe from any callback."""
        with self._lock:
            self.received += 1
            if name in self._pending:
                self.coalesced += 1
            self._pending[name] = Change(name, value, source, at)

    def take(self) -> list[Change]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return list(pending.values())
