"""The real service, in simulated mode, driven through the command line."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

GOOD_CONFIG = """
[audio]
backend = "null"
[params]
tempo = 111
"""


class Box:
    """One running instrument with its own socket and state directory."""

    started: ClassVar[list[Box]] = []          # every one, so a failed test leaves none running (conftest.py)

    def __init__(self, tmp: Path, config: str = GOOD_CONFIG, extra: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.socket = tmp / "run" / "control.sock"
        self.state = tmp / "state"
        self.config = tmp / "appliance.toml"
        self.report = tmp / "report.json"
        if not self.config.exists() or config is not GOOD_CONFIG:
            self.config.write_text(config)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run", "--simulate", "--config", str(self.config),
             "--socket", str(self.socket), "--state-dir", str(self.state), "--report", str(self.report), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        Box.started.append(self)
        deadline = time.monotonic() + 30
        while not self.answers():                  # a socket left by a killed instance does not count
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the service did not start: {self.process.communicate()[1]}")
            time.sleep(0.05)

    def answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
                return True
            except OSError:
                return False

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance", *args[:1], "--socket", str(self.socket),
                               *args[1:]], capture_output=True, text=True, timeout=60)

    def ok(self, *args: str) -> str:
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def stop(self) -> dict:
        self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=30)
        assert self.process.returncode == 0
        return json.loads(self.report.read_text())

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)




def test_the_command_line_drives_the_running_instrument(box):
    status = json.loads(box.ok("status", "--json"))
    assert status["tempo"] == 111.0 and status["safe_mode"] is False and status["transport"] == "playing"
    assert "MIDI (sim)" in status["midi"]
    assert box.ok("get", "tempo") == "111.0 BPM"
    assert box.ok("set", "tempo", "128") == "128.0 BPM"
    assert box.ok("set", "scale", "lydian") == "lydian"
    time.sleep(0.2)
    assert box.ok("get", "tempo") == "128.0 BPM"
    assert "tempo" in box.ok("params") and "lydian" in box.ok("params")
    human = box.ok("status")
    assert "BPM" in human and "xruns 0" in human
    assert "Sim Controller" in box.ok("midi")
    assert "learning density" in box.ok("learn", "density")
    assert box.ok("logs", "-n", "5") != ""


def test_refusals_are_plain_and_non_zero(box):
    out_of_range = box.cli("set", "tempo", "900")
    assert out_of_range.returncode != 0
    assert out_of_range.stderr.strip() == "error: tempo must be within 20..300 BPM, got 900"
    misspelt = box.cli("get", "tempi")
    assert misspelt.returncode != 0 and "did you mean 'tempo'" in misspelt.stderr
    assert box.cli("preset", "load", "nothing-here").returncode != 0
    assert box.cli("learn", "wobble").returncode != 0
    # a hostile client gets answers, not a crash
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(box.socket))
        raw.sendall(b"not json\n" + b'{"cmd": 5}\n' + b'{"cmd": "explode"}\n' + b"\xff\xfe\n" + b"x" * 70000 + b"\n")
        raw.settimeout(5)
        answers = b""
        while answers.count(b"\n") < 5:
            chunk = raw.recv(65536)
            if not chunk:
                break
            answers += chunk
    lines = [json.loads(line) for line in answers.splitlines()]
    assert all(line["ok"] is False for line in lines) and len(lines) == 5
    assert "unknown command 'explode'" in lines[2]["error"] and "commands: status, get" in lines[2]["error"]
    assert box.ok("get", "tempo") == "111.0 BPM"             # still there


def test_verbs_say_plainly_when_the_instrument_is_not_running(tmp_path):
    for verb in (("status",), ("get", "tempo"), ("set", "tempo", "100"), ("params",), ("preset", "list"),
                 ("learn", "tempo"), ("reload",), ("midi",), ("logs",)):
        done = subprocess.run([sys.executable, "-m", "appliance", verb[0], "--socket", str(tmp_path / "none.sock"),
                               *verb[1:]], capture_output=True, text=True, timeout=30)
        assert done.returncode != 0
        assert "the instrument is not running" in done.stderr


def test_the_socket_is_owner_and_group_only(box):
    mode = stat.S_IMODE(box.socket.stat().st_mode)
    assert mode == 0o660
    assert stat.S_IMODE(box.socket.parent.stat().st_mode) & 0o007 == 0


def test_a_second_instance_on_the_same_socket_is_refused(box, tmp_path):
    second = subprocess.run([sys.executable, "-m", "appliance", "run", "--simulate", "--config", str(box.config),
                             "--socket", str(box.socket), "--state-dir", str(tmp_path / "other"),
                             "--seconds", "2"], capture_output=True, text=True, timeout=60)
    assert second.returncode != 0
    assert f"another instrument is running on {box.socket}" in second.stderr
    assert box.ok("get", "tempo") == "111.0 BPM"


def test_presets_and_the_last_state_survive_restarts(tmp_path):
    box = Box(tmp_path)
    box.ok("set", "density", "0.77")
    box.ok("set", "root", "D")
    box.ok("preset", "save", "Evening")
    box.ok("set", "density", "0.1")
    assert box.ok("preset", "list") == "Evening"
    box.stop()
    again = Box(tmp_path)
    assert again.ok("get", "density") == "0.1"              # the last state came back
    assert again.ok("get", "root") == "D"
    again.ok("preset", "load", "Evening")
    time.sleep(0.2)
    assert again.ok("get", "density") == "0.77"
    again.ok("preset", "delete", "Evening")
    assert again.ok("preset", "list") == "(no presets)"
    again.stop()


def test_a_saved_preset_survives_kill_9_at_any_moment(tmp_path):
    rng = random.Random(11)
    saved: list[str] = []
    box = Box(tmp_path)
    for round_ in range(6):
        for i in range(rng.randrange(1, 4)):
            name = f"take {round_}-{i}"
            box.ok("set", "tempo", str(60 + round_ * 10 + i))
            time.sleep(0.05)
            if box.cli("preset", "save", name).returncode == 0:
                saved.append(name)
        time.sleep(rng.uniform(0, 0.05))
        box.kill()                                           # no warning, no clean-up
        box = Box(tmp_path)
        listed = box.ok("preset", "list").splitlines()
        assert set(saved) <= set(listed)
    for name in saved:                      # each loads (a crash loop may have started safe mode: fine)
        box.ok("preset", "load", name)
    assert len(saved) >= 6
    box.stop()


def test_reload_applies_a_good_config_and_refuses_a_bad_one(box):
    mapping = "\n[[midi.map]]\ncc = 7\nparam = 'volume'\n"
    box.config.write_text(GOOD_CONFIG.replace("tempo = 111", "tempo = 123") + mapping)
    assert "params.tempo" in box.ok("reload")
    time.sleep(0.2)
    assert box.ok("get", "tempo") == "123.0 BPM"
    assert "kind=cc, number=7, param=volume" in box.ok("midi")
    box.config.write_text("[audio]\nbackend = 'null'\nksmps = 'lots'\n[params]\ntempo = 500\n")
    refused = box.cli("reload")
    assert refused.returncode != 0
    assert f"{box.config}:3: audio.ksmps: must be a whole number" in refused.stderr
    assert box.ok("get", "tempo") == "123.0 BPM"                 # the running config is kept
    box.config.write_text(GOOD_CONFIG.replace("tempo = 111", "tempo = 99"))
    box.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while box.ok("get", "tempo") != "99.0 BPM" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert box.ok("get", "tempo") == "99.0 BPM"


def test_an_orchestra_change_restarts_csound_and_keeps_playing(box, tmp_path):
    orchestra = tmp_path / "mine.orc"
    default = Path(__file__).resolve().parents[1] / "orchestras" / "default.orc"
    orchestra.write_text(default.read_text().replace("ifreq = (iaccent == 1 ? 2000 : 1400)",
                                                     "ifreq = (iaccent == 1 ? 2500 : 1800)"))
    box.config.write_text(GOOD_CONFIG + f"\n[engine]\norchestra = '{orchestra}'\n")
    assert "engine restarted" in box.ok("reload")
    status = json.loads(box.ok("status", "--json"))
    assert status["orchestra"] == str(orchestra)
    time.sleep(1.0)
    later = json.loads(box.ok("status", "--json"))
    assert later["notes"] > 0 and later["transport"] == "playing"
    assert box.stop()["errors"] == []


SAFE_CASES = {
    "an invalid config": ("[audio]\nbackend = 'null'\nksmps = 'lots'\n", (), {}, "the config is invalid"),
    "a broken orchestra": ("[audio]\nbackend = 'null'\n[engine]\norchestra = '{orc}'\n", (), {},
                           "the orchestra does not compile"),
    "the button held at start": (GOOD_CONFIG, (), {"APPLIANCE_SIM_HELD_PINS": "26"}, "was held at start"),
    "--safe-mode": (GOOD_CONFIG, ("--safe-mode",), {}, "asked for"),
}


@pytest.mark.parametrize("case", SAFE_CASES)
def test_safe_mode_plays_factory_defaults_and_says_so(tmp_path, case):
    config, extra, env, reason = SAFE_CASES[case]
    broken = tmp_path / "broken.orc"
    broken.write_text("instr Lead\n  a1 oscili\nendin\n")
    box = Box(tmp_path, config=config.replace("{orc}", str(broken)), extra=extra, env=env)
    status = json.loads(box.ok("status", "--json"))
    assert status["safe_mode"] is True and any(reason in r for r in status["safe_mode_reasons"])
    time.sleep(1.0)
    report = box.stop()
    assert report["safe_mode"] is True
    assert any(reason in e for e in report["errors"])
    assert report["notes"] > 0                                   # never a silent box
    assert report["params"]["tempo"] == 100.0                    # the factory tempo, not 111
    if case == "an invalid config":
        assert any(f"{box.config}:3: audio.ksmps" in e for e in report["errors"])


def test_a_crash_loop_starts_in_safe_mode(tmp_path):
    for _ in range(3):
        box = Box(tmp_path)
        box.kill()                     # killed before it could count as a good start
    box = Box(tmp_path)
    status = json.loads(box.ok("status", "--json"))
    assert status["safe_mode"] is True and "crash loop" in status["safe_mode_reasons"][0]
    box.stop()


def test_systemd_is_told_ready_and_the_watchdog_is_fed(tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = tmp_path / "notify.sock"
    listener.bind(str(address))
    listener.settimeout(20)
    box = Box(tmp_path, env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "1000000"})
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 3:
            messages.append(listener.recv(4096).decode())
    finally:
        box.stop()
        listener.close()
    joined = "\n".join(messages)
    assert "READY=1" in messages[0]
    assert "STATUS=" in joined and "BPM" in joined
    assert joined.count("WATCHDOG=1") >= 3
    assert joined.index("READY=1") < joined.index("WATCHDOG=1")


def test_program_changes_and_buttons_recall_presets(tmp_path):
    first = Box(tmp_path)
    for name, tempo in (("a calm", "70"), ("b busy", "140"), ("c fast", "190")):
        first.ok("set", "tempo", tempo)
        time.sleep(0.1)
        first.ok("preset", "save", name)
    first.stop()
    config = GOOD_CONFIG + "[[midi.map]]\nprogram = 'any'\naction = 'preset'\n"
    scenario = tmp_path / "recall.toml"
    scenario.write_text("[[event]]\nat = 0.3\nmidi = { type = 'program_change', program = 1 }\n")
    box = Box(tmp_path, config=config, extra=("--scenario", str(scenario)))
    deadline = time.monotonic() + 10
    while box.ok("get", "tempo") != "140.0 BPM" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert box.ok("get", "tempo") == "140.0 BPM"             # program 1: the second preset by name
    box.stop()


def test_memory_is_locked_when_the_limit_allows(tmp_path):
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    probe = subprocess.run([sys.executable, "-c", "from appliance.engine.rtprio import lock_memory\n"
                            "print(lock_memory())\nprint(open('/proc/self/status').read())"],
                           capture_output=True, text=True, timeout=60)
    note, status = probe.stdout.split("\n", 1)
    locked_kib = int(next(line for line in status.splitlines() if line.startswith("VmLck:")).split()[1])
    if soft == resource.RLIM_INFINITY:                 # as under the unit's LimitMEMLOCK=infinity
        assert note == "None" and locked_kib > 10000
    else:                                              # this machine: a finite limit, said plainly
        assert note == (f"memory not locked: the memlock limit is {soft // 1024} KiB "
                        "(LimitMEMLOCK=infinity in the service lets it lock)")
        assert locked_kib == 0
    box = Box(tmp_path)
    status_json = json.loads(box.ok("status", "--json"))
    box.stop()
    assert status_json["memory_locked"] is (soft == resource.RLIM_INFINITY)


def test_the_watchdog_stops_when_the_audio_engine_stalls(tmp_path, monkeypatch):
    """In-process: pause Csound's performance thread and the pings must stop."""
    import threading

    from appliance.engine.engine import RealtimeOutput
    from appliance.service.service import Service, ServiceOptions

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = tmp_path / "notify.sock"
    listener.bind(str(address))
    listener.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(address))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")              # a ping every 0.2 s
    service = Service(ServiceOptions(config_path=None, state_dir=tmp_path / "state", socket=None,
                                     output=RealtimeOutput(backend="null", realtime_priority=0), simulate=True))
    service.prepare()
    service.start()
    runner = threading.Thread(target=service.run)
    runner.start()

    def pings(seconds: float) -> int:
        count, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            with contextlib.suppress(TimeoutError):
                count += listener.recv(4096).decode().count("WATCHDOG=1")
        return count

    try:
        assert pings(1.5) >= 4
        service.instrument.engine._thread.pause()              # the audio engine stalls
        pings(0.3)                                             # (a ping may cross the pause)
        assert pings(1.5) == 0
        service.instrument.engine._thread.play()
        assert pings(1.5) >= 4
    finally:
        service.stop.set()
        service.instrument.inbox.wake()
        runner.join()
        service.close()
        listener.close()


