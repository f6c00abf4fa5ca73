"""The boot log: how the last starts ended, to catch a crash loop.

Each start is recorded before anything risky happens and marked good once
the instrument has played steadily for a while (or shut down cleanly).  If
`failures` starts in the last `window` seconds were never marked good, the
instrument starts in safe mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from appliance.service import state

KEEP = 20


@dataclass
class BootLog:
    path: Path
    failures: int = 3
    window: float = 300.0

    def start(self, now: float | None = None) -> tuple[bool, str | None]:
        """Record this start; (crash loop?, problem reading the log)."""
        now = time.time() if now is None else now
        loaded = state.load(self.path, "boots", _shape)
        starts = list((loaded.data or {}).get("starts", []))
        # unfinished starts in the window, since the last one that went well: a clean stop
        # or a good run ends a crash loop at once, not when the window has passed
        recent = []
        for previous in reversed(starts):
            if previous["ok"] or now - previous["at"] > self.window:
                break
            recent.append(previous)
        looping = len(recent) >= self.failures
        self._starts = [*starts[-(KEEP - 1):], {"at": now, "ok": False}]
        state.save(self.path, "boots", {"starts": self._starts})
        return looping, loaded.problem

    def good(self) -> None:
        """This start went well."""
        if getattr(self, "_starts", None) and not self._starts[-1]["ok"]:
            self._starts[-1]["ok"] = True
            state.save(self.path, "boots", {"starts": self._starts})


def _shape(data: dict) -> None:
    starts = data.get("starts", [])
    state.require(isinstance(starts, list), "starts is not a list")
    for start in starts:
        state.require(isinstance(start, dict) and isinstance(start.get("at"), (int, float))
                      and not isinstance(start.get("at"), bool) and isinstance(start.get("ok"), bool),
                      "a start is not {at: time, ok: true/false}")
