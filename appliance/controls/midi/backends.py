"""MIDI backends: rtmidi's ALSA and JACK APIs, and a simulated one.

Every backend delivers complete MIDI messages into the Inbox, nothing more.

* ALSA: rtmidi reads the sequencer on a thread of its own and calls our
  callback there; the callback only appends to the inbox.
* JACK: rtmidi would call the callback from JACK's real-time process thread,
  which would then wait for Python's GIL (an xrun whenever Python is busy).
  So no callback is installed: rtmidi queues the messages (bounded) and a
  Python thread moves them to the inbox every millisecond (poll()).
* sim: devices a scenario plugs in and unplugs; what they send goes into the
  inbox by the same call as the ALSA callback.

Port listing uses one long-lived rtmidi client per API: creating a client on
every scan would churn the JACK graph (and ALSA's client list) each second.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Protocol

from appliance.controls.inbox import Inbox

log = logging.getLogger("appliance.midi")

CLIENT = "appliance"


class InputPort(Protocol):
    name: str

    def poll_into(self, inbox: Inbox) -> None: ...

    def close(self) -> None: ...


class OutputPort(Protocol):
    name: str

    def send(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class MidiBackend(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """Why MIDI cannot work now (checked cheaply, without noise), or None."""

    def input_names(self) -> list[str]: ...

    def output_names(self) -> list[str]: ...

    def open_input(self, name: str, inbox: Inbox) -> InputPort: ...

    def open_output(self, name: str) -> OutputPort: ...

    def reset(self) -> None:
        """Forget the port-listing client (after an error), to start afresh."""


# -- rtmidi ---------------------------------------------------------------------

# rtmidi objects whose JACK server went away.  Deleting a JACK client of a dead
# server crashes libjack (a segfault, measured: after jackd -TERM and a new
# jackd, delete() on the old client).  They are kept here, never deleted, and a
# process that has any ends with os._exit once its work is saved (cli/main.py).
ABANDONED: list[object] = []

UNSTICK_SECONDS = 0.5       # how often a JACK input is sent a lone End of SysEx (see _RtInput)
QUEUE_SIZE = 4096           # messages rtmidi holds for a polled input between two polls (1 ms)


class MessageClock:
    """How long ago each message of one rtmidi port arrived.

    The time a message is taken from the port (up to a poll later on JACK, a GIL wait
    later on ALSA) is not when it came: MIDI clock in would lag and jitter by that.
    rtmidi stamps every message with the time since the one before, taken where it
    arrived (JACK's process cycle; ALSA's sequencer queue), so the sum of those deltas
    is exact up to one unknown constant: when the port's first message came.  That
    constant is at most (taken - sum) for every message, and equal to it for a message
    taken at once; the smallest seen is kept, creeping upward by CREEP so a clock that
    runs apart from ours (up to CREEP) is followed.  `taken` is read on CLOCK_MONOTONIC_RAW,
    JACK's clock, so on JACK nothing drifts at all.  Measured on the JACK dummy driver
    (rtmidi out to in, 2000 clock messages): arrival lag p50/p99 1.28/2.29 ms by the
    taking time, 0.76/1.39 ms by these stamps (what remains is JACK delivering each
    message in the cycle after it was sent).
    """

    CREEP = 100e-6              # seconds per second

    def __init__(self) -> None:
        self._sum = 0.0
        self._anchor: float | None = None
        self._taken = 0.0

    def lag(self, delta: float, taken: float) -> float:
        """Seconds between the message's arrival and `taken` (when it was taken, RAW)."""
        self._sum += delta
        candidate = taken - self._sum
        if self._anchor is None:
            self._anchor = candidate
        else:
            self._anchor = min(self._anchor + (taken - self._taken) * self.CREEP, candidate)
        self._taken = taken
        return max(0.0, taken - (self._anchor + self._sum))


