"""Timing benchmark: the appliance's clock against the seed's approaches, in real time.

    python bench/timing.py --seconds N --out FILE.json [--plot FILE.png]

For each condition (120 and 300 BPM, sixteenth notes; idle, and with every
core loaded by stress-ng) all methods run at once, each in its own process
with its own Csound on the null audio device (paced in real time, Csound's
thread at the same real-time priority for every method), recording what it
plays.  Every onset in each recording is measured against its ideal sample.

Methods:
  appliance                    this instrument: Csound's clock places every step
  time_time_polling            seed 000, solution 5: Python polls time.time(), sends "now" events
  score_time_polling           seed 000, solution 4: Python polls Csound's scoreTime()
  threading_timer              seed 000, solution 1: a threading.Timer metronome
  absolute_p2_sample_accurate  events with absolute p2, 100 ms ahead, --sample-accurate

The seed's methods are given their best form: the next time is the previous
ideal time plus the interval (no drift from resetting to the detected time),
and their error is measured from the grid anchored at their median offset.
The appliance gets no such help: its error is measured from the absolute
ideal sample, where its clock says the step belongs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.engine.analysis import onsets, read_wav  # noqa: E402

METHODS = ("appliance", "time_time_polling", "score_time_polling", "threading_timer",
           "absolute_p2_sample_accurate")
SR, KSMPS = 48000, 64

SEED_ORC = """
giSeedSine ftgen 0, 0, 16384, 10, 1
; the seed's click: a cosine burst, full level on its first sample, silent after 20 ms
instr SeedClick
  aenv linseg 1, 0.02, 0, 1, 0
  asig oscili 0.5 * aenv, 1400, giSeedSine, 0.25
  outs asig, asig
