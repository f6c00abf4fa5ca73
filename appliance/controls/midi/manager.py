"""MIDI devices come and go: find them, open them, release them.

scan() compares the ports the backend lists with the ports open and opens
or closes the difference; it runs every `scan_seconds` (a thread of its own
in real time, the control loop offline).  A backend that is not there at all
(no ALSA sequencer, no JACK server) only changes the status line; the next
scan tries again.  One lock keeps a port from being closed while another
thread polls it or sends through it (rtmidi would use freed memory).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.controls.inbox import Inbox
from appliance.controls.midi.backends import InputPort, MidiBackend, OutputPort

log = logging.getLogger("appliance.controls.midi")

# what rtmidi raises when a subsystem or a port is not there: InvalidPortError (a ValueError)
# when a port vanishes between listing and opening; any of them means "try again later"
_FAILURES = (SystemError, RuntimeError, OSError, ValueError)


RETRY_SECONDS = 10.0     # a port that would not open is tried again after this long


@dataclass
class MidiManager:
    backend: MidiBackend
    inbox: Inbox
    ignore: tuple[str, ...] = ("Midi Through",)
    # outputs are opened only where something will be sent (feedback, clock)
    wants_output: Callable[[str], bool] = lambda name: False
    status: str = "MIDI: not scanned yet"
    inputs: dict[str, InputPort] = field(default_factory=dict)
    outputs: dict[str, OutputPort] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._failed: dict[str, float] = {}    # port -> when it may be tried again
        self.lost: list[str] = []      # devices that went away since the last look (for the control loop)
        self._abandoned = 0
        self._recovered_closed = 0     # sysex_recovered() of ports closed since

    def scan(self) -> None:
        with self._lock:
            why = self.backend.unavailable()
            abandoned = getattr(self.backend, "abandoned", 0)
            if abandoned != self._abandoned:         # the JACK server went away: its ports are dead
                self._abandoned = abandoned
                self._close_all()
                log.warning("MIDI: the JACK server went away; its ports are let go")
            if why is not None:
                self._close_all()
                self._say(f"MIDI unavailable: {why}; retrying")
                return
            try:
                inputs = [n for n in self.backend.input_names() if not self._ignored(n)]
                outputs = [n for n in self.backend.output_names()
                           if not self._ignored(n) and self.wants_output(n)]
            except _FAILURES as exc:
                self.backend.reset()
                self._close_all()
                self._say(f"MIDI unavailable: {exc}; retrying")
                return
            self.inputs = self._sync(self.inputs, inputs, self._open_input, "in")
            self.outputs = self._sync(self.outputs, outputs, self.backend.open_output, "out")
            names = ", ".join(sorted(self.inputs)) or "no devices"
            self._say(f"MIDI ({self.backend.name}): {names}")

    def poll(self) -> None:
        """Move messages from polled ports (JACK) into the inbox."""
        with self._lock:
            for port in self.inputs.values():
                try:
                    port.poll_into(self.inbox)
                except _FAILURES:
                    continue      # a port that vanished mid-poll; the next scan releases it

    def send(self, device: str | None, data: bytes) -> int:
        """Send to every output whose name contains `device` (None: all); how many got it."""
        sent = 0
        with self._lock:
            for name, port in self.outputs.items():
                if device is None or device.lower() in name.lower():
                    try:
                        port.send(data)
                        sent += 1
                    except _FAILURES as exc:
                        log.debug("MIDI output %s: %s", name, exc)
        return sent

    def queue_full(self) -> int:
        """Times an input's queue was found full (rtmidi dropped messages after it)."""
        return sum(getattr(p, "queue_full", 0) for p in self.inputs.values())

    def sysex_recovered(self) -> int:
        """Truncated SysEx that swallowed a device's messages, and were undone (backends.py)."""
        return self._recovered_closed + sum(getattr(p, "recovered", 0) for p in self.inputs.values())

    def close(self) -> None:
        with self._lock:
            self._close_all()
            self.backend.reset()          # the port-listing clients too: a reload must not leak them

    # -- internals -----------------------------------------------------------

    def _open_input(self, name: str) -> InputPort:
        return self.backend.open_input(name, self.inbox)

    def _ignored(self, name: str) -> bool:
        return any(word.lower() in name.lower() for word in self.ignore)

    def _sync(self, open_ports: dict, names: list[str], opener, direction: str) -> dict:  # type: ignore[no-untyped-def]
        kept = {n: p for n, p in open_ports.items() if n in names}
        for name, port in open_ports.items():
            if name not in names:
                self._recovered_closed += _recovered(port)
                _close(port)
                if direction == "in":
                    self.lost.append(name)
                log.info("MIDI %s gone: %s", direction, name)
        now = time.monotonic()
        for name in names:
            if name not in kept and self._failed.get(name, 0.0) <= now:
                try:
                    kept[name] = opener(name)
                    self._failed.pop(name, None)
                    log.info("MIDI %s found: %s", direction, name)
                except _FAILURES as exc:
                    self._failed[name] = now + RETRY_SECONDS
                    log.warning("MIDI %s %s: cannot open (%s); trying again in %g s",
                                direction, name, exc, RETRY_SECONDS)
        return kept

    def _close_all(self) -> None:
        inputs, outputs = self.inputs, self.outputs
        self.inputs, self.outputs = {}, {}
        self.lost += list(inputs)
        for port in [*inputs.values(), *outputs.values()]:
            self._recovered_closed += _recovered(port)
            _close(port)

    def _say(self, status: str) -> None:
        if status != self.status:
            level = logging.WARNING if "unavailable" in status else logging.INFO
            log.log(level, "%s", status)
        self.status = status


def _recovered(port: InputPort | OutputPort) -> int:
    return getattr(port, "recovered", 0)


def _close(port: InputPort | OutputPort) -> None:
    try:
        port.close()
    except _FAILURES as exc:
        log.debug("closing MIDI port %s: %s", port.name, exc)
