"""The instrument: engine, generator, sequencer and parameters, and the one
control loop that ties them together.

The control loop is the only code that changes parameters or talks to
Csound.  Each pass (every 5 ms in real time; every 4 k-cycles offline, so
that renders are deterministic) it plays due scenario events, applies the
changes inputs have queued, tops up the step buffer and drains Csound's
messages.  Nothing in it decides when a note sounds: the clock in Csound
does.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.config import Config
from appliance.control import Changes
from appliance.engine.engine import Engine, FileOutput, Output, RealtimeOutput
from appliance.engine.orchestra import ClockLayout, Orchestra
from appliance.errors import EngineError, OrchestraError, ParamError
from appliance.generator import Generator
from appliance.params import PARAMETERS, ParamStore
from appliance.scenario import Event, Scenario, Timeline
from appliance.sequencer import Sequencer

log = logging.getLogger("appliance")

TICK_SECONDS = 0.005     # control loop period in real time
GUARD_SECONDS = 0.04     # steps closer than this to the clock are never recomposed
MAX_ERRORS = 50          # errors kept for the report and status


@dataclass(frozen=True)
class Stats:
    """What the instrument has done so far (for status and the report)."""

    seconds: float
    tempo: float
    beats: int
    notes: int
    late_notes: int
    late_steps: int
    xruns: int
    dsp_faults: int
    cpu_percent: float


class Instrument:
    def __init__(self, config: Config, overrides: Mapping[str, float] | None = None,
                 scenario: Scenario | None = None) -> None:
        self.config = config
        self.params = ParamStore(PARAMETERS)
        for name, value in {**config.params, **(overrides or {})}.items():
            self.params.set(name, value)
        self.changes = Changes()
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.orchestra: Path | None = None
        self.output: Output | None = None
        self.layout = ClockLayout(
            sample_rate=config.audio.sample_rate, ksmps=config.audio.ksmps,
            steps_per_beat=config.clock.steps_per_beat, beats_per_bar=config.clock.beats_per_bar,
            tempo_min=PARAMETERS.spec("tempo").minimum, tempo_max=PARAMETERS.spec("tempo").maximum)
        self.engine = Engine(self.layout)
        self.generator = Generator(self.layout.steps_per_beat, self.layout.beats_per_bar,
                                   seed=int(self.params.get("seed")))
        self.sequencer = Sequencer(self.generator, self.engine,
                                   lookahead=config.engine.lookahead_ms / 1000, guard=GUARD_SECONDS,
                                   ring_size=self.layout.ring_size, max_notes=self.layout.max_notes)
        self._timeline = Timeline(scenario)
        self._final: Stats | None = None
        self._cpu_start = (time.monotonic(), _cpu_seconds())
        self.started_at: float | None = None   # wall time (epoch) the performance started

    # -- starting and stopping -------------------------------------------

    def open(self, output: Output) -> None:
        """Compile the orchestra (the default one if it fails) and prepare the first steps."""
        self.output = output
        wanted = self.config.orchestra_path()
        try:
            self.engine.open(Orchestra.load(wanted), output)
            self.orchestra = wanted
        except OrchestraError as exc:
            default = paths.default_orchestra()
            if wanted.resolve() == default.resolve():
                raise
            self.error(f"{exc}; playing the default orchestra instead")
            self.engine.open(Orchestra.load(default), output)
            self.orchestra = default
        for spec in PARAMETERS:
            if spec.group != "generator":
                self.engine.set_channel(spec.name, self.params.get(spec.name))
        self.tick()

    def perform(self, record: Path | None = None) -> None:
        """Real time: start Csound's performance thread (recording if asked)."""
        self.engine.perform(record)
        self.started_at = time.time()
        self.warnings += self.engine.warnings

    def close(self) -> None:
        if self.engine.is_open:
            self._final = self.stats()
            self._log_messages()
        self.engine.close()

    # -- the control loop --------------------------------------------------

    def tick(self) -> None:
        """One pass of the control loop."""
        for event in self._timeline.due(self.audio_time()):
            self.apply_event(event)
        self._apply_changes()
        params = self.params.snapshot()
        clock_step = int(self.engine.channel("clock_step"))
        self.sequencer.fill(clock_step, params, self._tempo_bound(params))
        self._log_messages()

    def apply_event(self, event: Event) -> None:
        if event.action == "set":
            for name, value in event.value.items():
                self.changes.put(name, value, "scenario")
        else:  # pragma: no cover - every loaded action has a handler
            raise ValueError(f"no handler for scenario action {event.action!r}")

    def _apply_changes(self) -> None:
        recompose = False
        for change in self.changes.take():
            try:
                value = self.params.set(change.name, change.value)
            except ParamError as exc:
                self.error(f"{change.source}: {exc}")
                continue
            spec = PARAMETERS.spec(change.name)
            if spec.group == "generator":
                recompose = True
            else:
                self.engine.set_channel(spec.name, value)
            log.info("%s = %s (%s)", spec.name, spec.format(value), change.source)
        if recompose:
            params = self.params.snapshot()
            self.sequencer.recompose(int(self.engine.channel("clock_step")), self._tempo_bound(params))

    def _tempo_bound(self, params: Mapping[str, float]) -> float:
        """The faster of the set tempo and the clock's: how fast steps may come."""
        return max(params["tempo"], self.engine.channel("clock_tempo") or params["tempo"])

    # -- running -------------------------------------------------------------

    def run(self, seconds: float | None, stop: threading.Event,
            on_status: Callable[[Stats], None] | None = None, status_every: float = 0.25) -> None:
        """Real time: run the control loop until stop is set, `seconds` of audio, or Csound ends."""
        next_status = time.monotonic()
        while not stop.is_set():
            self.tick()
            if seconds is not None and self.audio_time() >= seconds:
                break
            if not self.engine.running:
                self.error("Csound stopped performing")
                break
            if on_status and time.monotonic() >= next_status:
                on_status(self.stats())
                next_status += status_every
            stop.wait(TICK_SECONDS)

    def render(self, seconds: float) -> None:
        """Offline: perform `seconds` of audio (rounded up to whole k-cycles) as fast as possible."""
        cycles = math.ceil(seconds * self.layout.sample_rate / self.layout.ksmps)
        every = max(1, round(TICK_SECONDS * self.layout.sample_rate / self.layout.ksmps))
        for cycle in range(cycles):
            if cycle % every == 0 and cycle > 0:
                self.tick()
            if not self.engine.perform_cycle():
                raise EngineError("Csound stopped before the end of the render")

    # -- what it has done ----------------------------------------------------

    def audio_time(self) -> float:
        return self.engine.channel("time_samples") / self.layout.sample_rate

    def stats(self) -> Stats:
        if not self.engine.is_open and self._final is not None:
            return self._final
        now, cpu = time.monotonic(), _cpu_seconds()
        wall = max(1e-9, now - self._cpu_start[0])
        channel = self.engine.channel
        return Stats(
            seconds=self.audio_time(),
            tempo=channel("clock_tempo"),
            beats=int(channel("clock_beats")),
            notes=int(channel("notes")),
            late_notes=int(channel("late_notes")) + self.sequencer.late_notes,
            late_steps=int(channel("late_steps")),
            xruns=self.engine.xruns,
            dsp_faults=int(channel("dsp_faults")),
            cpu_percent=100 * (cpu - self._cpu_start[1]) / wall,
        )

    def report(self) -> dict[str, Any]:
        stats = self.stats()
        backend = self.output.backend if isinstance(self.output, RealtimeOutput) else "file"
        return {
            "params": PARAMETERS.external(self.params.snapshot()),
            "notes": stats.notes,
            "late_notes": stats.late_notes,
            "late_steps": stats.late_steps,
            "xruns": stats.xruns,
            "dsp_faults": stats.dsp_faults,
            "safe_mode": False,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "seconds": round(stats.seconds, 6),
            "audio": backend,
            "orchestra": str(self.orchestra) if self.orchestra else None,
            "realtime_priority": self.engine.realtime,
            "cpu_percent": round(stats.cpu_percent, 2),
            "first_beat_sample": self.layout.start_sample,
            "started_at": self.started_at,
        }

    def error(self, message: str) -> None:
        log.error("%s", message)
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def _log_messages(self) -> None:
        for level, line in self.engine.drain_messages():
            log.log(level, "csound: %s", line)
            if level >= logging.ERROR:
                self.error(f"csound: {line}")


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def render_to(config: Config, out: Path, seconds: float, overrides: Mapping[str, float],
              scenario: Scenario | None) -> Instrument:
    """Render offline into a WAV file; returns the closed instrument (for its report)."""
    instrument = Instrument(config, overrides, scenario)
    try:
        instrument.open(FileOutput(out))
        instrument.render(seconds)
    finally:
        instrument.close()
    return instrument
