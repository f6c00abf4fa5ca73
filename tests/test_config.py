"""Config files: a wrong one names the file, the line and the key; all errors at once."""

from __future__ import annotations

import pytest

from appliance import config
from appliance.errors import ConfigError


def load(tmp_path, text: str):
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return config.load(path), path


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return [str(p) for p in caught.value.problems]


def test_no_file_is_the_factory_default():
    settings = config.load(None)
    assert settings.audio.sample_rate == 48000 and settings.audio.ksmps == 64
    assert settings.orchestra_path().name == "default.orc" and settings.orchestra_path().is_file()


def test_the_shipped_config_is_valid():
    path = config.default_path()
    assert path is not None
    settings = config.load(path)
    assert settings.audio.backend == "auto"


def test_a_good_file_is_read(tmp_path):
    settings, _ = load(tmp_path, "[audio]\nksmps = 32\n[params]\ntempo = 128\nscale = 'minor'\n")
    assert settings.audio.ksmps == 32
    assert settings.params["tempo"] == 128


def test_errors_name_file_line_and_key_and_come_all_at_once(tmp_path):
    text = ("[audio]\n"
            "sample_rat = 44100\n"          # line 2: misspelt
            "ksmps = 'sixty-four'\n"        # line 3: wrong type
            "\n"
            "[engine]\n"
            "realtime_priority = 120\n"    # line 6: out of range
            "\n"
            "[params]\n"
            "tempo = 500\n"                 # line 9: out of the parameter's range
            "densty = 0.5\n"                # line 10: unknown parameter
            "[midl]\n")                     # line 11: unknown section
    found = problems(tmp_path, text)
    path = str(tmp_path / "appliance.toml")
    assert found == [
        f"{path}:2: audio.sample_rat: unknown key; did you mean 'sample_rate'?",
        f"{path}:3: audio.ksmps: must be a whole number, got 'sixty-four'",
        f"{path}:6: engine.realtime_priority: must be within 0..99, got 120",
        f"{path}:9: params.tempo: tempo must be within 20..300 BPM, got 500",
        f"{path}:10: params.densty: unknown parameter 'densty'; did you mean 'density'?",
        f"{path}:11: midl: unknown section; did you mean 'midi'?",
    ]


def test_syntax_errors_give_the_line(tmp_path):
    found = problems(tmp_path, "[audio]\nksmps = 64\nbuffer = = 3\n")
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'appliance.toml'}:3: TOML syntax:")


def test_choices_are_checked_with_a_suggestion(tmp_path):
    found = problems(tmp_path, "[audio]\nbackend = 'jak'\n")
    path = tmp_path / "appliance.toml"
    assert found == [f"{path}:2: audio.backend: must be one of auto, null, alsa, jack, "
                     "got 'jak'; did you mean 'jack'?"]


def test_booleans_are_not_numbers(tmp_path):
    found = problems(tmp_path, "[audio]\nksmps = true\n")
    assert "must be a whole number, got True" in found[0]


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.toml: no such file"):
        config.load(tmp_path / "nothere.toml")


def test_orchestra_paths_are_relative_to_the_config(tmp_path):
    settings, _ = load(tmp_path, "[engine]\norchestra = 'mine/voices.orc'\n")
    assert settings.orchestra_path() == tmp_path / "mine" / "voices.orc"
