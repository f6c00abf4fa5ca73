"""What the hardware callbacks hand to the control loop.

MIDI, GPIO and scenario inputs only append an event here (O(1), no lock
held for long, never blocking) and wake the control loop; the control loop
takes them all and does the work.  The inbox is bounded: under a flood that
the control loop cannot keep up with, the oldest events are dropped and
counted, never piled up without limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


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


class Inbox:
    """A bounded, thread-safe queue of input events that wakes the control loop."""

    def __init__(self, capacity: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._events: deque[InputEvent] = deque(maxlen=capacity)
        self._wake = threading.Event()
        self.clock = clock
        self.received = 0
        self.dropped = 0

    def put(self, event: InputEvent) -> None:
        # deque.append is atomic; the counters are statistics, a lost increment is harmless
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)
        self.received += 1
        self._wake.set()

    def midi(self, port: str, data: bytes | list[int]) -> None:
        self.put(MidiEvent(port, bytes(data), self.clock()))

    def encoder(self, name: str, direction: int) -> None:
        self.put(EncoderStep(name, direction, self.clock()))

    def button(self, name: str, pressed: bool) -> None:
        self.put(ButtonEdge(name, pressed, self.clock()))

    def __len__(self) -> int:
        return len(self._events)

    def take(self) -> list[InputEvent]:
        events = []
        while True:
            try:
                events.append(self._events.popleft())
            except IndexError:
                return events

    def wait(self, timeout: float) -> None:
        """Sleep until an event arrives or timeout passes."""
        self._wake.wait(timeout)
        self._wake.clear()

    def wake(self) -> None:
        self._wake.set()
