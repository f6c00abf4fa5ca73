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


# -- loudness, peaks and faults (tests and bench/music.py) ---------------------------------------

def loudness_lufs(signal: np.ndarray, rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4, gated), LUFS: pyloudnorm's meter (a bench extra)."""
    import pyloudnorm

    meter = pyloudnorm.Meter(rate)
    if signal.shape[0] < int(0.4 * rate):
        return -np.inf
    return float(meter.integrated_loudness(signal))


def true_peak_dbtp(signal: np.ndarray, oversample: int = 4, taps_per_phase: int = 32) -> float:
    """True peak (as BS.1770-4 annex 2: the peak of the signal oversampled 4x), dBTP.

    Polyphase interpolation with a Kaiser-windowed sinc, in numpy alone (scipy has no
    wheels for 32-bit Pi OS).  On full-band sines (1-19 kHz at -6.02 dBFS) it finds
    -6.02..-6.06 dBTP; scipy's resample_poly, whose filter ripples, -5.74..-6.02."""
    if signal.size == 0:
        return -np.inf
    mono = signal if signal.ndim == 2 else signal[:, None]
    half = taps_per_phase // 2
    peak = float(np.max(np.abs(mono)))
    for phase in range(1, oversample):
        offset = phase / oversample
        t = np.arange(-half + 1, half + 1) - offset                 # taps around the point between samples
        kernel = np.sinc(t) * np.kaiser(taps_per_phase, 8.0)
        kernel /= kernel.sum()
        for channel in mono.T:
            between = np.convolve(channel, kernel[::-1], mode="valid")
            peak = max(peak, float(np.max(np.abs(between))) if between.size else 0.0)
    return -np.inf if peak == 0 else 20 * np.log10(peak)


def flat_topped(signal: np.ndarray, within_db: float = 0.5, level: float = 0.25) -> int:
    """Samples at the signal's loudest (within `within_db` of its peak, and above `level`)
    equal to the one before: a clipper's or a brick-wall limiter's flat top.  (A waveform's
    own crest, a 24-bit value held for two samples, is rare and seldom at the peak.)"""
    mono = signal if signal.ndim == 2 else signal[:, None]
    if mono.size == 0:
        return 0
    top = max(level, float(np.max(np.abs(mono))) * 10 ** (-within_db / 20))
    loud = np.abs(mono[1:]) >= top
    return int(np.count_nonzero(loud & (mono[1:] == mono[:-1])))


def rms_dbfs(signal: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(signal)))) if signal.size else 0.0
    return -np.inf if rms == 0 else 20 * np.log10(rms)


def spectral_centroid_hz(signal: np.ndarray, rate: int, window: int = 4096) -> float:
    """Power-weighted mean frequency over the whole signal (brightness)."""
    mono = signal.mean(axis=1) if signal.ndim == 2 else signal
    frames = len(mono) // window
    if frames == 0:
        return 0.0
    power = np.abs(np.fft.rfft(mono[:frames * window].reshape(frames, window) * np.hanning(window))) ** 2
    spectrum = power.sum(axis=0)
    freqs = np.fft.rfftfreq(window, 1 / rate)
    total = spectrum.sum()
    return float((spectrum * freqs).sum() / total) if total > 0 else 0.0


def bar_features(signal: np.ndarray, rate: int, bar_seconds: float) -> np.ndarray:
    """One vector per bar: its chroma (12 pitch classes) and its spectral envelope (24 log
    bands), each normalised, so that cosine similarity compares harmony and colour."""
    mono = signal.mean(axis=1) if signal.ndim == 2 else signal
    length = round(bar_seconds * rate)
    count = len(mono) // length
    window = 1 << int(np.ceil(np.log2(length)))
    freqs = np.fft.rfftfreq(window, 1 / rate)
    audible = (freqs >= 55) & (freqs <= 4000)
    pitch_class = np.zeros(len(freqs), dtype=int)
    pitch_class[audible] = np.round(12 * np.log2(freqs[audible] / 440.0) + 69).astype(int) % 12
    edges = np.geomspace(40, min(16000, rate / 2 - 1), 25)
    band = np.digitize(freqs, edges) - 1
    features = []
    for b in range(count):
        piece = mono[b * length:(b + 1) * length]
        power = np.abs(np.fft.rfft(piece * np.hanning(len(piece)), window)) ** 2
        chroma = np.bincount(pitch_class[audible], weights=power[audible], minlength=12)
        bands = np.array([power[band == i].sum() for i in range(24)])
        bands = np.log10(bands + 1e-12)
        bands -= bands.mean()
        vector = np.concatenate([chroma / (np.linalg.norm(chroma) or 1), bands / (np.linalg.norm(bands) or 1)])
        features.append(vector / (np.linalg.norm(vector) or 1))
    return np.array(features)