def test_a_read_only_state_directory_still_plays_and_says_so(tmp_path):
    if os.geteuid() == 0:
        # root writes anywhere: make the state "directory" a file, which no one can write into
        (tmp_path / "state").write_text("not a directory")
    else:
        (tmp_path / "state").mkdir(mode=0o500)
    box = Box(tmp_path)
    refused = box.cli("preset", "save", "x")
    assert refused.returncode != 0 and "cannot save preset 'x'" in refused.stderr
    time.sleep(1.0)
    report = box.stop()
    assert report["notes"] > 0
    assert any("presets and the last state will not be saved" in e for e in report["errors"])


def test_a_set_is_applied_before_it_answers(box):
    """set then get on one connection, no pause: the get sees the new value."""
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(box.socket))
        raw.settimeout(10)
        reader = raw.makefile("rb")
        for tempo in (61, 62.5, 180, 99.9):
            raw.sendall(json.dumps({"cmd": "set", "name": "tempo", "value": tempo}).encode() + b"\n"
                        + b'{"cmd": "get", "name": "tempo"}\n')
            answers = [json.loads(reader.readline()), json.loads(reader.readline())]
            assert answers[0]["ok"] and answers[1]["value"] == tempo


def test_the_socket_option_may_follow_the_verb_and_its_words(box):
    assert subprocess.run([sys.executable, "-m", "appliance", "preset", "save", "--socket", str(box.socket),
                           "Late option"], capture_output=True, text=True, timeout=60).returncode == 0
    assert subprocess.run([sys.executable, "-m", "appliance", "--socket", str(box.socket), "preset", "list"],
                          capture_output=True, text=True, timeout=60).stdout.strip() == "Late option"


