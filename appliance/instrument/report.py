"""What the instrument has done: live figures for status, and the report written at exit.

Read from any thread: the figures come from Csound's channels (read under
the engine's lock) and counters; nothing here changes the instrument.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.params import PARAMETERS

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument


@dataclass(frozen=True)
class Stats:
    seconds: float
    tempo: float
    beats: int
    notes: int
    late_notes: int
    late_steps: int
    xruns: int
    dsp_faults: int
    cpu_percent: float
    running: bool
    midi: str
    midi_devices: int
    safe_mode: bool
    audio_lag_ms: float | None       # wall time minus audio time since playing began (real time)


class CpuMeter:
    """The process's CPU use over about the last `window` seconds, in percent of one core.

    Each reading is kept; the figure is taken against the newest reading at
    least `window` old (before there is one, against the start).  Status is
    read every few seconds (systemd's STATUS= line), so the window moves.
    """

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self._readings: deque[tuple[float, float]] = deque([(time.monotonic(), _cpu_seconds())], maxlen=1000)

    def percent(self) -> float:
        now, cpu = time.monotonic(), _cpu_seconds()
        while len(self._readings) > 1 and now - self._readings[1][0] >= self.window:
            self._readings.popleft()           # the second is old enough: the first is not needed
        since, cpu_then = self._readings[0]
        self._readings.append((now, cpu))
        return 100 * (cpu - cpu_then) / max(1e-9, now - since)


class AudioWatch:
    """Stalls of the audio clock, seen from the control loop.

    The lag of audio time behind wall time is about constant while all is
    well.  A stall (an xrun, a paused or starved engine) raises it: the null
    module then catches up, a sound card or JACK loses the time for good.
    Either way a rise of more than STALL_MS above the lowest lag of the last
    `window` seconds is one stall, counted once however long it lasts.  The
    audio advances a whole output buffer (-b) at a time, so the lag saws up
    and down by one buffer while all is well: that much more is allowed.  An
    engine is watched from its WARM_UP'th second of audio on, against its own
    lags only: a restarted one may settle at another (a new buffer size).
    """

    STALL_MS = 20.0
    WARM_UP = 0.5

    def __init__(self, window: float = 10.0) -> None:
        self.window = window
        self.stalls = 0
        self.worst_ms = 0.0
        self._lows: deque[tuple[float, float]] = deque()     # (when, lag), lags rising
        self._stalled = False
        self._allowed = self.STALL_MS

    def restart(self, buffer_ms: float) -> None:
        """A new engine, computing `buffer_ms` at a time: the lags of the one before are no
        floor for its own (the counts go on)."""
        self._lows.clear()
        self._stalled = False
        self._allowed = self.STALL_MS + buffer_ms

    def observe(self, now: float, lag_ms: float) -> None:
        while self._lows and self._lows[-1][1] >= lag_ms:
            self._lows.pop()
        self._lows.append((now, lag_ms))
        while self._lows[0][0] < now - self.window:
            self._lows.popleft()
        excess = lag_ms - self._lows[0][1]
        self.worst_ms = max(self.worst_ms, excess)
        if excess > self._allowed and not self._stalled:
            self.stalls += 1
        self._stalled = excess > self._allowed


@dataclass(frozen=True)
class Carried:
    """What engines before a restart did: the counts go on across restarts."""

    seconds: float = 0.0
    beats: int = 0
    notes: int = 0
    late_notes: int = 0
    late_steps: int = 0
    xruns: int = 0
    dsp_faults: int = 0


def carried(figures: Stats) -> Carried:
    return Carried(figures.seconds, figures.beats, figures.notes, figures.late_notes, figures.late_steps,
                   figures.xruns, figures.dsp_faults)


def stats(instrument: Instrument) -> Stats:
    channel = instrument.engine.channel
    before = instrument.carried
    return Stats(
        seconds=before.seconds + instrument.audio_time(),
        tempo=channel("clock_tempo"),
        beats=before.beats + int(channel("clock_beats")),
        notes=before.notes + int(channel("notes")),
        late_notes=before.late_notes + int(channel("late_notes")) + instrument.sequencer.late_notes,
        late_steps=before.late_steps + int(channel("late_steps")),
        xruns=before.xruns + instrument.engine.xruns,
        dsp_faults=before.dsp_faults + int(channel("dsp_faults")),
        cpu_percent=instrument.cpu.percent(),
        running=channel("clock_running") >= 0.5,
        midi=instrument.hardware.midi.status,
        midi_devices=len(instrument.hardware.midi.inputs),
        safe_mode=instrument.safe_mode,
        audio_lag_ms=audio_lag_ms(instrument),
    )


def audio_lag_ms(instrument: Instrument) -> float | None:
    """How far the audio clock has fallen behind the wall clock since it started.

    Honest where underrun messages are not: the null module never reports an
    underrun, and a lost period of any module shows here as time the audio
    did not compute.  About minus one output buffer when all is well (Csound
    computes a buffer ahead of the device).
    """
    if instrument.performing_since is None:
        return None
    audio = instrument.audio_time()      # then the wall clock: a stale one would lower AudioWatch's floor
    return round(1000 * (time.monotonic() - instrument.performing_since - audio), 1)


def report(instrument: Instrument, figures: Stats, controls: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": PARAMETERS.external(instrument.params.snapshot()),
        "notes": figures.notes,
        "late_notes": figures.late_notes,
        "late_steps": figures.late_steps,
        "xruns": figures.xruns,
        "audio_lag_ms": figures.audio_lag_ms,
        "audio_stalls": instrument.audio_watch.stalls,
        "audio_stall_worst_ms": round(instrument.audio_watch.worst_ms, 1),
        "dsp_faults": figures.dsp_faults,
        "safe_mode": instrument.safe_mode,
        "errors": list(instrument.errors),
        "warnings": list(instrument.warnings),
        "seconds": round(figures.seconds, 6),
        "audio": instrument.driver.name if instrument.driver is not None else None,
        "orchestra": str(instrument.orchestra) if instrument.orchestra else None,
        "realtime_priority": instrument.engine.realtime,
        "cpu_percent": round(figures.cpu_percent, 2),
        "first_beat_sample": instrument.layout.start_sample,
        "started_at": instrument.started_at,
        "transport": "playing" if figures.running else "stopped",
        "controls": controls,
        "loop_wakes": instrument.loop.wakes,
        "sync": instrument.config.sync,
        "sync_error_ms": instrument.sync_error_ms,
        "link_peers": controls.get("link_peers"),
        "link_realigns": instrument.link_sync.realigns,
        "music": instrument.music(),
    }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
