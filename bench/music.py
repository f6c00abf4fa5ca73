"""Music benchmark: does it evolve over minutes, and is its sound free of faults?

    python bench/music.py --minutes N --out FILE.json [--seeds 1,2,3] [--evolutions 0,0.3,0.6,1]

Offline renders (faster than real time, deterministic), measured afterwards:

Evolution, for every seed and evolution setting (all other knobs at their defaults):
  similarity    cosine similarity of bar features (chroma + spectral envelope,
                engine/analysis.bar_features): minute 1 against minute N (the last),
                and bars within one minute against each other (the mean over minutes).
                Evolving music has first-vs-last clearly below within-minute.
  rhythms       distinct bar rhythms per voice (which steps of the bar it plays).
  lead rests    share of the steps where the music plays and the lead does not.
  sections      integrated loudness (LUFS) and spectral centroid (Hz) of every
                section: their range (max - min LU; (max - min) / min centroid).
  loudness      integrated loudness of the whole render, true peak, flat-topped samples.

Faults, for a grid of extreme knob settings (20 s each; 40 s at 20 BPM):
  flat-topped samples (a sample within 0.5 dB of the render's peak equal to the one
  before: analysis.flat_topped), sample and
  true peak (4x oversampled), the start's level against the steady state (peak of
  the first 0.5 s against the 90th percentile of half-second peaks until "off"),
  and seconds from "everything off" (density and every voice to 0) until the
  output stays below -80 dBFS RMS (50 ms windows): with reverb and echo off
  (the voices' own fade: at most one bar), and as set (plus the effects' tail).

Spectrograms of the first seed's renders at evolution 0 and the default go beside
the JSON (FILE-evolution-0.png, ...).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.config.scenario import Scenario  # noqa: E402
from appliance.config.schema import load as load_config  # noqa: E402
from appliance.engine import analysis  # noqa: E402
from appliance.instrument.instrument import render_to  # noqa: E402
from appliance.music.generator import Generator  # noqa: E402
from appliance.params import PARAMETERS  # noqa: E402

VOICES = ("Lead", "Bass", "Pad", "Perc")
OFF = {"density": 0, "lead": 0, "bass": 0, "pad": 0, "perc": 0}
SILENCE_DBFS = -80.0
GRID = {
    "defaults": {},
    "volume 0": {"volume": 0},
    "length 8": {"length": 8},
    "loudest": {"volume": 0, "velocity": 1, "dynamics": 1, "density": 1, "length": 8, "brightness": 1,
                "reverb": 1, "echo": 1, "lead": 1, "bass": 1, "pad": 1, "perc": 1},
    "bright low": {"volume": 0, "brightness": 1, "register": 36, "range": 36, "motion": 1, "velocity": 1},
    "300 BPM": {"tempo": 300, "volume": 0, "density": 1, "length": 8},
    "20 BPM, changes 8": {"tempo": 20, "changes": 8, "pad": 1, "volume": 0},
    "volume min": {"volume": -60},
}


def render(seconds: float, params: dict, tmp: Path, name: str, scenario: str | None = None
           ) -> tuple[np.ndarray, int, dict]:
    config_path = tmp / "config.toml"
    config_path.write_text("")
    loaded = None
    if scenario is not None:
        (tmp / f"{name}.scenario.toml").write_text(scenario)
        loaded = Scenario.load(tmp / f"{name}.scenario.toml")
    out = tmp / f"{name}.wav"
    overrides = {k: PARAMETERS.spec(k).coerce(v) for k, v in params.items()}
    instrument = render_to(load_config(config_path), out, seconds, overrides, loaded)
    audio, rate = analysis.read_wav(out)
    out.unlink()
    return audio, rate, instrument.report()


def composed(params: dict, bars: int) -> list[list]:
    generator = Generator(seed=int(params["seed"]))
    return [generator.step(k, params) for k in range(bars * generator.bar_steps)]


def note_figures(steps: list[list], bar_steps: int) -> dict:
    bars = len(steps) // bar_steps
    rhythms = {}
    for voice in VOICES:
        patterns = {tuple(any(n.voice == voice for n in steps[b * bar_steps + i]) for i in range(bar_steps))
                    for b in range(bars)}
        rhythms[voice] = len(patterns - {(False,) * bar_steps})
    playing = [s for s in steps if s]
    rests = sum(1 for s in playing if not any(n.voice == "Lead" for n in s))
    return {"distinct_bar_rhythms": rhythms, "lead_rest_share": round(rests / max(1, len(playing)), 3),
            "lead_notes_per_bar": sorted({sum(1 for s in steps[b * bar_steps:(b + 1) * bar_steps]
                                              for n in s if n.voice == "Lead") for b in range(bars)})}


def evolution_figures(audio: np.ndarray, rate: int, params: dict) -> dict:
    bar_seconds = 4 * 60 / params["tempo"]
    features = analysis.bar_features(audio, rate, bar_seconds)
    per_minute = int(60 / bar_seconds)
    minutes = len(features) // per_minute
    within = []
    for m in range(minutes):
        f = features[m * per_minute:(m + 1) * per_minute]
        sims = f @ f.T
        within.append(float(sims[np.triu_indices(len(f), 1)].mean()))
    first, last = features[:per_minute], features[(minutes - 1) * per_minute:minutes * per_minute]
    section_seconds = int(params["section"]) * bar_seconds
    sections = []
    for start in np.arange(0, len(audio) / rate - section_seconds + 1e-9, section_seconds):
        piece = audio[int(start * rate):int((start + section_seconds) * rate)]
        sections.append((analysis.loudness_lufs(piece, rate), analysis.spectral_centroid_hz(piece, rate)))
    lufs = [s[0] for s in sections if np.isfinite(s[0])]
    centroids = [s[1] for s in sections]
    return {
        "similarity_first_vs_last_minute": round(float((first @ last.T).mean()), 3),
        "similarity_within_minute": round(float(np.mean(within)), 3),
        "similarity_within_minute_range": [round(min(within), 3), round(max(within), 3)],
        "sections": len(sections),
        "section_loudness_range_lu": round(max(lufs) - min(lufs), 2) if lufs else None,
        "section_centroid_range_pct": round(100 * (max(centroids) - min(centroids)) / min(centroids), 1),
        "section_lufs": [round(x, 1) for x in lufs],
        "section_centroid_hz": [round(x) for x in centroids],
        "integrated_lufs": round(analysis.loudness_lufs(audio, rate), 2),
        "true_peak_dbtp": round(analysis.true_peak_dbtp(audio), 2),
        "flat_topped_samples": analysis.flat_topped(audio),
    }


def silent_after(audio: np.ndarray, rate: int, off_at: float) -> float:
    """Seconds from `off_at` until the output stays below SILENCE_DBFS RMS (50 ms windows)."""
    window = rate // 20
    after = audio[int(off_at * rate):]
    loud = [i for i in range(0, len(after) - window, window) if analysis.rms_dbfs(after[i:i + window]) > SILENCE_DBFS]
    return (loud[-1] + window) / rate if loud else 0.0


def fault_figures(name: str, settings: dict, tmp: Path) -> dict:
    params = {**PARAMETERS.defaults(), **settings}
    bar = 4 * 60 / params["tempo"]
    off_at = max(10.0, 2 * bar)
    seconds = off_at + 2 * bar + 20
    scenario = f"[[event]]\nat = {off_at}\nset = {{ {', '.join(f'{k} = {v}' for k, v in OFF.items())} }}\n"
    audio, rate, report = render(seconds, settings, tmp, "grid", scenario)
    dry_audio, _, _ = render(seconds, {**settings, "reverb": 0, "echo": 0}, tmp, "dry", scenario)
    voices = silent_after(dry_audio, rate, off_at)
    half = rate // 2
    peaks = [float(np.max(np.abs(audio[i:i + half]))) for i in range(half, int(off_at * rate) - half, half)]
    start = float(np.max(np.abs(audio[:half])))
    steady = float(np.percentile(peaks, 90)) if peaks else 0.0

    def db(x: float) -> float | None:
        return round(20 * np.log10(x), 2) if x > 0 else None

    return {
        "settings": settings,
        "flat_topped_samples": analysis.flat_topped(audio),
        "sample_peak_dbfs": round(analysis.peak_dbfs(audio), 2),
        "true_peak_dbtp": round(analysis.true_peak_dbtp(audio), 2),
        "start_peak_dbfs": db(start), "steady_peak_dbfs": db(steady),
        "start_minus_steady_db": round(20 * np.log10(start / steady), 2) if start > 0 and steady > 0 else None,
        "seconds_to_silence_after_off": round(silent_after(audio, rate, off_at), 2),
        "voices_silent_after_off_s": round(voices, 2),         # reverb and echo off
        "one_bar_s": round(bar, 2),
        "integrated_lufs": round(analysis.loudness_lufs(audio[:int(off_at * rate)], rate), 2),
        "dsp_faults": report["dsp_faults"],
    }


def spectrogram(audio: np.ndarray, rate: int, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mono = audio.mean(axis=1)
    fig, ax = plt.subplots(figsize=(14, 4.5))
    ax.specgram(mono, NFFT=4096, Fs=rate, noverlap=2048, cmap="magma", vmin=-140, vmax=-30)
    ax.set_ylim(0, 8000)
    ax.set_xlabel("seconds")
    ax.set_ylabel("Hz")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "music.json")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--evolutions", default="0,0.3,0.6,1")
    parser.add_argument("--no-grid", action="store_true", help="skip the knob grid")
    parser.add_argument("--grid-only", action="store_true",
                        help="only the knob grid, kept with the evolution figures already in --out")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    evolutions = [float(e) for e in args.evolutions.split(",")]
    default_evolution = PARAMETERS.spec("evolution").default
    result: dict = {"command": " ".join(["bench/music.py", *(argv if argv is not None else sys.argv[1:])]),
                    "date": datetime.date.today().isoformat(), "minutes": args.minutes,
                    "default_evolution": default_evolution, "evolution": [], "grid": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.grid_only:
            kept = json.loads(args.out.read_text())
            result.update({k: kept[k] for k in ("evolution", "minutes")})
            result["evolution_command"] = kept.get("evolution_command", kept["command"])
        for seed, evolution in itertools.product(seeds, evolutions) if not args.grid_only else ():
            params = {**PARAMETERS.defaults(), "seed": float(seed), "evolution": evolution}
            audio, rate, _ = render(args.minutes * 60, {"seed": seed, "evolution": evolution}, tmp, "piece")
            bars = int(args.minutes * 60 * params["tempo"] / 60 / 4)
            figures = {"seed": seed, "evolution": evolution,
                       **note_figures(composed(params, bars), 16), **evolution_figures(audio, rate, params)}
            result["evolution"].append(figures)
            print(json.dumps({k: v for k, v in figures.items() if not isinstance(v, list) or len(v) < 5}),
                  flush=True)
            if seed == seeds[0] and evolution in (0.0, default_evolution, max(evolutions)):
                path = args.out.with_name(f"{args.out.stem}-evolution-{evolution:g}.png")
                spectrogram(audio, rate, f"seed {seed}, evolution {evolution:g}, {args.minutes:g} min", path)
        if not args.no_grid:
            for name, settings in GRID.items():
                result["grid"][name] = fault_figures(name, settings, tmp)
                print(name, json.dumps(result["grid"][name]), flush=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
