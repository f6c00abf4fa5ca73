"""The instrument's controls: MIDI devices and GPIO encoders and buttons,
real or simulated, and the threads that watch them.

In real time two small threads serve the inputs: one scans for MIDI devices
every `scan_seconds` (hotplug), one moves messages from polled MIDI ports
(JACK) into the inbox every millisecond.  Offline, the control loop calls
the same scan() and poll() itself, so renders stay deterministic.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from appliance.config.schema import Config, note_channels
from appliance.controls.gpio import Gpio
from appliance.controls.inbox import Inbox
from appliance.controls.link import LinkSession
from appliance.controls.meaning import Controls
from appliance.controls.midi import backends
from appliance.controls.midi.clock import ClockSender
from appliance.controls.midi.manager import MidiManager
from appliance.controls.midi.mapping import Mapping, Router
from appliance.controls.midi.notes import NoteSender
from appliance.engine.rtprio import raise_this_thread, start_thread
from appliance.errors import ApplianceError
from appliance.params import Registry

log = logging.getLogger("appliance.controls.hardware")

POLL_SECONDS = 0.001


class Hardware:
    def __init__(self, config: Config, inbox: Inbox, simulate: bool, registry: Registry) -> None:
        self.config = config
        self.inbox = inbox
        self.simulate = simulate
        self.router = Router(registry, list(config.midi.map))
        self.controls = Controls(registry, self.router,
                                 encoders={e.name: e for e in config.gpio.encoder},
                                 buttons={b.name: b for b in config.gpio.button},
                                 follow_clock=config.follows_midi_clock, clock_in=config.midi.clock_in)
        self.backend = backends.create("sim" if simulate else config.midi.backend)
        if isinstance(self.backend, backends.SimBackend):
            for device in config.midi.sim_devices:
                self.backend.plug(device)
        self.midi = MidiManager(self.backend, inbox, ignore=config.midi.ignore, wants_output=self._wants_output)
        self.gpio: Gpio | None = None
        self.gpio_status = "GPIO: none configured"
        self.gpio_failed = False
        self.clock_out: ClockSender | None = None
        self.notes_out: NoteSender | None = None
        self.link: LinkSession | None = None
        self.link_status = "Ableton Link: off"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle --------------------------------------------------------------

    def open(self, threaded: bool, tempo: float) -> None:
        """Open the devices (and in real time their threads, MIDI clock out and Link, which
        starts a session at `tempo` if it finds none to join)."""
        self._open_gpio()
        self.midi.scan()
        if self.config.midi.clock_out and threaded:
            self.clock_out = ClockSender(lambda data: self.midi.send(self.config.midi.clock_out, data),
                                         beats_per_bar=self.config.clock.beats_per_bar,
                                         while_stopped=self.config.midi.clock_out_while_stopped)
        if self.config.midi.notes_out and threaded:
            self.notes_out = NoteSender(lambda data: self.midi.send(self.config.midi.notes_out, data),
                                        note_channels(self.config.midi), self.config.clock.steps_per_beat)
        if self.config.sync == "link" and threaded:
            self._open_link(tempo)
        if threaded:
            self._start("midi-scan", self._scan_loop)
            if getattr(self.backend, "polled", False):
                self._start("midi-poll", self._poll_loop)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self.clock_out is not None:
            self.clock_out.close()
        if self.notes_out is not None:
            self.notes_out.close()
            self.notes_out = None
        if self.link is not None:
            self.link.close()
            self.link = None
        self.midi.close()
        if self.gpio is not None:
            self.gpio.close()
            self.gpio = None

    def _open_gpio(self) -> None:
        gpio = self.config.gpio
        if not gpio.encoder and not gpio.button:
            return
        simulate = self.simulate or gpio.backend == "mock"
        try:
            self.gpio = Gpio(gpio.encoder, gpio.button, self.inbox, simulate=simulate)
            kind = "simulated pins" if simulate else "pins"
            self.gpio_status = f"GPIO: {len(gpio.encoder)} encoders, {len(gpio.button)} buttons on {kind}"
        except Exception as exc:  # gpiozero raises its own errors for boards without GPIO
            self.gpio_failed = True
            self.gpio_status = f"GPIO unavailable: {exc}; encoders and buttons are off"
            log.warning("%s", self.gpio_status)

    def _open_link(self, tempo: float) -> None:
        clock = self.config.clock
        try:
            self.link = LinkSession(tempo, clock.beats_per_bar,
                                    start_stop_sync=clock.link_start_stop)
            self.link_status = f"Ableton Link: on, quantum {clock.beats_per_bar}"
        except ApplianceError as exc:      # the box plays on its own clock, and says why
            self.link_status = f"Ableton Link unavailable: {exc}"
            log.warning("%s", self.link_status)

    def _start(self, name: str, target: Any) -> None:
        self._threads.append(start_thread(name, target))

    def _scan_loop(self) -> None:
        while not self._stop.wait(self.config.midi.scan_seconds):
            self.midi.scan()

    def _poll_loop(self) -> None:
        # this thread stands in for rtmidi's callback: as urgent as the control loop
        warning = raise_this_thread(self.config.engine.control_priority, "MIDI poll thread")
        if warning:
            log.warning("%s", warning)
        while not self._stop.wait(POLL_SECONDS):
            self.midi.poll()

    def _wants_output(self, port: str) -> bool:
        """Open an output only if something will be sent to it: feedback, clock or notes."""
        for wanted in (self.config.midi.clock_out, self.config.midi.notes_out):
            if wanted and wanted.lower() in port.lower():
                return True
        return any(m.feedback and (m.device is None or m.device.lower() in port.lower())
                   for m in self.router.mappings)

    # -- what the control loop asks ---------------------------------------------

    def lost_devices(self) -> list[str]:
        lost, self.midi.lost = self.midi.lost, []
        return lost

    def feedback(self, name: str, value: float) -> None:
        """Show a parameter's new value on the controllers mapped to it."""
        for mapping, messages in self.router.feedback(name, value):
            for message in messages:
                self.midi.send(mapping.device, message)

    def learned(self) -> list[Mapping]:
        return list(self.controls.learned)

    def restore_learned(self, mappings: list[Mapping]) -> None:
        """Mappings learned earlier (the last state, or before a reload) take effect again."""
        for mapping in mappings:
            self.router.add(mapping)
            self.controls.remember(mapping)

    def status(self) -> dict[str, Any]:
        return {
            "midi": self.midi.status,
            "devices": sorted(self.midi.inputs),
            "gpio": self.gpio_status,
            "link": self.link_status,
            "link_peers": self.link.peers if self.link is not None else None,
            "received": self.inbox.received,
            "dropped": self.inbox.dropped,
            "invalid": self.router.invalid,
            "sysex_recovered": self.midi.sysex_recovered(),
            "queue_full": self.midi.queue_full(),
            "bounces_ignored": self.controls.ignored_bounces,
            "learned": [m.describe() for m in self.learned()],
        }

    # -- simulation (scenarios) --------------------------------------------------

    def sim(self) -> backends.SimBackend:
        if not isinstance(self.backend, backends.SimBackend):
            raise ApplianceError("MIDI scenario actions need the simulated MIDI backend (--simulate)")
        return self.backend

    def require_gpio(self) -> Gpio:
        if self.gpio is None or not self.gpio.simulated:
            raise ApplianceError("encoder and button scenario actions need simulated GPIO (--simulate)")
        return self.gpio

