"""Changes that land on a bar line: scene recalls and the TEMP gesture.

A scene switches a whole set of parameters on the next bar line, never mid-bar.
The generator composes ahead of the clock, so "the next bar" is the first bar
whose steps can still be composed again (more than the sequencer's guard time
away): from that bar's first step the sequencer composes with the scene's
values (Sequencer.fill's `change`), and the steps before it with the values in
force.  When the clock reaches that step the values are set for real, through
the same path as every other change (so feedback, status and the last state
follow); the clock's own parameters (tempo, swing) a step before, because the
clock reads them when it dispatches the bar's first beat.

TEMP (after Torso T-1): while held, every change is made as usual; on release
the values from before the press come back, on the next bar line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.controls.inbox import Action, SetParam
from appliance.params import PARAMETERS

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument

CLOCK_PARAMS = {spec.name for spec in PARAMETERS if spec.group == "clock"}


@dataclass(frozen=True)
class BarChange:
    step: int                    # the first step of the bar it lands on
    values: dict[str, float]
    source: str


class BarChanges:
    def __init__(self, instrument: Instrument, set_param: Callable[[SetParam], None]) -> None:
        self.instrument = instrument
        self.set_param = set_param            # the loop's own dispatch (this runs in the loop)
        self.pending: BarChange | None = None
        self._clock_written = False
        self._held: dict[str, float] | None = None    # TEMP: the values from before the press
        self.applied = 0

    def schedule(self, values: Mapping[str, float], source: str) -> int:
        """Values to take effect on the next bar line; returns that bar's number (1-based).
        A recall while another is pending replaces it (the later wish wins)."""
        instrument = self.instrument
        if not instrument.transport or not instrument.engine.is_open:
            for name, value in values.items():       # stopped: no bar lines to wait for
                self.set_param(SetParam(name, value, source))
            self.pending = None
            return 0
        sequencer = instrument.sequencer
        bar = instrument.generator.bar_steps
        earliest = instrument.clock_step() + sequencer.steps_within(sequencer.guard, instrument.tempo_bound())
        step = math.ceil(earliest / bar) * bar
        self.pending = BarChange(step, dict(values), source)
        self._clock_written = False
        sequencer.recompose(instrument.clock_step(), instrument.tempo_bound(), instrument.next_step_due())
        return step // bar + 1

    def params_from(self, params: Mapping[str, float]) -> tuple[int, dict[str, float]] | None:
        """For the sequencer: (first step, the values it composes with from there)."""
        if self.pending is None:
            return None
        return self.pending.step, {**params, **self.pending.values}

    def tick(self, clock_step: int) -> None:
        """Each loop pass: set the values once the clock has reached the bar."""
        change = self.pending
        if change is None:
            return
        if not self._clock_written and clock_step >= change.step - 1:
            for name in CLOCK_PARAMS & change.values.keys():
                self.instrument.engine.set_channel(name, change.values[name])
            self._clock_written = True
        if clock_step >= change.step:
            self.pending = None
            self.applied += 1
            for name, value in change.values.items():
                self.set_param(SetParam(name, value, change.source))

    # -- TEMP ----------------------------------------------------------------------------

    def temp(self, action: Action) -> None:
        """Pressed (argument 1): remember the values; released (0): bring them back on the
        next bar line."""
        params = self.instrument.params
        if action.argument:
            if self._held is None:
                self._held = params.snapshot()
            return
        held, self._held = self._held, None
        if held is not None:
            changed = {name: value for name, value in held.items() if params.get(name) != value}
            if changed:
                self.schedule(changed, f"TEMP released ({action.source})")
