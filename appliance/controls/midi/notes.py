"""MIDI out of the music: the generated notes, timed from the sample they are heard on.

Python composes each step ahead of Csound's clock (music/sequencer.py); Csound
decides its sample.  Where a step falls follows from its beat exactly as the
clock computes it: the beat's first sample, plus the step's share of the beat
(swing delays the second step of each pair).  The clock publishes each beat
(number, sample, length, swing) as it dispatches the beat's first step; the
control loop places it on the wall clock where it is heard (ClockOutFeed, as
for MIDI clock out) and hands it here.  A beat not yet published is predicted
from the one before it (same length), which is exact for its first step and
for the others unless the tempo changes on that beat (then they are placed
again when it is published, a step later at least).

NoteSender sends the notes on a thread of its own at their times; NoteRecorder
keeps them with their samples, offline, for a Standard MIDI File beside a render.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from appliance.engine.rtprio import start_thread
from appliance.music.generator import Note

MAX_PENDING_STEPS = 512          # composed steps waiting to be sent (a few seconds' lookahead at most)
LATE_SECONDS = 0.02              # a step found this late is dropped (counted), not sent bunched
VOICES = ("Lead", "Bass", "Pad", "Perc")


def step_fraction(in_beat: int, steps_per_beat: int, swing: float) -> float:
    """Where step `in_beat` of a beat starts, as a share of the beat (the clock's arithmetic)."""
    pair = 2 * (in_beat // 2) + (in_beat % 2) * 2 * swing
    return pair / steps_per_beat


def midi_note(note: Note) -> tuple[int, int]:
    """(key, velocity) of a note: the nearest key, velocity 1..127."""
    return max(0, min(127, round(note.pitch))), max(1, min(127, round(note.velocity * 127)))


@dataclass(frozen=True)
class Beat:
    wall: float          # when its first sample is heard (monotonic seconds) or its sample (offline)
    length: float        # seconds (or samples, offline)
    swing: float         # 0.5 straight .. 0.75


def _place(beats: Mapping[int, Beat], beat: int) -> Beat | None:
    """A beat where it is known, else predicted from the nearest known one before it."""
    if beat in beats:
        return beats[beat]
    known = max((b for b in beats if b < beat), default=None)
    if known is None:
        return None
    k = beats[known]
    return Beat(k.wall + (beat - known) * k.length, k.length, k.swing)


class NoteSender:
    """Sends each composed step's notes (note on, and note off after its gate) when heard."""

    def __init__(self, send: Callable[[bytes], object], channels: Mapping[str, int], steps_per_beat: int) -> None:
        self._send = send
        self.channels = dict(channels)               # voice -> MIDI channel 1..16
        self.steps_per_beat = steps_per_beat
        self._lock = threading.Lock()
        self._beats: dict[int, Beat] = {}
        self._steps: dict[int, list[Note]] = {}      # step -> its notes, composed and not yet sent
        self._offs: list[tuple[float, int, int]] = []   # heap of (due, channel, key)
        self._sounding: set[tuple[int, int]] = set()
        self._playing = False
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.late = 0                                 # steps dropped because they came too late
        self.lateness: list[float] = []               # seconds after due, the latest 4096 note-ons

    # -- from the control loop --------------------------------------------------------

    def follow(self, beat: int, wall: float, length: float, swing: float) -> None:
        with self._lock:
            if self._beats and beat < max(self._beats):
                self._beats.clear()                   # the engine restarted: numbered afresh
                self._steps.clear()
            self._beats[beat] = Beat(wall, length, swing)
            for old in [b for b in self._beats if b < beat - 2]:
                del self._beats[old]
        self._wake.set()

    def compose(self, step: int, notes: Iterable[Note]) -> None:
        """A step's notes (again, if recomposed: they replace the first ones)."""
        playable = [n for n in notes if n.voice in self.channels]
        with self._lock:
            if playable:
                self._steps[step] = playable
            else:
                self._steps.pop(step, None)
            while len(self._steps) > MAX_PENDING_STEPS:
                del self._steps[min(self._steps)]
        if self._thread is None:
            self._thread = start_thread("midi-notes-out", self._run)
        self._wake.set()

    def start(self) -> None:
        with self._lock:
            self._playing = True
        self._wake.set()

    def stop(self) -> None:
        """The transport stopped: nothing more is sent, and what sounds is let go."""
        with self._lock:
            self._playing = False
            self._steps.clear()
            offs, self._offs = self._offs, []
            self._sounding.clear()
        for _, channel, key in offs:
            self._send(bytes([0x80 | (channel - 1), key, 0]))

    def close(self) -> None:
        self.stop()
        for channel in sorted(set(self.channels.values())):
            self._send(bytes([0xB0 | (channel - 1), 123, 0]))      # all notes off, for safety
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- the sending thread -------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing.is_set():
            now = time.monotonic()
            wait = 0.1
            with self._lock:
                due_offs = []
                while self._offs and self._offs[0][0] <= now + 0.0002:
                    due_offs.append(heapq.heappop(self._offs))
                if self._offs:
                    wait = min(wait, self._offs[0][0] - now)
                ons, wait = self._due_steps(now, wait)
            for _, channel, key in due_offs:
                self._send(bytes([0x80 | (channel - 1), key, 0]))
            for due, notes, length in ons:
                self._play(due, notes, length)
            if self._wake.wait(max(0.0, wait)):
                self._wake.clear()

    def _due_steps(self, now: float, wait: float) -> tuple[list[tuple[float, list[Note], float]], float]:
        """Steps due now (taken out), and how long until the next one (under the lock)."""
        ons: list[tuple[float, list[Note], float]] = []
        if not self._playing or not self._beats:
            return ons, wait
        for step in sorted(self._steps):
            beat = _place(self._beats, step // self.steps_per_beat + 1)
            if beat is None:
                break
            due = beat.wall + step_fraction(step % self.steps_per_beat, self.steps_per_beat, beat.swing) * beat.length
            if due > now + 0.0002:
                return ons, min(wait, due - now)
            notes = self._steps.pop(step)
            if due < now - LATE_SECONDS:
                self.late += 1
                continue
            ons.append((due, notes, beat.length))
        return ons, wait

    def _play(self, due: float, notes: list[Note], beat_length: float) -> None:
        for note in notes:
            channel = self.channels[note.voice]
            key, velocity = midi_note(note)
            with self._lock:
                if (channel, key) in self._sounding:             # the same key again: end the first
                    self._offs = [o for o in self._offs if (o[1], o[2]) != (channel, key)]
                    heapq.heapify(self._offs)
                    self._send(bytes([0x80 | (channel - 1), key, 0]))
                self._sounding.add((channel, key))
                heapq.heappush(self._offs, (due + note.gate * beat_length, channel, key))
            self._send(bytes([0x90 | (channel - 1), key, velocity]))
            self.sent += 1
            self.lateness.append(time.monotonic() - due)
            if len(self.lateness) > 4096:
                del self.lateness[:2048]
        with self._lock:
            self._sounding = {(c, k) for _, c, k in self._offs}


class NoteRecorder:
    """Offline: the notes with the samples they were heard on, for a Standard MIDI File."""

    def __init__(self, channels: Mapping[str, int], steps_per_beat: int) -> None:
        self.channels = dict(channels)
        self.steps_per_beat = steps_per_beat
        self._steps: dict[int, list[Note]] = {}
        self._beats: dict[int, Beat] = {}
        self.notes: list[tuple[float, float, int, int, int]] = []   # (onset, end sample, channel, key, velocity)
        self._done_through = 0                                       # beats whose steps are placed
        self.first_beat_length = 0.0                                 # samples: the file's tempo

    def compose(self, step: int, notes: Iterable[Note]) -> None:
        self._steps[step] = [n for n in notes if n.voice in self.channels]

    def follow(self, beat: int, sample: float, length: float, swing: float) -> None:
        """A beat the clock dispatched (offline every beat is seen: they are samples apart)."""
        if beat <= self._done_through:
            return
        self.first_beat_length = self.first_beat_length or length
        self._beats[beat] = Beat(sample, length, swing)
        for step in sorted(s for s in self._steps if s // self.steps_per_beat + 1 <= beat):
            placed = _place(self._beats, step // self.steps_per_beat + 1)
            notes = self._steps.pop(step)
            if placed is None or step // self.steps_per_beat + 1 < beat:
                continue                          # a beat the clock skipped (stopped): not played
            onset = math.floor(placed.wall + step_fraction(step % self.steps_per_beat, self.steps_per_beat,
                                                           placed.swing) * placed.length + 0.5)
            for note in notes:
                key, velocity = midi_note(note)
                self.notes.append((onset, onset + note.gate * placed.length, self.channels[note.voice], key,
                                   velocity))
        self._done_through = beat

    def smf(self, sample_rate: int, ticks_per_beat: int = 480) -> bytes:
        """A type-0 Standard MIDI File at the first beat's tempo (its grid), each note at the
        second it is heard in the WAV."""
        import io

        import mido

        tempo = 60 * sample_rate / self.first_beat_length if self.first_beat_length else 120.0

        def tick(sample: float) -> int:
            return round(sample / sample_rate * tempo / 60 * ticks_per_beat)

        events = []
        for onset, end, channel, key, velocity in self.notes:
            events.append((tick(onset), 1, mido.Message("note_on", channel=channel - 1, note=key, velocity=velocity)))
            events.append((tick(end), 0, mido.Message("note_off", channel=channel - 1, note=key, velocity=0)))
        events.sort(key=lambda e: (e[0], e[1]))            # at one tick: offs before ons
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0))
        now = 0
        for at, _, message in events:
            track.append(message.copy(time=at - now))
            now = at
        track.append(mido.MetaMessage("end_of_track", time=0))
        midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
        midi.tracks.append(track)
        out = io.BytesIO()
        midi.save(file=out)
        return out.getvalue()
