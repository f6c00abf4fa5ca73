"""The one way in: the inbox, the control loop's dispatch, and a loop that sleeps until needed."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from appliance.config.scenario import ACTIONS as SCENARIO_ACTIONS
from appliance.config.schema import Config
from appliance.controls.inbox import COMMAND_CAPACITY, Action, Busy, Inbox, Learn, Reply, SetParam
from appliance.engine.engine import FileOutput, RealtimeOutput
from appliance.errors import ApplianceError
from appliance.instrument.instrument import Instrument


@pytest.fixture
def offline(tmp_path):
    """An instrument opened offline on the real Csound; the test drives its loop pass by pass."""
    instrument = Instrument(Config())
    instrument.open(FileOutput(tmp_path / "out.wav"))
    yield instrument
    instrument.close()


# -- the inbox ---------------------------------------------------------------------------

def test_a_flood_of_input_events_keeps_the_newest_and_counts_the_rest():
    inbox = Inbox(capacity=8)
    for value in range(20):
        inbox.midi("knob", [0xB0, 1, value])
    events = inbox.take_events()
    assert [e.data[2] for e in events] == list(range(12, 20))
    assert inbox.received == 20 and inbox.dropped == 12


def test_commands_are_never_dropped_silently():
    inbox = Inbox()
    for i in range(COMMAND_CAPACITY):
        inbox.submit(SetParam("tempo", 60 + i % 100, "test"))
    with pytest.raises(Busy, match="busy"):
        inbox.submit(SetParam("tempo", 120, "test"))
    assert len(inbox.take_commands()) == COMMAND_CAPACITY
    inbox.submit(SetParam("tempo", 120, "test"))          # room again
    assert [c.value for c in inbox.take_commands()] == [120]


def test_a_command_from_another_thread_wakes_the_loop():
    inbox = Inbox()
    woke: list[int] = []

    def loop() -> None:
        inbox.wait(60)                                     # would sleep a minute if nothing came
        woke.append(len(inbox.take_commands()))

    thread = threading.Thread(target=loop)
    thread.start()
    inbox.submit(Learn("tempo"))
    thread.join(30)
    assert woke == [1]


def test_a_reply_carries_the_answer_or_the_error_to_the_waiting_thread():
    answered, failed, silent = Reply(), Reply(), Reply()
    threading.Thread(target=answered.set, args=(42,)).start()
    threading.Thread(target=failed.fail, args=(ApplianceError("no"),)).start()
    assert answered.wait(30) == 42
    with pytest.raises(ApplianceError, match="no"):
        failed.wait(30)
    with pytest.raises(ApplianceError, match="did not answer"):
        silent.wait(0.01)


# -- the loop's dispatch ---------------------------------------------------------------

def test_a_set_answers_once_applied_and_reaches_csound(offline):
    reply = Reply()
    offline.submit(SetParam("volume", -20.0, "test", reply=reply))
    assert offline.params.get("volume") != -20.0               # nothing changes before the loop runs
    offline.tick()
    assert reply.wait(0) == -20.0
    assert offline.params.get("volume") == -20.0
    assert offline.engine.channel("volume") == -20.0


def test_a_refused_value_fails_its_own_reply_and_nothing_else(offline):
    bad, good = Reply(), Reply()
    offline.submit(SetParam("tempo", 900.0, "test", reply=bad))
    offline.submit(SetParam("density", 0.25, "test", reply=good))
    offline.tick()
    with pytest.raises(ApplianceError, match=r"tempo must be within 20\.\.300 BPM, got 900"):
        bad.wait(0)
    assert good.wait(0) == 0.25 and offline.params.get("tempo") == 100.0


def test_sets_of_one_parameter_in_one_pass_are_applied_once(offline):
    applied: list[SetParam] = []
    offline.loop.on_applied = lambda change, at: applied.append(change)
    replies = [Reply() for _ in range(500)]
    for i, reply in enumerate(replies):
        offline.submit(SetParam("brightness", i / 1000, "flood", reply=reply))
    offline.tick()
    assert [c.value for c in applied] == [0.499]
    assert all(reply.wait(0) == 0.499 for reply in replies)   # every caller is answered


def test_learn_transport_and_click_are_carried_out_by_the_loop(offline):
    offline.submit(Learn("density"))
    offline.submit(Action("stop", 0, "test", 0.0))
    offline.submit(Action("click", 0, "test", 0.0))
    assert offline.hardware.router.learning is None and offline.transport
    offline.tick()
    assert offline.hardware.router.learning == "density"
    assert offline.transport is False and offline.engine.channel("transport") == 0.0
    assert offline.params.get("click") == 1.0


def test_a_failing_command_is_reported_and_the_loop_goes_on(offline):
    def broken(command: Learn) -> None:
        raise KeyError("a bug")

    offline.loop.handle(Learn, broken)
    reply = Reply()
    offline.submit(Learn("tempo", reply=reply))
    offline.submit(Action("preset_next", 0, "button", 0.0))       # no presets without the service
    offline.tick()
    with pytest.raises(ApplianceError, match="internal error"):
        reply.wait(0)
    assert any("preset_next" in e for e in offline.errors)
    after = Reply()
    offline.submit(SetParam("tempo", 90.0, "test", reply=after))
    offline.tick()
    assert after.wait(0) == 90.0


def test_every_scenario_action_has_a_player():
    instrument = Instrument(Config())
    assert set(SCENARIO_ACTIONS) <= set(instrument.player._actions)


# -- a loop that sleeps until needed ----------------------------------------------------

def test_the_real_time_loop_wakes_for_steps_not_on_a_fixed_poll():
    """At 100 BPM in sixteenths a step comes every 150 ms: the loop wakes about that often
    (a 5 ms poll would have woken some 600 times in 3 s), and still no note is late."""
    instrument = Instrument(Config(), {"tempo": 100})
    instrument.open(RealtimeOutput(backend="null", realtime_priority=0))
    instrument.perform()
    try:
        instrument.run(3.0, threading.Event())
    finally:
        instrument.close()
    report = instrument.report()
    steps = 3.0 * 100 / 60 * 4
    assert report["loop_wakes"] <= 3 * steps                    # about one a step, some slack
    assert report["notes"] > 0 and report["late_notes"] == 0 and report["late_steps"] == 0


# -- a control command loads nothing of the audio stack ----------------------------------

def test_control_verbs_import_nothing_of_csound_numpy_or_the_engine(tmp_path):
    probe = ("import sys\nfrom appliance.cli import main\n"
             "main(['get', 'tempo', '--socket', sys.argv[1]])\n"
             "heavy = ('ctcsound', 'numpy', 'mido', 'rtmidi', 'gpiozero', 'appliance.engine',"
             " 'appliance.instrument', 'appliance.music', 'appliance.service', 'appliance.controls')\n"
             "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "none.sock")],
                          capture_output=True, text=True, timeout=60)
    assert "the instrument is not running" in done.stderr      # it did try to ask
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--socket", "S", "preset", "save", "N"], ["preset", "save", "--socket", "S", "N"],
                                  ["preset", "save", "N", "--socket=S"], ["-v", "get", "tempo", "--socket", "S"]])
def test_the_socket_option_stands_anywhere(argv):
    from appliance.cli.main import _options_first, _parser

    words = _options_first(argv)
    args = _parser(words).parse_args(words)
    assert args.socket == "S"
    assert args.name in ("N", "tempo")


@contextlib.contextmanager
def playing(instrument: Instrument, **output: int) -> Iterator[threading.Thread]:
    """The instrument in real time (null audio), its loop on a thread, stopped and closed after."""
    instrument.open(RealtimeOutput(backend="null", realtime_priority=0, **output))
    instrument.perform()
    stop = threading.Event()
    runner = threading.Thread(target=instrument.run, args=(None, stop))
    runner.start()
    try:
        yield runner
    finally:
        stop.set()
        instrument.inbox.wake()
        runner.join(30)
        instrument.close()


def test_the_loop_wakes_at_once_for_a_command_while_it_sleeps():
    instrument = Instrument(Config(), {"tempo": 20})               # a step only every 3 s
    with playing(instrument) as runner:
        reply = Reply()
        instrument.submit(SetParam("volume", -30.0, "test", reply=reply))
        assert reply.wait(30) == -30.0                             # answered, not left for the next step
        assert instrument.engine.channel("volume") == -30.0
    assert not runner.is_alive()


def test_gpio_that_cannot_start_says_the_real_reason(tmp_path):
    """This machine has no GPIO: the report names why each pin library failed, not only
    gpiozero's "unable to load any default pin factory"."""
    path = tmp_path / "gpio.toml"
    path.write_text("[midi]\nbackend = 'sim'\n[[gpio.encoder]]\nname = 'tempo'\npins = [17, 18]\nparam = 'tempo'\n")
    from appliance import config
    from appliance.controls.gpio import real_factory
    from appliance.errors import GpioError

    try:
        real_factory().close()
        pytest.skip("this board has GPIO")
    except GpioError:
        pass
    instrument = Instrument(config.load(path), simulate=False)
    instrument.open(FileOutput(tmp_path / "out.wav"))
    instrument.close()
    warning = next(w for w in instrument.report()["warnings"] if "GPIO unavailable" in w)
    assert "no GPIO pin library works here" in warning and "Falling back from" in warning


