"""MIDI mappings: every mode, 14-bit and NRPN, triggers, learn, and garbage."""

from __future__ import annotations

import random

import pytest

from appliance.controls.midi.mapping import Learned, Mapping, ParamSet, Realtime, Router, Trigger, device_key
from appliance.params import PARAMETERS, ParamStore


class Desk:
    """A router and a parameter store, applying what the router says like the control loop."""

    def __init__(self, *mappings: Mapping, **values: float) -> None:
        self.store = ParamStore(PARAMETERS)
        for name, value in values.items():
            self.store.set(name, value)
        self.router = Router(PARAMETERS, list(mappings))

    def send(self, *data: int, port: str = "Knobs 20:0") -> list:
        routed = self.router.route(port, bytes(data), self.store.get)
        for item in routed:
            if isinstance(item, ParamSet):
                self.store.set(item.name, item.value)
        return routed

    def cc(self, number: int, value: int, channel: int = 1, port: str = "Knobs 20:0") -> list:
        return self.send(0xB0 | (channel - 1), number, value, port=port)

    def __getitem__(self, name: str) -> float:
        return self.store.get(name)


TEMPO = Mapping(kind="cc", number=20, param="tempo", low=60, high=180)


def test_jump_follows_the_knob_within_the_mapped_range():
    desk = Desk(TEMPO)
    desk.cc(20, 127)
    assert desk["tempo"] == 180
    desk.cc(20, 0)
    assert desk["tempo"] == 60
    desk.cc(20, 64)
    assert desk["tempo"] == pytest.approx(60 + 120 * 64 / 127, abs=0.05)


def test_channel_and_device_filters():
    desk = Desk(Mapping(kind="cc", number=20, param="density", channel=2, device="knobs"))
    desk.cc(20, 127, channel=1)
    assert desk["density"] == PARAMETERS.spec("density").default
    desk.cc(20, 127, channel=2, port="Other 21:0")
    assert desk["density"] == PARAMETERS.spec("density").default
    desk.cc(20, 127, channel=2, port="My Knobs 24:0")
    assert desk["density"] == 1.0


def test_inverted_range_and_curves():
    desk = Desk(Mapping(kind="cc", number=1, param="density", low=1, high=0))
    desk.cc(1, 127)
    assert desk["density"] == 0.0
    exp = Desk(Mapping(kind="cc", number=1, param="density", curve="exp"))
    exp.cc(1, 64)
    assert exp["density"] < 0.3      # exp spends the first half of the knob on the bottom
    log = Desk(Mapping(kind="cc", number=1, param="density", curve="log"))
    log.cc(1, 64)
    assert log["density"] > 0.7


def test_pickup_waits_until_the_knob_passes_the_value():
    desk = Desk(Mapping(kind="cc", number=20, param="tempo", low=60, high=180, mode="pickup"), tempo=100)
    # the value sits at knob 1/3; coming from above, nothing happens until the knob crosses it
    for value in (110, 90, 64, 50):
        desk.cc(20, value)
        assert desk["tempo"] == 100
    desk.cc(20, 30)                        # crossed 1/3 (42.3): picked up
    assert desk["tempo"] == pytest.approx(60 + 120 * 30 / 127, abs=0.05)
    desk.cc(20, 120)
    assert desk["tempo"] == pytest.approx(60 + 120 * 120 / 127, abs=0.05)
    desk.store.set("tempo", 120)           # a preset or another control moves it
    desk.cc(20, 125)
    assert desk["tempo"] == 120            # dropped: pick it up again
    desk.cc(20, 60)                        # crosses 63.5
    assert desk["tempo"] == pytest.approx(60 + 120 * 60 / 127, abs=0.05)


def test_pickup_is_not_engaged_at_start():
    desk = Desk(Mapping(kind="cc", number=5, param="density", mode="pickup"), density=0.2)
    desk.cc(5, 120)
    assert desk["density"] == 0.2


def test_scale_moves_the_value_so_it_meets_the_knob_at_the_ends():
    desk = Desk(Mapping(kind="cc", number=7, param="density", mode="scale"), density=0.5)
    desk.cc(7, 100)                        # the first message only tells where the knob is
    assert desk["density"] == 0.5
    desk.cc(7, 127)                        # to the top: the value goes to the top too
    assert desk["density"] == 1.0
    desk = Desk(Mapping(kind="cc", number=7, param="density", mode="scale"), density=0.5)
    desk.cc(7, 100)
    desk.cc(7, 50)                         # halfway down the knob's remaining travel
    assert desk["density"] == pytest.approx(0.5 - 0.5 * 50 / 100, abs=1e-6)
    desk.cc(7, 0)
    assert desk["density"] == 0.0


