"""Encoders, buttons, tap tempo, shift and MIDI clock, as the control loop sees them."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from appliance.controls.gpio import ButtonConfig, EncoderConfig, Gpio
from appliance.controls.inbox import ButtonEdge, EncoderStep, Inbox, MidiEvent
from appliance.controls.meaning import Action, Controls, SetParam, TapTempo
from appliance.controls.midi.clock import AudioClockMap, ClockFollower, ClockSender
from appliance.controls.midi.mapping import Mapping, Router
from appliance.params import PARAMETERS, ParamStore

ENCODERS = {"tempo": EncoderConfig("tempo", (17, 18), "tempo", step=1.0, shift_param="swing"),
            "slow": EncoderConfig("slow", (22, 23), "density", step=0.01, acceleration=False)}
BUTTONS = {"tap": ButtonConfig("tap", 27, "tap_tempo"),
           "play": ButtonConfig("play", 5, "start_stop", long_action="click", hold=0.6),
           "shift": ButtonConfig("shift", 6, "shift")}


class Rig:
    """Controls plus a parameter store, applying effects like the control loop."""

    def __init__(self, *mappings: Mapping, follow_clock: bool = False, **values: float) -> None:
        self.store = ParamStore(PARAMETERS)
        for name, value in values.items():
            self.store.set(name, value)
        self.controls = Controls(PARAMETERS, Router(PARAMETERS, list(mappings)), ENCODERS, BUTTONS,
                                 follow_clock=follow_clock)
        self.actions: list[Action] = []

    def feed(self, *events) -> None:
        self._apply(self.controls.handle(list(events), self.store.get))

    def poll(self, now: float) -> None:
        self._apply(self.controls.poll(now, self.store.get))

    def _apply(self, effects) -> None:
        for effect in effects:
            if isinstance(effect, SetParam):
                self.store.set(effect.name, effect.value)
            else:
                self.actions.append(effect)

    def __getitem__(self, name: str) -> float:
        return self.store.get(name)


def test_four_taps_half_a_second_apart_give_120_bpm():
    tap = TapTempo()
    assert [tap.tap(t) for t in (10.0, 10.5, 11.0, 11.5)] == [None, 120.0, 120.0, 120.0]
    assert tap.tap(20.0) is None               # a long pause starts a new count
    assert tap.tap(20.4) == pytest.approx(150.0)


def test_tap_tempo_from_a_button_counts_the_press():
    rig = Rig(tempo=90)
    for i in range(4):
        rig.feed(ButtonEdge("tap", True, 1.0 + 0.5 * i), ButtonEdge("tap", False, 1.1 + 0.5 * i))
    assert rig["tempo"] == 120.0


def test_quick_taps_shorter_than_the_bounce_time_all_count():
    """10 ms contacts: each release falls inside the 20 ms bounce window of its press.
    Fed alone (nothing polls between) and with the loop's polls, four taps give 120 BPM."""
    for polled in (False, True):
        rig = Rig(tempo=90)
        for i in range(4):
            at = 1.0 + 0.5 * i
            rig.feed(ButtonEdge("tap", True, at), ButtonEdge("tap", False, at + 0.01))
            if polled:
                rig.poll(at + 0.1)
        assert rig["tempo"] == 120.0


def test_a_quick_tap_on_a_button_with_a_long_action_is_a_short_press():
    rig = Rig()
    rig.feed(ButtonEdge("play", True, 1.0), ButtonEdge("play", False, 1.008))
    assert rig.controls.next_deadline() == pytest.approx(1.02)    # the loop wakes to settle it
    rig.poll(1.05)
    rig.poll(2.0)                                                 # long after: no long press
    assert [a.name for a in rig.actions] == ["start_stop"]


def test_tap_tempo_from_a_midi_note():
    rig = Rig(Mapping(kind="note", number=36, action="tap_tempo"), tempo=90)
    for i in range(4):
        rig.feed(MidiEvent("Pads 20:0", bytes([0x99, 36, 100]), 3.0 + 0.4 * i))
    assert rig["tempo"] == 150.0


