"""MIDI clock out: how evenly the ticks arrive at another instrument, against the alternatives.

    python bench/midi_clock.py --out FILE.json [--seconds S] [--tempo BPM]

A JACK server (dummy driver, 48 kHz, 64-frame periods) carries audio and MIDI.
A receiver process (the "other instrument") opens three JACK MIDI inputs and
stamps every tick with rtmidi's JACK time (taken in its process callback, so
in whole JACK periods, 1.33 ms: the resolution a receiver has).  Three
senders run at once, the same tempo, each at SCHED_FIFO 10 where allowed:

  appliance   this instrument (Csound through JACK) with clock_out set: ticks
              scheduled from the beats Csound's clock publishes
  deadline    a Python thread sending at absolute deadlines of the system
              clock (the best a thread can do without an audio clock)
  naive       send, then time.sleep(one tick) (the usual first attempt)

Per sender: jitter (each tick's distance from the straight line fitted
through all ticks), tempo error against the set tempo (ppm), and ticks that
came bunched (< half a tick apart) or late (> 1.5 ticks apart).  Idle, then
with every core loaded by stress-ng.  On this dummy server the audio clock
is the system clock; with a sound card it is the card's crystal, which the
deadline sender cannot follow and the appliance does (AudioClockMap).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from jack_server import PERIOD, RATE, dummy_jack, stress_all_cores

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENDERS = ("appliance", "deadline", "naive")
SINK = "{}Sink"                 # the receiver's input port for each sender
SETTLE = 3.0                    # seconds of ticks left out at the start (ports found, clock started)

CONFIG = """
[audio]
backend = "jack"
buffer = 64
hardware_buffer = 128
[midi]
backend = "jack"
scan_seconds = 0.25
clock_out = "ApplianceSink"
"""


def receive(seconds: float, out: Path) -> None:
    """The other instrument: stamp every tick on each sink with JACK's time.  rtmidi's
    callback runs in C++ in JACK's thread; no Python there to disturb the graph."""
    import rtmidi

    ports = {}
    for sender in SENDERS:
        port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"clock-{sender}", queue_size_limit=8192)
        port.ignore_types(sysex=True, timing=False, active_sense=True)
        port.open_virtual_port(SINK.format(sender.capitalize()))
        ports[sender] = port
    ticks: dict[str, list[float]] = {sender: [] for sender in SENDERS}
    clocks = dict.fromkeys(SENDERS, 0.0)       # the sum of rtmidi's deltas: JACK time since the first message
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        idle = True
        for sender, port in ports.items():
            while (item := port.get_message()) is not None:
                message, delta = item
                clocks[sender] += delta
                if message == [0xF8]:
                    ticks[sender].append(clocks[sender])
                idle = False
        if idle:
            time.sleep(0.001)
    for port in ports.values():
        port.close_port()
    out.write_text(json.dumps(ticks))


def send(kind: str, tempo: float, seconds: float) -> None:
    """A Python sender: `deadline` or `naive`."""
    import rtmidi

    from appliance.engine.rtprio import raise_this_thread

    port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"sender-{kind}")
    sink = SINK.format(kind.capitalize())
    names = port.get_ports()
    port.open_port(next(i for i, name in enumerate(names) if sink in name))
    raise_this_thread(10, "sender")                 # as the appliance's clock thread (control loop's priority)
    tick = 60.0 / tempo / 24
    start = time.monotonic()
    due = start
    while time.monotonic() < start + seconds:
        port.send_message([0xF8])
        if kind == "naive":
            time.sleep(tick)
        else:
            due += tick
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    port.close_port()


