"""Reading back what the instrument played: WAV files and note onsets.

Used by the tests and the benchmarks to check timing against the sample
clock: an onset is the first sample above a threshold after a stretch of
silence, which finds the first sample of the click and the percussion voice
exactly (both start at full level).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(frames x channels floats in -1..1, sample rate) of a 16- or 24-bit PCM WAV."""
    with wave.open(str(path), "rb") as handle:
        channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
        raw = handle.readframes(handle.getnframes())
    if width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        data = np.where(ints >= 1 << 23, ints - (1 << 24), ints).astype(np.float64) / float(1 << 23)
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported")
    return data.reshape(-1, channels), rate


def onsets(signal: np.ndarray, threshold: float = 1e-3, silence: int = 200) -> np.ndarray:
    """Sample indices where |signal| first exceeds threshold after `silence` quiet samples."""
    mono = np.abs(signal) if signal.ndim == 1 else np.abs(signal).max(axis=1)
    loud = np.flatnonzero(mono > threshold)
    if loud.size == 0:
        return loud
    gaps = np.diff(loud, prepend=-(silence + 1))
    return loud[gaps > silence]


def peak_dbfs(signal: np.ndarray) -> float:
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    return -np.inf if peak == 0 else 20 * np.log10(peak)
