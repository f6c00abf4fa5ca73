"""Scenes and TEMP: a whole set of parameters switched on the next bar line, never mid-bar."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from appliance.config.schema import Config
from appliance.controls.inbox import Action, SetParam
from appliance.engine.analysis import onsets, read_wav
from appliance.engine.engine import FileOutput
from appliance.instrument.instrument import Instrument
from tests.conftest import PERC_ONLY, SR, START, ideal_steps
from tests.test_service import GOOD_CONFIG, Box


def rendered(tmp_path: Path, *parts) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Render offline: parts are seconds to render, or callables run on the instrument between them."""
    out = tmp_path / "scene.wav"
    instrument = Instrument(Config(), {**PERC_ONLY, "tempo": 120}, simulate=True)
    try:
        instrument.open(FileOutput(out))
        for part in parts:
            part(instrument) if callable(part) else instrument.render(part)
    finally:
        instrument.close()
    return read_wav(out)[0]


def test_a_scene_lands_on_the_next_bar_line_it_can_still_reach(tmp_path):
    """Recalled 2.3 s in (120 BPM, bars of 2 s): everything before the bar line at 4 s is the
    old scene to the sample, everything from it the new one (tempo 60, the Euclidean 5 of 16)."""
    bars: list[int] = []
    audio = rendered(tmp_path, 2.3,
                     lambda i: bars.append(i.loop.bar_changes.schedule({"tempo": 60, "density": 5 / 16}, "test")),
                     5.0)
    assert bars == [3]                                        # bar 3 starts at 4 s
    found = onsets(audio)
    line = START + 4 * SR
    before, after = found[found < line], found[found >= line]
    assert np.array_equal(before, np.round(ideal_steps(32, 120)).astype(int))   # every step, 120 BPM
    # from the bar line: 60 BPM, steps 250 ms apart, the hits of E(5, 16) = x..x..x..x..x....
    hits = [k for k, hit in enumerate([1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0]) if hit]
    expected = [line + k * SR // 4 for k in hits]
    assert list(after[:5]) == expected


def test_temp_snaps_back_on_the_next_bar_line_after_release(tmp_path):
    def press(i: Instrument) -> None:
        i.loop.dispatch(Action("temp", 1, "test", 0.0))
        i.loop.dispatch(SetParam("density", 0.0, "test"))

    def release(i: Instrument) -> None:
        i.loop.dispatch(Action("temp", 0, "test", 0.0))

    audio = rendered(tmp_path, 0.5, press, 2.0, release, 3.0)
    found = onsets(audio)
    # held: silent from about half a second (the guard) until the bar line after the release (4 s)
    assert not np.any((found > START + 0.6 * SR) & (found < START + 4 * SR))
    back = found[found >= START + 4 * SR]
    assert len(back) > 10 and back[0] == START + 4 * SR       # back to every step, on the bar line


def test_scenes_are_saved_recalled_on_a_bar_and_listed_from_the_command_line(tmp_path):
    box = Box(tmp_path, config=GOOD_CONFIG.replace("tempo = 111", "tempo = 120"))
    box.ok("set", "density", "0.3")
    time.sleep(0.1)
    assert box.ok("scene", "save", "sparse") == "save: sparse"
    box.ok("set", "density", "0.9")
    recalled = box.ok("scene", "recall", "sparse")
    assert recalled.startswith("recall: sparse (bar ")
    pending = json.loads(box.ok("status", "--json"))["scene_pending"]
    assert pending is None or pending["bar"] == int(recalled.split("bar ")[1].rstrip(")"))
    deadline = time.monotonic() + 10                          # a bar is 2 s at 120 BPM
    while box.ok("get", "density") != "0.3" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert box.ok("get", "density") == "0.3"
    assert box.ok("scene", "list") == "sparse"
    refused = box.cli("scene", "recall", "../etc/passwd")
    assert refused.returncode != 0 and "scene name" in refused.stderr
    assert box.stop()["params"]["density"] == 0.3
