"""Hostile configs and orchestras: a bounded error in bounded time, and the box still plays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_service import Box


def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", "check-config", str(path)],
                          capture_output=True, text=True, timeout=120)


HOSTILE = {
    "nested 1500 deep": "[params]\ntempo = " + "[" * 1500 + "]" * 1500 + "\n",
    "a 5000-digit integer": "[audio]\nksmps = " + "9" * 5000 + "\n",
    "10 MB of unknown keys": "".join(f"key{i} = {i}\n" for i in range(700_000)),
    "60 unknown sections": "".join(f"[nothing{i}]\n" for i in range(60)),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_config_gets_a_short_plain_error(tmp_path, case):
    path = tmp_path / "hostile.toml"
    path.write_text(HOSTILE[case])
    done = _check(path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and str(path) in done.stderr
    assert len(done.stderr.splitlines()) <= 51 and len(done.stderr) < 20_000


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "directory"])
def test_an_orchestra_that_is_not_a_regular_file_is_refused_at_once(tmp_path, target):
    if target == "fifo":
        target = str(tmp_path / "orchestra.fifo")
        os.mkfifo(target)                  # opening it to read would wait for a writer for ever
    elif target == "directory":
        target = str(tmp_path)
    path = tmp_path / "appliance.toml"
    path.write_text(f"[engine]\norchestra = '{target}'\n")
    done = _check(path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot read the orchestra" in done.stderr


def test_a_config_that_is_a_fifo_is_refused_at_once(tmp_path):
    path = tmp_path / "appliance.toml"
    os.mkfifo(path)
    done = _check(path)
    assert done.returncode == 2 and "not a regular file" in done.stderr


@pytest.mark.parametrize("case", ["nested 1500 deep", "a 5000-digit integer", "/dev/zero orchestra"])
def test_run_with_a_hostile_config_plays_in_safe_mode(tmp_path, case):
    text = "[engine]\norchestra = '/dev/zero'\n" if case == "/dev/zero orchestra" else HOSTILE[case]
    box = Box(tmp_path, config=text)
    status = json.loads(box.ok("status", "--json"))
    assert status["safe_mode"] is True
    time.sleep(1.0)
    report = box.stop()
    assert report["safe_mode"] is True and report["notes"] > 0          # never a silent box
    assert any("safe mode" in e for e in report["errors"])