def test_encoder_steps_and_accelerates_when_turned_fast():
    rig = Rig(tempo=100)
    for i in range(5):
        rig.feed(EncoderStep("tempo", +1, 1.0 + 0.1 * i))     # slow: one BPM per detent
    assert rig["tempo"] == 105
    for i in range(4):
        rig.feed(EncoderStep("tempo", +1, 2.0 + 0.01 * i))    # fast: 8 per detent after the first
    assert rig["tempo"] == 105 + 1 + 3 * 8
    rig.feed(EncoderStep("slow", -1, 3.0), EncoderStep("slow", -1, 3.001))
    assert rig["density"] == pytest.approx(0.58)              # no acceleration configured


def test_a_bouncing_encoder_never_moves_backwards():
    rig = Rig(tempo=100)
    t = 5.0
    for _ in range(10):
        rig.feed(EncoderStep("tempo", +1, t))
        rig.feed(EncoderStep("tempo", -1, t + 0.004))            # contact bounce
        t += 0.1
    assert rig["tempo"] == 110
    assert rig.controls.ignored_bounces == 10
    rig.feed(EncoderStep("tempo", -1, t + 0.2))                # a real reversal, later
    assert rig["tempo"] == 109


def test_gpio_encoder_with_chattering_contacts_through_gpiozero_mock_pins():
    inbox = Inbox(clock=iter(i * 0.07 for i in range(10**6)).__next__)
    gpio = Gpio(ENCODERS.values(), BUTTONS.values(), inbox, simulate=True)
    try:
        rig = Rig(tempo=100)
        values = []
        for _ in range(12):
            gpio.turn("tempo", +1, bounce=True)
            rig.feed(*inbox.take_events())
            values.append(rig["tempo"])
        assert values == sorted(values) and values[-1] == 112
        gpio.turn("tempo", -3, bounce=True)
        rig.feed(*inbox.take_events())
        assert rig["tempo"] == 109
    finally:
        gpio.close()


def test_long_press_is_distinct_from_a_short_one():
    rig = Rig()
    rig.feed(ButtonEdge("play", True, 1.0))
    rig.poll(1.3)
    rig.feed(ButtonEdge("play", False, 1.35))                  # short: start_stop on release
    assert [a.name for a in rig.actions] == ["start_stop"]
    rig.feed(ButtonEdge("play", True, 2.0))
    rig.poll(2.5)
    assert [a.name for a in rig.actions] == ["start_stop"]
    rig.poll(2.61)                                             # held 0.6 s: the long action, once
    rig.poll(3.0)
    rig.feed(ButtonEdge("play", False, 3.2))
    assert [a.name for a in rig.actions] == ["start_stop", "click"]


def test_button_bounce_is_ignored():
    rig = Rig(tempo=90)
    rig.feed(ButtonEdge("tap", True, 1.0), ButtonEdge("tap", False, 1.005), ButtonEdge("tap", True, 1.008))
    rig.feed(ButtonEdge("tap", False, 1.1), ButtonEdge("tap", True, 1.5))
    assert rig["tempo"] == 120.0                               # two taps 0.5 s apart, not four


def test_shift_gives_an_encoder_its_second_parameter():
    rig = Rig(tempo=100, swing=50)
    rig.feed(ButtonEdge("shift", True, 1.0), EncoderStep("tempo", +1, 1.2), EncoderStep("tempo", +1, 1.4))
    assert (rig["tempo"], rig["swing"]) == (100, 52)
    rig.feed(ButtonEdge("shift", False, 1.6), EncoderStep("tempo", +1, 1.8))
    assert (rig["tempo"], rig["swing"]) == (101, 52)


def test_a_shift_held_by_an_unplugged_device_is_released():
    rig = Rig(Mapping(kind="note", number=40, action="shift"), tempo=100, swing=50)
    rig.feed(MidiEvent("Pads 20:0", bytes([0x90, 40, 100]), 1.0))
    assert rig.controls.shift
    rig.controls.release_device("Pads 20:0")
    assert not rig.controls.shift


def clock_ticks(tempo: float, start: float, beats: float, jitter: float = 0.0, seed: int = 1):
    rng = random.Random(seed)
    step = 60 / tempo / 24
    return [start + i * step + rng.uniform(-jitter, jitter) for i in range(int(beats * 24))]


