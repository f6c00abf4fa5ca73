"""MIDI clock: follow another instrument's tempo, and send ours.

Following: 24 ticks per beat arrive with the time they entered the process.
The tempo is the slope of a line fitted through the last two beats of ticks
(so one late tick moves it very little), then smoothed with a time constant
of `smoothing` seconds, so a new source or a tempo change glides instead of
jumping.  When ticks stop, the last tempo holds.

Sending: 24 ticks per beat, scheduled on the wall clock from the beat
positions Csound's clock publishes, so the ticks follow tempo changes on the
same beat as the music.  Where a sample sits on the wall clock comes from
AudioClockMap, which follows the sound card's crystal as it drifts from the
system's.  Python's timing puts some jitter on each tick (measured by
bench/midi_clock.py); receivers average it out as we do.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from appliance.engine.rtprio import start_thread

TICKS_PER_BEAT = 24


class ClockFollower:
    def __init__(self, window: int = 2 * TICKS_PER_BEAT, smoothing: float = 0.6,
                 timeout: float = 0.5) -> None:
        self._ticks: deque[float] = deque(maxlen=window)
        self.smoothing = smoothing
        self.timeout = timeout
        self.tempo: float | None = None
        self._updated: float | None = None

        # where the master is in its song: the index of its next tick (0 = the first tick
        # after Start, the first beat); None until a Start or a Song Position Pointer
        self.next_index: int | None = None
        self.starts = 0                    # Starts seen (the instrument lines its bars up after each)
        self._indexed: deque[tuple[int, float]] = deque(maxlen=window)

    def tick(self, at: float) -> None:
        if self._ticks and at - self._ticks[-1] > self.timeout:
            self._ticks.clear()            # a pause or a new source: start a new fit
            self._indexed.clear()
        self._ticks.append(at)
        if self.next_index is not None:
            self._indexed.append((self.next_index, at))
            self.next_index += 1

    def fresh(self, now: float) -> bool:
        """True while ticks keep coming."""
        return bool(self._ticks) and now - self._ticks[-1] <= self.timeout

    def start(self) -> None:
        """Start: the next tick is the first beat."""
        self.next_index = 0
        self.starts += 1
        self._indexed.clear()

    def song_position(self, sixteenths: int) -> None:
        """Song Position Pointer: Continue goes on from here (6 ticks a sixteenth)."""
        self.next_index = 6 * sixteenths
        self.starts += 1                   # a new place: the bars are lined up again
        self._indexed.clear()

    def beat_times(self) -> tuple[float, float] | None:
        """(wall time of the master's beat 0, seconds per beat), fitted through its last
        ticks so one late tick moves it very little; None until it is known."""
        if len(self._indexed) < TICKS_PER_BEAT // 2:
            return None
        n = len(self._indexed)
        mean_i = sum(i for i, _ in self._indexed) / n
        mean_t = sum(t for _, t in self._indexed) / n
        num = sum((i - mean_i) * (t - mean_t) for i, t in self._indexed)
        den = sum((i - mean_i) ** 2 for i, _ in self._indexed)
        per_tick = num / den
        return mean_t - per_tick * mean_i, per_tick * TICKS_PER_BEAT

    def update(self, now: float) -> float | None:
        """The smoothed tempo at `now` (None until enough ticks have come)."""
        if len(self._ticks) < TICKS_PER_BEAT // 2 or now - self._ticks[-1] > self.timeout:
            self._updated = now
            return self.tempo
        measured = 60.0 / (TICKS_PER_BEAT * _slope(self._ticks))
        if self.tempo is None:
            self.tempo = measured
        else:
            elapsed = max(0.0, now - (self._updated or now))
            weight = 1.0 - pow(2.718281828, -elapsed / self.smoothing)
            self.tempo += (measured - self.tempo) * weight
        self._updated = now
        return self.tempo


def _slope(times: deque[float]) -> float:
    """Seconds per tick: least squares through (index, time)."""
    n = len(times)
    mean_i = (n - 1) / 2
    mean_t = sum(times) / n
    num = sum((i - mean_i) * (t - mean_t) for i, t in enumerate(times))
    den = sum((i - mean_i) ** 2 for i in range(n))
    return num / den


class AudioClockMap:
    """Where the audio clock's samples fall on the monotonic wall clock.

    Each observation is (now, seconds of audio Csound has computed), `now`
    read after the seconds.  Their difference is the wall time of sample 0
    plus how long ago the last block was computed, which is never negative:
    the lower envelope is the truth.
    The estimate is the minimum over the last `window` seconds, not over all
    time: the truth moves.  A sound card's crystal runs slower or faster than
    the system clock (50 ppm is 180 ms in an hour) and every xrun puts the
    audio a period later; a minimum over all time would follow neither.
    """

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._lows: deque[tuple[float, float]] = deque()   # (when, offset), offsets rising

    def observe(self, now: float, audio_seconds: float) -> None:
        offset = now - audio_seconds
        while self._lows and self._lows[-1][1] >= offset:
            self._lows.pop()
        self._lows.append((now, offset))
        while self._lows[0][0] < now - self.window:
            self._lows.popleft()

    @property
    def observed(self) -> bool:
        return bool(self._lows)

    def wall(self, audio_seconds: float) -> float:
        """The wall time at which Csound computes the audio at `audio_seconds`."""
        if not self._lows:
            raise ValueError("no observation yet")
        return self._lows[0][1] + audio_seconds


class ClockSender:
    """Sends 24 ticks per beat, and Start, Continue and Stop, to outputs.

    Ticks are counted, not timed alone: tick k of beat b is due at that beat's
    wall time plus k/24 of its length, and every one is sent, because a
    receiver finds its place in the bar by counting them.  When the beat
    estimates move (a tempo change, an xrun, a new estimate of the audio
    clock) the ticks come a little earlier or later, never one fewer or more.
    If this thread falls behind, the ticks it owes are sent at once; only when
    it is more than a beat out of step (a long stall) does it start again on
    the current beat's grid.

    A receiver takes the first tick after Start as the first beat of the bar.
    So start() sends Start just before tick 0 of the first downbeat the clock
    plays after it is asked (the clock starts on a bar), and continue_() sends
    Song Position Pointer and Continue just before tick 0 of the first beat
    played after it is asked.  A downbeat whose first tick can no longer go
    out before its second is due gives way to the next bar's: no tick is
    bunched, none is lost.
    With `while_stopped` the ticks go on while the transport is stopped, at
    the last tempo, as many receivers need to show it.
    """

    def __init__(self, send: Callable[[bytes], object], beats_per_bar: int = 4, while_stopped: bool = False) -> None:
        self._send = send
        self.beats_per_bar = beats_per_bar
        self.while_stopped = while_stopped
        self._lock = threading.Lock()
        self._beats: dict[int, tuple[float, float]] = {}   # beat -> (wall time, seconds), the latest few
        self._generation = 0                   # counts renumberings of the beats
        self._mode = "stopped"                 # stopped | start | continue | running
        self._after = 0                        # start/continue: a beat above this one
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.resyncs = 0
        self.lateness: deque[float] = deque(maxlen=8192)   # seconds each recent tick left after it was due

    def follow(self, beat: int, beat_wall: float, beat_seconds: float) -> None:
        """The clock's latest beat: its number, when it sounds (wall time) and how long it lasts."""
        with self._lock:
            if self._beats and beat < max(self._beats):
                self._beats.clear()              # numbered afresh: the engine restarted, the music
                self._generation += 1            # begins again on a bar: so does the receiver
                self._after = 0
                if self._mode == "running":
                    self._mode = "start"
            self._beats[beat] = (beat_wall, beat_seconds)
            for old in [b for b in self._beats if b < beat - 2]:
                del self._beats[old]

    def start(self) -> None:
        """The transport starts (on a bar): Start goes out just before that bar's first tick."""
        self._ask("start")

    def continue_(self) -> None:
        """The transport goes on (on a beat): Song Position Pointer and Continue before its first tick."""
        self._ask("continue")

    def stop(self) -> None:
        with self._lock:
            if self._mode == "stopped":
                return
            self._mode = "stopped"
        self._send(bytes([0xFC]))

    def close(self) -> None:
        self.stop()
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _ask(self, mode: str) -> None:
        with self._lock:
            if self._mode == "running":
                return
            self._mode = mode
            self._after = max(self._beats, default=0)      # the beats known now are stale
        if self._thread is None:
            self._thread = start_thread("midi-clock-out", self._run)
        self._wake.set()

    # -- the sending thread ---------------------------------------------------------

    def _run(self) -> None:
        position: tuple[int, int] | None = None        # (beat, tick) of the next tick to send
        generation = self._generation
        while not self._closing.is_set():
            with self._lock:
                beats, mode, after = dict(self._beats), self._mode, self._after
                if generation != self._generation:
                    generation, position = self._generation, None
            now = time.monotonic()
            if mode in ("start", "continue"):
                target = self._target(beats, mode, after, now)
                if target is not None:
                    due = beats[target][0] if target in beats else _predicted(beats, target)[0]
                    if due - now > 0.001:                # Start goes out 1 ms before the first tick
                        wait = due - 0.001 - now
                        if self.while_stopped and position is not None:
                            wait = min(wait, self._tick_wait(beats, position, now))
                        self._pause(min(wait, 0.05))
                        position = self._free_tick(beats, position, now, before=due)
                        continue
                    self._begin(mode, target)
                    position = (target, 0)
                    continue
            if mode == "running" or (self.while_stopped and mode != "running"):
                position = self._tick(beats, position, now, free=mode != "running")
                continue
            self._pause(0.05)

    def _target(self, beats: dict[int, tuple[float, float]], mode: str, after: int, now: float) -> int | None:
        """The beat a start or continue lands on: the first one played after the request (a
        downbeat for a start) whose first tick can still be sent before its second is due."""
        fresh = sorted(b for b in beats if b > after)
        if not fresh:
            return None
        beat = fresh[0]
        while True:
            wall, length = beats[beat] if beat in beats else _predicted(beats, beat)
            downbeat = (beat - 1) % self.beats_per_bar == 0
            if (mode == "continue" or downbeat) and wall >= now - length / TICKS_PER_BEAT:
                return beat
            beat += 1

    def _begin(self, mode: str, beat: int) -> None:
        with self._lock:
            if self._mode != mode:
                return                           # stopped meanwhile
            self._mode = "running"
        if mode == "continue":
            sixteenths = ((beat - 1) * 4) % 16384
            self._send(bytes([0xF2, sixteenths & 0x7F, sixteenths >> 7]))
            self._send(bytes([0xFB]))
        else:
            self._send(bytes([0xFA]))

    def _tick(self, beats: dict[int, tuple[float, float]], position: tuple[int, int] | None, now: float,
              free: bool = False) -> tuple[int, int] | None:
        latest = max(beats, default=None)
        if latest is None:
            self._pause(0.005)
            return position
        if position is None or (not free and position[0] < latest - 1):
            if position is not None:
                self.resyncs += 1                    # more than a beat behind: a long stall
            position = _next_tick(latest, *beats[latest], now)
        beat, tick = position
        wall, length = beats[beat] if beat in beats else _predicted(beats, beat)
        if beat < latest and beat not in beats and not free:
            wall, length = now, 0.0                  # a beat already gone: owed now
        due = wall + tick * length / TICKS_PER_BEAT
        if due > now + 0.0002:
            self._pause(min(due - now, 0.1))
            return position                          # look again: the beats may have moved meanwhile
        self._send(bytes([0xF8]))
        self.lateness.append(time.monotonic() - due)
        self.sent += 1
        return (beat, tick + 1) if tick + 1 < TICKS_PER_BEAT else (beat + 1, 0)

    def _free_tick(self, beats: dict[int, tuple[float, float]], position: tuple[int, int] | None, now: float,
                   before: float) -> tuple[int, int] | None:
        """While stopped (and asked to), the ticks go on, but none within half a tick of `before`."""
        if not self.while_stopped or position is None or not beats:
            return position
        wall, length = _predicted(beats, position[0])
        due = wall + position[1] * length / TICKS_PER_BEAT
        if due <= now and due < before - length / TICKS_PER_BEAT / 2:
            return self._tick(beats, position, now, free=True)
        return position

    def _tick_wait(self, beats: dict[int, tuple[float, float]], position: tuple[int, int], now: float) -> float:
        wall, length = _predicted(beats, position[0])
        return max(0.0, wall + position[1] * length / TICKS_PER_BEAT - now)

    def _pause(self, seconds: float) -> None:
        if self._wake.wait(max(0.0, seconds)):
            self._wake.clear()


def _predicted(beats: dict[int, tuple[float, float]], beat: int) -> tuple[float, float]:
    """Where a beat falls, from the nearest beat before it that is known (same length)."""
    known = max((b for b in beats if b <= beat), default=min(beats))
    wall, length = beats[known]
    return wall + (beat - known) * length, length


def _next_tick(beat: int, wall: float, length: float, now: float) -> tuple[int, int]:
    """The first point of beat's tick grid at or after now, as (beat, tick)."""
    ticks = max(0, math.ceil((now - wall) / (length / TICKS_PER_BEAT)))
    return beat + ticks // TICKS_PER_BEAT, ticks % TICKS_PER_BEAT


class ClockOutFeed:
    """Keeps a ClockSender on the beats Csound's clock publishes.

    The control loop hands it, on each pass, the clock's latest beat (number,
    sample, length); it places the beat on the wall clock where it is heard:
    its sample, plus the samples between computing and hearing (one output
    buffer, -B, on a sound card), through the instrument's AudioClockMap.
    """

    def __init__(self, sender: ClockSender, sample_rate: int, heard_after: int,
                 audio_clock: Callable[[], AudioClockMap]) -> None:
        self.sender = sender
        self.sample_rate = sample_rate
        self.heard_after = heard_after
        self.audio_clock = audio_clock          # the current engine's map (a new engine, a new map)

    def observe(self, beat: int, beat_sample: float, beat_length: float) -> None:
        audio_clock = self.audio_clock()
        if beat > 0 and beat_length > 0 and audio_clock.observed:
            heard = (beat_sample + self.heard_after) / self.sample_rate
            self.sender.follow(beat, audio_clock.wall(heard), beat_length / self.sample_rate)