endin
"""


# -- workers: one method, one process ----------------------------------------

class SeedRig:
    """A Csound on the null device that clicks when told and records itself."""

    def __init__(self, out: Path, sample_accurate: bool) -> None:
        import ctcsound

        from appliance.engine.orchestra import ClockLayout, core_text
        from appliance.engine.recorder import RING_CYCLES, WavRecorder
        from appliance.engine.rtprio import create_with_priority

        ctcsound.csoundInitialize(ctcsound.CSOUNDINIT_NO_SIGNAL_HANDLER | ctcsound.CSOUNDINIT_NO_ATEXIT)
        self.cs = cs = ctcsound.Csound()
        cs.createMessageBuffer(False)
        options = ["-odac", "-+rtaudio=null", "-d", "-m0", "-b256", "-B1024"]
        for option in options + (["--sample-accurate"] if sample_accurate else []):
            cs.setOption(option)
        layout = ClockLayout(SR, KSMPS, 4, 4, 20, 300)
        if cs.compileOrc(layout.header() + SEED_ORC + core_text("recorder.orc")) != 0:
            raise RuntimeError("the seed orchestra does not compile")
        frames = RING_CYCLES * KSMPS
        cs.readScore(f'f 0 z\ni "Recorder" 0 -1 {frames}\n')
        cs.start()
        self.click_instr = float(cs.evalCode('return nstrnum("SeedClick")'))
        spawned = create_with_priority(lambda: ctcsound.CsoundPerformanceThread(cs.csound()), 70)
        self.pt = spawned.value
        self.recorder = WavRecorder(out, SR, frames, lambda n: cs.controlChannel(n)[0], cs.table)
        self.pt.play()
        self.recorder.start()

    def click_now(self) -> None:
        self.pt.scoreEvent(False, "i", [self.click_instr, 0.0, 0.05])

    def click_at(self, seconds: float) -> None:
        self.pt.scoreEvent(True, "i", [self.click_instr, seconds, 0.05])

    def score_time(self) -> float:
        return self.cs.scoreTime()

    def close(self) -> None:
        self.pt.stop()
        self.pt.join()
        self.recorder.stop()
        self.cs.cleanup()


def run_seed(method: str, tempo: float, seconds: float, out: Path) -> dict:
    interval = 60 / tempo / 4
    rig = SeedRig(out, sample_accurate=method == "absolute_p2_sample_accurate")
    time.sleep(0.2)
    if method == "time_time_polling":
        _poll(rig, interval, seconds, time.time)
    elif method == "score_time_polling":
        _poll(rig, interval, seconds, rig.score_time)
    elif method == "threading_timer":
        _timer(rig, interval, seconds)
    else:
        _absolute(rig, interval, seconds)
    time.sleep(0.2)
    rig.close()
    return {"anchor": "median", "interval_samples": interval * SR}


def _poll(rig: SeedRig, interval: float, seconds: float, clock) -> None:
    start = clock()
    due = start
    while clock() < start + seconds:
        if clock() >= due:
            rig.click_now()
            due += interval
        time.sleep(0.001)


def _timer(rig: SeedRig, interval: float, seconds: float) -> None:
    start = time.time()
    done = threading.Event()
    count = [0]

    def tick() -> None:
        rig.click_now()
        count[0] += 1
        due = start + count[0] * interval
        if due >= start + seconds:
            done.set()
            return
        threading.Timer(max(0.0, due - time.time()), tick).start()

    tick()
    done.wait(seconds + 5)


def _absolute(rig: SeedRig, interval: float, seconds: float) -> None:
    start = rig.score_time() + 0.1
    due = start
    while rig.score_time() < start + seconds:
        while due < rig.score_time() + 0.1 and due < start + seconds:
            rig.click_at(due)
            due += interval
        time.sleep(0.01)


def run_appliance(tempo: float, seconds: float, out: Path) -> dict:
    from appliance.config.schema import Config
    from appliance.engine.engine import RealtimeOutput
    from appliance.instrument.instrument import Instrument

    params = {"tempo": tempo, "density": 1, "perc": 1, "lead": 0, "bass": 0, "pad": 0,
              "click": 0, "reverb": 0, "echo": 0, "dynamics": 0, "swing": 50, "evolution": 0}
    instrument = Instrument(Config(), params)
    instrument.open(RealtimeOutput(backend="null", realtime_priority=70))
    instrument.perform(out)
    try:
        instrument.run(seconds, threading.Event())
    finally:
        instrument.close()
    report = instrument.report()
    return {"anchor": "absolute", "start_sample": instrument.layout.start_sample,
            "interval_samples": 60 / tempo / 4 * SR, "late_notes": report["late_notes"],
            "late_steps": report["late_steps"], "xruns": report["xruns"],
            "realtime_priority": report["realtime_priority"]}


def worker(method: str, tempo: float, seconds: float, out: Path) -> None:
    cpu = os.times()
    meta = run_appliance(tempo, seconds, out) if method == "appliance" else run_seed(method, tempo, seconds, out)
    used = os.times()
    meta["cpu_seconds_per_audio_second"] = (used.user + used.system - cpu.user - cpu.system) / seconds
    out.with_suffix(".json").write_text(json.dumps(meta))


# -- analysis -----------------------------------------------------------------

def analyse(wav: Path, meta: dict, seconds: float) -> dict:
    audio, _ = read_wav(wav)
    found = onsets(audio).astype(np.float64)
    step = meta["interval_samples"]
    if meta["anchor"] == "absolute":
        origin = float(meta["start_sample"])
    else:
        # the grid that fits the method best: its median offset from the ideal spacing
        origin = float(np.median(found - np.round((found - found[0]) / step) * step)) if found.size else 0.0
    count = int((len(audio) - origin) // step)
    ideal = origin + np.arange(max(count, 0)) * step
    ideal = ideal[ideal < origin + seconds * SR - step / 2]
    errors, missing = [], 0
    for position in ideal:
        nearest = found[np.argmin(np.abs(found - position))] if found.size else None
        if nearest is None or abs(nearest - position) > step / 2:
            missing += 1
        else:
            errors.append(nearest - position)
    matched = np.array(errors) if errors else np.zeros(1)
    extra = 0
    if ideal.size:
        inside = (found >= ideal[0] - step / 2) & (found <= ideal[-1] + step / 2)
        extra = max(0, int(np.sum(inside)) - len(errors))
    absolute = np.abs(matched)
    # drift: slope of the error over the run, in samples per minute
    minutes = np.arange(len(matched)) * step / SR / 60
    drift = float(np.polyfit(minutes, matched, 1)[0]) if len(matched) > 2 else 0.0
    return {
        "onsets": len(errors), "missing": missing, "extra": extra,
        "max_abs_error_samples": float(absolute.max()),
        "p99_abs_error_samples": float(np.percentile(absolute, 99)),
        "mean_error_samples": float(matched.mean()),
        "std_samples": float(matched.std()),
        "drift_samples_per_minute": drift,
        "errors": matched.tolist(),
        **{k: v for k, v in meta.items() if k not in ("anchor", "interval_samples", "start_sample")},
    }


def start_to_first_note(runs: int = 5) -> dict:
    """Process start to the first sample of the first note, through the CLI."""
    samples = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            take, report = Path(tmp) / "t.wav", Path(tmp) / "r.json"
            launched = time.time()
            subprocess.run([sys.executable, "-m", "appliance", "run", "--simulate", "--seconds", "1",
                            "--state-dir", str(Path(tmp) / "state"), "--no-socket",
                            "--record", str(take), "--report", str(report),
                            "--set", "density=1", "--set", "click=1"], check=True, cwd=ROOT,
                           capture_output=True)
            started = json.loads(report.read_text())["started_at"]
            audio, _ = read_wav(take)
            first = onsets(audio)[0]
            samples.append((started - launched) * 1000 + first / SR * 1000)
    return {"median_ms": float(np.median(samples)), "max_ms": float(np.max(samples)),
            "runs_ms": [round(s, 1) for s in samples],
            "note": "null audio device: add the output buffer (-B 1024 = 21 ms at 48 kHz) on a sound card"}


# -- the run ------------------------------------------------------------------

def run_condition(tempo: float, loaded: bool, seconds: float, tmp: Path) -> dict:
    stress = None
    if loaded:
        if shutil.which("stress-ng") is None:
            raise SystemExit("stress-ng is needed for the loaded runs: apt-get install stress-ng")
        stress = subprocess.Popen(["stress-ng", "--cpu", str(os.cpu_count()), "--timeout",
                                   f"{int(seconds + 60)}s", "--quiet"])
        time.sleep(1)
    try:
        processes = {}
        for method in METHODS:
            out = tmp / f"{method}-{tempo}-{'loaded' if loaded else 'idle'}.wav"
            processes[method] = (out, subprocess.Popen(
                [sys.executable, __file__, "--worker", method, "--tempo", str(tempo),
                 "--seconds", str(seconds), "--wav", str(out)], cwd=ROOT))
        results = {}
        for method, (out, process) in processes.items():
            if process.wait() != 0:
                raise SystemExit(f"worker {method} failed")
            results[method] = analyse(out, json.loads(out.with_suffix(".json").read_text()), seconds)
        return results
    finally:
        if stress is not None:
            stress.terminate()
            stress.wait()


def summarise(conditions: dict) -> dict:
    methods = {}
    for method in METHODS:
        runs = {name: result[method] for name, result in conditions.items()}
        everything = np.abs(np.concatenate([np.array(r["errors"]) for r in runs.values()]))
        methods[method] = {
            "max_abs_error_samples": float(max(r["max_abs_error_samples"] for r in runs.values())),
            "p99_abs_error_samples": float(np.percentile(everything, 99)),
            "std_samples": float(max(r["std_samples"] for r in runs.values())),
            "missing": int(sum(r["missing"] for r in runs.values())),
            "extra": int(sum(r["extra"] for r in runs.values())),
            "max_abs_drift_samples_per_minute": float(max(abs(r["drift_samples_per_minute"])
                                                          for r in runs.values())),
            "cpu_seconds_per_audio_second": float(max(r["cpu_seconds_per_audio_second"]
                                                      for r in runs.values())),
            "conditions": {name: {k: v for k, v in r.items() if k != "errors"} for name, r in runs.items()},
        }
        if method == "appliance":
            methods[method]["late_notes"] = int(sum(r["late_notes"] for r in runs.values()))
            methods[method]["xruns"] = int(sum(r["xruns"] for r in runs.values()))
    return methods


def plot(conditions: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(conditions), figsize=(5 * len(conditions), 5), sharey=True)
    for axis, (name, result) in zip(np.atleast_1d(axes), conditions.items(), strict=True):
        data = [np.abs(np.array(result[m]["errors"])) + 0.5 for m in METHODS]
        axis.boxplot(data, whis=(0, 100))
        axis.set_xticks(range(1, len(METHODS) + 1), [m.replace("_", "\n") for m in METHODS], fontsize=7)
        axis.set_yscale("log")
        axis.axhline(1.5, color="green", linewidth=0.8, linestyle="--")
        axis.set_title(name)
    np.atleast_1d(axes)[0].set_ylabel("|onset error| + 0.5 (samples at 48 kHz, log)")
    fig.suptitle("Onset error against the ideal sample (dashed: 1 sample)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="seconds per condition")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "timing.json")
    parser.add_argument("--plot", type=Path, help="PNG of the error distributions (default: beside --out)")
    parser.add_argument("--tempos", type=float, nargs="+", default=[120, 300])
    parser.add_argument("--loads", nargs="+", choices=["idle", "loaded"], default=["idle", "loaded"])
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--tempo", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--wav", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.tempo, args.seconds, args.wav)
        return 0
    started = time.time()
    conditions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tempo in args.tempos:
            for load in args.loads:
                name = f"{tempo:g}bpm/{load}"
                print(f"timing: {name}, {args.seconds:g} s ...", file=sys.stderr)
                conditions[name] = run_condition(tempo, load == "loaded", args.seconds, Path(tmp))
    summary = {
        "seconds_per_condition": args.seconds,
        "cpus": os.cpu_count(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "methods": summarise(conditions),
        "start_to_first_note": start_to_first_note(),
        "wall_seconds": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    plot(conditions, args.plot or args.out.with_suffix(".png"))
    for method, figures in summary["methods"].items():
        print(f"{method:<30} max {figures['max_abs_error_samples']:8.1f}  "
              f"p99 {figures['p99_abs_error_samples']:8.1f}  "
              f"std {figures['std_samples']:7.2f}  missing {figures['missing']}  "
              f"cpu/s {figures['cpu_seconds_per_audio_second']:.3f}")
    print(f"start to first note: {summary['start_to_first_note']['median_ms']:.0f} ms (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
