"""Saved state: atomic, checked, and whole after a kill -9 at any moment."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time

import pytest

from appliance.params import PARAMETERS
from appliance.service import state
from appliance.service.boots import BootLog
from appliance.service.presets import PresetError, Presets


def test_a_saved_file_reads_back(tmp_path):
    path = tmp_path / "x.json"
    state.save(path, "preset", {"a": 1})
    assert state.load(path, "preset") == state.Loaded({"a": 1}, None)
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_a_damaged_file_falls_back_to_the_previous_copy(tmp_path):
    path = tmp_path / "x.json"
    state.save(path, "preset", {"v": 1})
    state.save(path, "preset", {"v": 2})
    raw = bytearray(path.read_bytes())
    raw[raw.index(b'"v": 2')+5] = ord("3")              # one flipped digit: the checksum catches it
    path.write_bytes(bytes(raw))
    loaded = state.load(path, "preset")
    assert loaded.data == {"v": 1}
    assert "checksum mismatch" in loaded.problem and "using x.json.prev" in loaded.problem


@pytest.mark.parametrize("content", [b"", b"\x00\xff garbage", b"[]", b'{"schema": 2, "kind": "preset"}',
                                     b'{"schema": 1, "kind": "state", "sha256": "", "data": {}}'])
def test_garbage_is_refused_with_a_reason(tmp_path, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    loaded = state.load(path, "preset")
    assert loaded.data is None
    assert str(path) in loaded.problem


def test_missing_file_with_a_previous_copy(tmp_path):
    path = tmp_path / "x.json"
    state.save(path, "preset", {"v": 1})
    state.save(path, "preset", {"v": 2})
    path.unlink()                                       # a cut between the two renames
    loaded = state.load(path, "preset")
    assert loaded.data == {"v": 1} and "is missing" in loaded.problem


SAVER = """
import sys
from pathlib import Path
from appliance.service import state
path = Path(sys.argv[1])
n = int(sys.argv[2])
while True:
    n += 1
    state.save(path, "preset", {"version": n, "padding": "x" * 20000})
    print(n, flush=True)
