"""Recording on demand: what is heard, into the state directory, bounded by the disk."""

from __future__ import annotations

import json
import shutil
import threading
import time
import wave
from pathlib import Path

import numpy as np

from appliance.config.schema import Config
from appliance.engine.analysis import read_wav
from appliance.engine.engine import RealtimeOutput
from appliance.instrument.instrument import Instrument
from tests.test_service import GOOD_CONFIG, Box


def test_record_start_stop_and_list_from_the_command_line_across_an_engine_restart(tmp_path):
    box = Box(tmp_path)
    try:
        started = time.monotonic()
        assert box.ok("record", "start", "first take").startswith("recording to first take.wav")
        refused = box.cli("record", "start", "another")
        assert refused.returncode != 0 and "already recording" in refused.stderr
        status = json.loads(box.ok("status", "--json"))
        assert status["recording"]["file"] == "first take.wav"
        time.sleep(1.0)
        orchestra = tmp_path / "mine.orc"                      # a reload that restarts Csound
        default = Path(__file__).resolve().parents[1] / "orchestras" / "default.orc"
        orchestra.write_text(default.read_text().replace("idecay = 0.03", "idecay = 0.031"))
        box.config.write_text(GOOD_CONFIG + f"\n[engine]\norchestra = '{orchestra}'\n")
        assert "engine restarted" in box.ok("reload")
        time.sleep(1.0)
        stopped = box.ok("record", "stop")
        elapsed = time.monotonic() - started
        assert stopped.startswith("recorded first take.wav")
        seconds = float(stopped.split("(")[1].split(" s")[0])
        assert 1.5 < seconds <= elapsed + 0.5                   # the whole take, across the restart
        assert box.ok("record", "list") == "first take.wav"
        for bad in ("../escape", "/etc/passwd", ".hidden", "a" * 50):
            done = box.cli("record", "start", bad)
            assert done.returncode == 2 and "recording name" in done.stderr, bad
        assert box.cli("record", "stop").returncode != 0            # not recording
    finally:
        box.stop()
    take = box.state / "recordings" / "first take.wav"
    with wave.open(str(take)) as recorded:
        assert (recorded.getnchannels(), recorded.getsampwidth()) == (2, 3)
        assert abs(recorded.getnframes() / recorded.getframerate() - seconds) < 0.1
    audio, _ = read_wav(take)
    assert np.max(np.abs(audio)) > 0.01                        # what was heard, not silence


def test_a_recording_refuses_to_fill_the_disk_and_the_music_plays_on(tmp_path):
    """With less free space than the recording must leave (the real disk's, against a limit set
    above it) it ends at once, the file a valid empty WAV, and the sound goes on."""
    instrument = Instrument(Config(), {"tempo": 120, "density": 0.8, "evolution": 0}, simulate=True)
    instrument.open(RealtimeOutput(backend="null", realtime_priority=0))
    instrument.perform()
    path = tmp_path / "full.wav"
    try:
        recorder = instrument.engine.start_recording(path, min_free=shutil.disk_usage(tmp_path).free + 2**30)
        instrument.run(1.5, threading.Event())
        assert recorder.ended is not None and "nearly full" in recorder.ended
        assert instrument.engine.stop_recording() is recorder
    finally:
        instrument.close()
    assert instrument.report()["late_notes"] == 0 and instrument.report()["seconds"] >= 1.5
    with wave.open(str(path)) as recorded:
        assert recorded.getnframes() == 0


WRITE_LIMITED = """
import resource, signal, sys, threading, wave
from pathlib import Path
from appliance.config.schema import Config
from appliance.engine.engine import RealtimeOutput
from appliance.instrument.instrument import Instrument
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
instrument = Instrument(Config(), {"tempo": 120, "density": 0.8, "evolution": 0}, simulate=True)
instrument.open(RealtimeOutput(backend="null", realtime_priority=0))
instrument.perform()
recorder = instrument.engine.start_recording(Path(sys.argv[1]), min_free=0)
instrument.run(3.0, threading.Event())
instrument.engine.stop_recording()
instrument.close()
print(recorder.ended, instrument.report()["seconds"], instrument.report()["late_notes"], recorder.frames_total)
"""


def test_a_recording_that_cannot_write_any_more_ends_with_a_valid_file(tmp_path):
    """A write refused by the OS (a file size limit: the same OSError a full disk gives) ends the
    recording, not the music; what was written stays a valid WAV."""
    import subprocess
    import sys

    path = tmp_path / "limited.wav"
    done = subprocess.run([sys.executable, "-c", WRITE_LIMITED, str(path)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    ended, seconds, late, frames = done.stdout.strip().rsplit(" ", 3)
    assert "File too large" in ended and float(seconds) >= 3.0 and late == "0"
    with wave.open(str(path)) as recorded:
        assert recorded.getnframes() == int(frames) > 0
    assert path.stat().st_size == 44 + int(frames) * 6 <= 300_000
