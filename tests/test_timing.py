"""Every beat and step on its exact sample, measured in Csound's own output."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.engine.analysis import onsets
from tests.conftest import CLICK_ONLY, PERC_ONLY, SR, START, ideal_beats, ideal_steps


@pytest.mark.parametrize("tempo", [60, 137, 300])
def test_every_click_is_on_its_sample(render, tempo):
    result = render(8, {**CLICK_ONLY, "tempo": tempo})
    found = onsets(result.audio)
    expected = ideal_beats(len(found), tempo)
    assert len(found) == int((8 * SR - START) / (60 * SR / tempo)) + 1
    assert np.max(np.abs(found - expected)) <= 1.0


@pytest.mark.parametrize("tempo,swing", [(137, 50), (121, 62), (97.3, 66.5)])
def test_every_step_is_on_its_sample(render, tempo, swing):
    result = render(6, {**PERC_ONLY, "tempo": tempo, "swing": swing})
    found = onsets(result.audio)
    expected = ideal_steps(200, tempo, swing)
    expected = expected[expected < len(result.audio)]
    assert len(found) == len(expected)
    assert np.max(np.abs(found - expected)) <= 1.0
    assert result.report["late_notes"] == 0


@pytest.mark.parametrize("ksmps", [16, 100, 256])
def test_onsets_do_not_depend_on_ksmps(render, ksmps):
    result = render(5, {**PERC_ONLY, "tempo": 133}, config=f"[audio]\nksmps = {ksmps}\n")
    found = onsets(result.audio)
    expected = ideal_steps(200, 133, start=2 * ksmps)
    expected = expected[expected < len(result.audio)]
    assert len(found) == len(expected)
    assert np.max(np.abs(found - expected)) <= 1.0


def test_tempo_change_takes_effect_from_the_next_beat(render):
    # 120 BPM: beats every 24000 samples from 128; the change at 2.3 s (110400)
    # falls between the beats at 96128 and 120128, 0.2 s clear of both.
    scenario = "[[event]]\nat = 2.3\nset = { tempo = 150 }\n"
    result = render(6, {**CLICK_ONLY, "tempo": 120}, scenario=scenario)
    found = onsets(result.audio)
    intervals = np.diff(found)
    # the beat at 120128 still comes 24000 after the previous one; from it on, 19200
    assert list(found[:6]) == [128, 24128, 48128, 72128, 96128, 120128]
    assert np.all(np.abs(intervals[:5] - 24000) <= 1)
    assert np.all(np.abs(intervals[5:] - 19200) <= 1)
    # integrated over the change: beat k after the change at 120128 + (k - 5) * 19200
    expected = np.concatenate([ideal_beats(6, 120), 120128 + np.arange(1, len(found) - 5) * 19200])
    assert np.max(np.abs(found - expected)) <= 1.0


def test_many_tempo_changes_never_drift(render):
    # a tempo sweep: each beat must sit where the integral of the beat lengths puts it
    events = "".join(f"[[event]]\nat = {0.05 + 0.37 * i:.2f}\nset = {{ tempo = {90 + 10 * i} }}\n"
                     for i in range(20))
    result = render(8, {**CLICK_ONLY, "tempo": 90}, scenario=events)
    found = onsets(result.audio)
    intervals = np.diff(found)
    # every interval is exactly some tempo of the sweep (60 * SR / BPM), never in between
    tempos = [90 + 10 * i for i in range(20)]
    allowed = np.array([60 * SR / t for t in tempos])
    nearest = np.min(np.abs(intervals[:, None] - allowed[None, :]), axis=1)
    assert np.all(nearest <= 1.0)
    # and the error does not accumulate: rebuild positions from the exact interval lengths
    exact = START + np.concatenate([[0], np.cumsum(allowed[np.argmin(
        np.abs(intervals[:, None] - allowed[None, :]), axis=1)])])
    assert np.max(np.abs(found - exact)) <= 1.0
    # tempo only rises through the sweep
    assert np.all(np.diff(intervals) <= 1)