"""


def test_kill_9_during_saves_never_loses_an_acknowledged_save(tmp_path):
    path = tmp_path / "p.json"
    rng = random.Random(3)
    acknowledged = 0
    for _ in range(25):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(acknowledged)],
                                 stdout=subprocess.PIPE, text=True)
        first = saver.stdout.readline()                    # it has saved once, however slow this machine
        time.sleep(rng.uniform(0.0, 0.25))
        saver.send_signal(signal.SIGKILL)
        out, _ = saver.communicate()
        lines = (first + out).split()
        acknowledged = int(lines[-1]) if lines else acknowledged
        loaded = state.load(path, "preset")
        if acknowledged == 0 and loaded.data is None and loaded.problem is None:
            continue                                       # killed before the first save finished
        assert loaded.data is not None, loaded.problem
        assert loaded.data["version"] >= acknowledged     # never older than what was reported saved
        acknowledged = loaded.data["version"]
    assert acknowledged >= 25                            # each round saved at least once


def test_boot_log_finds_a_crash_loop(tmp_path):
    log = BootLog(tmp_path / "boots.json", failures=3, window=300)
    assert log.start(now=1000) == (False, None)
    log.good()
    for t in (1010, 1020, 1030):
        assert BootLog(tmp_path / "boots.json").start(now=t)[0] is False
    assert BootLog(tmp_path / "boots.json").start(now=1040)[0] is True    # three unfinished starts before
    assert BootLog(tmp_path / "boots.json").start(now=2000)[0] is False   # long ago: not a loop any more


def test_presets_round_trip_and_refuse_hostile_names(tmp_path):
    presets = Presets(tmp_path / "presets", PARAMETERS)
    values = PARAMETERS.defaults() | {"tempo": 133.0, "scale": 3.0}
    presets.save("Night drive", values)
    loaded, problems = presets.load("Night drive")
    assert loaded["tempo"] == 133.0 and loaded["scale"] == 3.0 and problems == []
    assert presets.names() == ["Night drive"]
    for bad in ("", "../../etc/passwd", "a/b", ".hidden", "x" * 41, "new\nline", "p.json.prev", "trailing\n"):
        with pytest.raises(PresetError):
            presets.save(bad, values)
    assert presets.delete("Night drive") and presets.names() == []
    assert not presets.delete("Night drive")


def test_a_preset_from_an_older_version_keeps_what_it_can(tmp_path):
    presets = Presets(tmp_path, PARAMETERS)
    state.save(tmp_path / "old.json", "preset", {"name": "old", "params": {"tempo": 999, "density": 0.3,
                                                                             "wobble": 1}})
    values, problems = presets.load("old")
    assert values == {"density": 0.3}
    assert len(problems) == 2 and "tempo must be within 20..300 BPM" in problems[0]
    assert json.loads((tmp_path / "old.json").read_text())["schema"] == 1


@pytest.mark.parametrize("params", [[1, 2], "tempo=120", 5])
def test_a_last_state_of_the_wrong_shape_falls_back_to_the_previous_copy(tmp_path, params):
    from appliance.service.last_state import LastState

    path = tmp_path / "state.json"
    state.save(path, "state", {"params": {"tempo": 133}, "learned": []})           # becomes .prev
    state.save(path, "state", {"params": params, "learned": []})                 # a good checksum, a bad shape
    problems: list[str] = []
    values, learned = LastState(path, problems.append).load()
    assert values == {"tempo": 133.0} and learned == []
    assert any("wrong shape" in p for p in problems)


@pytest.mark.parametrize("starts", [[1], {"at": "x"}, [{"at": "x", "ok": False}], "never"])
def test_a_boot_log_of_the_wrong_shape_is_reported_not_fatal(tmp_path, starts):
    path = tmp_path / "boots.json"
    state.save(path, "boots", {"starts": starts})
    looping, problem = BootLog(path).start(now=1000)
    assert looping is False and "wrong shape" in problem
    assert BootLog(path).start(now=1001) == (False, None)         # written afresh, readable again


def test_a_learned_mapping_for_an_unknown_parameter_is_left_out(tmp_path):
    from appliance.service.last_state import LastState

    path = tmp_path / "state.json"
    state.save(path, "state", {"params": {}, "learned": [
        {"kind": "cc", "number": 40, "param": "wobble", "mode": "pickup"},
        {"kind": "cc", "number": 41, "param": "reverb", "mode": "pickup"}]})
    problems: list[str] = []
    _, learned = LastState(path, problems.append).load()
    assert [m.param for m in learned] == ["reverb"]
    assert any("unknown parameter 'wobble'" in p for p in problems)


def test_the_last_state_is_written_off_the_loop_and_a_clean_stop_keeps_the_latest(tmp_path):
    """The loop's job hands each change to the state-writer thread; save() at a clean stop waits
    for a write under way and keeps the latest; a failed write is reported from the loop's side."""
    import threading

    from appliance.service.last_state import LastState

    path = tmp_path / "state.json"
    problems: list[str] = []
    last = LastState(path, problems.append)
    writers: list[str] = []
    original = last._write

    def noting(current):                       # the real write, noting which thread does it
        writers.append(threading.current_thread().name)
        return original(current)

    last._write = noting
    values = {"tempo": 100.0}
    job = last.job(lambda: (dict(values), []))
    job(0.0)
    values["tempo"] = 120.0
    last.save(dict(values, swing=60.0), [])    # a clean stop while (or after) the first is written
    last.close()
    assert writers and writers[0].startswith("state-writer")
    kept = state.load(path, "state").data
    assert kept is not None and kept["params"]["tempo"] == 120.0 and kept["params"]["swing"] == 60.0
    assert problems == []

    (tmp_path / "a file").write_text("")
    broken = LastState(tmp_path / "a file" / "state.json", problems.append)   # its directory is a file
    job = broken.job(lambda: ({"tempo": 90.0}, []))
    job(0.0)
    broken.close()                              # waits for the write, and reports its failure
    assert len(problems) == 1 and "cannot save the last state" in problems[0]
