"""The one way into the control loop.

Everything that wants the instrument to change puts a command here: MIDI and
GPIO callbacks (raw input events), the control socket, scenarios, reload,
and every surface added later.  Putting is O(1), never blocks for long and
wakes the loop; the loop is the only code that takes commands and acts on
them, so it is the only writer of parameters, mappings, transport and the
engine.

Two bounded queues behind one wake-up:
* input events from devices: under a flood the loop cannot keep up with, the
  oldest are dropped and counted (a knob's latest position is what matters);
* commands from people and programs (the socket, scenarios, reload): never
  dropped silently; when full, put() refuses with Busy and the caller says so.

A command that needs an answer carries a Reply; the loop fills it in.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import ApplianceError

EVENT_CAPACITY = 4096
COMMAND_CAPACITY = 1024


class Busy(ApplianceError, RuntimeError):
    """The control loop has too many commands waiting: try again."""


class Reply:
    """The answer to one command, handed from the loop to a waiting thread."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def set(self, value: Any) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    def wait(self, timeout: float) -> Any:
        """The loop's answer; the loop's error is raised here, in the caller's thread."""
        if not self._done.wait(timeout):
            raise ApplianceError(f"the instrument did not answer within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self._value


# -- raw input events (device callbacks) ----------------------------------------------

@dataclass(frozen=True)
class MidiEvent:
    port: str          # the port (device) it came from
    data: bytes        # one complete MIDI message
    time: float        # when it entered the process (control clock, seconds)


@dataclass(frozen=True)
class EncoderStep:
    name: str
    direction: int     # +1 clockwise, -1 counter-clockwise
    time: float


@dataclass(frozen=True)
class ButtonEdge:
    name: str
    pressed: bool
    time: float


InputEvent = MidiEvent | EncoderStep | ButtonEdge


# -- commands ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetParam:
    """Set a parameter (validated by the registry when the loop applies it)."""

    name: str
    value: float
    source: str
    time: float | None = None        # when the input that caused it entered the process
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Action:
    """Something a control does: tap_tempo, start, stop, continue, start_stop, click, preset, ..."""

    name: str
    argument: int
    source: str
    time: float
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Learn:
    """Map the next MIDI control moved to a parameter or an action (None: stop learning)."""

    name: str | None
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Unlearn:
    """Forget the learned mappings to a parameter or an action."""

    name: str
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True)
class LoadPreset:
    """Load a stored set of parameters: a preset at once, a scene on the next bar line."""

    name: str
    source: str
    reply: Reply | None = field(default=None, compare=False)
    kind: str = "preset"


@dataclass(frozen=True)
class Record:
    """Start recording what is heard (to a name in the state directory), or stop."""

    start: bool
    name: str | None
    source: str
    reply: Reply | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Reload:
    """Read the config file again and apply what changed."""

    reply: Reply | None = field(default=None, compare=False)


Command = SetParam | Action | Learn | Unlearn | LoadPreset | Record | Reload


class Inbox:
    """Bounded, thread-safe queues of input events and commands that wake the control loop."""

    def __init__(self, capacity: int = EVENT_CAPACITY, clock: Callable[[], float] = time.monotonic) -> None:
        self._events: deque[InputEvent] = deque(maxlen=capacity)
        self._commands: deque[Command] = deque()
        self._wake = threading.Event()
        self.clock = clock               # stamps input events: wall time live, audio time offline
        self.received = 0
        self.dropped = 0

    # -- putting (any thread) ----------------------------------------------------

    def put(self, event: InputEvent) -> None:
        """An input event from a device; under a flood the oldest is dropped."""
        # deque.append is atomic; the counters are statistics, a lost increment is harmless
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)
        self.received += 1
        self._wake.set()

    def midi(self, port: str, data: bytes | list[int], at: float | None = None) -> None:
        """`at`: when it arrived, if the device's backend knows better than now."""
        self.put(MidiEvent(port, bytes(data), self.clock() if at is None else at))

    def encoder(self, name: str, direction: int) -> None:
        self.put(EncoderStep(name, direction, self.clock()))

    def button(self, name: str, pressed: bool) -> None:
        self.put(ButtonEdge(name, pressed, self.clock()))

    def submit(self, command: Command) -> None:
        """A command; Busy if the loop has too many waiting (it is never dropped silently)."""
        if len(self._commands) >= COMMAND_CAPACITY:
            raise Busy(f"the instrument is busy ({COMMAND_CAPACITY} commands waiting); try again")
        self._commands.append(command)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # -- taking (the control loop) -------------------------------------------------

    def __len__(self) -> int:
        return len(self._events) + len(self._commands)

    def take_events(self) -> list[InputEvent]:
        return _drain(self._events)

    def take_commands(self) -> list[Command]:
        return _drain(self._commands)

    def wait(self, timeout: float) -> None:
        """Sleep until something is put or woken, or timeout passes."""
        if timeout > 0:
            self._wake.wait(timeout)
        self._wake.clear()


def _drain(queue: deque) -> list:
    taken = []
    while True:
        try:
            taken.append(queue.popleft())
        except IndexError:
            return taken
