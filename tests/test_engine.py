"""The Csound engine: compile errors, fallback, clean start and stop, priority."""

from __future__ import annotations

import os
import threading
import time

import pytest

from appliance import config, paths
from appliance.engine.engine import Engine, FileOutput, RealtimeOutput
from appliance.engine.orchestra import ClockLayout, Orchestra
from appliance.engine.rtprio import thread_policies
from appliance.errors import OrchestraError
from appliance.instrument.instrument import Instrument

LAYOUT = ClockLayout(sample_rate=48000, ksmps=64, steps_per_beat=4, beats_per_bar=4,
                     tempo_min=20, tempo_max=300)
DEFAULT = paths.default_orchestra().read_text()


def broken(tmp_path, text: str):
    path = tmp_path / "broken.orc"
    path.write_text(text)
    return Orchestra.load(path)


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    # line 4 of the user's file has the error (an opcode with no arguments)
    orchestra = broken(tmp_path, "; my voices\n\ninstr Click\n  a1 oscili\nendin\n" + DEFAULT)
    with pytest.raises(OrchestraError) as caught:
        Engine(LAYOUT).open(orchestra, FileOutput(tmp_path / "x.wav"))
    assert caught.value.path == str(tmp_path / "broken.orc")
    assert caught.value.line == 4
    assert str(caught.value).startswith(f"{tmp_path / 'broken.orc'}:4: ")


def test_an_unknown_opcode_names_its_line(tmp_path):
    orchestra = broken(tmp_path, DEFAULT + "\ninstr Extra\n  a1 nosuchopcode 1\n  outs a1, a1\nendin\n")
    line = DEFAULT.count("\n") + 3
    with pytest.raises(OrchestraError) as caught:
        Engine(LAYOUT).open(orchestra, FileOutput(tmp_path / "x.wav"))
    assert caught.value.line == line


def test_a_missing_voice_is_refused(tmp_path):
    without_bass = DEFAULT.replace("instr Bass", "instr Bassoon")
    with pytest.raises(OrchestraError, match="the orchestra has no instr Bass"):
        Engine(LAYOUT).open(broken(tmp_path, without_bass), FileOutput(tmp_path / "x.wav"))


def test_the_instrument_falls_back_to_the_default_orchestra(tmp_path):
    (tmp_path / "bad.orc").write_text("instr Lead\n  k1 = = 2\nendin\n")
    settings = config.Config(engine=config.EngineConfig(orchestra=str(tmp_path / "bad.orc")))
    instrument = Instrument(settings, {"density": 1})
    out = tmp_path / "fallback.wav"
    try:
        instrument.open(FileOutput(out))
        instrument.render(2)
    finally:
        instrument.close()
    report = instrument.report()
    assert instrument.orchestra == paths.default_orchestra()
    assert report["errors"][0].startswith(f"{tmp_path / 'bad.orc'}:2: ")
    assert report["errors"][0].endswith("playing the default orchestra instead")
    assert report["notes"] > 0           # and it plays


def _threads() -> tuple[set[int], set[str]]:
    return set(map(int, os.listdir("/proc/self/task"))), {t.name for t in threading.enumerate()}


def test_start_stop_restart_leaves_no_threads(tmp_path):
    before_native, before_python = _threads()
    for round_ in range(3):
        instrument = Instrument(config.Config(), {"click": 1})
        instrument.open(RealtimeOutput(backend="null", realtime_priority=0))
        instrument.perform(tmp_path / f"take{round_}.wav")
        during_native, _ = _threads()
        assert len(during_native) > len(before_native)     # Csound's thread and the recorder run
        stop = threading.Event()
        instrument.run(0.5, stop)
        instrument.close()
        instrument.close()                                  # closing twice is harmless
        assert instrument.report()["notes"] > 0
    time.sleep(0.2)
    after_native, after_python = _threads()
    assert after_native == before_native
    assert after_python == before_python


def test_csound_thread_gets_realtime_priority_or_says_why(tmp_path):
    engine = Engine(LAYOUT)
    output = RealtimeOutput(backend="null", realtime_priority=42)
    engine.open(Orchestra.load(paths.default_orchestra()), output)
    try:
        before = thread_policies()
        engine.perform()
        fifo = [tid for tid, (policy, prio) in thread_policies().items() if policy == "fifo" and prio == 42]
        me = threading.get_native_id()
        if engine.realtime:
            assert len(fifo) >= 1 and me not in fifo     # Csound's thread, not ours
            assert engine.warnings == []
        else:
            assert fifo == []
            assert "real-time priority 42" in engine.warnings[0]
        # no Python thread was left at real-time priority
        assert all(policy == "other" for tid, (policy, _) in before.items())
        assert thread_policies()[me][0] == "other"
    finally:
        engine.close()
