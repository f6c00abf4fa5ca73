"""`appliance run` as a user runs it: simulated hardware, real time, report, record."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import numpy as np

from appliance.engine.analysis import onsets, read_wav
from tests.conftest import ideal_beats


def appliance(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "appliance", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def run(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """appliance run with a state directory of its own and no control socket."""
    return appliance("run", "--state-dir", str(tmp_path / "state"), "--no-socket", *args)


def test_run_plays_in_real_time_and_reports(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text("[[event]]\nat = 1.0\nset = { density = 0.9, brightness = 0.8 }\n")
    report, take = tmp_path / "report.json", tmp_path / "take.wav"
    started = time.monotonic()
    done = run(tmp_path, "--simulate", "--seconds", "3", "--report", str(report), "--record", str(take),
                     "--set", "tempo=150", "--set", "click=1", "--set", "click_level=1", "--set", "volume=0",
                     "--scenario", str(scenario))
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed >= 3.0                       # real time: the null device is paced by the clock
    assert "simulated hardware" in done.stderr
    result = json.loads(report.read_text())
    assert result["params"]["tempo"] == 150.0 and result["params"]["click"] == 1
    assert result["params"]["density"] == 0.9 and result["params"]["brightness"] == 0.8
    assert result["notes"] > 10
    assert result["late_notes"] == 0 and result["xruns"] == 0
    assert result["safe_mode"] is False and result["errors"] == []
    assert result["seconds"] >= 3.0
    audio, rate = read_wav(take)
    assert rate == 48000 and len(audio) >= 3 * 48000
    # the clicks: the first beat's click starts at full level on its first sample
    first = audio[ideal_beats(1, 150)[0].astype(int)]
    assert np.max(np.abs(first)) > 0.3


def test_run_refuses_bad_input_plainly(tmp_path):
    bad_value = run(tmp_path, "--simulate", "--seconds", "1", "--set", "density=3")
    assert bad_value.returncode == 2
    assert bad_value.stderr.strip() == "error: density must be within 0..1, got 3"
    bad_name = run(tmp_path, "--simulate", "--seconds", "1", "--set", "tempi=100")
    assert bad_name.returncode == 2 and "did you mean 'tempo'" in bad_name.stderr


def test_a_bad_config_plays_in_safe_mode_and_names_the_line(tmp_path):
    config, report = tmp_path / "bad.toml", tmp_path / "report.json"
    config.write_text("[audio]\nksmps = 0\n")
    done = run(tmp_path, "--simulate", "--seconds", "1.5", "--config", str(config), "--report", str(report))
    assert done.returncode == 0, done.stderr
    assert f"{config}:2: audio.ksmps: must be within 8..1024, got 0" in done.stderr
    assert "SAFE MODE: the config is invalid" in done.stderr
    result = json.loads(report.read_text())
    assert result["safe_mode"] is True and result["notes"] > 0
    assert f"config: {config}:2: audio.ksmps: must be within 8..1024, got 0" in result["errors"]


def test_run_clicks_are_on_their_samples_in_real_time(tmp_path):
    take = tmp_path / "clicks.wav"
    done = run(tmp_path, "--simulate", "--seconds", "3", "--record", str(take),
                     "--set", "click=1", "--set", "density=0", "--set", "tempo=173")
    assert done.returncode == 0, done.stderr
    audio, _ = read_wav(take)
    found = onsets(audio)
    assert len(found) >= 8
    assert np.max(np.abs(found - ideal_beats(len(found), 173))) <= 1.0


def test_a_terminal_shows_a_live_status_line(tmp_path):
    leader, follower = pty.openpty()
    command = [sys.executable, "-m", "appliance", "run", "--simulate", "--seconds", "1.5",
               "--state-dir", str(tmp_path), "--no-socket", "--set", "tempo=120"]
    process = subprocess.Popen(command, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=10)
    os.close(leader)
    text = seen.decode(errors="replace")
    assert process.returncode == 0
    assert "\r" in text and "120.0 BPM" in text and "bar" in text and "xruns 0" in text and "CPU" in text
    assert "intro 1/16 Am" in text                 # the section, its bar and the chord (A dorian's i)


def test_under_systemd_log_lines_carry_their_level_for_the_journal(tmp_path):
    import os
    env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
    done = subprocess.run([sys.executable, "-m", "appliance", "run", "--simulate", "--seconds", "1",
                           "--state-dir", str(tmp_path), "--no-socket"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line]
    assert lines and all(line[:3] in ("<6>", "<4>", "<3>", "<7>") for line in lines)
    assert any(line.startswith("<6>appliance: playing") for line in lines)
    assert not any(line[3:5].isdigit() for line in lines)      # no timestamp: the journal adds its own