def test_midi_clock_follower_finds_the_tempo_through_jitter():
    follower = ClockFollower()
    for t in clock_ticks(123.0, 0.0, 8, jitter=0.001):
        follower.tick(t)
        follower.update(t)
    assert follower.tempo == pytest.approx(123.0, abs=0.3)


def test_midi_clock_changes_glide_and_a_lost_clock_holds():
    follower = ClockFollower()
    ticks = clock_ticks(100.0, 0.0, 8) + clock_ticks(140.0, 4.85, 8)
    tempos = []
    for t in ticks:
        follower.tick(t)
        tempos.append(follower.update(t))
    steady = [x for x in tempos if x is not None]
    assert steady[0] == pytest.approx(100, abs=0.5)
    assert max(abs(b - a) for a, b in itertools.pairwise(steady)) < 3   # no jump
    assert steady[-1] == pytest.approx(140, abs=1.0)
    assert follower.update(ticks[-1] + 5) == steady[-1]       # the source went away: hold


def audio_clock_error(ppm: float, window: float, xrun_every: float = 0.0, seconds: float = 3600.0) -> float:
    """Largest error (s) of AudioClockMap over the last 50 minutes of an hour in which the
    sound card's crystal is `ppm` off the system clock and, if asked, a 64-sample xrun delays
    the audio every `xrun_every` seconds; Csound computes 64-sample blocks and the control
    loop looks every 5 ms at a random moment."""
    rng = random.Random(7)
    rate, block, start = 48000 * (1 + ppm * 1e-6), 64, 100.0   # the card's true sample rate
    clock = AudioClockMap(window=window)
    worst, now, lost = 0.0, start, 0
    while now < start + seconds:
        now += 0.005 * rng.uniform(0.5, 1.5)
        if xrun_every and now - start > (lost + 1) * xrun_every:
            lost += 1
        computed = (int((now - start) * rate) // block - lost) * block   # whole blocks done by now
        if computed > 0:
            clock.observe(now, computed / 48000)
        if now > start + 600:
            wall = start + (computed + lost * block) / rate     # when the newest block was really computed
            worst = max(worst, abs(clock.wall(computed / 48000) - wall))
    return worst


@pytest.mark.parametrize("ppm", [-100.0, 0.0, 100.0])
def test_midi_clock_out_follows_a_sound_card_crystal_that_drifts(ppm):
    # within 1.5 blocks of the truth after an hour, whichever way the crystal errs
    assert audio_clock_error(ppm, window=1.0) < 1.5 * 64 / 48000


def test_midi_clock_out_follows_the_audio_through_xruns():
    # an xrun every 2 s (as this VM's dummy JACK has): the audio is 1.33 ms later each time
    assert audio_clock_error(0.0, window=1.0, xrun_every=2.0, seconds=1200) < 2.5 * 64 / 48000


def test_a_minimum_over_all_time_loses_a_slow_crystal():
    # what the window is for: over all time, a card 100 ppm slow is 0.3 s off within the hour
    assert audio_clock_error(-100.0, window=float("inf")) > 0.3


def test_midi_clock_out_sends_24_ticks_a_beat_while_the_beat_estimates_wobble():
    # The estimates of where beats fall move by up to +-12 ms (more than half a tick at
    # 300 BPM: 8.3 ms) from one look to the next; a receiver counts ticks to find its place
    # in the bar, so not one may be lost or added.
    sent: list[tuple[float, bytes]] = []
    sender = ClockSender(lambda data: sent.append((time.monotonic(), bytes(data))))
    rng = random.Random(3)
    length = 0.2                                     # 300 BPM
    start = time.monotonic() + 0.05
    sender.start()
    try:
        beat = 1
        while time.monotonic() < start + 2.2:
            now = time.monotonic()
            beat = max(beat, int((now - start) / length) + 1)
            sender.follow(beat, start + (beat - 1) * length + rng.uniform(-0.012, 0.012), length)
            time.sleep(0.005)
    finally:
        sender.stop()
    stopped = time.monotonic()
    ticks = [at for at, data in sent if data == bytes([0xF8])]
    # the first tick on a beat (a slow machine may start a bar later: Start never bunches ticks),
    # then every tick of the grid to the stop, give or take the first and last: Start anchors
    # tick 0 to an estimate of its beat, up to 12 ms (1.44 ticks) off
    beat = round((ticks[0] - start) / length)
    assert abs(ticks[0] - (start + beat * length)) <= 0.012 + length / 24
    assert abs(len(ticks) - (stopped - (start + beat * length)) / (length / 24)) <= 2.5
    assert sender.resyncs == 0


def test_midi_clock_out_restarts_on_a_new_beat_not_the_stale_one():
    # After a stop the channels still hold the last beat; a start must wait for the next
    # beat the clock plays (no burst, no ticks on the old grid), and an engine restart
    # (beats numbered from 1 again) must not leave the clock silent.
    sent: list[tuple[float, bytes]] = []
    sender = ClockSender(lambda data: sent.append((time.monotonic(), bytes(data))))
    length = 0.2
    old = time.monotonic() - 1.0
    sender.follow(40, old, length)
    sender.start()
    try:
        while time.monotonic() < old + 1.3:
            sender.follow(40, old, length)           # the stale beat, again and again
            time.sleep(0.005)
        assert sent == []                              # Start waits for the beat it starts on
        first = time.monotonic() + 0.05
        end = first + 3 * length
        while time.monotonic() < end:                # the engine restarted: beat 1, 2, ...
            beat = max(1, int((time.monotonic() - first) / length) + 1)
            sender.follow(beat, first + (beat - 1) * length, length)
            time.sleep(0.005)
    finally:
        sender.stop()
    ticks = [at for at, data in sent if data == bytes([0xF8])]
    assert ticks[0] >= first - 0.002                 # on the new beat, not before it
    assert abs(len(ticks) - 3 * 24) <= 2
    assert sent[0][1] == bytes([0xFA]) and 0 <= ticks[0] - sent[0][0] <= 0.003   # Start just before it


def test_followed_clock_sets_the_tempo_and_transport():
    rig = Rig(follow_clock=True, tempo=90)
    for t in clock_ticks(128.0, 0.0, 4):
        rig.feed(MidiEvent("Drum machine 16:0", bytes([0xF8]), t))
        rig.poll(t)
    assert rig["tempo"] == pytest.approx(128.0, abs=0.3)
    rig.feed(MidiEvent("Drum machine 16:0", bytes([0xFC]), 3.0), MidiEvent("Drum machine 16:0", bytes([0xFA]), 4.0))
    assert [a.name for a in rig.actions] == ["stop", "start"]
    ignoring = Rig(tempo=90)
    ignoring.feed(MidiEvent("Drum machine 16:0", bytes([0xFA]), 1.0))
    assert ignoring.actions == []


def test_a_mapping_to_an_unknown_parameter_is_counted_not_fatal():
    rig = Rig(Mapping(kind="cc", number=40, param="wobble"), Mapping(kind="cc", number=41, param="reverb"))
    rig.feed(MidiEvent("Knobs", bytes([0xB0, 40, 100]), 1.0), MidiEvent("Knobs", bytes([0xB0, 41, 127]), 1.0))
    assert rig["reverb"] == 1.0 and rig.controls.router.invalid == 1


def test_unlearn_forgets_only_what_was_learned_to_that_name():
    rig = Rig(Mapping(kind="cc", number=7, param="volume"))
    for name, cc in (("reverb", 40), ("echo", 41), ("reverb", 42)):
        rig.controls.router.learning = name
        rig.feed(MidiEvent("Knobs", bytes([0xB0, cc, 0]), 1.0))
    assert rig.controls.unlearn("reverb") == 2
    assert sorted(m.param for m in rig.controls.router.mappings) == ["echo", "volume"]
    assert [m.param for m in rig.controls.learned] == ["echo"]


def test_a_port_that_vanishes_while_opening_is_retried_later():
    """rtmidi raises InvalidPortError (a ValueError) when a port goes between listing and
    opening: a backed-off retry, not the end of the start or of hotplug."""
    import rtmidi

    from appliance.controls.inbox import Inbox
    from appliance.controls.midi import backends, manager

    class Racing(backends.SimBackend):
        raced = 0

        def open_input(self, name, inbox):
            if not self.raced:
                self.raced += 1
                raise rtmidi.InvalidPortError(f"port {name!r} is gone")
            return super().open_input(name, inbox)

    midi = manager.MidiManager(Racing(["Knobs"]), Inbox())
    midi.scan()                                        # the race: no exception, no device yet
    assert midi.inputs == {}
    midi._failed["Knobs"] = 0.0                        # the back-off has passed
    midi.scan()
    assert list(midi.inputs) == ["Knobs"]


def _play_clock(sender: ClockSender, first: int, at: float, length: float, until: float) -> None:
    """Publish beats first, first + 1, ... starting at wall time `at`, as the loop does, until `until`."""
    while time.monotonic() < until:
        beat = max(first, first + int((time.monotonic() - at) / length))
        sender.follow(beat, at + (beat - first) * length, length)
        time.sleep(0.005)


def _sent_ticks(sent: list[tuple[float, bytes]]) -> list[float]:
    return [at for at, data in sent if data == bytes([0xF8])]


def test_midi_clock_start_lands_on_the_downbeat_the_clock_plays():
    sent: list[tuple[float, bytes]] = []
    sender = ClockSender(lambda data: sent.append((time.monotonic(), bytes(data))), beats_per_bar=4)
    length = 0.2
    sender.follow(10, time.monotonic() - 1.0, length)     # stopped at beat 10: a stale beat
    sender.start()
    downbeat = time.monotonic() + 0.05                     # the clock starts again on the next bar: beat 13
    try:
        _play_clock(sender, 13, downbeat, length, downbeat + 2 * length)
    finally:
        sender.close()
    ticks = _sent_ticks(sent)
    half_tick = length / 24 / 2                            # "on the downbeat": nearer it than any other tick
    assert sent[0][1] == bytes([0xFA]) and 0 <= ticks[0] - sent[0][0] <= half_tick
    assert abs(ticks[0] - downbeat) < half_tick             # tick 0 on the downbeat, none missing
    assert abs(len(ticks) - 2 * 24) <= 1


def test_midi_clock_start_waits_a_bar_rather_than_bunch_a_late_downbeat():
    sent: list[tuple[float, bytes]] = []
    sender = ClockSender(lambda data: sent.append((time.monotonic(), bytes(data))), beats_per_bar=4)
    length = 0.2
    sender.start()
    downbeat = time.monotonic() - 0.05                     # beat 1 sounded 50 ms ago: too late for it
    try:
        _play_clock(sender, 1, downbeat, length, downbeat + 6 * length)
    finally:
        sender.close()
    ticks = _sent_ticks(sent)
    assert abs(ticks[0] - (downbeat + 4 * length)) < length / 48   # the next bar's downbeat, beat 5
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 1.5 * length / 24   # and evenly from there


def test_midi_clock_continue_sends_the_song_position_then_continue_on_the_beat():
    sent: list[tuple[float, bytes]] = []
    sender = ClockSender(lambda data: sent.append((time.monotonic(), bytes(data))), beats_per_bar=4)
    length = 0.2
    sender.follow(10, time.monotonic() - 1.0, length)
    sender.continue_()
    beat = time.monotonic() + 0.05                         # it goes on at the next beat: 11
    try:
        _play_clock(sender, 11, beat, length, beat + length)
    finally:
        sender.close()
    assert [data for _, data in sent[:2]] == [bytes([0xF2, 40, 0]), bytes([0xFB])]   # 10 beats = 40 16ths
    assert abs(_sent_ticks(sent)[0] - beat) < length / 48


def test_midi_clock_can_tick_on_while_stopped():
    sent: list[tuple[float, bytes]] = []
    sender = ClockSender(lambda data: sent.append((time.monotonic(), bytes(data))), beats_per_bar=4,
                         while_stopped=True)
    length = 0.2
    sender.start()
    first = time.monotonic() + 0.02
    try:
        _play_clock(sender, 1, first, length, first + 2 * length)
        sender.stop()
        stopped = time.monotonic()
        time.sleep(2 * length)                              # the clock publishes nothing while stopped
        during = [t for t in _sent_ticks(sent) if t > stopped]
    finally:
        sender.close()
    assert [d for _, d in sent].count(bytes([0xFA])) == 1 and bytes([0xFC]) in [d for _, d in sent]
    assert abs(len(during) - 2 * 24) <= 2                  # on at the last tempo


def test_midi_clock_is_followed_only_from_the_chosen_device():
    """Two devices send clock (norns #1754: several sources tripled the tempo); clock_in picks one."""
    rig = Rig(follow_clock=True, tempo=100)
    rig.controls.clock_in = "Drums"
    t_drums, t_synth = 10.0, 10.0
    for _ in range(3 * 24):
        t_drums += 60 / 120 / 24                            # the chosen one at 120 BPM
        rig.feed(MidiEvent("Drums 24:0", bytes([0xF8]), t_drums))
        for _ in range(2):                                  # the other one at 180 BPM, interleaved
            t_synth += 60 / 180 / 24
            rig.feed(MidiEvent("Synth 28:0", bytes([0xF8]), t_synth))
        rig.poll(t_drums)
    assert rig["tempo"] == pytest.approx(120, abs=1.0)


@pytest.mark.parametrize("ppm", [-50.0, 0.0, 50.0])
def test_midi_messages_are_stamped_when_they_arrived_not_when_taken(ppm):
    # an hour of MIDI clock at 120 BPM, each taken from the port 0-3 ms after it arrived
    # (a poll, a GIL wait); the port's clock runs `ppm` apart from ours
    from appliance.controls.midi.backends import MessageClock

    rng = random.Random(7)
    clock, previous, worst_taken, worst_stamp = MessageClock(), None, 0.0, 0.0
    for i in range(24 * 2 * 3600):
        arrived = 100.0 + i * 0.5 / 24
        taken = arrived + rng.uniform(0.0, 0.003)
        delta = 0.0 if previous is None else (arrived - previous) * (1 + ppm * 1e-6)
        previous = arrived
        stamped = taken - clock.lag(delta, taken)
        assert stamped <= taken
        if i > 24 * 60:                      # a minute in: the best-taken messages have been seen
            worst_taken = max(worst_taken, taken - arrived)
            worst_stamp = max(worst_stamp, abs(stamped - arrived))
    assert worst_taken > 0.0029              # what stamping by the taking time would have cost
    assert worst_stamp < 0.0005              # 0.42 ms at +50 ppm (the upward creep), 0.23 at -50


def test_notes_out_sends_each_step_on_its_beat_with_swing_and_lets_go_at_stop():
    """Steps composed ahead are sent when their beat (published or predicted from the one
    before) says they are heard: never early, every one, on its voice's channel; a recomposed
    step replaces the first; stop ends what sounds."""
    from appliance.controls.midi.notes import NoteSender, step_fraction
    from appliance.music.generator import Note

    sent: list[tuple[float, bytes]] = []
    sender = NoteSender(lambda data: sent.append((time.monotonic(), bytes(data))),
                        {"Lead": 1, "Perc": 10}, steps_per_beat=4)
    length, swing = 0.24, 0.6
    start = time.monotonic() + 0.15
    sender.follow(1, start, length, swing)               # only the first beat is ever published
    for step in range(12):
        sender.compose(step, [Note("Lead", 60 + step, 0.5, 0.5), Note("Bass", 40, 0.5, 1.0)])
    sender.compose(5, [Note("Perc", 38, 1.0, 0.1)])     # recomposed: a drum instead
    sender.start()
    time.sleep(start + 3 * length + 0.1 - time.monotonic())
    sender.stop()
    sender.close()
    ons = [(at, data) for at, data in sent if data[0] & 0xF0 == 0x90]
    assert [d[1] for _, d in ons] == [60, 61, 62, 63, 64, 38, 66, 67, 68, 69, 70, 71]
    assert [d[0] & 0x0F for _, d in ons] == [0] * 5 + [9] + [0] * 6           # Bass has no channel: not sent
    for step, (at, _) in enumerate(ons):
        due = start + (step // 4) * length + step_fraction(step % 4, 4, swing) * length
        assert at >= due - 0.0005, step                   # never early (late only by this machine)
    assert abs(step_fraction(1, 4, 0.6) - 0.3) < 1e-12 and step_fraction(2, 4, 0.6) == 0.5
    offs = [data for _, data in sent if data[0] & 0xF0 == 0x80]
    assert sorted(d[1] for d in offs) == sorted(d[1] for _, d in ons)        # every note let go
    assert sent[-1][1] in {bytes([0xB0, 123, 0]), bytes([0xB9, 123, 0])}     # and all notes off