def test_the_threads_say_what_they_are(box):
    """`ps -L -o comm` tells Csound's thread, the loop and the inputs apart."""
    box.ok("status")                                   # answered: every thread is up, or nearly
    wanted, names = {"csound", "control-loop", "control-socket", "control-worker", "midi-scan"}, set()
    deadline = time.monotonic() + 10
    while not wanted <= names and time.monotonic() < deadline:
        names = {(task / "comm").read_text().strip() for task in Path(f"/proc/{box.process.pid}/task").iterdir()}
        time.sleep(0.05)
    assert wanted <= names


LEARNED = {"kind": "cc", "number": 40, "param": "reverb", "mode": "pickup", "channel": None, "device": None,
           "action": None, "low": None, "high": None, "curve": "linear", "step": None, "lsb": None,
           "feedback": False}


def test_safe_mode_keeps_the_knobs_and_leaving_it_brings_the_setup_back(tmp_path):
    from appliance.service import state

    (tmp_path / "state").mkdir()
    state.save(tmp_path / "state" / "state.json", "state", {"params": {"tempo": 133}, "learned": [LEARNED]})
    config = GOOD_CONFIG + "[midi]\nbackend = 'sim'\n[[midi.map]]\ncc = 7\nparam = 'volume'\n"
    box = Box(tmp_path, config=config, extra=("--safe-mode",))
    assert box.ok("get", "tempo") == "100.0 BPM"                     # factory music ...
    knobs = box.ok("midi")
    assert "number=7, param=volume" in knobs and "number=40" in knobs   # ... and the same knobs
    time.sleep(0.3)
    assert "safe mode" in json.loads(box.ok("status", "--json"))["last_error"]
    assert "left safe mode" in box.ok("reload")
    assert box.ok("get", "tempo") == "133.0 BPM"                     # the saved setup is back
    status = json.loads(box.ok("status", "--json"))
    assert status["safe_mode"] is False and status["last_error"] is None
    box.stop()
    saved = state.load(tmp_path / "state" / "state.json", "state").data
    assert saved["params"]["tempo"] == 133.0 and saved["learned"][0]["number"] == 40


