"""Control latency: from a MIDI message entering the process to Csound.

    python bench/control_latency.py --out FILE.json [--messages N] [--flood-seconds S]

A JACK server (dummy driver, 48 kHz, 64-frame periods) carries both the
MIDI and the audio.  A sender process opens a virtual JACK MIDI port and
sends control changes; the instrument, running as it does on the box (Csound
through JACK, the control loop woken by input), maps them to `brightness`.

Measured for every value that reaches Csound:
  entry_to_channel   the message leaving rtmidi into the inbox (the JACK
                     backend's poll thread) -> the value set in Csound's channel
  channel_to_audio   how far into the audio stream the value first sounds,
                     counted from the last sample Csound had computed when the
                     channel was set (a probe instrument notes the sample
                     where it first reads the new value): at most one buffer
                     (-b, 64 samples here) means the next block carries it
Three runs: quiet (no MIDI: the xrun baseline of this JACK server), idle
(500 messages/s), and a flood (3,000 messages/s) with every core loaded by
stress-ng, counting xruns and late notes.  Coalescing means a flood applies
the newest value of each control per pass; every applied value is measured.
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
from jack_server import dummy_jack, stress_all_cores

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROBE = """
; bench probe: when brightness changes, note the sample where a k-cycle first reads it
; (time_samples, set by the clock earlier in the same cycle, is the end of this cycle)
instr LatencyProbe
  kold init -1
  kvalue = chnget:k("brightness")
  if kvalue != kold then
    chnset kvalue, "probe_seen_value"
    chnset chnget:k("time_samples") - ksmps, "probe_seen_sample"
    kold = kvalue
  endif
endin
schedule "LatencyProbe", 0, -1
"""

CONFIG = """
[audio]
backend = "jack"
buffer = 64
hardware_buffer = 128
[engine]
orchestra = "{orchestra}"
[midi]
backend = "jack"
scan_seconds = 0.25
[[midi.map]]
cc = 20
device = "LatencyKnob"
param = "brightness"
"""


def sender(rate: float, count: int) -> None:
    import mido

    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    with backend.open_output("LatencyKnob", virtual=True) as port:
        time.sleep(2.5)                      # let the instrument find the port (scans every 0.25 s)
        start = time.monotonic()
        for i in range(count):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            port.send(mido.Message("control_change", control=20, value=i % 128))


def run(rate: float, count: int, loaded: bool, tmp: Path, quiet_seconds: float = 0.0) -> dict:
    from appliance import config as config_module
    from appliance.engine.engine import RealtimeOutput
    from appliance.instrument.instrument import Instrument

    orchestra = tmp / "probe.orc"
    orchestra.write_text((ROOT / "orchestras" / "default.orc").read_text() + PROBE)
    config_path = tmp / "latency.toml"
    config_path.write_text(CONFIG.format(orchestra=orchestra))
    settings = config_module.load(config_path)
    instrument = Instrument(settings, {"tempo": 120, "density": 0.8}, simulate=False)
    applied: list[tuple[float, float, float, float]] = []     # value, entered, set, samples computed

    def record(change, at: float) -> None:  # type: ignore[no-untyped-def]
        if change.name == "brightness" and change.time is not None:
            applied.append((change.value, change.time, at, instrument.engine.channel("time_samples")))

    instrument.loop.on_applied = record
    instrument.open(RealtimeOutput(backend="jack", buffer=64, hardware_buffer=128, realtime_priority=70))
    instrument.perform()
    seen: list[tuple[float, float]] = []               # value, the sample where Csound first read it
    done = threading.Event()

    def observe() -> None:
        from appliance.engine.rtprio import raise_this_thread

        raise_this_thread(5, "observer")        # below the control loop; it must not miss values
        last = None
        while not done.is_set():
            value = instrument.engine.channel("probe_seen_value")
            sample = instrument.engine.channel("probe_seen_sample")
            if (value, sample) != last:
                seen.append((value, sample))
                last = (value, sample)
            time.sleep(0.0005)

    stress = stress_all_cores() if loaded else None
    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    stop = threading.Event()
    if count:
        send = subprocess.Popen([sys.executable, __file__, "--sender", "--rate", str(rate), "--count", str(count)])
        watcher = threading.Thread(target=lambda: (send.wait(), time.sleep(0.5), stop.set()), daemon=True)
    else:
        watcher = threading.Thread(target=lambda: (time.sleep(quiet_seconds), stop.set()), daemon=True)
    watcher.start()
    ticks: list[float] = []
    try:
        instrument.run(None, stop, on_tick=lambda: ticks.append(time.monotonic()))
    finally:
        done.set()
        observer.join()
        if stress is not None:
            stress.terminate()
            stress.wait()
        instrument.close()
    report = instrument.report()
    entry = np.array([(s - e) * 1000 for _, e, s, _ in applied])
    audio = []
    for value, _, _, computed in applied:
        # a value comes back every 128 messages (43 ms = 2048 samples in the flood): match within 1024
        first = next((sample for v, sample in seen
                      if v == value and computed <= sample < computed + 1024), None)
        if first is not None:
            audio.append(first - computed)
    audio_samples = np.array(audio)
    return {
        "messages_sent": count, "rate_per_second": rate, "cores_loaded": loaded,
        "seconds": round(report["seconds"], 1),
        "values_applied": len(applied), "midi_received": report["controls"]["received"],
        "entry_to_channel_ms": _stats(entry),
        "channel_to_audio_samples": _stats(audio_samples),
        "channel_to_audio_within_one_buffer": float(np.mean(audio_samples <= 64)) if audio else None,
        "channel_to_audio_observed": f"{len(audio)} of {len(applied)} values (the observer polls every 0.5 ms)",
        "xruns": report["xruns"], "xruns_per_second": round(report["xruns"] / max(report["seconds"], 1e-9), 3),
        "late_notes": report["late_notes"], "late_steps": report["late_steps"],
        "realtime_priority": report["realtime_priority"],
        "control_loop_longest_gap_ms": round(float(np.max(np.diff(ticks))) * 1000, 3) if len(ticks) > 1 else None,
    }


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"count": 0}
    return {"count": int(values.size), "p50": round(float(np.percentile(values, 50)), 3),
            "p99": round(float(np.percentile(values, 99)), 3), "max": round(float(values.max()), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "control_latency.json")
    parser.add_argument("--messages", type=int, default=10000, help="messages in the idle run")
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--sender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sender:
        sender(args.rate, args.count)
        return 0
    with dummy_jack("latency") as jack, tempfile.TemporaryDirectory() as tmp:
        quiet = run(0, 0, False, Path(tmp), quiet_seconds=20)
        idle = run(500, args.messages, False, Path(tmp))
        flood = run(3000, int(3000 * args.flood_seconds), True, Path(tmp))
    result = {"command": " ".join(["control_latency.py", *(argv if argv is not None else sys.argv[1:])]),
              "jack": jack,
              "quiet": quiet, "idle": idle, "flood": flood}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"quiet  xruns/s {quiet['xruns_per_second']} (this JACK server's baseline)")
    for label, figures in (("idle", idle), ("flood", flood)):
        e, b = figures["entry_to_channel_ms"], figures["channel_to_audio_samples"]
        print(f"{label:5}  entry->channel p50 {e.get('p50')} p99 {e.get('p99')} max {e.get('max')} ms   "
              f"channel->audio p50 {b.get('p50')} p99 {b.get('p99')} max {b.get('max')} samples   "
              f"xruns/s {figures['xruns_per_second']} late {figures['late_notes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
