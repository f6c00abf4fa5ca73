"""Scenario files: checked when loaded, played in time order."""

from __future__ import annotations

import pytest

from appliance.config.scenario import Scenario, Timeline
from appliance.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_events_come_in_time_order(tmp_path):
    scenario = Scenario.load(write(tmp_path, "[[event]]\nat = 2\nset = { tempo = 90 }\n"
                                             "[[event]]\nat = 0.5\nset = { density = 0.1, click = 1 }\n"))
    timeline = Timeline(scenario)
    assert timeline.due(0.4) == []
    first = timeline.due(1.0)
    assert [e.value for e in first] == [{"density": 0.1, "click": 1.0}]
    assert [e.value for e in timeline.due(5)] == [{"tempo": 90.0}]
    assert timeline.finished


def test_every_problem_is_reported_with_its_line(tmp_path):
    path = write(tmp_path, "[[event]]\n"
                           "at = -1\n"                             # 2
                           "set = { tempo = 100 }\n"
                           "[[event]]\n"                           # 4
                           "at = 1\n"
                           "sett = { tempo = 100 }\n"              # 6
                           "[[event]]\n"
                           "at = 2\n"
                           "set = { tempo = 1000, denisty = 1 }\n"  # 9
                           "[[event]]\n"                           # 10
                           "at = 3\n")
    with pytest.raises(ConfigError) as caught:
        Scenario.load(path)
    found = [str(p) for p in caught.value.problems]
    actions = "set, encoder, button, midi, plug, unplug, learn, transport"
    assert found == [
        f"{path}:2: event[0].at: needs at = SECONDS (a number >= 0), got -1",
        f"{path}:6: event[1].sett: unknown action; did you mean 'set'?; actions: {actions}",
        f"{path}:9: event[2].set.tempo: tempo must be within 20..300 BPM, got 1000",
        f"{path}:9: event[2].set.denisty: unknown parameter 'denisty'; did you mean 'density'?",
        f"{path}:10: event[3]: needs exactly one action ({actions}), got 0",
    ]


def test_garbage_is_a_syntax_error_with_a_line(tmp_path):
    path = write(tmp_path, "[[event]]\nat = 1\nset = { tempo = }\n")
    with pytest.raises(ConfigError, match=r"s.toml:3: TOML syntax"):
        Scenario.load(path)