def run(tempo: float, seconds: float, loaded: bool, tmp: Path) -> dict:
    from appliance import config as config_module
    from appliance.engine.engine import RealtimeOutput
    from appliance.instrument.instrument import Instrument

    config_path = tmp / "clock.toml"
    config_path.write_text(CONFIG)
    ticks_file = tmp / "ticks.json"
    receiver = subprocess.Popen([sys.executable, __file__, "--receive", str(seconds + 6), "--ticks", str(ticks_file)])
    time.sleep(1.5)                                        # its ports exist
    stress = stress_all_cores() if loaded else None
    instrument = Instrument(config_module.load(config_path), {"tempo": tempo}, simulate=False)
    instrument.open(RealtimeOutput(backend="jack", buffer=64, hardware_buffer=128, realtime_priority=70))
    instrument.perform()
    senders = [subprocess.Popen([sys.executable, __file__, "--send", kind, "--tempo", str(tempo),
                                 "--seconds", str(seconds)]) for kind in SENDERS[1:]]
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    audio_rate: list[tuple[float, float]] = []     # (wall, audio) while the ticks are measured

    def note_audio_rate() -> None:
        audio = instrument.audio_time()             # then the wall: never earlier than the truth
        now = time.monotonic()
        if not audio_rate or now - audio_rate[-1][0] > 1.0:
            audio_rate.append((now, audio))

    try:
        instrument.run(None, stop, on_tick=note_audio_rate)
    finally:
        instrument.close()
        for process in senders:
            process.wait()
        receiver.wait()
        if stress is not None:
            stress.terminate()
            stress.wait()
    report = instrument.report()
    lateness_ms = np.array(instrument.hardware.clock_out.lateness)[int(SETTLE * tempo / 60 * 24):] * 1000
    ticks = json.loads(ticks_file.read_text())
    (wall0, audio0), (wall1, audio1) = audio_rate[int(SETTLE) + 1], audio_rate[-1]
    return {"tempo": tempo, "seconds": seconds, "cores_loaded": loaded,
            "appliance_xruns": report["xruns"], "appliance_late_notes": report["late_notes"],
            # how much slower the appliance's audio ran than the wall clock (lost periods at xruns):
            # its ticks follow the audio, so their tempo error should match this
            "appliance_audio_rate_error_ppm": round(((audio1 - audio0) / (wall1 - wall0) - 1) * 1e6, 1),
            # in the appliance, before rtmidi and JACK: how late its clock thread sent each tick
            "appliance_send_lateness_ms": {"ticks": int(lateness_ms.size),
                                           "p50": round(float(np.percentile(lateness_ms, 50)), 3),
                                           "p99": round(float(np.percentile(lateness_ms, 99)), 3),
                                           "max": round(float(lateness_ms.max()), 3)},
            "senders": {sender: analyse(np.array(ticks[sender]), tempo) for sender in SENDERS}}


def analyse(ticks: np.ndarray, tempo: float) -> dict:
    nominal = 60.0 / tempo / 24
    if ticks.size < 100:
        return {"ticks": int(ticks.size), "error": "too few ticks arrived"}
    ticks = ticks[ticks >= ticks[0] + SETTLE]
    intervals = np.diff(ticks)
    index = np.arange(ticks.size)
    slope, intercept = np.polyfit(index, ticks, 1)
    residual_ms = np.abs(ticks - (intercept + slope * index)) * 1000
    return {
        "ticks": int(ticks.size),
        "jitter_max_ms": round(float(residual_ms.max()), 3),
        "jitter_p99_ms": round(float(np.percentile(residual_ms, 99)), 3),
        "jitter_std_ms": round(float(np.std(residual_ms)), 3),
        "interval_min_ms": round(float(intervals.min()) * 1000, 3),
        "interval_max_ms": round(float(intervals.max()) * 1000, 3),
        "tempo_error_ppm": round((nominal / slope - 1) * 1e6, 1),
        "bunched": int(np.sum(intervals < nominal / 2)),
        "late": int(np.sum(intervals > nominal * 1.5)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "midi_clock.json")
    parser.add_argument("--seconds", type=float, default=60.0, help="per condition")
    parser.add_argument("--tempo", type=float, default=120.0)
    parser.add_argument("--receive", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--ticks", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--send", choices=SENDERS[1:], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.receive:
        receive(args.receive, args.ticks)
        return 0
    if args.send:
        send(args.send, args.tempo, args.seconds)
        return 0
    with dummy_jack("midiclock") as jack, tempfile.TemporaryDirectory() as tmp:
        idle = run(args.tempo, args.seconds, False, Path(tmp))
        loaded = run(args.tempo, args.seconds, True, Path(tmp))
    result = {"command": " ".join(["midi_clock.py", *(argv if argv is not None else sys.argv[1:])]),
              "jack": jack, "receiver_resolution_ms": round(PERIOD / RATE * 1000, 3),
              "nominal_tick_ms": round(60.0 / args.tempo / 24 * 1000, 3), "idle": idle, "loaded": loaded}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for label, figures in (("idle", idle), ("loaded", loaded)):
        for sender, f in figures["senders"].items():
            print(f"{label:6} {sender:9} jitter p99 {f.get('jitter_p99_ms')} max {f.get('jitter_max_ms')} ms  "
                  f"tempo {f.get('tempo_error_ppm')} ppm  bunched {f.get('bunched')} late {f.get('late')}")
        late = figures["appliance_send_lateness_ms"]
        print(f"{label:6} appliance's clock thread sent ticks late by p50 {late['p50']} p99 {late['p99']} "
              f"max {late['max']} ms")
        print(f"{label:6} appliance's audio against the wall clock {figures['appliance_audio_rate_error_ppm']} ppm "
              f"({figures['appliance_xruns']} xruns)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