@pytest.mark.parametrize("mode,up,down", [("relative-twos", 1, 127), ("relative-offset", 65, 63),
                                          ("relative-signed", 1, 65)])
def test_relative_encoders(mode, up, down):
    desk = Desk(Mapping(kind="cc", number=30, param="tempo", mode=mode, step=1), tempo=100)
    desk.cc(30, up)
    desk.cc(30, up)
    assert desk["tempo"] == 102
    desk.cc(30, down)
    assert desk["tempo"] == 101
    triple = {"relative-twos": 3, "relative-offset": 67, "relative-signed": 3}[mode]
    desk.cc(30, triple)
    assert desk["tempo"] == 104
    for _ in range(500):
        desk.cc(30, up)
    assert desk["tempo"] == 300            # clamped at the parameter's top


@pytest.mark.parametrize("name,ticks,expected", [("swing", 4, 52.0), ("swing", -4, 50.0), ("density", 10, 0.65),
                                                 ("hits", 3, 8)])
def test_relative_encoders_move_every_parameter_without_a_step(name, ticks, expected):
    desk = Desk(Mapping(kind="cc", number=31, param=name, mode="relative-twos"))
    for _ in range(abs(ticks)):
        desk.cc(31, 1 if ticks > 0 else 127)
    assert desk[name] == pytest.approx(expected)


def test_14_bit_pairs():
    desk = Desk(Mapping(kind="cc14", number=1, param="density"))
    desk.cc(1, 0x40)                       # MSB alone counts until an LSB has been seen
    assert desk["density"] == pytest.approx(0x2000 / 16383, abs=1e-4)
    desk.cc(33, 0x7F)
    assert desk["density"] == pytest.approx(0x207F / 16383, abs=1e-4)
    desk.cc(1, 0x7F)                       # now the MSB waits for its LSB: no glitch
    assert desk["density"] == pytest.approx(0x207F / 16383, abs=1e-4)
    desk.cc(33, 0x7F)
    assert desk["density"] == 1.0


def test_nrpn_with_data_entry_and_increments():
    desk = Desk(Mapping(kind="nrpn", number=300, param="tempo", step=1), tempo=100)
    desk.cc(99, 300 >> 7)
    desk.cc(98, 300 & 0x7F)
    desk.cc(6, 0x7F)
    desk.cc(38, 0x7F)
    assert desk["tempo"] == 300
    desk.cc(97, 0)                         # data decrement
    assert desk["tempo"] == 299
    desk.cc(99, 0)                         # another NRPN: this mapping is left alone
    desk.cc(98, 5)
    desk.cc(6, 0)
    assert desk["tempo"] == 299


def test_notes_programs_and_cc_buttons_trigger_actions():
    desk = Desk(Mapping(kind="note", number=60, action="tap_tempo"),
                Mapping(kind="program", number=None, action="preset"),
                Mapping(kind="cc", number=64, action="start_stop"))
    assert desk.send(0x90, 60, 100) == [Trigger("tap_tempo", 60, desk.router.mappings[0])]
    assert desk.send(0x90, 61, 100) == []
    assert desk.send(0x90, 60, 0) == []    # note-on at velocity 0 is a note-off
    assert [t.argument for t in desk.send(0xC3, 7)] == [7]
    assert [t.action for t in desk.cc(64, 127)] == ["start_stop"]
    assert desk.cc(64, 127) == []          # held: no repeat
    assert desk.cc(64, 0) == []
    assert [t.action for t in desk.cc(64, 100)] == ["start_stop"]


def test_clock_and_transport_messages():
    desk = Desk()
    assert desk.send(0xF8) == [Realtime("tick")]
    assert desk.send(0xFA) == [Realtime("start")]
    assert desk.send(0xFC) == [Realtime("stop")]
    assert desk.send(0xFE) == []           # active sensing: nothing


