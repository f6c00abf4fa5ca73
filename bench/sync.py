"""In time with the world: the box's beats against a Link session and a MIDI clock master,
and its MIDI clock out against its own downbeats.

    python bench/sync.py --seconds N --out FILE.json     (as root: it makes a network namespace)

Everything runs in real time, in one run, inside a network namespace with only
the loopback (Link multicasts; nothing leaves the machine), over a private JACK
server on the dummy driver (48 kHz, 64-frame periods), idle and then with every
core loaded by stress-ng:

  link   a Link peer in another process (tests/link_peer.py) plays at 120 BPM,
         moves to 127.37 and to 100; the box (sync = "link") joins, is started,
         stopped and started again.  Each click's phase error against the
         session's beat timeline is measured two ways:
           own          the click's sample in the box's recording, placed on the
                        monotonic clock by the box's own AudioClockMap (+ its
                        output buffer), against the peer's beat readings
                        bracketed by the monotonic clock;
           independent  the click as a JACK capture client in another process
                        receives it, placed by JACK's own frame-to-time estimate
                        (jack_frames_to_time, CLOCK_MONOTONIC_RAW), against the
                        peer's beat read together with Link's own clock (also
                        CLOCK_MONOTONIC_RAW): neither the box's map nor its clock.
         The two differ by a constant (the box counts a sample heard one output
         buffer after Csound computes it; JACK's capture sees it when the graph
         runs): reported as its median, and the independent errors are judged
         around it (p50/p99/max of the deviation).
  midi   a MIDI clock master process (JACK MIDI) starts at 120 BPM, stops, and
         continues from a Song Position Pointer; the box follows (sync = "midi").
         Click errors against the master's beat-ticks (when it sent them).
  clock out  both runs send clock to a receiver process: ticks counted between
         the box's beats (24 each), and the first tick after each Start against
         the downbeat the box plays (heard, own mapping).

Steady state excludes two beats after every start and tempo change; lock time
is the beats from a start (or change) to the first click after which every
click is within 1 ms.  The dummy server drops periods when this VM stalls
(xruns): clicks within a second after one are reported apart.  JACK's own
baseline: how far its time of each period strays from the period's frame count
(against the median of its second); clicks from 0.1 s before to 1 s after a
period more than BASELINE_MS off are also reported apart ("jack_undisturbed").
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from jack_server import PERIOD, RATE, dummy_jack, stress_all_cores

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PEER = ROOT / "tests" / "link_peer.py"
from tests.netns import MARK, SETUP  # noqa: E402  (one namespace recipe for the tests and this bench)

CLICKS = {"click": 1, "click_level": 1, "density": 0, "reverb": 0, "echo": 0}
SINK = "SyncSink"          # the receiver's port (the box's clock out)
MASTER = "SyncMaster"      # the MIDI master's port (the box's clock in)
LOCKED_MS = 1.0
BASELINE_MS = 0.25         # a JACK cycle this far off its sample count is "disturbed" (jack_baseline)


# -- helper processes --------------------------------------------------------------------

def capture(seconds: float, out: Path) -> None:
    """A JACK client recording the box's output with JACK's time of each period (CLOCK_MONOTONIC_RAW)."""
    import jack

    lib = ctypes.CDLL("libjack.so.0")
    lib.jack_get_cycle_times.restype = ctypes.c_int
    lib.jack_get_cycle_times.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32),
                                         ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64),
                                         ctypes.POINTER(ctypes.c_float)]
    client = jack.Client("sync-capture")
    pointer = int(jack._ffi.cast("uintptr_t", client._ptr))
    cycle_frames, current, following, period_us = (ctypes.c_uint32(), ctypes.c_uint64(), ctypes.c_uint64(),
                                                   ctypes.c_float())
    port = client.inports.register("in")
    periods = int(seconds * RATE / PERIOD) + 1000
    audio = np.zeros(periods * PERIOD, dtype=np.float32)
    frames = np.zeros(periods, dtype=np.int64)
    times = np.zeros(periods, dtype=np.float64)
    xruns: list[float] = []
    count = [0]

    @client.set_process_callback
    def process(n: int) -> None:
        i = count[0]
        if i < periods:
            audio[i * PERIOD:(i + 1) * PERIOD] = port.get_array()
            # JACK's own time of this cycle's first frame (its estimate of the driver's cycle)
            lib.jack_get_cycle_times(pointer, cycle_frames, current, following, period_us)
            frames[i], times[i] = cycle_frames.value, current.value
            count[0] = i + 1

    @client.set_xrun_callback
    def xrun(delay: float) -> None:
        xruns.append(time.monotonic())

    client.activate()
    connected = False
    end = time.monotonic() + seconds
    print("ready", flush=True)
    while time.monotonic() < end:
        if not connected:
            sources = [p for p in client.get_ports(is_audio=True, is_output=True)
                       if not p.name.startswith(("system:", "sync-capture"))]
            if sources:
                try:
                    client.connect(sources[0], port)
                    connected = True
                except jack.JackError:
                    pass                          # a port just registered: try again
        time.sleep(0.05)
    client.deactivate()
    n = count[0]
    client.close()
    np.savez(out, audio=audio[:n * PERIOD], frames=frames[:n], times_us=times[:n],
             xruns=np.array(xruns), raw_minus_mono=_raw_minus_mono())


def receive(seconds: float, out: Path) -> None:
    """The box's clock-out receiver: every clock message stamped on the monotonic clock in
    rtmidi's callback (JACK delivers them a period at a time)."""
    import rtmidi

    port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="sync-receiver", queue_size_limit=8192)
    port.ignore_types(sysex=True, timing=False, active_sense=True)
    seen: list[tuple[float, list[int]]] = []
    port.set_callback(lambda item, _: seen.append((time.monotonic(), item[0])))
    port.open_virtual_port(SINK)
    print("ready", flush=True)
    time.sleep(seconds)
    port.close_port()
    out.write_text(json.dumps(seen))


