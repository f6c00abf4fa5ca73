"""systemd's notify protocol: READY=1, STATUS=..., WATCHDOG=1, STOPPING=1.

Twenty lines instead of a dependency: a datagram to the socket systemd names
in $NOTIFY_SOCKET (an abstract socket when it starts with '@').  Without
that variable (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable


def notify(*fields: str) -> bool:
    """Send fields like "READY=1"; True if systemd was told."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """How often to ping (half of WatchdogSec=), if systemd asked for pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


STATUS_EVERY = 5.0        # seconds between STATUS= lines


class Notifier:
    """A control-loop job that keeps systemd informed.

    READY=1 once Csound has computed audio; WATCHDOG=1 every half
    WatchdogSec=, but only while the audio engine advances (a stalled engine
    lets the watchdog restart the service); STATUS= every few seconds.
    """

    def __init__(self, audio_time: Callable[[], float], status_line: Callable[[], str]) -> None:
        self.audio_time = audio_time
        self.status_line = status_line
        self.ready = False
        self._watchdog = watchdog_interval()
        self._next_ping = 0.0
        self._next_status = 0.0
        self._last_audio = -1.0

    def __call__(self, now: float) -> float:
        audio = self.audio_time()
        if not self.ready:
            if audio <= 0:
                return now + 0.05                   # not playing yet: nothing to tell systemd
            self.ready = True
            notify("READY=1", f"STATUS={self.status_line()}")
            self._next_status = now + STATUS_EVERY
        if self._watchdog is not None and now >= self._next_ping:
            if audio > self._last_audio:            # the audio engine advanced: all is well
                notify("WATCHDOG=1")
                self._next_ping = now + self._watchdog
            self._last_audio = audio
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY
            notify(f"STATUS={self.status_line()}")
        wake = self._next_status
        if self._watchdog is not None:
            # while the engine stalls, look again soon rather than a whole interval later
            wake = min(wake, self._next_ping if self._next_ping > now else now + self._watchdog / 4)
        return wake