def test_learn_maps_the_next_control_moved():
    desk = Desk(density=0.3)
    desk.router.learning = "density"
    routed = desk.cc(21, 127, channel=3, port="nanoKONTROL2 24:0")
    learned = next(r for r in routed if isinstance(r, Learned)).mapping
    assert (learned.kind, learned.number, learned.channel, learned.param, learned.mode) == (
        "cc", 21, 3, "density", "pickup")
    assert learned.device == "nanoKONTROL2"         # the plug number is not part of the name
    assert desk["density"] == 1.0                   # the learning move takes the value over
    desk.cc(21, 0, channel=3, port="nanoKONTROL2 28:0")   # replugged: new number, same device
    assert desk["density"] == 0.0
    assert desk.router.learning is None
    desk.router.learning = "tap_tempo"
    desk.send(0x90, 36, 90)
    assert desk.router.mappings[-1].action == "tap_tempo" and desk.router.mappings[-1].kind == "note"


def test_device_keys_drop_plug_numbers():
    assert device_key("nanoKONTROL2:nanoKONTROL2 nanoKONTROL2 _ CTRL 24:0") == \
        "nanoKONTROL2:nanoKONTROL2 nanoKONTROL2 _ CTRL"
    assert device_key("a2j:Launch Control [20] (capture): Launch Control") == \
        "a2j:Launch Control (capture): Launch Control"


def test_feedback_sends_the_value_back():
    desk = Desk(Mapping(kind="cc", number=20, param="tempo", low=60, high=180, feedback=True, channel=2),
                Mapping(kind="cc14", number=3, param="density", feedback=True))
    assert desk.router.feedback("tempo", 120)[0][1] == [bytes([0xB1, 20, 64])]
    assert desk.router.feedback("density", 1.0)[0][1] == [bytes([0xB0, 3, 0x7F]), bytes([0xB0, 35, 0x7F])]
    assert desk.router.feedback("reverb", 0.5) == []


@pytest.mark.parametrize("garbage", [
    [0x20, 0x30], [0xB0, 200, 3], [0xB0, 20], [0xC0], [], [0xF0, 1, 2, 3, 0xF7], [0xF4], [0x90, 60],
])
def test_garbage_is_counted_and_ignored(garbage):
    desk = Desk(TEMPO, tempo=100)
    assert desk.send(*garbage) == []
    assert desk["tempo"] == 100


def test_random_bytes_never_crash_the_router():
    rng = random.Random(5)
    desk = Desk(TEMPO, Mapping(kind="nrpn", number=1, param="density"),
                Mapping(kind="cc14", number=2, param="reverb"), Mapping(kind="note", number=60, action="click"))
    for _ in range(20000):
        desk.send(*[rng.randrange(256) for _ in range(rng.randrange(5))])
    assert desk.router.invalid > 1000
    assert 60 <= desk["tempo"] <= 180


def test_a_learned_mapping_follows_its_device_across_a_replug():
    desk = Desk(reverb=0.0)
    desk.router.learning = "reverb"
    before = "a2j:nanoKONTROL2 [20] (capture): nanoKONTROL2 MIDI 1"
    desk.cc(40, 64, port=before)
    learned = desk.router.mappings[-1]
    after = "a2j:nanoKONTROL2 [24] (capture): nanoKONTROL2 MIDI 1"    # plugged again: a new number
    assert learned.accepts(after, 1)
    desk.cc(40, 127, port=after)
    assert desk["reverb"] == 1.0
    assert not learned.accepts("a2j:Other [24] (capture): Other MIDI 1", 1)


def test_learning_a_control_the_config_maps_takes_it_over():
    desk = Desk(Mapping(kind="cc", number=21, param="density"), tempo=100, density=0.5)
    desk.router.learning = "tempo"
    desk.cc(21, 64)                          # the learning move
    desk.cc(21, 127)
    assert desk["tempo"] == 300 and desk["density"] == 0.5        # one knob, one parameter
    assert [m.param for m in desk.router.mappings] == ["tempo"]


def test_the_messages_a_truncated_sysex_swallowed_are_taken_back():
    from appliance.controls.midi.backends import salvage_sysex

    swallowed = bytes([0xF0, 0x01, 0x02, 0xB0, 20, 2, 20, 3, 0x90, 60, 100, 0xF7])   # running status too
    assert salvage_sysex(swallowed) == [bytes([0xB0, 20, 2]), bytes([0xB0, 20, 3]), bytes([0x90, 60, 100])]
    assert salvage_sysex(bytes([0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7])) == []           # a real SysEx
