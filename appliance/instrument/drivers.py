"""Two drivers of the same control loop: real time on a device, offline into a file.

The loop does the same work either way; what differs is who paces it and
what "now" means.  In real time the audio device paces Csound on its own
thread and the loop sleeps until it is needed; input threads serve MIDI
and GPIO.  Offline the driver performs k-cycle after k-cycle and runs the
loop every few cycles on audio time, so renders are exact and repeatable.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.engine.engine import FileOutput, Output, RealtimeOutput
from appliance.engine.rtprio import realtime_thread
from appliance.errors import EngineError

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument

OFFLINE_TICK = 0.005     # offline, the loop runs every this many seconds of audio (4 k-cycles at 48k/64)
STATUS_EVERY = 0.25      # the live status line on a terminal


class RealtimeDriver:
    threaded = True       # MIDI scanning and polling have threads of their own

    def __init__(self, output: RealtimeOutput) -> None:
        self.output = output

    @property
    def name(self) -> str:
        return self.output.backend

    @property
    def heard_after(self) -> int:
        """Samples from computing a sample to hearing it: the output buffer (-B) of a sound card."""
        return self.output.hardware_buffer if self.output.backend != "null" else 0

    def clock(self, instrument: Instrument) -> Callable[[], float]:
        return time.monotonic

    def run(self, instrument: Instrument, seconds: float | None, stop: threading.Event,
            on_status: Callable[[], None] | None = None, on_tick: Callable[[], None] | None = None) -> None:
        """Run the loop until stop is set, `seconds` of audio, or Csound ends."""
        with realtime_thread(instrument.config.engine.control_priority, "control loop") as warning:
            if warning:
                instrument.warn(warning)
            self._loop(instrument, seconds, stop, on_status, on_tick)

    def _loop(self, instrument: Instrument, seconds: float | None, stop: threading.Event,
              on_status: Callable[[], None] | None, on_tick: Callable[[], None] | None) -> None:
        loop = instrument.loop
        next_status = time.monotonic()
        instrument.start_clock_out()
        while not stop.is_set():
            loop.tick()
            if on_tick is not None:
                on_tick()
            audio = instrument.elapsed()
            if seconds is not None and audio >= seconds:
                break
            if not instrument.engine.running:
                instrument.error("Csound stopped performing")
                break
            now = time.monotonic()
            wake = loop.next_wake(now)
            if on_status is not None:
                if now >= next_status:
                    on_status()
                    next_status = now + STATUS_EVERY
                wake = min(wake, next_status)
            if seconds is not None:
                wake = min(wake, now + seconds - audio)
            instrument.inbox.wait(wake - time.monotonic())     # a command or an input wakes it at once


class OfflineDriver:
    threaded = False
    name = "file"
    heard_after = 0

    def __init__(self, output: FileOutput) -> None:
        self.output = output

    def clock(self, instrument: Instrument) -> Callable[[], float]:
        return instrument.audio_time

    def render(self, instrument: Instrument, seconds: float) -> None:
        """Perform `seconds` of audio (rounded up to whole k-cycles) as fast as possible."""
        layout = instrument.layout
        cycles = math.ceil(seconds * layout.sample_rate / layout.ksmps)
        every = max(1, round(OFFLINE_TICK * layout.sample_rate / layout.ksmps))
        for cycle in range(cycles):
            if cycle % every == 0 and cycle > 0:
                instrument.loop.tick()
            if not instrument.engine.perform_cycle():
                raise EngineError("Csound stopped before the end of the render")


Driver = RealtimeDriver | OfflineDriver


def driver_for(output: Output) -> Driver:
    if isinstance(output, RealtimeOutput):
        return RealtimeDriver(output)
    if isinstance(output, FileOutput):
        return OfflineDriver(output)
    raise EngineError(f"cannot play on {output!r}")