class _RtInput:
    """One input port.

    rtmidi's JACK input, after a SysEx that never ends (F0 01 02 and no F7),
    takes every later message of that port as part of the SysEx until a byte
    ends in F7: the knobs go dead.  So SysEx is not ignored by rtmidi but
    taken here: real SysEx (data bytes only) is dropped, and from a "SysEx"
    holding status bytes the messages it swallowed are taken back out.  And
    on JACK a small output of ours sends the port a lone F7 every half
    second, which ends such a SysEx (and does nothing otherwise), so a
    truncated SysEx delays the knobs by half a second at most and loses none
    of their messages.
    """

    def __init__(self, name: str, api: int, inbox: Inbox, callback: bool) -> None:
        import rtmidi

        self.name = name
        self.recovered = 0               # truncated SysEx whose swallowed messages were taken back
        self.queue_full = 0              # times rtmidi's queue was found full: messages were lost
        self._rt = rtmidi.MidiIn(rtapi=api, name=CLIENT, queue_size_limit=QUEUE_SIZE)
        self._clock = MessageClock()
        self._unstick = None
        self._next_unstick = 0.0
        try:
            ports = self._rt.get_ports()
            if name not in ports:
                raise OSError(f"MIDI input {name!r} is gone")
            # keep timing messages (MIDI clock) and SysEx (see above); drop active sensing
            self._rt.ignore_types(sysex=False, timing=False, active_sense=True)
            if api == rtmidi.API_UNIX_JACK:
                self._unstick = rtmidi.MidiOut(rtapi=api, name=f"{CLIENT}-unstick")
                destinations = set(self._unstick.get_ports())
            self._rt.open_port(ports.index(name), name=f"in {len(ports)}")
            if callback:
                self._rt.set_callback(lambda message, _: self._deliver(inbox, *message))
            if self._unstick is not None:
                # our new input port is the one destination that was not there before
                fresh = [i for i, port in enumerate(self._unstick.get_ports()) if port not in destinations]
                if len(fresh) != 1:
                    raise OSError(f"cannot find our own JACK port for {name!r}")
                self._unstick.open_port(fresh[0], name="sysex end")
        except BaseException:
            if self._unstick is not None:
                self._unstick.delete()
            self._rt.delete()
            raise

    def poll_into(self, inbox: Inbox) -> None:
        taken = 0
        while self._rt is not None and (message := self._rt.get_message()) is not None:
            self._deliver(inbox, *message)
            taken += 1
        if taken >= QUEUE_SIZE - 1:          # rtmidi's ring keeps one slot free: this is full
            # rtmidi dropped what came after (and says so on stderr, once a message, from C++
            # where Python cannot catch it; the unit's LogRateLimit keeps that out of the journal)
            self.queue_full += 1
            if self.queue_full == 1:
                log.warning("MIDI input %s: more messages than the instrument takes; dropping some", self.name)
        if self._unstick is not None:
            now = time.monotonic()
            if now >= self._next_unstick:
                self._next_unstick = now + UNSTICK_SECONDS
                self._unstick.send_message([0xF7])

    def _deliver(self, inbox: Inbox, message: list[int], delta: float) -> None:
        at = inbox.clock() - self._clock.lag(delta, time.clock_gettime(time.CLOCK_MONOTONIC_RAW))
        if message and message[0] == 0xF0:
            swallowed = salvage_sysex(bytes(message))
            if swallowed:
                self.recovered += 1
            for part in swallowed:
                inbox.midi(self.name, part, at)
            return
        if message and message[0] != 0xF7:
            inbox.midi(self.name, message, at)

    def abandon(self) -> None:
        """Its server is gone: let go of it without touching JACK."""
        if self._rt is not None:
            ABANDONED.append(self._rt)
            self._rt = None
        if self._unstick is not None:
            ABANDONED.append(self._unstick)
            self._unstick = None

    def close(self) -> None:
        if self._unstick is not None:
            self._unstick.close_port()
            self._unstick.delete()
            self._unstick = None
        if self._rt is None:
            return
        self._rt.cancel_callback()
        self._rt.close_port()
        self._rt.delete()
        self._rt = None


def salvage_sysex(message: bytes) -> list[bytes]:
    """The messages inside a "SysEx" that swallowed them (a SysEx holds only data bytes:
    the first status byte in it is where the SysEx really ended); [] for a real SysEx."""
    for index, byte in enumerate(message[1:], start=1):
        if byte >= 0x80 and byte != 0xF7:
            return split_messages(message[index:])
    return []


class _RtOutput:
    def __init__(self, name: str, api: int) -> None:
        import rtmidi

        self.name = name
        self._rt = rtmidi.MidiOut(rtapi=api, name=CLIENT)
        try:
            ports = self._rt.get_ports()
            if name not in ports:
                raise OSError(f"MIDI output {name!r} is gone")
            self._rt.open_port(ports.index(name), name="out")
        except BaseException:
            self._rt.delete()
            raise

    def send(self, data: bytes) -> None:
        if self._rt is not None:
            self._rt.send_message(list(data))

    def abandon(self) -> None:
        if self._rt is not None:
            ABANDONED.append(self._rt)
            self._rt = None

    def close(self) -> None:
        if self._rt is None:
            return
        self._rt.close_port()
        self._rt.delete()
        self._rt = None