def test_safe_mode_never_writes_over_the_saved_setup(tmp_path):
    from appliance.service import state

    (tmp_path / "state").mkdir()
    state.save(tmp_path / "state" / "state.json", "state", {"params": {"tempo": 133}, "learned": [LEARNED]})
    box = Box(tmp_path, extra=("--safe-mode",))
    box.ok("set", "tempo", "90")
    box.stop()
    saved = state.load(tmp_path / "state" / "state.json", "state").data
    assert saved["params"] == {"tempo": 133} and saved["learned"][0]["param"] == "reverb"


def test_a_clean_stop_ends_a_crash_loop(tmp_path):
    for _ in range(3):
        Box(tmp_path).kill()
    looping = Box(tmp_path)
    assert json.loads(looping.ok("status", "--json"))["safe_mode"] is True
    looping.stop()                                                   # a clean stop
    again = Box(tmp_path)
    assert json.loads(again.ok("status", "--json"))["safe_mode"] is False
    again.stop()


def test_learn_can_be_cancelled_and_a_learned_mapping_unlearned(tmp_path):
    from appliance.service import state

    (tmp_path / "state").mkdir()
    state.save(tmp_path / "state" / "state.json", "state", {"params": {}, "learned": [LEARNED]})
    box = Box(tmp_path)
    assert "number=40" in box.ok("midi")
    box.ok("learn", "tempo")
    assert box.ok("learn", "--cancel") == "stopped learning tempo"
    assert box.ok("learn", "--cancel") == "was not learning"
    assert box.ok("unlearn", "reverb") == "forgot 1 learned mapping(s) to reverb"
    assert "number=40" not in box.ok("midi")
    assert box.cli("unlearn", "wobble").returncode == 2
    box.stop()
    assert state.load(tmp_path / "state" / "state.json", "state").data["learned"] == []


