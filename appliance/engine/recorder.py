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

import errno
import logging
import shutil
import threading
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.engine.rtprio import start_thread

log = logging.getLogger("appliance")

RING_CYCLES = 4096     # ring size in k-cycles (about 5.5 s at 48 kHz, ksmps 64)


def to_pcm24(samples: np.ndarray) -> bytes:
    """Interleaved floats in -1..1 to little-endian 24-bit PCM."""
    ints = np.clip(np.round(samples * 8388607.0), -8388608, 8388607).astype("<i4")
    return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


class WavRecorder:
    """Drains the engine's record ring into a WAV file."""

    def __init__(self, path: Path, sample_rate: int, frames: int,
                 channel: Callable[[str], float], table: Callable[[int], np.ndarray], min_free: int = 0) -> None:
        self.path = path
        self.frames_written = 0           # of the current engine's ring (0 again after a restart)
        self.frames_total = 0             # in the file
        self.frames_lost = 0
        self.min_free = min_free          # bytes the disk keeps free: below, the recording ends
        self.ended: str | None = None     # why it ended by itself (the disk), or None
        self._ring = frames
        self._channel = channel
        self._table = table
        self._file = path.open("wb")                # both stay open until stop()
        self._wav = wave.open(self._file, "wb")  # noqa: SIM115
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
        """Stop the thread, write the rest (while the engine is still open), close the file."""
        self.detach()
        try:
            self._wav.close()
        except OSError as exc:            # a full disk: the header may say less than the file holds
            log.error("closing the recording %s: %s", self.path, exc.strerror or exc)
        finally:
            self._file.close()

    def drain(self) -> None:
        if self.ended is not None:
            return
        number = int(self._channel("record_table"))
        available = int(self._channel("record_frames"))
        if number <= 0 or available <= self.frames_written:
            return
        if available - self.frames_written > self._ring - 1024:
            lost = available - self.frames_written - (self._ring - 1024)
            self.frames_lost += lost
            self._wav.writeframes(b"\0" * 6 * lost)   # keep the file's timeline whole
            self.frames_written += lost
            self.frames_total += lost
        ring = self._table(number)
        start, end = self.frames_written % self._ring, available % self._ring
        chunk = ring[2 * start:2 * end].copy() if start < end else np.concatenate([ring[2 * start:], ring[:2 * end]])
        try:
            if self.min_free and shutil.disk_usage(self.path.parent).free - 6 * len(chunk) < self.min_free:
                raise OSError(errno.ENOSPC, "the disk is nearly full")
            self._wav.writeframes(to_pcm24(chunk))
            self.frames_total += len(chunk) // 2
        except OSError as exc:
            # the file so far stays a valid WAV (a partly written chunk cut off, stop() writes the
            # header); the music plays on
            self.ended = f"the recording {self.path} ended: {exc.strerror or exc}"
            try:
                whole = 44 + 6 * self.frames_total          # the header, and the frames written whole
                if self._file.tell() > whole:
                    self._file.truncate(whole)
                    self._file.seek(whole)
            except OSError:
                pass
            log.error("%s", self.ended)
            return
        self.frames_written = available

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self.drain()
