"""Following a MIDI clock master in phase: Csound's clock steered onto the master's beats.

Csound keeps owning the samples and places every note; Python never does.
What Python changes is the length of the clock's next beat: the exact tempo
in the "sync_tempo" channel, which the clock reads as each beat begins.
Each pass of the loop looks at the beat the clock has just dispatched, when
it will be heard (its sample on the wall clock, through the instrument's AudioClockMap, one
output buffer later on a sound card), and at the master's beats (a line
fitted through its last ticks, so its jitter does not wobble the groove).
The beat that starts where ours ends is then made as long as it takes to
end on the master's next beat: a nudge bounded to MAX_NUDGE of the tempo,
so a late or early start is caught up over a few beats, never by a jump
that would bunch or drop steps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument

MAX_NUDGE = 0.05          # a beat is at most 5 % longer or shorter than the master's


ALIGN_AHEAD = 0.05        # a restart onto the master's beat is placed at least this far ahead (s)


class MidiSync:
    def __init__(self) -> None:
        self.error_ms: float | None = None       # our last beat against the master's (+: ours late)
        self._written = 0.0
        self._restarts = 0
        self._aligned_to: int | None = None     # the master Start (its count) we restarted onto
        self._restart_at: float | None = None   # the sample of that restart, until the clock is there

    def restart(self) -> None:
        """A new engine: its channels start afresh."""
        self._written = 0.0
        self._aligned_to = self._restart_at = None

    def steer(self, instrument: Instrument, now: float) -> None:
        controls = instrument.hardware.controls
        if not controls.follow_clock:
            self._write(instrument, 0.0)             # once, after sync was turned off
            return
        fit = controls.follower.beat_times()
        if fit is None or not instrument.transport or not controls.follower.fresh(now) or \
                not instrument.audio_clock.observed:
            self._write(instrument, 0.0)             # not synced: the tempo parameter rules
            self.error_ms = None
            return
        beat_zero, period = fit
        channel, rate = instrument.engine.channel, instrument.layout.sample_rate
        if self._aligned_to != controls.follower.starts:
            self._align(instrument, beat_zero, period, now)
            return
        length = channel("clock_beat_length")
        if length <= 0 or period <= 0:
            return
        if self._restart_at is not None:
            if channel("clock_beat_sample") < self._restart_at - 1:
                return                  # the clock's beats are still those from before the restart
            self._restart_at = None
        heard_after = instrument.driver.heard_after if instrument.driver is not None else 0
        ours = instrument.audio_clock.wall((channel("clock_beat_sample") + length + heard_after) / rate)
        theirs = beat_zero + round((ours - beat_zero) / period) * period
        error = ours - theirs
        self.error_ms = round(1000 * error, 2)
        wanted = min(max(period - error, period * (1 - MAX_NUDGE)), period * (1 + MAX_NUDGE))
        self._write(instrument, 60.0 / wanted)

    def _align(self, instrument: Instrument, beat_zero: float, period: float, now: float) -> None:
        """After the master's Start: restart the clock on the master's next beat that can
        still be met, on the same beat of the bar, so the bars line up too."""
        heard_after = instrument.driver.heard_after if instrument.driver is not None else 0
        rate = instrument.layout.sample_rate
        beat = max(0, math.ceil((now + ALIGN_AHEAD - beat_zero) / period))
        at = beat_zero + beat * period                                   # wall time, heard
        sample = (at - instrument.audio_clock.wall(0.0)) * rate - heard_after
        self._restarts += 1
        instrument.engine.set_channel("transport_at", sample)
        instrument.engine.set_channel("transport_at_beat", float(beat % instrument.layout.beats_per_bar))
        instrument.engine.set_channel("transport_restart", float(self._restarts))
        self._write(instrument, 60.0 / period)
        self._aligned_to = instrument.hardware.controls.follower.starts
        self._restart_at = sample

    def _write(self, instrument: Instrument, tempo: float) -> None:
        if abs(tempo - self._written) > 1e-9:
            instrument.engine.set_channel("sync_tempo", tempo)
            self._written = tempo