def test_reload_refuses_an_orchestra_that_does_not_compile(box, tmp_path):
    broken = tmp_path / "broken.orc"
    broken.write_text("instr Lead\n  a1 oscili\nendin\n")
    before = json.loads(box.ok("status", "--json"))
    box.config.write_text(GOOD_CONFIG + f"\n[engine]\norchestra = '{broken}'\n")
    refused = box.cli("reload")
    assert refused.returncode != 0 and str(broken) in refused.stderr
    after = json.loads(box.ok("status", "--json"))
    assert after["orchestra"] == before["orchestra"] and after["transport"] == "playing"
    # it plays on: more notes come (the music rests at times, and an intro is sparse: wait for them)
    deadline = time.monotonic() + 20
    while json.loads(box.ok("status", "--json"))["notes"] <= after["notes"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(box.ok("status", "--json"))["notes"] > after["notes"]


def test_a_reload_onto_a_smaller_buffer_is_not_an_audio_stall(tmp_path):
    """The lag of a new engine is judged against its own: from -b 4096 to 256 the lag rises by
    about a buffer (85 ms), which the window of the engine before would have counted as a stall."""
    audio = '[audio]\nbackend = "null"\nbuffer = {}\nhardware_buffer = {}\n'
    box = Box(tmp_path, config=audio.format(4096, 8192))
    try:
        time.sleep(2.0)
        box.config.write_text(audio.format(256, 1024))
        assert "engine restarted" in box.ok("reload")
        time.sleep(2.0)
        status = json.loads(box.ok("status", "--json"))
    finally:
        report = box.stop()
    assert status["audio_lag_ms"] > -30                  # the new engine's lag: about -b 256 (5 ms) below 0
    assert report["audio_stalls"] == 0


def test_an_engine_restart_keeps_the_recording_the_counts_and_the_length(tmp_path):
    orchestra = tmp_path / "mine.orc"
    default = Path(__file__).resolve().parents[1] / "orchestras" / "default.orc"
    orchestra.write_text(default.read_text().replace("ifreq = (iaccent == 1 ? 2000 : 1400)",
                                                     "ifreq = (iaccent == 1 ? 2500 : 1800)"))
    take = tmp_path / "take.wav"
    box = Box(tmp_path, extra=("--seconds", "5", "--record", str(take)))
    time.sleep(1.5)
    notes_before = json.loads(box.ok("status", "--json"))["notes"]
    box.config.write_text(GOOD_CONFIG + f"\n[engine]\norchestra = '{orchestra}'\n")
    assert "engine restarted" in box.ok("reload")
    box.process.communicate(timeout=60)                  # it stops by itself after 5 s of audio in all
    report = json.loads(box.report.read_text())
    assert 5.0 <= report["seconds"] < 6.0
    assert report["notes"] > notes_before
    import wave
    with wave.open(str(take)) as recorded:
        assert recorded.getnframes() >= 4.9 * 48000       # the whole run, not the part before the restart
