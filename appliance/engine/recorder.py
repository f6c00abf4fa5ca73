"""Writing what the engine plays to a WAV file, off the audio thread.

Csound's instr Recorder copies every output block into a ring table and
counts the frames; this thread copies the new frames out every few tens of
milliseconds and appends them to a 24-bit WAV file.  The ring holds several
seconds, so Python can stall that long without losing a sample; if it ever
falls further behind, the lost frames are counted, never silently dropped.

Why not the performance thread's own record(): in Csound 6.18 its
stopRecord() joins the writer thread while that thread waits on a condition
only the performance thread signals, which deadlocks now and then and leaves
the WAV header unfinished.  Why not the fout opcode: it writes the file from
the audio thread.
"""

from __future__ import annotations

import threading
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.engine.rtprio import start_thread

RING_CYCLES = 4096     # ring size in k-cycles (about 5.5 s at 48 kHz, ksmps 64)


def to_pcm24(samples: np.ndarray) -> bytes:
    """Interleaved floats in -1..1 to little-endian 24-bit PCM."""
    ints = np.clip(np.round(samples * 8388607.0), -8388608, 8388607).astype("<i4")
    return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


class WavRecorder:
    """Drains the engine's record ring into a WAV file."""

    def __init__(self, path: Path, sample_rate: int, frames: int,
                 channel: Callable[[str], float], table: Callable[[int], np.ndarray]) -> None:
        self.path = path
        self.frames_written = 0
        self.frames_lost = 0
        self._ring = frames
        self._channel = channel
        self._table = table
        self._wav = wave.open(str(path), "wb")  # noqa: SIM115 - open until stop()
        self._wav.setnchannels(2)
        self._wav.setsampwidth(3)
        self._wav.setframerate(sample_rate)
        self.sample_rate = sample_rate
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = start_thread("recorder", self._loop)

    def detach(self) -> None:
        """The engine is about to go (a restart): take what it played, keep the file open."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.drain()

    def attach(self, frames: int, channel: Callable[[str], float], table: Callable[[int], np.ndarray]) -> None:
        """Go on recording from a new engine (its ring counts from 0), in the same file."""
        self.frames_written, self._ring, self._channel, self._table = 0, frames, channel, table
        self.start()

    def stop(self) -> None:
        """Stop the thread (the engine must no longer be performing), write the rest, close."""
        self.detach()
        self._wav.close()

    def drain(self) -> None:
        number = int(self._channel("record_table"))
        available = int(self._channel("record_frames"))
        if number <= 0 or available <= self.frames_written:
            return
        if available - self.frames_written > self._ring - 1024:
            lost = available - self.frames_written - (self._ring - 1024)
            self.frames_lost += lost
            self._wav.writeframes(b"\0" * 6 * lost)   # keep the file's timeline whole
            self.frames_written += lost
        ring = self._table(number)
        start, end = self.frames_written % self._ring, available % self._ring
        chunk = ring[2 * start:2 * end].copy() if start < end else np.concatenate([ring[2 * start:], ring[:2 * end]])
        self._wav.writeframes(to_pcm24(chunk))
        self.frames_written = available

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.drain()
