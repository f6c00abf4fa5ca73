"""Reload while playing: apply a changed config without stopping the sound where possible.

Parameters, mappings and controls change live; an audio, clock or orchestra
change restarts Csound after a 60 ms fade, and the recording, the counts and
the run's length go on across the restart.  A new orchestra that does not
compile is refused before anything changes.  Runs in the control loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from appliance.config.schema import Config
from appliance.controls.hardware import Hardware
from appliance.controls.inbox import SetParam
from appliance.engine.engine import Engine, RealtimeOutput, check_orchestra
from appliance.engine.orchestra import Orchestra
from appliance.errors import ApplianceError
from appliance.instrument import report as reporting
from appliance.instrument.drivers import RealtimeDriver
from appliance.params import PARAMETERS

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument


def reconfigure(instrument: Instrument, new: Config) -> list[str]:
    """Apply a changed config while playing, without stopping the sound where
    possible; returns what changed.  Audio, clock or orchestra changes
    restart Csound (after a short fade), the rest applies live."""
    old, changed = instrument.config, []
    orchestra_changed = new.orchestra_path() != old.orchestra_path() or \
        Orchestra.load(new.orchestra_path()).text != instrument.orchestra_text
    if orchestra_changed:
        # refused before anything changes: the running orchestra plays on
        check_orchestra(Orchestra.load(new.orchestra_path()), new.clock_layout())
    for name, value in new.params.items():
        if old.params.get(name) != value:
            instrument.inbox.submit(SetParam(name, value, "reload"))
            changed.append(f"params.{name}")
    if old.midi != new.midi or old.gpio != new.gpio or old.clock != new.clock:
        _replace_hardware(instrument, new)
        changed.append("controls")
    if old.engine.lookahead_ms != new.engine.lookahead_ms:
        instrument.sequencer.lookahead = new.engine.lookahead_ms / 1000
        changed.append("engine.lookahead_ms")
    instrument.config = new
    if old.audio != new.audio or old.clock.layout_fields() != new.clock.layout_fields() or orchestra_changed or \
            old.engine.realtime_priority != new.engine.realtime_priority:
        _restart_engine(instrument)
        changed.append("engine restarted")
    return changed


def _replace_hardware(instrument: Instrument, config: Config) -> None:
    learned = instrument.hardware.learned()
    simulate = instrument.hardware.simulate
    instrument.hardware.close()
    instrument.hardware = Hardware(config, instrument.inbox, simulate, PARAMETERS)
    instrument.hardware.restore_learned(learned)
    instrument.hardware.open(threaded=instrument.threaded, tempo=instrument.params.get("tempo"))
    instrument.follow_clock_out()
    instrument.start_clock_out()


def _restart_engine(instrument: Instrument) -> None:
    """Stop Csound and start it again with the current config (real time only)."""
    if not isinstance(instrument.driver, RealtimeDriver):
        raise ApplianceError("the engine can only be restarted while playing in real time")
    instrument.engine.set_channel("volume", -90.0)     # fade out (20 ms) rather than click
    time.sleep(0.06)
    instrument.log_messages()
    instrument.carried = reporting.carried(reporting.stats(instrument))
    recording = instrument.engine.close(keep_recording=True)
    config = instrument.config
    instrument.driver = driver = RealtimeDriver(RealtimeOutput(
        backend=instrument.driver.output.backend, device=config.audio.device, buffer=config.audio.buffer,
        hardware_buffer=config.audio.hardware_buffer, realtime_priority=config.engine.realtime_priority))
    instrument.layout = config.clock_layout()
    instrument.engine = Engine(instrument.layout)
    instrument.generator.steps_per_beat = instrument.layout.steps_per_beat
    instrument.generator.beats_per_bar = instrument.layout.beats_per_bar
    instrument.sequencer = instrument.new_sequencer()
    instrument.clock_restarts_seen = 0
    instrument.open_engine(driver)
    instrument.follow_clock_out()
    instrument.loop.tick()
    if recording is not None and recording.sample_rate != instrument.layout.sample_rate:
        recording.stop()                         # one WAV file holds one sample rate
        instrument.warn(f"the recording {recording.path} ends here: the sample rate changed")
        recording = None
    instrument.perform(recording)
