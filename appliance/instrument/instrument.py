"""The instrument: engine, generator, sequencer, parameters and controls, wired together.

It opens and closes them and falls back to the default orchestra when the
configured one does not compile.  What changes while it plays is the control
loop's work (loop.py); a reload's, reconfigure.py's; how it is paced is a
driver's (drivers.py); what it has done, report.py's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.config.scenario import Scenario
from appliance.config.schema import Config, note_channels
from appliance.controls.hardware import Hardware
from appliance.controls.inbox import Command, Inbox
from appliance.controls.midi.clock import AudioClockMap, ClockOutFeed
from appliance.controls.midi.notes import NoteRecorder
from appliance.engine.engine import Engine, FileOutput, Output, RealtimeOutput
from appliance.engine.orchestra import Orchestra
from appliance.engine.recorder import WavRecorder
from appliance.errors import ApplianceError, OrchestraError
from appliance.instrument import report as reporting
from appliance.instrument.drivers import Driver, OfflineDriver, RealtimeDriver, driver_for
from appliance.instrument.loop import ControlLoop
from appliance.instrument.reconfigure import reconfigure
from appliance.instrument.scenario_player import ScenarioPlayer
from appliance.instrument.sync import LinkSync, MidiSync
from appliance.music.generator import Generator, Note
from appliance.music.sequencer import Sequencer
from appliance.params import PARAMETERS, ParamStore
from appliance.service.atomic import write_bytes

log = logging.getLogger("appliance")

GUARD_SECONDS = 0.04     # steps closer than this to the clock are never recomposed
MAX_ERRORS = 50          # errors kept for the report and status


class Instrument:
    def __init__(self, config: Config, overrides: Mapping[str, float] | None = None,
                 scenario: Scenario | None = None, simulate: bool = True) -> None:
        self.config = config
        self.params = ParamStore(PARAMETERS)
        for name, value in {**config.params, **(overrides or {})}.items():
            self.params.set(name, value)
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.orchestra: Path | None = None
        self.orchestra_failed = False     # the configured orchestra did not compile
        self.safe_mode = False            # set by the service when it starts on factory defaults
        self.layout = config.clock_layout()
        self.engine = Engine(self.layout)
        self.generator = Generator(self.layout.steps_per_beat, self.layout.beats_per_bar,
                                   seed=int(self.params.get("seed")))
        self.sequencer = self.new_sequencer()
        self.inbox = Inbox()
        self.hardware = Hardware(config, self.inbox, simulate, PARAMETERS)
        self.transport = True
        self.player = ScenarioPlayer(self, scenario)
        self.loop = ControlLoop(self)
        self.driver: Driver | None = None     # set by open(): real time or offline
        self.carried = reporting.Carried()      # what engines before a restart did
        self.cpu = reporting.CpuMeter()
        self.audio_watch = reporting.AudioWatch()
        self.started_at: float | None = None   # wall time (epoch) the performance started
        self.performing_since: float | None = None   # ... on the monotonic clock (for the audio's lag)
        self.orchestra_text = ""
        self.clock_restarts_seen = 0
        self._panics = 0
        self._clock_out: ClockOutFeed | None = None
        self.audio_clock = AudioClockMap()        # where samples fall on the wall clock (real time)
        self.midi_sync = MidiSync()
        self.link_sync = LinkSync()
        self._final: tuple[reporting.Stats, dict[str, Any]] | None = None
        self.note_recorder: NoteRecorder | None = None   # offline: the notes for a MIDI file

    # -- starting and stopping -------------------------------------------

    @property
    def threaded(self) -> bool:
        """True in real time: inputs have threads of their own, the loop sleeps until needed."""
        return self.driver is not None and self.driver.threaded

    def open(self, output: Output) -> None:
        """Compile the orchestra (the default one if it fails), open the controls and
        prepare the first steps."""
        self.driver = driver = driver_for(output)
        self.open_engine(driver)
        self.inbox.clock = driver.clock(self)
        self.hardware.open(threaded=driver.threaded, tempo=self.params.get("tempo"))
        if self.defers_start:
            self.engine.set_channel("transport", 0.0)    # before the first sample: Link's bar starts it
        if self.hardware.gpio_failed:
            self.warnings.append(self.hardware.gpio_status)
        if self.config.sync == "link" and driver.threaded and self.hardware.link is None:
            self.warnings.append(self.hardware.link_status)
        self.follow_clock_out()
        self.loop.tick()

    def perform(self, record: Path | WavRecorder | None = None) -> None:
        """Real time: start Csound's performance thread (recording if asked)."""
        self.engine.perform(record)
        self.started_at = time.time()
        self.performing_since = time.monotonic()
        self.warnings += self.engine.warnings

    def run(self, seconds: float | None, stop: threading.Event,
            on_status: Callable[[], None] | None = None, on_tick: Callable[[], None] | None = None) -> None:
        """Real time: run the control loop until stop is set, `seconds` of audio, or Csound ends."""
        if not isinstance(self.driver, RealtimeDriver):
            raise ApplianceError("run() plays in real time: open the instrument on a RealtimeOutput")
        self.driver.run(self, seconds, stop, on_status, on_tick)

    def render(self, seconds: float) -> None:
        """Offline: perform `seconds` of audio as fast as possible."""
        if not isinstance(self.driver, OfflineDriver):
            raise ApplianceError("render() works offline: open the instrument on a FileOutput")
        self.driver.render(self, seconds)

    def tick(self) -> None:
        """One pass of the control loop."""
        self.loop.tick()

    def submit(self, command: Command) -> None:
        """Put a command in the loop's inbox (any thread)."""
        self.inbox.submit(command)

    def close(self) -> None:
        if self.engine.is_open:
            self._final = (reporting.stats(self), self.hardware.status())
            self.log_messages()
        self.hardware.close()
        self.engine.close()

    def open_engine(self, driver: Driver) -> None:
        wanted = self.config.orchestra_path()
        self.orchestra_failed = False
        try:
            orchestra = Orchestra.load(wanted)
            self.engine.open(orchestra, driver.output)
            self.orchestra = wanted
        except OrchestraError as exc:
            default = paths.default_orchestra()
            if wanted.resolve() == default.resolve():
                raise
            self.error(f"{exc}; playing the default orchestra instead")
            orchestra = Orchestra.load(default)
            self.engine.open(orchestra, driver.output)
            self.orchestra = default
            self.orchestra_failed = True
        self.orchestra_text = orchestra.text
        self.audio_clock = AudioClockMap()        # a new engine counts its samples from 0
        buffer = driver.output.buffer if isinstance(driver.output, RealtimeOutput) else 0
        self.audio_watch.restart(1000 * buffer / self.layout.sample_rate)
        self.midi_sync.lock.restart()
        self.link_sync.lock.restart()
        # every parameter, the generator's too: a held chord lets go when its voice is turned off
        for spec in PARAMETERS:
            self.engine.set_channel(spec.name, self.params.get(spec.name))
        self.engine.set_channel("transport_from_bar", 1.0)
        self.engine.set_channel("transport", 1.0 if self.transport and not self.defers_start else 0.0)
        self.engine.set_channel("panic", float(self._panics))

    def new_sequencer(self) -> Sequencer:
        sequencer = Sequencer(self.generator, self.engine, lookahead=self.config.engine.lookahead_ms / 1000,
                              guard=GUARD_SECONDS, ring_size=self.layout.ring_size, max_notes=self.layout.max_notes)
        sequencer.listeners.append(self._composed)
        return sequencer

    def _composed(self, step: int, notes: list[Note]) -> None:
        """A step sent to the clock: MIDI out of the notes (live) or the MIDI file (offline)."""
        if self.hardware.notes_out is not None:
            self.hardware.notes_out.compose(step, notes)
        if self.note_recorder is not None:
            self.note_recorder.compose(step, notes)

    # -- changing while it plays (the control loop only) ---------------------

    def reconfigure(self, new: Config) -> list[str]:
        """Apply a changed config while playing (see reconfigure.py); returns what changed."""
        return reconfigure(self, new)

    def panic(self) -> None:
        """Stop, and silence everything within about 10 ms (a fade, no click): voices and
        effect tails too.  The musical stop (set_transport) lets notes ring."""
        self.set_transport(False)
        self._panics += 1
        self.engine.set_channel("panic", float(self._panics))

    def set_transport(self, play: bool, from_bar: bool = True) -> None:
        self.transport = play
        self.engine.set_channel("transport_from_bar", 1.0 if from_bar else 0.0)
        if not (play and self.defers_start):
            self.engine.set_channel("transport", 1.0 if play else 0.0)
        sender = self.hardware.clock_out
        if sender is not None:
            (sender.stop if not play else sender.start if from_bar else sender.continue_)()
        notes = self.hardware.notes_out
        if notes is not None:
            (notes.start if play else notes.stop)()

    @property
    def defers_start(self) -> bool:
        """In a Link session a start waits for the session's next bar: the phase lock
        writes it (instrument/sync.py)."""
        return self.hardware.link is not None

    @property
    def sync_error_ms(self) -> float | None:
        """The last measured phase error against the clock followed (None: not following)."""
        sync = self.config.sync
        return self.link_sync.lock.error_ms if sync == "link" else \
            self.midi_sync.lock.error_ms if sync == "midi" else None

    # -- MIDI clock out -----------------------------------------------------------

    def follow_clock_out(self) -> None:
        sender = self.hardware.clock_out
        heard_after = self.driver.heard_after if self.driver is not None else 0
        self._clock_out = None if sender is None else \
            ClockOutFeed(sender, self.layout.sample_rate, heard_after, lambda: self.audio_clock)

    def start_clock_out(self) -> None:
        if self.hardware.clock_out is not None and self.transport:
            self.hardware.clock_out.start()
        if self.hardware.notes_out is not None and self.transport:
            self.hardware.notes_out.start()

    def watch_audio(self, now: float) -> None:
        """Real time: where the audio clock's samples fall on the wall clock (for MIDI clock
        out and in), and whether it stalls."""
        audio = self.audio_time()
        if audio <= 0:
            return                               # not performing yet: no sample to place
        # The wall clock is read after the samples, never before (not the pass's `now`, taken
        # before it composed): a stale reading makes wall - audio too small, the lower envelope
        # keeps the smallest, and every beat placed through it sounded that much late (+1..5 ms
        # on the arm64 root, where a pass takes milliseconds).  Read after, it can only be too
        # large, which the envelope discards.
        self.audio_clock.observe(time.monotonic(), audio)
        lag = reporting.audio_lag_ms(self)
        # An engine's first blocks come late on a slow board (170 ms on the arm64 root: the
        # performance thread starting, the init pass): that is a start, not a stall of the music.
        if lag is not None and audio >= reporting.AudioWatch.WARM_UP:
            self.audio_watch.observe(now, lag)

    def feed_clock_out(self, now: float) -> None:
        """Keep the MIDI clock and note senders on the beats Csound's clock publishes."""
        notes = self.hardware.notes_out
        if self._clock_out is None and notes is None:
            return
        channel = self.engine.channel
        beat, sample, length = int(channel("clock_beats")), channel("clock_beat_sample"), channel("clock_beat_length")
        if self._clock_out is not None:
            self._clock_out.observe(beat, sample, length)
        if notes is not None and beat > 0 and length > 0 and self.audio_clock.observed and self.driver is not None:
            rate = self.layout.sample_rate
            notes.follow(beat, self.audio_clock.wall((sample + self.driver.heard_after) / rate), length / rate,
                         channel("clock_beat_swing"))

    def record_notes(self) -> None:
        """Offline: hand the MIDI file's recorder the beat the clock last dispatched."""
        if self.note_recorder is not None:
            channel = self.engine.channel
            beat, length = int(channel("clock_beats")), channel("clock_beat_length")
            if beat > 0 and length > 0:
                self.note_recorder.follow(beat, channel("clock_beat_sample"), length, channel("clock_beat_swing"))

    # -- reading the clock -----------------------------------------------------------

    def audio_time(self) -> float:
        """Seconds of audio the current engine has computed (0 again after a restart)."""
        return self.engine.channel("time_samples") / self.layout.sample_rate

    def elapsed(self) -> float:
        """Seconds of audio played in all, across engine restarts."""
        return self.carried.seconds + self.audio_time()

    def clock_step(self) -> int:
        return int(self.engine.channel("clock_step"))

    def music(self) -> dict[str, Any] | None:
        """What the generator composed for the bar the clock is in: section, chord, scale..."""
        if not self.engine.is_open:
            return None
        bar = max(0, self.clock_step() - 1) // self.generator.bar_steps
        described = self.generator.describe(bar)
        return None if described is None else {"bar": bar + 1, **described}

    def next_step_due(self) -> float:
        """Seconds until the clock dispatches its next step (negative: stopped, or now)."""
        samples = self.engine.channel("clock_step_dispatch") - self.engine.channel("time_samples")
        return samples / self.layout.sample_rate

    def clock_restarted(self) -> bool:
        """True once each time the clock jumps (the transport started again on a new bar)."""
        restarts = int(self.engine.channel("clock_restarts"))
        if restarts == self.clock_restarts_seen:
            return False
        self.clock_restarts_seen = restarts
        return True

    def tempo_bound(self, params: Mapping[str, float] | None = None) -> float:
        """The faster of the set tempo and the clock's: how fast steps may come."""
        tempo = (params or self.params.snapshot())["tempo"]
        return max(tempo, self.engine.channel("clock_tempo") or tempo)

    # -- what it has done ----------------------------------------------------

    def stats(self) -> reporting.Stats:
        if not self.engine.is_open and self._final is not None:
            return self._final[0]
        return reporting.stats(self)

    def report(self) -> dict[str, Any]:
        controls = self._final[1] if self._final is not None else self.hardware.status()
        return reporting.report(self, self.stats(), controls)

    def error(self, message: str) -> None:
        log.error("%s", message)
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    def log_messages(self) -> None:
        for level, line in self.engine.drain_messages():
            log.log(level, "csound: %s", line)
            if level >= logging.ERROR:
                self.error(f"csound: {line}")


def render_to(config: Config, out: Path, seconds: float, overrides: Mapping[str, float],
              scenario: Scenario | None, midi: Path | None = None) -> Instrument:
    """Render offline into a WAV file (simulated controls), and with `midi` the notes heard
    into a Standard MIDI File; returns the closed instrument."""
    instrument = Instrument(config, overrides, scenario, simulate=True)
    if midi is not None:
        instrument.note_recorder = NoteRecorder(note_channels(config.midi), instrument.layout.steps_per_beat)
    try:
        instrument.open(FileOutput(out))
        instrument.render(seconds)
    finally:
        instrument.close()
    if midi is not None and instrument.note_recorder is not None:
        write_bytes(midi, instrument.note_recorder.smf(instrument.layout.sample_rate))
    return instrument
