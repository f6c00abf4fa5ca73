"""OSC over the loopback: a real service, a real UDP client (python-osc builds the messages)."""

from __future__ import annotations

import json
import socket
import time

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from tests.test_service import GOOD_CONFIG, Box


class Client:
    """A phone on the LAN: sends from one UDP port and hears what comes back to it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.to = ("127.0.0.1", port)

    def send(self, address: str, *values: object) -> None:
        builder = OscMessageBuilder(address=address)
        for value in values:
            builder.add_arg(value)
        self.sock.sendto(builder.build().dgram, self.to)

    def heard(self, seconds: float = 2.0, until: str | None = None) -> list[tuple[str, list]]:
        got: list[tuple[str, list]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            got += [(t.message.address, list(t.message.params)) for t in OscPacket(data).messages]
            if until is not None and any(address == until for address, _ in got):
                break
        return got


# port 0: the box takes a free one and says which (no race with another test for a port)
OSC_CONFIG = GOOD_CONFIG + '[osc]\nlisten = "127.0.0.1:0"\n' + \
    "[midi]\nsim_devices = ['Sim Controller']\n[[midi.map]]\ncc = 74\nparam = 'brightness'\n"


def osc_port(box: Box) -> int:
    osc = json.loads(box.ok("status", "--json"))["osc"]
    assert osc is not None, "OSC is not running"
    return int(osc["listen"].rsplit(":", 1)[1])


@pytest.fixture
def osc_box(tmp_path):
    box = Box(tmp_path, config=OSC_CONFIG)
    yield box, osc_port(box)
    if box.process.poll() is None:
        box.stop()


def test_osc_sets_parameters_in_units_and_through_the_curve(osc_box):
    box, port = osc_box
    client = Client(port)
    client.send("/param/tempo", 128.5)
    client.send("/param/scale", "lydian")
    client.send("/param/volume/norm", 0.5)
    deadline = time.monotonic() + 5
    while box.ok("get", "tempo") != "128.5 BPM" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box.ok("get", "tempo") == "128.5 BPM"
    assert box.ok("get", "scale") == "lydian"
    assert box.ok("get", "volume") == "-30.0 dB"                  # halfway along -60..0


def test_osc_refuses_and_counts_what_it_cannot_take_and_plays_on(osc_box):
    box, port = osc_box
    client = Client(port)
    client.send("/param/tempo", 900.0)                          # out of range
    client.send("/param/tempi", 120.0)                          # unknown parameter
    client.send("/param/density/norm", 1.5)                     # norm outside 0..1
    client.send("/nowhere", 1)                                  # unknown address
    client.send("/param/tempo", "fast")                         # not a tempo
    for junk in (b"", b"\x00" * 7, b"/param/tempo\x00\x00\x00\x00,f\x00\x00", b"#bundle\x00" + b"\xff" * 40,
                 bytes(range(256)) * 100):
        client.sock.sendto(junk, client.to)
    client.send("/status")
    status = dict((a.rsplit("/", 1)[1], v[0]) for a, v in client.heard(until="/status/scale"))
    assert status["tempo"] == 111.0 and status["transport"] == "playing"
    osc = json.loads(box.ok("status", "--json"))["osc"]
    assert osc["refused"].get("value", 0) >= 3
    assert osc["refused"].get("unknown parameter", 0) == 1 and osc["refused"].get("unknown address", 0) == 1
    assert osc["refused"].get("malformed", 0) >= 3
    assert box.ok("get", "tempo") == "111.0 BPM"                 # nothing refused was applied
    report = box.stop()
    assert report["late_notes"] == 0 and report["notes"] > 0


def test_every_change_is_fed_back_to_clients_that_spoke_whatever_its_source(tmp_path):
    """A TouchOSC fader follows a MIDI knob (here a simulated controller's CC 74 at 6 s) and
    the command line; a client that never spoke hears nothing."""
    scenario = tmp_path / "knob.toml"
    scenario.write_text("[[event]]\nat = 6.0\nmidi = { type = 'control_change', control = 74, value = 127 }\n")
    box = Box(tmp_path, config=OSC_CONFIG, extra=("--scenario", str(scenario)))
    try:
        port = osc_port(box)
        client, silent = Client(port), Client(port)
        client.send("/status")
        client.heard(until="/status/scale")
        box.ok("set", "density", "0.25")
        heard = client.heard(seconds=15.0, until="/param/brightness")
        assert ("/param/density", [0.25]) in heard
        assert ("/param/brightness", [1.0]) in heard
        assert silent.heard(seconds=0.3) == []
    finally:
        box.stop()


def test_a_flood_of_osc_is_counted_not_queued_and_the_music_plays_on(osc_box):
    """20,000 messages as fast as this machine sends them (a bounded loop): every one is either
    applied or counted as refused, the box still answers and no note is late."""
    box, port = osc_box
    client = Client(port)
    sent = 0
    deadline = time.monotonic() + 20
    while sent < 20000 and time.monotonic() < deadline:
        client.send("/param/brightness", (sent % 100) / 100)
        sent += 1
    time.sleep(0.5)
    osc = json.loads(box.ok("status", "--json"))["osc"]
    assert 0 < osc["received"] <= sent                      # UDP may drop some when the buffer is full
    assert set(osc["refused"]) <= {"busy"}
    client.send("/param/brightness", 0.77)                 # and after it, OSC still works
    deadline = time.monotonic() + 5
    while box.ok("get", "brightness") != "0.77" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box.ok("get", "brightness") == "0.77"
    assert box.stop()["late_notes"] == 0
