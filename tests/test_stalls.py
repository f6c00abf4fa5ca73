"""Python's stalls never reach the sound.

Csound's thread calls no Python, and Python composes `lookahead` ahead of the
clock, so a stall shorter than that changes nothing; a longer one makes the
clock repeat its last bar (never silence, never late or bunched notes).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

from appliance.config.schema import Config
from appliance.engine.analysis import onsets, read_wav
from appliance.engine.engine import FileOutput, RealtimeOutput
from appliance.instrument.instrument import Instrument
from tests.conftest import PERC_ONLY, ideal_steps

STEADY = {**PERC_ONLY, "tempo": 137, "variation": 0}          # a step on every sixteenth
GROOVE = {**STEADY, "density": 0.5, "steps": 16}               # the same half-bar groove every bar


def render_with_stall(tmp_path: Path, params: dict, seconds: float, stall: tuple[float, float]) -> dict:
    """Render offline, with the control loop skipping every pass inside `stall` (seconds)."""
    instrument = Instrument(Config(), params)
    out = tmp_path / f"stall-{stall[0]}-{stall[1]}.wav"
    cycle_seconds = 64 / 48000
    try:
        instrument.open(FileOutput(out))
        for cycle in range(int(seconds / cycle_seconds)):
            stalled = stall[0] <= cycle * cycle_seconds < stall[1]
            if cycle % 4 == 0 and cycle > 0 and not stalled:
                instrument.tick()
            assert instrument.engine.perform_cycle()
    finally:
        instrument.close()
    audio, _ = read_wav(out)
    return {"onsets": onsets(audio), "length": len(audio), **instrument.report()}


def test_a_stall_shorter_than_the_lookahead_changes_nothing(tmp_path):
    calm = render_with_stall(tmp_path, GROOVE, 6, (0, 0))
    stalled = render_with_stall(tmp_path, GROOVE, 6, (2.0, 2.45))
    assert stalled["late_notes"] == 0 and stalled["late_steps"] == 0
    assert np.array_equal(stalled["onsets"], calm["onsets"])


def test_a_long_stall_loops_the_last_bar(tmp_path):
    calm = render_with_stall(tmp_path, GROOVE, 8, (0, 0))
    stalled = render_with_stall(tmp_path, GROOVE, 8, (2.0, 4.5))
    # about (2.5 s - 0.5 s lookahead) * 9.1 steps/s
    assert 14 <= stalled["late_steps"] <= 20 and stalled["late_notes"] > 0
    # the groove repeats every bar, so the bars the clock filled in sound exactly as composed
    assert np.array_equal(stalled["onsets"], calm["onsets"])


def test_after_a_long_stall_nothing_is_bunched(tmp_path):
    result = render_with_stall(tmp_path, STEADY, 8, (1.0, 4.0))
    expected = ideal_steps(400, 137)
    expected = expected[expected < result["length"]]
    assert result["late_steps"] > 0
    # every step sounds once, on its sample: no gap, no late note, no burst when Python returns
    assert len(result["onsets"]) == len(expected)
    assert np.max(np.abs(result["onsets"] - expected)) <= 1.0


def play(tmp_path: Path, params: dict, seconds: float, meanwhile=None) -> dict:
    """Play in real time on the null device, recording; run `meanwhile` in a thread."""
    instrument = Instrument(Config(), params)
    take = tmp_path / "take.wav"
    instrument.open(RealtimeOutput(backend="null", realtime_priority=0))
    instrument.perform(take)
    helper = threading.Thread(target=meanwhile) if meanwhile else None
    try:
        if helper:
            helper.start()
        instrument.run(seconds, threading.Event())
    finally:
        if helper:
            helper.join()
        instrument.close()
    audio, _ = read_wav(take)
    return {"onsets": onsets(audio), "length": len(audio), **instrument.report()}


def hog_the_gil(after: float, hold: float):
    """Hold the GIL for `hold` seconds: no other Python thread can run meanwhile."""
    def hog() -> None:
        time.sleep(after)
        interval = sys.getswitchinterval()
        sys.setswitchinterval(hold + 5)
        try:
            end = time.perf_counter() + hold
            count = 0
            while time.perf_counter() < end:
                count += 1
        finally:
            sys.setswitchinterval(interval)
    return hog


def test_python_frozen_for_300_ms_is_inaudible(tmp_path):
    result = play(tmp_path, STEADY, 3.5, meanwhile=hog_the_gil(after=1.0, hold=0.3))
    expected = ideal_steps(400, 137)
    expected = expected[expected < result["length"]]
    assert result["late_notes"] == 0 and result["late_steps"] == 0
    assert len(result["onsets"]) == len(expected)
    assert np.max(np.abs(result["onsets"] - expected)) <= 1.0


def test_python_frozen_longer_than_the_lookahead_keeps_playing_in_time(tmp_path):
    result = play(tmp_path, STEADY, 4.0, meanwhile=hog_the_gil(after=1.0, hold=1.5))
    expected = ideal_steps(400, 137)
    expected = expected[expected < result["length"]]
    assert result["late_steps"] > 0
    assert len(result["onsets"]) == len(expected)
    assert np.max(np.abs(result["onsets"] - expected)) <= 1.0
