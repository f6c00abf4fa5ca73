"""Recording on demand: what is heard, into the state directory, bounded by the disk."""

from __future__ import annotations

import json
import shutil
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

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


def test_a_recording_ends_complete_at_the_size_a_wav_file_can_hold(tmp_path):
    """RIFF counts bytes in 32 bits (about 4 h 8 min at 48 kHz): a recording that reaches its limit
    (here told a second's worth, so the test need not write 4 GiB) ends there, a valid WAV of exactly
    that much, and the music plays on."""
    instrument = Instrument(Config(), {"tempo": 120, "density": 0.8, "evolution": 0}, simulate=True)
    instrument.open(RealtimeOutput(backend="null", realtime_priority=0))
    instrument.perform()
    path = tmp_path / "long.wav"
    rate = instrument.layout.sample_rate
    try:
        recorder = instrument.engine.start_recording(path, min_free=0, max_data=6 * rate + 5)
        instrument.run(2.5, threading.Event())
        assert recorder.ended is not None and "a WAV file holds at most" in recorder.ended
        assert instrument.engine.stop_recording() is recorder
    finally:
        instrument.close()
    assert instrument.report()["seconds"] >= 2.5
    with wave.open(str(path)) as recorded:
        assert recorded.getnframes() == recorder.frames_total == rate
    assert path.stat().st_size == 44 + 6 * rate


WRITE_LIMITED = """
import resource, signal, sys, threading, wave
from pathlib import Path
from appliance.config.schema import Config
from appliance.engine.engine import RealtimeOutput
from appliance.instrument.instrument import Instrument
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
instrument = Instrument(Config(), {"tempo": 120, "density": 0.8, "evolution": 0}, simulate=True)
instrument.open(RealtimeOutput(backend="null", realtime_priority=0))
instrument.perform()
recorder = instrument.engine.start_recording(Path(sys.argv[1]), min_free=0)
try:
    instrument.run(3.0, threading.Event())
    instrument.engine.stop_recording()               # must not raise: the error is in recorder.ended
finally:
    instrument.close()
print(recorder.ended, instrument.report()["seconds"], instrument.report()["late_notes"], recorder.frames_total)
"""


@pytest.mark.parametrize("limit", [300_000, 100_003])
def test_a_recording_that_cannot_write_any_more_ends_with_a_valid_file(tmp_path, limit):
    """A write refused by the OS (a file size limit: the same OSError a full disk gives) ends the
    recording, not the music; what was written stays a valid WAV, and stopping it raises nothing.
    (With the wave module over a buffered file, the refused bytes stayed in the buffer and the
    close raised EFBIG again: stop_recording() failed, now and then.)"""
    import subprocess
    import sys

    path = tmp_path / "limited.wav"
    done = subprocess.run([sys.executable, "-c", WRITE_LIMITED, str(path), str(limit)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    ended, seconds, late, frames = done.stdout.strip().rsplit(" ", 3)
    assert "File too large" in ended and float(seconds) >= 3.0 and late == "0"
    with wave.open(str(path)) as recorded:
        assert recorded.getnframes() == int(frames) > 0
    assert path.stat().st_size == 44 + int(frames) * 6 <= limit
