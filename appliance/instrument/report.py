"""What the instrument has done: live figures for status, and the report written at exit.

Read from any thread: the figures come from Csound's channels (read under
the engine's lock) and counters; nothing here changes the instrument.
"""

from __future__ import annotations

import os
import time
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


class CpuMeter:
    """The process's CPU use since it was made, in percent of one core."""

    def __init__(self) -> None:
        self._start = (time.monotonic(), _cpu_seconds())

    def percent(self) -> float:
        wall = max(1e-9, time.monotonic() - self._start[0])
        return 100 * (_cpu_seconds() - self._start[1]) / wall


def stats(instrument: Instrument) -> Stats:
    channel = instrument.engine.channel
    return Stats(
        seconds=instrument.audio_time(),
        tempo=channel("clock_tempo"),
        beats=int(channel("clock_beats")),
        notes=int(channel("notes")),
        late_notes=int(channel("late_notes")) + instrument.sequencer.late_notes,
        late_steps=int(channel("late_steps")),
        xruns=instrument.engine.xruns,
        dsp_faults=int(channel("dsp_faults")),
        cpu_percent=instrument.cpu.percent(),
        running=channel("clock_running") >= 0.5,
        midi=instrument.hardware.midi.status,
        midi_devices=len(instrument.hardware.midi.inputs),
        safe_mode=instrument.safe_mode,
    )


def report(instrument: Instrument, figures: Stats, controls: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": PARAMETERS.external(instrument.params.snapshot()),
        "notes": figures.notes,
        "late_notes": figures.late_notes,
        "late_steps": figures.late_steps,
        "xruns": figures.xruns,
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
    }


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system
