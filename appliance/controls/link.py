"""Ableton Link: a session's tempo, beat timeline and transport, read on our wall clock.

The binding is aalink (GPL-3.0-or-later, over Ableton's GPL-2.0-or-later
library).  Link's own threads find peers by UDP multicast and keep the
session's timeline; this backend only reads and writes that state for the
control loop, which is its only user.  aalink is built for asyncio and wants
an event loop when a Link is made: it gets a private one for that moment,
and no callbacks are registered, so nothing ever waits on that loop.

Link tells time on CLOCK_MONOTONIC_RAW; the instrument on time.monotonic().
Rather than convert between the two, each reading of the beat is bracketed
by two readings of our clock, and stands for their midpoint: the error is
half the bracket, a few microseconds (a reading whose bracket is wider is
taken again).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
from typing import Any, NamedTuple

from appliance.errors import ApplianceError

log = logging.getLogger("appliance.controls.link")

BRACKET = 0.0005          # a beat reading bracketed wider than this (s) is taken again
TRIES = 5


class Timeline(NamedTuple):
    """A straight beat line on the wall clock: beat b falls at beat_zero + b * period."""
    beat_zero: float
    period: float


class LinkSession:
    """One Link peer: joined on open, left on close."""

    def __init__(self, tempo: float, quantum: int, start_stop_sync: bool = True) -> None:
        try:
            import aalink
        except ImportError as exc:
            raise ApplianceError(f"Ableton Link needs the aalink package ({exc}): run ./bootstrap again") from exc
        _check_network()
        self.quantum = quantum
        self.start_stop = start_stop_sync
        self.opened_at = time.monotonic()

        async def make() -> Any:
            return aalink.Link(tempo)    # aalink takes the running loop; it is not used afterwards

        loop = asyncio.new_event_loop()
        try:
            self._link = loop.run_until_complete(make())
        finally:
            loop.close()
        self._link.quantum = float(quantum)
        self._link.start_stop_sync_enabled = start_stop_sync
        self._link.enabled = True

    def close(self) -> None:
        if self._link is not None:
            self._link.enabled = False
            self._link = None          # its destructor joins Link's threads (without the GIL)

    # -- reading ---------------------------------------------------------------------

    @property
    def peers(self) -> int:
        return int(self._link.num_peers)

    @property
    def tempo(self) -> float:
        return float(self._link.tempo)

    @property
    def playing(self) -> bool:
        return bool(self._link.playing)

    def timeline(self) -> Timeline:
        """The session's beats on our wall clock (quantum-aligned: beat 0 starts a bar)."""
        for _ in range(TRIES):
            before = time.monotonic()
            beat = self._link.beat
            after = time.monotonic()
            if after - before <= BRACKET:
                break
        tempo = self.tempo
        period = 60.0 / tempo
        return Timeline((before + after) / 2 - beat * period, period)

    # -- writing (the session follows: every peer hears it) ------------------------------

    @tempo.setter
    def tempo(self, bpm: float) -> None:
        self._link.tempo = float(bpm)

    def start_playing(self, lead: float) -> None:
        """Start the session: beat 0 on its first bar at least `lead` seconds from now
        (exactly then when alone), as Ableton's own apps start, so every peer starts on
        the same downbeat."""
        when = self._link.time + datetime.timedelta(seconds=lead)
        self._link.set_is_playing_and_request_beat_at_time(True, when, 0.0)

    def stop_playing(self) -> None:
        self._link.playing = False


def _check_network() -> None:
    """Link needs UDP over IPv4; say so plainly where the system forbids it (the service's
    RestrictAddressFamilies, a sandbox) instead of a silent session of one."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
    except OSError as exc:
        raise ApplianceError(f"Ableton Link needs UDP networking, which is not allowed here ({exc}); "
                             "with the service, run `appliance install` again after setting "
                             "[clock] sync = \"link\" so the unit allows it") from exc