class RtmidiBackend:
    """rtmidi's ALSA (callbacks) or JACK (polled) API."""

    def __init__(self, api_name: str) -> None:
        import rtmidi

        self.name = api_name
        self.api = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}[api_name]
        self.polled = api_name == "jack"
        self._lister_in = None
        self._lister_out = None
        self._opened: list[_RtInput | _RtOutput] = []      # every port opened on the current server
        self._server: tuple[str, int] | None = None        # which JACK server they belong to
        self.abandoned = 0                                  # times the JACK server went away

    def unavailable(self) -> str | None:
        if self.name == "alsa" and not os.path.exists("/dev/snd/seq"):
            return "no ALSA sequencer (/dev/snd/seq)"
        if self.name == "jack":
            server = jack_server_identity()
            if self._server is not None and server != self._server:
                self._abandon()                  # it stopped or restarted: its clients are dead
            if server is None:
                return "no JACK server running"
            self._server = server
        return None

    def _abandon(self) -> None:
        """Let go of every client of a JACK server that went away, without touching them
        (see ABANDONED); the next scan opens fresh ones on the server that is there now."""
        for port in self._opened:
            port.abandon()
        self._opened.clear()
        for lister in (self._lister_in, self._lister_out):
            if lister is not None:
                ABANDONED.append(lister)
        self._lister_in = self._lister_out = None
        self._server = None
        self.abandoned += 1

    def input_names(self) -> list[str]:
        import rtmidi

        if self._lister_in is None:
            self._lister_in = rtmidi.MidiIn(rtapi=self.api, name=f"{CLIENT}-scan")
        return [n for n in self._lister_in.get_ports() if not _ours(n)]

    def output_names(self) -> list[str]:
        import rtmidi

        if self._lister_out is None:
            self._lister_out = rtmidi.MidiOut(rtapi=self.api, name=f"{CLIENT}-scan")
        return [n for n in self._lister_out.get_ports() if not _ours(n)]

    def open_input(self, name: str, inbox: Inbox) -> InputPort:
        port = _RtInput(name, self.api, inbox, callback=not self.polled)
        self._opened.append(port)
        return port

    def open_output(self, name: str) -> OutputPort:
        port = _RtOutput(name, self.api)
        self._opened.append(port)
        return port

    def reset(self) -> None:
        if self.name == "jack" and self._server is not None and jack_server_identity() != self._server:
            self._abandon()
            return
        for lister in (self._lister_in, self._lister_out):
            if lister is not None:
                lister.delete()
        self._lister_in = self._lister_out = None
        self._opened = [p for p in self._opened if p._rt is not None]


_OUR_CLIENT = re.compile(rf"^{CLIENT}(-scan|-unstick)?(-\d+)?$")


def _ours(port: str) -> bool:
    """A port of this process (JACK renames a second client "appliance-01" and so on)."""
    return bool(_OUR_CLIENT.match(port.split(":", 1)[0].strip()))


def jack_server_identity(server: str | None = None) -> tuple[str, int] | None:
    """Which JACK server runs now: its shared-memory file, which a new server makes anew
    (None: no server).  A change means every client of the old one is dead."""
    name = server or os.environ.get("JACK_DEFAULT_SERVER", "default")
    for path in sorted(glob.glob(f"/dev/shm/jack_{name}_*")):
        try:
            info = os.stat(path)
        except OSError:
            continue
        return path, info.st_ino         # not its times: the server writes to it as it runs
    return None


def jack_server_running(server: str | None = None) -> bool:
    """True if a JACK server's socket exists (JACK2 keeps them in /dev/shm)."""
    name = server or os.environ.get("JACK_DEFAULT_SERVER", "default")
    return bool(glob.glob(f"/dev/shm/jack_{name}_{os.getuid()}_*")) or \
        bool(glob.glob(f"/dev/shm/jack_{name}_*"))


# -- simulated ---------------------------------------------------------------------