def test_the_audio_lag_shows_time_the_audio_did_not_compute():
    """The null module never reports an underrun; the lag of the audio clock behind the wall
    clock does show a stall of the audio engine, by the time it lasted."""
    import time

    instrument = Instrument(Config())
    with playing(instrument):
        time.sleep(1.0)
        assert instrument.audio_watch.stalls == 0
        instrument.engine._thread.pause()
        time.sleep(0.6)
        instrument.engine._thread.play()
        time.sleep(0.5)
    report = instrument.report()
    assert report["audio_stalls"] == 1 and report["audio_stall_worst_ms"] >= 400
    assert report["xruns"] == 0                       # where the message count sees nothing


def test_a_big_output_buffer_is_not_a_stall_and_a_stall_still_is():
    """With -b 4096 (85 ms) the null module computes a buffer, then sleeps: the lag saws by a
    buffer while all is well (4 stalls in 3 s were counted).  A real stall still counts, once."""
    import time

    instrument = Instrument(Config())
    with playing(instrument, buffer=4096, hardware_buffer=8192):
        time.sleep(3.0)
        assert instrument.audio_watch.stalls == 0, instrument.audio_watch.worst_ms
        instrument.engine._thread.pause()
        time.sleep(0.6)
        instrument.engine._thread.play()
        time.sleep(0.5)
    assert instrument.report()["audio_stalls"] == 1
