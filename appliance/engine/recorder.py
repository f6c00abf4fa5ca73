"""Writing what the engine plays to a WAV file, off the audio thread.

Csound's instr Recorder copies every output block into a ring table and
counts the frames; this thread copies the new frames out every few tens of
milliseconds and appends them to a 24-bit WAV file.  The ring holds several
seconds, so Python can stall that long without losing a sample; if it ever
falls further behind, the lost frames are counted, never silently dropped.

The file is ours, not the wave module's: written unbuffered, its header
brought up to date after every chunk: a write the OS refuses (a full disk,
a file size limit) leaves no bytes in a Python buffer to fail again at
close, and with a sync each second a box that loses power should keep a WAV
that plays up to about its last sync (reasoned, not tested).

Why not the performance thread's own record(): in Csound 6.18 its
stopRecord() joins the writer thread while that thread waits on a condition
only the performance thread signals, which deadlocks now and then and leaves
the WAV header unfinished.  Why not the fout opcode: it writes the file from
the audio thread.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from appliance.engine.rtprio import start_thread

log = logging.getLogger("appliance")

RING_CYCLES = 4096     # ring size in k-cycles (about 5.5 s at 48 kHz, ksmps 64)
SYNC_SECONDS = 1.0     # the thread syncs the file this often: little is left for the last sync
CHANNELS, SAMPLE_BYTES = 2, 3
FRAME_BYTES = CHANNELS * SAMPLE_BYTES
HEADER_BYTES = 44
# RIFF sizes are 32-bit: 4 GiB of data, about 4 h 8 min at 48 kHz.  Past it a WAV is unreadable,
# so the recording ends there, complete.
MAX_DATA_BYTES = (2**32 - 1 - 36) // FRAME_BYTES * FRAME_BYTES


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """The 44-byte header of a PCM WAV file, 24-bit stereo, holding `data_bytes` of frames."""
    return struct.pack("<4sL4s4sLHHLLHH4sL", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, CHANNELS,
                       sample_rate, sample_rate * FRAME_BYTES, FRAME_BYTES, 8 * SAMPLE_BYTES, b"data", data_bytes)


def to_pcm24(samples: np.ndarray) -> bytes:
    """Interleaved floats in -1..1 to little-endian 24-bit PCM."""
    ints = np.clip(np.round(samples * 8388607.0), -8388608, 8388607).astype("<i4")
    return ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


class WavRecorder:
    """Drains the engine's record ring into a WAV file."""

    def __init__(self, path: Path, sample_rate: int, frames: int,
                 channel: Callable[[str], float], table: Callable[[int], np.ndarray], min_free: int = 0,
                 max_data: int = MAX_DATA_BYTES) -> None:
        self.path = path
        self.frames_written = 0           # of the current engine's ring (0 again after a restart)
        self.frames_total = 0             # in the file
        self.frames_lost = 0
        self.min_free = min_free          # bytes the disk keeps free: below, the recording ends
        self.max_data = max_data // FRAME_BYTES * FRAME_BYTES
        self.ended: str | None = None     # why it ended by itself (the disk, the WAV limit), or None
        self.sample_rate = sample_rate
        self._ring = frames
        self._channel = channel
        self._table = table
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            self._write(wav_header(sample_rate, 0))
        except OSError:
            os.close(self._fd)
            raise
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
        """Stop the thread, write the rest (while the engine is still open): the file is complete
        when this returns.  Never raises: what could not be written is in `ended`.  The last sync
        and the close go on in a thread of their own, because this is called from the control
        loop, and an fsync on a busy SD card can outlast its lookahead."""
        self.detach()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            start_thread("recorder", lambda: self._finish(fd), daemon=False)   # the process waits for it

    def _finish(self, fd: int) -> None:
        try:
            self._datasync(fd)            # a stopped recording is on the card, not in the page cache
        finally:
            os.close(fd)

    def _datasync(self, fd: int) -> None:
        try:
            os.fdatasync(fd)
        except OSError as exc:
            log.error("syncing the recording %s: %s", self.path, exc.strerror or exc)

    def _write(self, data: bytes) -> None:
        """All of `data` at the end of the file, or OSError (os.write may write part of it)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _append(self, pcm: bytes) -> None:
        """Whole frames after the last ones, then the header that counts them.  On OSError the
        file is cut back to the frames it held before, so it stays valid."""
        whole = HEADER_BYTES + FRAME_BYTES * self.frames_total
        try:
            self._write(pcm)
        except OSError:
            try:
                os.ftruncate(self._fd, whole)
                os.lseek(self._fd, whole, os.SEEK_SET)
            except OSError:
                pass
            raise
        self.frames_total += len(pcm) // FRAME_BYTES
        # rewriting 44 bytes in place needs no new block: it works on a full disk too
        os.pwrite(self._fd, wav_header(self.sample_rate, FRAME_BYTES * self.frames_total), 0)

    def _end(self, reason: str) -> None:
        self.ended = f"the recording {self.path} ended: {reason}"
        log.error("%s", self.ended)

    def drain(self) -> None:
        if self.ended is not None or self._fd < 0:       # ended, or stopped
            return
        number = int(self._channel("record_table"))
        available = int(self._channel("record_frames"))
        if number <= 0 or available <= self.frames_written:
            return
        lost = max(0, available - self.frames_written - (self._ring - 1024))
        ring = self._table(number)
        start, end = (self.frames_written + lost) % self._ring, available % self._ring
        chunk = ring[2 * start:2 * end].copy() if start < end else np.concatenate([ring[2 * start:], ring[:2 * end]])
        pcm = b"\0" * FRAME_BYTES * lost + to_pcm24(chunk)     # silence keeps the file's timeline whole
        room = max(0, self.max_data - FRAME_BYTES * self.frames_total)
        try:
            if self.min_free and shutil.disk_usage(self.path.parent).free - len(pcm) < self.min_free:
                raise OSError(errno.ENOSPC, "the disk is nearly full")
            self._append(pcm[:room])
        except OSError as exc:           # the file so far stays a valid WAV; the music plays on
            self._end(exc.strerror or str(exc))
            return
        self.frames_lost += lost
        self.frames_written = available
        if len(pcm) > room:
            self._end(f"a WAV file holds at most {self.max_data // FRAME_BYTES / self.sample_rate / 3600:.1f} hours")

    def _loop(self) -> None:
        synced = 0
        while not self._stop.wait(0.05):
            self.drain()
            if self.frames_total - synced >= SYNC_SECONDS * self.sample_rate:
                synced = self.frames_total
                self._datasync(self._fd)
