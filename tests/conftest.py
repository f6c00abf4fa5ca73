"""Shared helpers: render with the real Csound and read the result back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from appliance import config as config_module
from appliance.config.scenario import Scenario
from appliance.engine.analysis import read_wav
from appliance.instrument.instrument import render_to
from appliance.params import PARAMETERS

SR = 48000
KSMPS = 64
START = 2 * KSMPS   # the clock's first beat

# only the click: onsets are beats
CLICK_ONLY = {"click": 1, "click_level": 1, "density": 0, "reverb": 0, "echo": 0}
# only the percussion voice, on every step: onsets are steps (no form: no section leaves it out)
PERC_ONLY = {"click": 0, "density": 1, "lead": 0, "bass": 0, "pad": 0, "perc": 1,
             "reverb": 0, "echo": 0, "dynamics": 0, "evolution": 0, "deja_vu": 0.5}


@dataclass
class Rendered:
    audio: np.ndarray
    sample_rate: int
    report: dict
    path: Path


@pytest.fixture
def render(tmp_path: Path):
    """render(seconds, params, config=TOML text, scenario=TOML text) -> Rendered."""
    counter = iter(range(1000))

    def _render(seconds: float, params: Mapping[str, object] | None = None, config: str = "",
                scenario: str | None = None) -> Rendered:
        n = next(counter)
        config_path = tmp_path / f"config{n}.toml"
        config_path.write_text(config)
        settings = config_module.load(config_path)
        overrides = {k: PARAMETERS.spec(k).coerce(v) for k, v in (params or {}).items()}
        loaded = None
        if scenario is not None:
            scenario_path = tmp_path / f"scenario{n}.toml"
            scenario_path.write_text(scenario)
            loaded = Scenario.load(scenario_path)
        out = tmp_path / f"render{n}.wav"
        instrument = render_to(settings, out, seconds, overrides, loaded)
        audio, rate = read_wav(out)
        report = json.loads(json.dumps(instrument.report()))
        return Rendered(audio, rate, report, out)

    return _render


def ideal_beats(count: int, tempo: float, sr: int = SR, start: int = START) -> np.ndarray:
    return start + np.arange(count) * 60 * sr / tempo


def ideal_steps(count: int, tempo: float, swing: float = 50, sr: int = SR, start: int = START,
                steps_per_beat: int = 4) -> np.ndarray:
    """Where step k belongs: swing delays the second step of each pair."""
    beat_len = 60 * sr / tempo
    positions = []
    for k in range(count):
        beat, j = divmod(k, steps_per_beat)
        pair, odd = divmod(j, 2)
        in_beat = (2 * pair + odd * 2 * swing / 100) * beat_len / steps_per_beat
        positions.append(start + beat * beat_len + in_beat)
    return np.array(positions)


@pytest.fixture
def box(tmp_path):
    """A running instrument (simulated hardware) with its own socket and state directory."""
    from tests.test_service import Box

    running = Box(tmp_path)
    yield running
    if running.process.poll() is None:
        running.kill()


@pytest.fixture(autouse=True)
def _no_instrument_left_running():
    """A test that fails half-way must not leave an instrument playing into the next ones."""
    yield
    from tests.test_service import Box

    for box in Box.started:
        if box.process.poll() is None:
            box.process.kill()
            box.process.communicate(timeout=30)
    Box.started.clear()


def audio_to_wall(walls: list[tuple[float, float]], seconds: np.ndarray, window: float = 1.0) -> np.ndarray:
    """Where audio `seconds` sounded on the wall clock, from (wall, audio seconds) readings taken
    audio first: the lower envelope of wall - audio (a late reading only raises it), near each one.
    Near, not over the whole run, as the box's AudioClockMap does: the audio clock may run a little
    fast or slow against the wall (a sound card's crystal; the null module catching up after the
    machine starved it), and one offset for a whole run would turn that drift into phase error."""
    readings = np.asarray(walls, dtype=float)
    offsets = readings[:, 0] - readings[:, 1]
    walls_at = []
    for at in np.atleast_1d(seconds):
        near = np.abs(readings[:, 1] - at) <= window / 2
        walls_at.append(at + (offsets[near].min() if near.any() else offsets.min()))
    return np.array(walls_at)
