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
        loaded = state.load(self.path, "boots")
        starts = list((loaded.data or {}).get("starts", []))
        recent = [s for s in starts if now - s.get("at", 0) <= self.window and not s.get("ok")]
        looping = len(recent) >= self.failures
        self._starts = [*starts[-(KEEP - 1):], {"at": now, "ok": False}]
        state.save(self.path, "boots", {"starts": self._starts})
        return looping, loaded.problem

    def good(self) -> None:
        """This start went well."""
        if getattr(self, "_starts", None) and not self._starts[-1]["ok"]:
            self._starts[-1]["ok"] = True
            state.save(self.path, "boots", {"starts": self._starts})
