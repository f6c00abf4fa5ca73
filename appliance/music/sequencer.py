"""Keeps the clock's step buffer filled ahead of the clock.

Python composes; Csound decides when.  The sequencer composes every step
`lookahead` seconds before the clock reaches it and hands it to Csound
(instr StepWrite), so a garbage collection, a slow SSH client or any stall
shorter than the lookahead changes nothing that is heard.

Knobs still answer quickly: when a generator parameter changes, the
sequencer rewinds the generator to its state before the first step that is
more than `guard` seconds away and recomposes from there, overwriting the
steps already sent.

If Python falls behind by more than the lookahead (the documented rule):
* the clock plays, for each step it did not receive, what it played at the
  same step one bar earlier, so the music loops its last bar; it never goes
  silent and never plays a note late or bunched (instr Clock);
* a step that reaches Csound after its time is dropped and its notes counted
  as late (instr StepWrite);
* the sequencer composes the steps it missed without sending them, counting
  their notes as late, and resumes sending at the clock's position, so the
  generator's bars stay aligned with the clock's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Protocol

from appliance.music.generator import Generator, Note


class StepSink(Protocol):
    def send_step(self, step: int, fields: list[float]) -> None: ...

    def instrument(self, name: str) -> int: ...


class Sequencer:
    def __init__(self, generator: Generator, sink: StepSink, *, lookahead: float, guard: float,
                 ring_size: int, max_notes: int) -> None:
        self.generator = generator
        self.sink = sink
        self.lookahead = lookahead
        self.guard = guard
        self.ring_size = ring_size
        self.max_notes = max_notes
        self.late_notes = 0          # composed after the clock had passed their step
        self._next = 0               # the next step to compose
        self._snapshots: dict[int, object] = {}
        # told every step sent (again when recomposed): MIDI out of the notes, a MIDI file
        self.listeners: list[Callable[[int, list[Note]], None]] = []

    def steps_within(self, seconds: float, tempo: float) -> int:
        steps_per_second = tempo / 60 * self.generator.steps_per_beat
        return max(1, math.ceil(seconds * steps_per_second))

    def fill(self, clock_step: int, params: Mapping[str, float], tempo: float, margin: float = 0.0,
             change: tuple[int, Mapping[str, float]] | None = None) -> None:
        """Compose and send every step up to `lookahead` ahead of the clock, and `margin`
        seconds more: as long as the caller may sleep before it fills again.  `change`:
        (step, values) composes from that step on with those values (a scene on a bar line)."""
        ahead = min(self.steps_within(self.lookahead + margin, tempo) + 1, self.ring_size - 1)
        horizon = clock_step + ahead
        while self._next < horizon:
            step = self._next
            self._snapshots[step] = self.generator.snapshot()
            notes = self.generator.step(step, change[1] if change is not None and step >= change[0] else params)
            if step < clock_step:
                self.late_notes += len(notes)
            else:
                self.sink.send_step(step, self.encode(notes))
                for listener in self.listeners:
                    listener(step, notes[: self.max_notes])
            self._next += 1
        for old in [s for s in self._snapshots if s < clock_step]:
            del self._snapshots[old]

    def skip_to(self, step: int, params: Mapping[str, float]) -> None:
        """The clock jumped ahead (the transport started again on a new bar):
        compose the steps it skipped without sending them, so the generator
        stays on the clock's bars; they were never due, so none is late."""
        while self._next < step:
            self.generator.step(self._next, params)
            self._next += 1
        self._snapshots.clear()

    def recompose(self, clock_step: int, tempo: float, next_due: float | None = None) -> None:
        """Parameters changed: compose again every step the clock dispatches more than the
        guard time from now.  next_due: seconds until the clock dispatches clock_step (None:
        unknown, then the first step is taken as due at once)."""
        if next_due is None:
            start = clock_step + self.steps_within(self.guard, tempo)
        else:
            steps_per_second = tempo / 60 * self.generator.steps_per_beat
            start = clock_step + max(0, math.ceil((self.guard - next_due) * steps_per_second))
        if start < self._next and start in self._snapshots:
            self.generator.restore(self._snapshots[start])  # type: ignore[arg-type]
            for later in [s for s in self._snapshots if s > start]:
                del self._snapshots[later]
            self._next = start

    def encode(self, notes: list[Note]) -> list[float]:
        """StepWrite's p-fields after the step: count, then six per note."""
        kept = notes[: self.max_notes]
        fields: list[float] = [float(len(kept))]
        for note in kept:
            fields += [float(self.sink.instrument(note.voice)), float(note.pitch), note.velocity,
                       note.gate, note.pan, note.timbre]
        return fields
