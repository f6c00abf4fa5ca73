"""The last state: parameter values and learned MIDI mappings, kept across restarts.

Restored at start (a damaged file falls back to its previous copy, see
state.py) and saved from the control loop every few seconds when it changed,
and once more at a clean stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.controls.midi.mapping import ACTIONS as MIDI_ACTIONS
from appliance.controls.midi.mapping import Mapping
from appliance.params import PARAMETERS
from appliance.service import state

SAVE_EVERY = 5.0          # seconds between saves (when something changed)


class LastState:
    def __init__(self, path: Path, report: Callable[[str], None]) -> None:
        self.path = path
        self.report = report            # where problems go: the log, status and the report
        self.enabled = True             # False: never written (safe mode, a read-only state directory)
        self._saved: dict[str, Any] | None = None

    def load(self) -> tuple[dict[str, float], list[Mapping]]:
        """The values and learned mappings saved last; what cannot be read is reported and skipped."""
        loaded = state.load(self.path, "state", _shape)
        if loaded.problem:
            self.report(f"last state: {loaded.problem}")
        data = loaded.data or {}
        values, errors = PARAMETERS.coerce_all(dict(data.get("params", {})))
        for exc in errors.values():
            self.report(f"last state: {exc} (factory value kept)")
        learned = []
        for raw in data.get("learned", []):
            try:
                learned.append(_learned(raw))
            except (TypeError, ValueError) as exc:
                self.report(f"last state: a learned mapping is unreadable ({exc}); left out")
        self._saved = _document(values, learned)
        return values, learned

    def save(self, values: dict[str, float], learned: list[Mapping]) -> None:
        """Write it if it changed since the last save."""
        if not self.enabled:
            return
        current = _document(values, learned)
        if current == self._saved:
            return
        try:
            state.save(self.path, "state", current)
            self._saved = current
        except OSError as exc:
            self.report(f"cannot save the last state: {exc}")

    def job(self, snapshot: Callable[[], tuple[dict[str, float], list[Mapping]]]) -> Callable[[float], float]:
        """A control-loop job that saves every SAVE_EVERY seconds."""

        def save(now: float) -> float:
            self.save(*snapshot())
            return time.monotonic() + SAVE_EVERY

        return save


def _document(values: dict[str, float], learned: list[Mapping]) -> dict[str, Any]:
    return {"params": PARAMETERS.external(values), "learned": [vars(m).copy() for m in learned]}


def _shape(data: dict[str, Any]) -> None:
    state.require(isinstance(data.get("params", {}), dict), "params is not a table")
    learned = data.get("learned", [])
    state.require(isinstance(learned, list) and all(isinstance(m, dict) for m in learned),
                  "learned is not a list of mappings")


def _learned(raw: dict[str, Any]) -> Mapping:
    """A mapping saved by an older version: it must still name something that exists."""
    mapping = Mapping(**raw)
    if mapping.param is not None and mapping.param not in PARAMETERS:
        raise ValueError(f"it names the unknown parameter {mapping.param!r}")
    if mapping.action is not None and mapping.action not in MIDI_ACTIONS:
        raise ValueError(f"it names the unknown action {mapping.action!r}")
    if mapping.param is None and mapping.action is None:
        raise ValueError("it maps to nothing")
    return mapping
