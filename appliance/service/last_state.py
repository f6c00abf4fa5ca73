"""The last state: parameter values and learned MIDI mappings, kept across restarts.

Restored at start (a damaged file falls back to its previous copy, see
state.py) and saved every few seconds when it changed, and once more at a
clean stop.  The control loop takes the snapshot; a thread of its own writes
it, because a save fsyncs twice, and on an SD card busy with a recording's
writeback an fsync can take longer than the loop's lookahead: the notes it
owes would come late.  One write at a time, the latest snapshot next.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.controls.midi.mapping import ACTIONS as MIDI_ACTIONS
from appliance.controls.midi.mapping import Mapping
from appliance.engine.rtprio import name_this_thread
from appliance.params import PARAMETERS
from appliance.service import state

SAVE_EVERY = 5.0          # seconds between saves (when something changed)


class LastState:
    def __init__(self, path: Path, report: Callable[[str], None]) -> None:
        self.path = path
        self.report = report            # where problems go: the log, status and the report
        self.enabled = True             # False: never written (safe mode, a read-only state directory)
        self._saved: dict[str, Any] | None = None
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="state-writer",
                                                             initializer=name_this_thread, initargs=("state-writer",))
        self._writing: concurrent.futures.Future[tuple[dict[str, Any], str | None]] | None = None

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
        """Write it now if it changed since the last save (a clean stop: after the write under way)."""
        self._collect(wait=True)
        if self.enabled:
            self._outcome(*self._write(_document(values, learned)))

    def close(self) -> None:
        self._collect(wait=True)
        self._writer.shutdown(wait=True)

    def job(self, snapshot: Callable[[], tuple[dict[str, float], list[Mapping]]]) -> Callable[[float], float]:
        """A control-loop job: every SAVE_EVERY seconds, hand what changed to the writer."""

        def save(now: float) -> float:
            self._collect(wait=False)
            if self.enabled and self._writing is None:    # one at a time: the next pass takes the latest
                current = _document(*snapshot())
                if current != self._saved:
                    self._writing = self._writer.submit(self._write, current)
            return time.monotonic() + SAVE_EVERY

        return save

    def _write(self, current: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        if current == self._saved:
            return current, None
        try:
            state.save(self.path, "state", current)
        except OSError as exc:
            return current, f"cannot save the last state: {exc}"
        return current, None

    def _collect(self, wait: bool) -> None:
        """The outcome of the write under way, once it is done (in the caller's thread: the loop's)."""
        if self._writing is None or not (wait or self._writing.done()):
            return
        writing, self._writing = self._writing, None
        self._outcome(*writing.result())

    def _outcome(self, written: dict[str, Any], problem: str | None) -> None:
        if problem is None:
            self._saved = written
        else:
            self.report(problem)


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
