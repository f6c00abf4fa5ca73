"""The instrument: engine, generator, sequencer and parameters, and the one
control loop that ties them together.

The control loop is the only code that changes parameters or talks to
Csound.  Each pass (every 5 ms in real time, or as soon as an input
arrives; every 4 k-cycles offline, so that renders are deterministic) it
plays due scenario events, turns the inputs' events into changes and
actions, applies them, tops up the step buffer and drains Csound's
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
from appliance.changes import Change, Changes
from appliance.config import Config
from appliance.controls import Action, SetParam
from appliance.engine.engine import Engine, FileOutput, Output, RealtimeOutput
from appliance.engine.orchestra import ClockLayout, Orchestra
from appliance.engine.rtprio import realtime_thread
from appliance.errors import ApplianceError, EngineError, OrchestraError, ParamError
from appliance.generator import Generator
from appliance.hardware import Hardware
from appliance.inputs import Inbox
from appliance.midi.clock import AudioClockMap
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
    running: bool
    midi: str
    midi_devices: int
    safe_mode: bool


class Instrument:
    def __init__(self, config: Config, overrides: Mapping[str, float] | None = None,
                 scenario: Scenario | None = None, simulate: bool = True) -> None:
        self.config = config
        self.params = ParamStore(PARAMETERS)
        for name, value in {**config.params, **(overrides or {})}.items():
            self.params.set(name, value)
        self.changes = Changes()
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.orchestra: Path | None = None
        self.orchestra_failed = False     # the configured orchestra did not compile
        self.safe_mode = False            # set by the service when it starts on factory defaults
        self.output: Output | None = None
        self.layout = layout_of(config)
        self.engine = Engine(self.layout)
        self.generator = Generator(self.layout.steps_per_beat, self.layout.beats_per_bar,
                                   seed=int(self.params.get("seed")))
        self.sequencer = _sequencer(self.generator, self.engine, config, self.layout)
        self._orchestra_text = ""
        self.inbox = Inbox()
        self.hardware = Hardware(config, self.inbox, simulate, PARAMETERS)
        self.transport = True
        self._timeline = Timeline(scenario)
        self._restarts = 0
        self._next_scan = 0.0
        self._audio_clock = AudioClockMap()         # where samples fall on the wall clock (MIDI clock out)
        # measurement hook (benchmarks): called with each change as it reaches Csound
        self.on_applied: Callable[[Change, float], None] | None = None
        # what preset, preset_next and preset_prev do (the service knows the presets)
        self.preset_action: Callable[[str, int, str], None] | None = None
        self._final: Stats | None = None
        self._final_controls: dict[str, Any] | None = None
        self._cpu_start = (time.monotonic(), _cpu_seconds())
        self.started_at: float | None = None   # wall time (epoch) the performance started

    # -- starting and stopping -------------------------------------------

    def open(self, output: Output) -> None:
        """Compile the orchestra (the default one if it fails), open the controls and
        prepare the first steps."""
        self.output = output
        self._open_engine(output)
        realtime = isinstance(output, RealtimeOutput)
        self.inbox.clock = time.monotonic if realtime else self.audio_time
        self.hardware.open(threaded=realtime)
        self.tick()

    def _open_engine(self, output: Output) -> None:
        wanted = self.config.orchestra_path()
        self.orchestra_failed = False
        try:
            orchestra = Orchestra.load(wanted)
            self.engine.open(orchestra, output)
            self.orchestra = wanted
        except OrchestraError as exc:
            default = paths.default_orchestra()
            if wanted.resolve() == default.resolve():
                raise
            self.error(f"{exc}; playing the default orchestra instead")
            orchestra = Orchestra.load(default)
            self.engine.open(orchestra, output)
            self.orchestra = default
            self.orchestra_failed = True
        self._orchestra_text = orchestra.text
        self._audio_clock = AudioClockMap()      # a new engine starts its samples at 0
        for spec in PARAMETERS:
            if spec.group != "generator":
                self.engine.set_channel(spec.name, self.params.get(spec.name))
        self.engine.set_channel("transport_from_bar", 1.0)
        self.engine.set_channel("transport", 1.0 if self.transport else 0.0)

    def reconfigure(self, new: Config) -> list[str]:
        """Apply a changed config while playing, without stopping the sound where
        possible; returns what changed.  Audio, clock or orchestra changes
        restart Csound (after a short fade), the rest applies live."""
        old, changed = self.config, []
        for name, value in new.params.items():
            if old.params.get(name) != value:
                self.changes.put(name, value, "reload")
                changed.append(f"params.{name}")
        if old.midi != new.midi or old.gpio != new.gpio:
            self._replace_hardware(new)
            changed.append("controls")
        if old.engine.lookahead_ms != new.engine.lookahead_ms:
            self.sequencer.lookahead = new.engine.lookahead_ms / 1000
            changed.append("engine.lookahead_ms")
        orchestra_changed = new.orchestra_path() != old.orchestra_path() or \
            Orchestra.load(new.orchestra_path()).text != self._orchestra_text
        self.config = new
        if old.audio != new.audio or old.clock != new.clock or orchestra_changed or \
                old.engine.realtime_priority != new.engine.realtime_priority:
            self._restart_engine()
            changed.append("engine restarted")
        return changed

    def _replace_hardware(self, config: Config) -> None:
        learned = self.hardware.learned()
        simulate = self.hardware.simulate
        self.hardware.close()
        self.hardware = Hardware(config, self.inbox, simulate, PARAMETERS)
        for mapping in learned:
            self.hardware.router.add(mapping)
            self.hardware.controls.learned.append(mapping)
        self.hardware.open(threaded=isinstance(self.output, RealtimeOutput))

    def _restart_engine(self) -> None:
        """Stop Csound and start it again with the current config (real time only)."""
        if not isinstance(self.output, RealtimeOutput):
            raise ApplianceError("the engine can only be restarted while playing in real time")
        self.engine.set_channel("volume", -90.0)     # fade out (20 ms) rather than click
        time.sleep(0.06)
        self._log_messages()
        self.engine.close()
        config = self.config
        self.output = RealtimeOutput(backend=self.output.backend, device=config.audio.device,
                                     buffer=config.audio.buffer, hardware_buffer=config.audio.hardware_buffer,
                                     realtime_priority=config.engine.realtime_priority)
        self.layout = layout_of(config)
        self.engine = Engine(self.layout)
        self.generator.steps_per_beat = self.layout.steps_per_beat
        self.generator.beats_per_bar = self.layout.beats_per_bar
        self.sequencer = _sequencer(self.generator, self.engine, config, self.layout)
        self._restarts = 0
        self._open_engine(self.output)
        self.tick()
        self.perform()

    def perform(self, record: Path | None = None) -> None:
        """Real time: start Csound's performance thread (recording if asked)."""
        self.engine.perform(record)
        self.started_at = time.time()
        self.warnings += self.engine.warnings

    def close(self) -> None:
        if self.engine.is_open:
            self._final = self.stats()
            self._final_controls = self.hardware.status()
            self._log_messages()
        self.hardware.close()
        self.engine.close()

    # -- the control loop --------------------------------------------------

    def tick(self) -> None:
        """One pass of the control loop."""
        now = self.inbox.clock()
        for event in self._timeline.due(self.audio_time()):
            self.apply_event(event)
        self._inputs(now)
        self._apply_changes()
        params = self.params.snapshot()
        clock_step = int(self.engine.channel("clock_step"))
        restarts = int(self.engine.channel("clock_restarts"))
        if restarts != self._restarts:
            self._restarts = restarts
            self.sequencer.skip_to(clock_step, params)
        self.sequencer.fill(clock_step, params, self._tempo_bound(params))
        self._clock_out(now)
        self._log_messages()

    def _inputs(self, now: float) -> None:
        hardware = self.hardware
        if not isinstance(self.output, RealtimeOutput):
            # offline, the loop does what the input threads do in real time
            if now >= self._next_scan:
                hardware.midi.scan()
                self._next_scan = now + self.config.midi.scan_seconds
            hardware.midi.poll()
        for device in hardware.lost_devices():
            hardware.controls.release_device(device)
        effects = hardware.controls.handle(self.inbox.take(), self.params.get)
        effects += hardware.controls.poll(now, self.params.get)
        for effect in effects:
            if isinstance(effect, SetParam):
                self.changes.put(effect.name, effect.value, effect.source, effect.time)
            else:
                self.act(effect)

    def act(self, action: Action) -> None:
        """Carry out an action from a control."""
        log.info("%s (%s)", action.name, action.source)
        if action.name in ("start", "continue", "stop", "start_stop"):
            play = action.name != "stop" and not (action.name == "start_stop" and self.transport)
            self.set_transport(play, from_bar=action.name in ("start", "start_stop"))
        elif action.name == "click":
            self.changes.put("click", 1.0 - self.params.get("click"), action.source)
        elif self.preset_action is not None:
            self.preset_action(action.name, action.argument, action.source)
        else:
            log.warning("%s (%s): presets live in the service's state directory, not here",
                        action.name, action.source)

    def set_transport(self, play: bool, from_bar: bool = True) -> None:
        self.transport = play
        self.engine.set_channel("transport_from_bar", 1.0 if from_bar else 0.0)
        self.engine.set_channel("transport", 1.0 if play else 0.0)
        if self.hardware.clock_out is not None:
            (self.hardware.clock_out.start if play else self.hardware.clock_out.stop)()

    def apply_event(self, event: Event) -> None:
        """Play one scenario event through the simulated hardware.

        Offline, what the event makes the hardware report carries the
        event's own time, not the control pass's: renders stay exact."""
        clock = self.inbox.clock
        if not isinstance(self.output, RealtimeOutput):
            self.inbox.clock = lambda: event.at
        try:
            self._apply_event(event)
        finally:
            self.inbox.clock = clock

    def _apply_event(self, event: Event) -> None:
        value, hardware = event.value, self.hardware
        try:
            if event.action == "set":
                for name, number in value.items():
                    self.changes.put(name, number, "scenario")
            elif event.action == "encoder":
                hardware.require_gpio()
                detents, spacing = abs(value["turn"]), value["seconds"] / abs(value["turn"])
                for i in range(detents):
                    detent = {**value, "turn": 1 if value["turn"] > 0 else -1}
                    self._timeline.insert(Event(event.at + i * spacing, "detent", detent, event.line))
            elif event.action == "detent":
                hardware.require_gpio().turn(value["name"], value["turn"], bounce=value["bounce"])
            elif event.action == "button":
                hardware.require_gpio().press(value["name"])
                self._timeline.insert(Event(event.at + value["press"], "release", value["name"], event.line))
            elif event.action == "release":
                hardware.require_gpio().release(value)
            elif event.action == "midi":
                sim = hardware.sim()
                device = value["device"] or next(iter(sim.input_names()), None)
                if device is None or not sim.send(device, value["bytes"]):
                    raise ApplianceError(f"no simulated MIDI device {device!r} is plugged in and open")
            elif event.action in ("plug", "unplug"):
                getattr(hardware.sim(), event.action)(value)
            elif event.action == "learn":
                hardware.router.learning = value
        except (ApplianceError, KeyError) as exc:
            where = f"scenario line {event.line}" if event.line else "scenario"
            self.error(f"{where}: {event.action}: {exc}")

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
            if self.on_applied is not None:
                self.on_applied(change, time.monotonic())
            self.hardware.feedback(spec.name, value)
            log.debug("%s = %s (%s)", spec.name, spec.format(value), change.source)
        if recompose:
            params = self.params.snapshot()
            self.sequencer.recompose(int(self.engine.channel("clock_step")), self._tempo_bound(params))

    def _clock_out(self, now: float) -> None:
        """Keep the MIDI clock sender on the beats Csound's clock publishes."""
        sender = self.hardware.clock_out
        if sender is None:
            return
        rate = self.layout.sample_rate
        audio = self.audio_time()
        if audio <= 0:
            return                               # not performing yet: no sample to place
        self._audio_clock.observe(now, audio)
        beat = int(self.engine.channel("clock_beats"))
        beat_sample = self.engine.channel("clock_beat_sample")
        beat_length = self.engine.channel("clock_beat_length")
        if beat > 0 and beat_length > 0:
            # a sample is heard about one output buffer (-B) after Csound computes it
            output = self.output
            buffered = output.hardware_buffer if isinstance(output, RealtimeOutput) and output.backend != "null" else 0
            heard = beat_sample + buffered
            sender.follow(beat, self._audio_clock.wall(heard / rate), beat_length / rate)

    def _tempo_bound(self, params: Mapping[str, float]) -> float:
        """The faster of the set tempo and the clock's: how fast steps may come."""
        return max(params["tempo"], self.engine.channel("clock_tempo") or params["tempo"])

    # -- running -------------------------------------------------------------

    def run(self, seconds: float | None, stop: threading.Event,
            on_status: Callable[[Stats], None] | None = None, status_every: float = 0.25,
            on_tick: Callable[[], None] | None = None) -> None:
        """Real time: run the control loop until stop is set, `seconds` of audio, or Csound ends."""
        with realtime_thread(self.config.engine.control_priority, "control loop") as warning:
            if warning:
                self.warnings.append(warning)
                log.warning("%s", warning)
            self._loop(seconds, stop, on_status, status_every, on_tick)

    def _loop(self, seconds: float | None, stop: threading.Event,
              on_status: Callable[[Stats], None] | None, status_every: float,
              on_tick: Callable[[], None] | None) -> None:
        next_status = time.monotonic()
        if self.hardware.clock_out is not None and self.transport:
            self.hardware.clock_out.start()
        while not stop.is_set():
            self.tick()
            if on_tick is not None:
                on_tick()
            if seconds is not None and self.audio_time() >= seconds:
                break
            if not self.engine.running:
                self.error("Csound stopped performing")
                break
            if on_status and time.monotonic() >= next_status:
                on_status(self.stats())
                next_status += status_every
            self.inbox.wait(TICK_SECONDS)     # an input wakes the loop at once

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
            running=channel("clock_running") >= 0.5,
            midi=self.hardware.midi.status,
            midi_devices=len(self.hardware.midi.inputs),
            safe_mode=self.safe_mode,
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
            "safe_mode": self.safe_mode,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "seconds": round(stats.seconds, 6),
            "audio": backend,
            "orchestra": str(self.orchestra) if self.orchestra else None,
            "realtime_priority": self.engine.realtime,
            "cpu_percent": round(stats.cpu_percent, 2),
            "first_beat_sample": self.layout.start_sample,
            "started_at": self.started_at,
            "transport": "playing" if stats.running else "stopped",
            "controls": self._final_controls if self._final_controls is not None else self.hardware.status(),
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


def layout_of(config: Config) -> ClockLayout:
    tempo = PARAMETERS.spec("tempo")
    return ClockLayout(sample_rate=config.audio.sample_rate, ksmps=config.audio.ksmps,
                       steps_per_beat=config.clock.steps_per_beat, beats_per_bar=config.clock.beats_per_bar,
                       tempo_min=tempo.minimum, tempo_max=tempo.maximum)


def _sequencer(generator: Generator, engine: Engine, config: Config, layout: ClockLayout) -> Sequencer:
    return Sequencer(generator, engine, lookahead=config.engine.lookahead_ms / 1000, guard=GUARD_SECONDS,
                     ring_size=layout.ring_size, max_notes=layout.max_notes)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def render_to(config: Config, out: Path, seconds: float, overrides: Mapping[str, float],
              scenario: Scenario | None) -> Instrument:
    """Render offline into a WAV file (simulated controls); returns the closed instrument."""
    instrument = Instrument(config, overrides, scenario, simulate=True)
    try:
        instrument.open(FileOutput(out))
        instrument.render(seconds)
    finally:
        instrument.close()
    return instrument