class _SimInput:
    def __init__(self, backend: SimBackend, name: str, inbox: Inbox) -> None:
        self.name = name
        self.backend = backend
        self.inbox = inbox

    def poll_into(self, inbox: Inbox) -> None:
        """Nothing to poll: sent messages reach the inbox at once."""

    def close(self) -> None:
        self.backend._listeners.pop(self.name, None)


class _SimOutput:
    def __init__(self, backend: SimBackend, name: str) -> None:
        self.name = name
        self.backend = backend

    def send(self, data: bytes) -> None:
        self.backend.received[self.name].append(bytes(data))
        self.backend.received_at[self.name].append(time.monotonic())

    def close(self) -> None:
        """Nothing to release."""


class SimBackend:
    """Simulated MIDI devices, plugged in and played by scenarios and tests."""

    name = "sim"

    def __init__(self, devices: Iterable[str] = ()) -> None:
        self._plugged: list[str] = list(devices)
        self._listeners: dict[str, _SimInput] = {}
        self._lock = threading.Lock()
        # what the instrument sent to each device (feedback, clock), newest kept
        self.received: dict[str, deque[bytes]] = {}
        self.received_at: dict[str, deque[float]] = {}      # when each was sent (monotonic)

    def plug(self, device: str) -> None:
        with self._lock:
            if device not in self._plugged:
                self._plugged.append(device)
                self.received[device] = deque(maxlen=10000)
                self.received_at[device] = deque(maxlen=10000)

    def unplug(self, device: str) -> None:
        with self._lock:
            if device in self._plugged:
                self._plugged.remove(device)

    def send(self, device: str, data: bytes | Iterable[int]) -> bool:
        """A device sends raw bytes; they arrive as a driver would deliver them
        (split_messages).  False if nothing listens."""
        listener = self._listeners.get(device)
        if listener is None or device not in self._plugged:
            return False
        for message in split_messages(bytes(data)):
            listener.inbox.midi(device, message)
        return True

    def unavailable(self) -> str | None:
        return None

    def input_names(self) -> list[str]:
        with self._lock:
            return list(self._plugged)

    def output_names(self) -> list[str]:
        return self.input_names()

    def open_input(self, name: str, inbox: Inbox) -> InputPort:
        if name not in self._plugged:
            raise OSError(f"MIDI input {name!r} is gone")
        port = _SimInput(self, name, inbox)
        self._listeners[name] = port
        return port

    def open_output(self, name: str) -> OutputPort:
        if name not in self._plugged:
            raise OSError(f"MIDI output {name!r} is gone")
        self.received.setdefault(name, deque(maxlen=10000))
        self.received_at.setdefault(name, deque(maxlen=10000))
        return _SimOutput(self, name)

    def reset(self) -> None:
        """Nothing to reset."""


_LENGTHS = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3,
            0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1}


def split_messages(data: bytes) -> list[bytes]:
    """A raw MIDI byte stream as the ALSA sequencer delivers it: complete
    messages, running status expanded, real-time bytes taken out wherever they
    fall, SysEx dropped (as rtmidi is told to), stray data bytes ignored.

    (mido's parser drops every message sent with running status, so this is
    written out; it is the MIDI 1.0 byte grammar and nothing more.)
    """
    messages: list[bytes] = []
    status: int | None = None        # the running status, or 0xF0 inside SysEx
    pending: list[int] = []
    for byte in data:
        if byte >= 0xF8:                               # real time: whole by itself, anywhere
            messages.append(bytes([byte]))
        elif byte == 0xF0:
            status, pending = 0xF0, []
        elif byte == 0xF7 or byte in (0xF4, 0xF5):
            status, pending = None, []                 # end of SysEx (dropped), or undefined
        elif byte >= 0x80:
            status, pending = byte, [byte]
            if _LENGTHS.get(byte if byte >= 0xF0 else byte & 0xF0) == 1:
                messages.append(bytes(pending))
                status, pending = None, []
        elif status is None or status == 0xF0:
            continue                                   # stray data, or SysEx content
        else:
            if not pending:
                pending = [status]                     # running status
            pending.append(byte)
            if len(pending) == _LENGTHS.get(status if status >= 0xF0 else status & 0xF0, 3):
                messages.append(bytes(pending))
                pending = []
                if status >= 0xF0:
                    status = None                      # system common has no running status
    return messages


def create(name: str) -> MidiBackend:
    if name == "sim":
        return SimBackend()
    return RtmidiBackend(name)