def master(tempo: float, seconds: float, out: Path) -> None:
    """A MIDI clock master: Start at 1 s, Stop at half time, Song Position + Continue a second
    later (from the bar it stopped in, rounded up).  Writes when each beat's tick went out."""
    import rtmidi

    from appliance.engine.rtprio import raise_this_thread

    port = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="sync-master")
    port.open_virtual_port(MASTER)
    print("ready", flush=True)
    raise_this_thread(10, "master")
    tick = 60.0 / tempo / 24
    beats: list[tuple[float, float, int]] = []        # (monotonic, raw, beat index) of each beat's tick
    begun = time.monotonic()
    events: list[tuple[str, float]] = []

    def play(first_tick: int, until: float) -> int:
        start = time.monotonic() + 0.01
        index = first_tick
        while time.monotonic() - begun < until:
            due = start + (index - first_tick) * tick
            while (delay := due - time.monotonic()) > 0:
                time.sleep(min(delay, 0.001))
            port.send_message([0xF8])
            if index % 24 == 0:
                beats.append((time.monotonic(), _raw(), index // 24))
            index += 1
        return index

    time.sleep(1.0)
    port.send_message([0xFA])
    events.append(("start", time.monotonic()))
    stopped_at = play(0, seconds / 2)
    port.send_message([0xFC])
    events.append(("stop", time.monotonic()))
    time.sleep(1.0)
    bar = -(-stopped_at // 96)                        # the next bar's first tick
    sixteenths = bar * 16
    port.send_message([0xF2, sixteenths & 0x7F, sixteenths >> 7])
    port.send_message([0xFB])
    events.append(("continue", time.monotonic()))
    play(bar * 96, seconds)
    port.send_message([0xFC])
    port.close_port()
    out.write_text(json.dumps({"beats": beats, "events": events}))


def _raw() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC_RAW)


def _raw_minus_mono() -> float:
    """CLOCK_MONOTONIC_RAW minus CLOCK_MONOTONIC now (seconds), from the tightest of a few pairs."""
    best = None
    for _ in range(20):
        a = time.monotonic()
        r = _raw()
        b = time.monotonic()
        if best is None or b - a < best[0]:
            best = (b - a, r - (a + b) / 2)
    return best[1]


def _spawn(*args: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


# -- the box ----------------------------------------------------------------------------

def play_box(config: str, tempo: float, seconds: float, tmp: Path,
             at: list[tuple[float, object]]) -> dict:
    """Run the box over JACK for `seconds` (actions `at` seconds after it opens); returns what it
    recorded and where its own map put its samples."""
    from appliance import config as config_module
    from appliance.controls.inbox import Action
    from appliance.engine.analysis import onsets, read_wav
    from appliance.engine.engine import RealtimeOutput
    from appliance.instrument.instrument import Instrument

    path = tmp / "box.toml"
    path.write_text(config)
    instrument = Instrument(config_module.load(path), {**CLICKS, "tempo": tempo}, simulate=False)
    take = tmp / "box.wav"
    instrument.open(RealtimeOutput(backend="jack", buffer=64, hardware_buffer=128, realtime_priority=70))
    instrument.perform(take)
    walls: list[tuple[float, float]] = []     # (monotonic, the box's wall time of its sample 0)
    stop = threading.Event()
    pending = sorted(at, key=lambda a: a[0])
    begun = time.monotonic()

    def watch() -> None:
        now = time.monotonic()
        if instrument.audio_clock.observed and (not walls or now - walls[-1][0] >= 0.005):
            walls.append((now, instrument.audio_clock.wall(0.0)))
        while pending and now - begun >= pending[0][0]:
            instrument.submit(Action(pending.pop(0)[1], 0, "bench", now))

    threading.Timer(seconds, stop.set).start()
    try:
        instrument.run(None, stop, on_tick=watch)
    finally:
        instrument.close()
    audio, rate = read_wav(take)
    found = onsets(audio)
    heard = instrument.driver.heard_after / rate
    when = np.array([w for w, _ in walls])
    zero = np.array([z for _, z in walls])
    clicks = []
    for sample in found:
        # the map as it stood when the box computed this sample (its estimate moves with xruns)
        computed = zero[0] + sample / rate
        i = min(len(zero) - 1, max(0, int(np.searchsorted(when, computed))))
        clicks.append(zero[i] + sample / rate + heard)
    report = instrument.report()
    return {"clicks": np.array(clicks), "downbeats": np.array([_downbeat(audio, s, rate) for s in found]),
            "report": report, "begun": begun}


def _downbeat(audio: np.ndarray, onset: int, rate: int) -> bool:
    mono = audio[onset:onset + rate // 100]
    mono = mono if mono.ndim == 1 else mono[:, 0]
    return int(np.count_nonzero(np.diff(np.signbit(mono)))) > 34


def captured_clicks(path: Path) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """Click onsets as JACK's capture saw them: CLOCK_MONOTONIC_RAW seconds; xruns (monotonic);
    JACK's own baseline (jack_baseline), its disturbed times made monotonic."""
    from appliance.engine.analysis import onsets

    data = np.load(path)
    found = onsets(data["audio"])
    period, offset = found // PERIOD, found % PERIOD
    times = data["times_us"][period] / 1e6 + offset / RATE
    raw_minus_mono = float(data["raw_minus_mono"])
    baseline = jack_baseline(data["frames"], data["times_us"])
    baseline["disturbed"] = baseline["disturbed"] - raw_minus_mono
    return times, data["xruns"], raw_minus_mono, baseline


def jack_baseline(frames: np.ndarray, times_us: np.ndarray) -> dict:
    """How far JACK's own time of each period strays from its frame count (the sample clock
    every mapping here inherits): each cycle's time against the median of its second.  On
    this VM the dummy driver wakes late and drops periods; JACK's time estimate jumps there,
    and so does any map of samples to wall time, the box's and the capture's alike.
    Disturbed: cycles more than BASELINE_MS off."""
    t = times_us / 1e6
    deviation = t - (frames - frames[0]) / RATE
    chunk = RATE // PERIOD                                    # cycles in a second
    wander = np.empty_like(deviation)
    for start in range(0, len(deviation), chunk):
        piece = deviation[start:start + chunk]
        wander[start:start + chunk] = piece - np.median(piece)
    disturbed = t[np.abs(wander) * 1000 > BASELINE_MS]
    return {"cycle_wander": stats(wander * 1000), "cycles_over_ms": int(disturbed.size), "disturbed": disturbed}


def mappings(times: np.ndarray, own: np.ndarray, captured: np.ndarray, independent: np.ndarray, constant: float,
             xruns: np.ndarray, steady: Callable[[np.ndarray], np.ndarray], disturbed: np.ndarray) -> dict:
    """The errors through the box's own map and through JACK's (around their constant offset),
    steady state apart from the xruns and from JACK's disturbed cycles."""
    return {
        "own_mapping": {**split_xruns(times, own, xruns, steady(times)),
                        "steady_jack_undisturbed": split_baseline(times, own, steady(times), disturbed)},
        "independent_mapping": {
            "constant_offset_ms": round(constant, 3),
            **split_xruns(captured, independent, xruns, steady(captured)),
            "steady_jack_undisturbed": split_baseline(captured, independent, steady(captured), disturbed)},
    }


def split_baseline(times: np.ndarray, errors: np.ndarray, steady: np.ndarray, disturbed: np.ndarray) -> dict:
    """The steady clicks with no disturbed JACK cycle from 0.1 s before to 1 s after."""
    near = np.zeros(len(times), dtype=bool)
    for d in disturbed:
        near |= (times >= d - 0.1) & (times < d + 1.0)
    return stats(errors[steady & ~near])


# -- measuring --------------------------------------------------------------------------

def stats(errors: list[float] | np.ndarray) -> dict:
    e = np.abs(np.asarray(errors, dtype=float))
    if e.size == 0:
        return {"clicks": 0}
    return {"clicks": int(e.size), "median_signed_ms": round(float(np.median(errors)), 3),
            "p50_ms": round(float(np.percentile(e, 50)), 3),
            "p99_ms": round(float(np.percentile(e, 99)), 3), "max_ms": round(float(e.max()), 3)}


def lock_beats(times: np.ndarray, errors: np.ndarray, since: float, until: float, period: float) -> float | None:
    """Beats from `since` to the first click after which every click (before `until`) is locked."""
    keep = (times >= since) & (times < until)
    t, e = times[keep], np.abs(errors[keep])
    for i in range(len(t)):
        if np.all(e[i:] <= LOCKED_MS):
            return round((t[i] - since) / period, 2)
    return None


def split_xruns(times: np.ndarray, errors: np.ndarray, xruns: np.ndarray, steady: np.ndarray) -> dict:
    near = np.zeros(len(times), dtype=bool)
    for x in xruns:
        near |= (times >= x) & (times < x + 1.0)
    return {"steady": stats(errors[steady & ~near]), "steady_after_xrun": stats(errors[steady & near]),
            "xruns_seen_by_capture": len(xruns)}


def clock_out(received: list, clicks: np.ndarray, downbeats: np.ndarray, tempo_period: np.ndarray) -> dict:
    """Ticks per beat of the box (24), and the first tick after each Start against its downbeat."""
    ticks = np.array([t for t, m in received if m == [0xF8]])
    starts = [t for t, m in received if m in ([0xFA], [0xFB])]
    stops = [t for t, m in received if m == [0xFC]]
    # beats played while the receiver was told the box runs: from a Start/Continue to the next Stop
    spans = [(a, min([s for s in stops if s > a], default=float("inf"))) for a in starts]
    counts, odd = [], []
    for a, b in itertools.pairwise(clicks):
        if b - a > 1.5 * tempo_period.max() or not any(s <= a - 0.05 and b < e for s, e in spans):
            continue                                  # stopped, or the receiver not started yet
        half = (b - a) / 48
        counts.append(int(np.sum((ticks >= a - half) & (ticks < b - half))))
        if counts[-1] != 24:
            odd.append([round(a - clicks[0], 3), counts[-1]])
    first_offsets = []
    for start, kind in [(t, m) for t, m in received if m in ([0xFA], [0xFB])]:
        after = ticks[ticks > start]
        # Start: the downbeat the box plays; Continue: the beat it goes on from
        played = clicks[(clicks > start - 0.05) & (downbeats if kind == [0xFA] else True)]
        if after.size and played.size:
            first_offsets.append(round(1000 * (after[0] - played[0]), 3))
    counts = np.array(counts[:-1])                    # the last beat may be cut by the end of the run
    return {"beats_counted": int(counts.size), "beats_not_24": int(np.sum(counts != 24)),
            "ticks_missing": int(np.sum(np.clip(24 - counts, 0, None))),
            "ticks_extra": int(np.sum(np.clip(counts - 24, 0, None))),
            "starts": len(starts), "first_tick_minus_downbeat_ms": first_offsets, "beats_not_24_at": odd,
            "receiver_resolution_ms": round(PERIOD / RATE * 1000, 3)}


def run_link(seconds: float, tmp: Path) -> dict:
    plan = {"tempo": 120.0, "quantum": 4, "seconds": seconds + 6, "playing": False,
            "events": [[1.0 + 0.4 * seconds, "tempo", 127.37], [1.0 + 0.75 * seconds, "tempo", 100.0]]}
    (tmp / "plan.json").write_text(json.dumps(plan))
    peer = subprocess.Popen([sys.executable, str(PEER), str(tmp / "plan.json"), str(tmp / "peer.json")],
                            stdout=subprocess.PIPE, text=True)
    assert peer.stdout.readline().strip() == "ready"
    receiver = _spawn("--receive", str(seconds + 4), "--to", str(tmp / "ticks.json"))
    capturer = _spawn("--capture", str(seconds + 4), "--to", str(tmp / "capture.npz"))
    time.sleep(1.0)
    config = (f"[audio]\nbackend = 'jack'\nbuffer = 64\nhardware_buffer = 128\n[clock]\nsync = 'link'\n"
              f"[midi]\nbackend = 'jack'\nscan_seconds = 0.25\nclock_out = '{SINK}'\n")
    box = play_box(config, 120.0, seconds, tmp,
                   [(2.0, "start"), (0.55 * seconds, "stop"), (0.6 * seconds, "start")])
    for process in (capturer, receiver):
        process.wait()
    peer.terminate()
    peer.wait()
    readings = np.array(json.loads((tmp / "peer.json").read_text())["readings"], dtype=float)
    mids = (readings[:, 0] + readings[:, 1]) / 2

    def own_error(at: float) -> float:
        i = max(0, int(np.searchsorted(mids, at)) - 1)
        beat = readings[i, 2] + (at - mids[i]) * readings[i, 3] / 60
        return 1000 * (beat - round(beat)) * 60 / readings[i, 3]

    def link_error(raw: float) -> float:
        times = readings[:, 6] / 1e6
        i = max(0, int(np.searchsorted(times, raw)) - 1)
        beat = readings[i, 7] + (raw - times[i]) * readings[i, 3] / 60
        return 1000 * (beat - round(beat)) * 60 / readings[i, 3]

    clicks = box["clicks"]
    own = np.array([own_error(t) for t in clicks])
    captured, xruns, raw_minus_mono, baseline = captured_clicks(tmp / "capture.npz")
    independent = np.array([link_error(t) for t in captured])
    captured_mono = captured - raw_minus_mono
    # what moves the timeline: starts (the session's playing turning on) and tempo changes
    playing = readings[:, 4]
    turned_on = mids[np.flatnonzero(np.diff(playing) > 0) + 1]
    changed = mids[np.flatnonzero(np.abs(np.diff(readings[:, 3])) > 0.001) + 1]
    moves = np.sort(np.concatenate([turned_on, changed]))
    period = 60 / readings[:, 3]

    def steady_mask(times: np.ndarray) -> np.ndarray:
        mask = np.ones(len(times), dtype=bool)
        for m in moves:
            mask &= ~((times >= m) & (times < m + 2.5 * 60 / 100))
        return mask

    def locks(at: np.ndarray) -> list:
        return [lock_beats(clicks, own, m, min([n for n in moves if n > m], default=float("inf")),
                           float(period[min(len(period) - 1, int(np.searchsorted(mids, m)))])) for m in at]

    constant = float(np.median(independent[steady_mask(captured_mono)]))
    disturbed = baseline.pop("disturbed")
    return {
        "box_xruns": box["report"]["xruns"], "peer_tempos": sorted({round(t, 3) for t in readings[:, 3]}),
        "starts_and_tempo_changes": len(moves),
        "jack_baseline": baseline,
        **mappings(clicks, own, captured_mono, independent - constant, constant, xruns, steady_mask, disturbed),
        "lock_beats_after_each_start": locks(turned_on),
        "lock_beats_after_each_tempo_change": locks(changed),
        "clock_out": clock_out(json.loads((tmp / "ticks.json").read_text()), clicks, box["downbeats"], period),
    }


def run_midi(seconds: float, tmp: Path) -> dict:
    receiver = _spawn("--receive", str(seconds + 4), "--to", str(tmp / "ticks.json"))
    capturer = _spawn("--capture", str(seconds + 4), "--to", str(tmp / "capture.npz"))
    source = _spawn("--master", str(seconds - 3), "--to", str(tmp / "master.json"))
    config = (f"[audio]\nbackend = 'jack'\nbuffer = 64\nhardware_buffer = 128\n[clock]\nsync = 'midi'\n"
              f"[midi]\nbackend = 'jack'\nscan_seconds = 0.25\nclock_in = '{MASTER}'\nclock_out = '{SINK}'\n")
    box = play_box(config, 100.0, seconds, tmp, [])
    for process in (capturer, receiver, source):
        process.wait()
    played = json.loads((tmp / "master.json").read_text())
    beats = np.array([b[0] for b in played["beats"]])
    raw_beats = np.array([b[1] for b in played["beats"]])
    clicks = box["clicks"]
    period = 0.5

    def error(at: float, reference: np.ndarray) -> float:
        return 1000 * (at - reference[np.argmin(np.abs(reference - at))])

    following = [t for t in clicks if beats.size and beats[0] - 0.1 <= t <= beats[-1] + 0.1]
    own = np.array([error(t, beats) for t in following])
    times = np.array(following)
    captured, xruns, raw_minus_mono, baseline = captured_clicks(tmp / "capture.npz")
    disturbed = baseline.pop("disturbed")
    captured = captured[(captured >= raw_beats[0] - 0.1) & (captured <= raw_beats[-1] + 0.1)]
    independent = np.array([error(t, raw_beats) for t in captured])
    events = dict(played["events"][i] for i in range(len(played["events"])))
    moves = np.array([events["start"], events["continue"]])

    def steady_mask(t: np.ndarray) -> np.ndarray:
        return ~np.any([(t >= m) & (t < m + 2.5 * period) for m in moves], axis=0)

    constant = float(np.median(independent[steady_mask(captured - raw_minus_mono)])) if independent.size else 0.0
    captured_mono = captured - raw_minus_mono
    return {
        "box_xruns": box["report"]["xruns"],
        "jack_baseline": baseline,
        **mappings(times, own, captured_mono, independent - constant, constant, xruns, steady_mask, disturbed),
        "lock_beats_after_start": lock_beats(times, own, events["start"], events["stop"], period),
        "lock_beats_after_continue": lock_beats(times, own, events["continue"], float("inf"), period),
        "clock_out": clock_out(json.loads((tmp / "ticks.json").read_text()), clicks, box["downbeats"],
                               np.array([period])),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    labels, p50, p99, worst = [], [], [], []
    for load in ("idle", "loaded"):
        for sync in ("link", "midi"):
            for mapping in ("own_mapping", "independent_mapping"):
                s = result[load][sync][mapping]["steady"]
                labels.append(f"{load}\n{sync}\n{mapping.split('_')[0]}")
                p50.append(s.get("p50_ms", 0))
                p99.append(s.get("p99_ms", 0))
                worst.append(s.get("max_ms", 0))
    x = np.arange(len(labels))
    ax.bar(x - 0.25, p50, 0.25, label="p50")
    ax.bar(x, p99, 0.25, label="p99")
    ax.bar(x + 0.25, worst, 0.25, label="max")
    ax.axhline(1.0, color="k", lw=0.8, ls="--", label="target p99 1 ms")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("|phase error| ms (steady state, no xrun within 1 s)")
    ax.set_title("The box's beats against a Link session and a MIDI master")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sync.json")
    parser.add_argument("--seconds", type=float, default=40.0, help="per run (4 runs)")
    parser.add_argument("--capture", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--receive", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--master", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.capture:
        capture(args.capture, args.to)
        return 0
    if args.receive:
        receive(args.receive, args.to)
        return 0
    if args.master:
        master(120.0, args.master, args.to)
        return 0
    if os.environ.get(MARK) != "1":                 # Link multicasts: run in a namespace of its own
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise SystemExit("bench/sync.py makes a network namespace (unshare -n): run it as root")
        command = ["unshare", "-n", "sh", "-c", f'{SETUP} && exec "$0" "$@"', sys.executable, __file__,
                   *(argv if argv is not None else sys.argv[1:])]
        return subprocess.run(command, env={**os.environ, MARK: "1"}).returncode
    result: dict = {"command": " ".join(["bench/sync.py", *(argv if argv is not None else sys.argv[1:])]),
                    "date": datetime.date.today().isoformat()}
    with dummy_jack("sync") as jack:
        result["jack"] = jack
        for load in ("idle", "loaded"):
            stress = stress_all_cores() if load == "loaded" else None
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    link = run_link(args.seconds, Path(tmp))
                with tempfile.TemporaryDirectory() as tmp:
                    midi = run_midi(args.seconds, Path(tmp))
            finally:
                if stress is not None:
                    stress.terminate()
                    stress.wait()
            result[load] = {"link": link, "midi": midi}
            for name, r in (("link", link), ("midi", midi)):
                own, ind = r["own_mapping"]["steady"], r["independent_mapping"]["steady"]
                quiet = r["independent_mapping"]["steady_jack_undisturbed"]
                base = r["jack_baseline"]
                out = r["clock_out"]
                print(f"{load:6} {name}: own p50 {own.get('p50_ms')} p99 {own.get('p99_ms')} "
                      f"max {own.get('max_ms')} ms;"
                      f" independent p50 {ind.get('p50_ms')} p99 {ind.get('p99_ms')} max {ind.get('max_ms')} ms"
                      f" (offset {r['independent_mapping']['constant_offset_ms']} ms); xruns {r['box_xruns']};"
                      f" clock out: {out['beats_not_24']} of {out['beats_counted']} beats not 24,"
                      f" first tick - downbeat {out['first_tick_minus_downbeat_ms']} ms;"
                      f" JACK cycle wander p99 {base['cycle_wander'].get('p99_ms')} max"
                      f" {base['cycle_wander'].get('max_ms')} ms, {base['cycles_over_ms']} cycles over {BASELINE_MS};"
                      f" independent where JACK undisturbed p50 {quiet.get('p50_ms')} p99 {quiet.get('p99_ms')}"
                      f" max {quiet.get('max_ms')} ({quiet.get('clicks')} clicks)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    plot(result, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
