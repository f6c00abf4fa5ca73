"""The generator's musical properties, checked over many bars and seeds."""

from __future__ import annotations

import itertools

import pytest

from appliance.music import form, rhythm, theory
from appliance.music.generator import Generator
from appliance.params import PARAMETERS


def params(**changes: object) -> dict[str, float]:
    """Settings for the groove's own properties: no form, loops locked (unless changed)."""
    values = {**PARAMETERS.defaults(), "evolution": 0.0, "deja_vu": 0.5}
    for name, value in changes.items():
        values[name] = PARAMETERS.spec(name).coerce(value)
    return values


def compose(count: int, settings: dict[str, float], seed: int | None = None) -> list[list]:
    if seed is not None:
        settings = {**settings, "seed": float(seed)}
    generator = Generator(seed=int(settings["seed"]))
    return [generator.step(k, settings) for k in range(count)]


def test_euclidean_patterns_are_the_known_rhythms():
    def text(p):
        return "".join("x" if hit else "." for hit in p)

    assert text(rhythm.euclidean(3, 8)) == "x..x..x."          # tresillo
    assert text(rhythm.euclidean(5, 8)) == "x.xx.xx."          # cinquillo
    assert text(rhythm.euclidean(4, 16)) == "x...x...x...x..."  # four on the floor
    assert text(rhythm.euclidean(3, 8, rotation=1)) == "..x..x.x"
    assert rhythm.euclidean(9, 4) == [True] * 4
    assert rhythm.euclidean(0, 5) == [False] * 5


@pytest.mark.parametrize("scale", ["major", "dorian", "harmonic_minor", "pentatonic", "whole_tone"])
@pytest.mark.parametrize("root", ["C", "F#", "A"])
def test_every_pitched_note_is_in_the_scale(scale, root):
    settings = params(scale=scale, root=root, density=0.9, motion=1.0, range=36, pad=1, bass=1)
    allowed = {(theory.NOTE_NAMES.index(root) + s) % 12 for s in theory.SCALES[scale]}
    notes = [n for step in compose(16 * 24, settings, seed=11) for n in step if n.voice != "Perc"]
    assert len(notes) > 100
    assert {int(n.pitch) % 12 for n in notes} <= allowed


@pytest.mark.parametrize("density", [0.0, 0.1, 0.3125, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("length", [16, 12, 7])
def test_density_sets_how_many_steps_play(density, length):
    settings = params(density=density, steps=length, hits=5, lead=1)
    steps = compose(length * 20, settings, seed=3)
    expected = rhythm.active_count(density, length)
    for cycle in range(20):
        playing = sum(1 for notes in steps[cycle * length:(cycle + 1) * length] if notes)
        assert playing == expected


def test_density_zero_is_silent_and_one_is_every_step():
    assert all(not s for s in compose(64, params(density=0), seed=5))
    assert all(s for s in compose(64, params(density=1, lead=1), seed=5))


def test_density_of_hits_over_steps_plays_the_euclidean_pattern():
    settings = params(density=5 / 16, hits=5, steps=16, rotation=0, variation=0)
    steps = compose(16, settings, seed=2)
    assert [bool(s) for s in steps] == rhythm.euclidean(5, 16)


def test_same_seed_same_music_and_other_seeds_differ():
    settings = params(density=0.7)
    first = compose(256, settings, seed=42)
    assert compose(256, settings, seed=42) == first
    assert compose(256, settings, seed=43) != first


def test_snapshot_and_restore_recompose_exactly():
    settings = params(density=0.8, variation=0.6)
    generator = Generator(seed=9)
    for k in range(40):
        generator.step(k, settings)
    saved = generator.snapshot()
    ahead = [generator.step(k, settings) for k in range(40, 90)]
    generator.restore(saved)
    assert [generator.step(k, settings) for k in range(40, 90)] == ahead


def test_lead_stays_in_its_register():
    settings = params(register=60, range=12, motion=1.0, density=1, lead=1)
    leads = [n.pitch for step in compose(16 * 30, settings, seed=8) for n in step if n.voice == "Lead"]
    assert min(leads) >= 60 - 6 - 2 and max(leads) <= 60 + 6 + 2


def test_motion_zero_repeats_and_motion_one_leaps():
    def mean_leap(motion: float) -> float:
        settings = params(motion=motion, density=1, lead=1, range=36, changes=8)
        leads = [n.pitch for step in compose(16 * 8, settings, seed=4) for n in step if n.voice == "Lead"]
        return sum(abs(a - b) for a, b in itertools.pairwise(leads)) / (len(leads) - 1)

    assert mean_leap(0.0) < mean_leap(0.5) < mean_leap(1.0)


def test_variation_zero_keeps_the_rhythm_and_variation_changes_it_slowly():
    def rhythm_of_bars(variation: float) -> list[tuple[bool, ...]]:
        settings = params(variation=variation, density=0.5, lead=1)
        steps = compose(16 * 40, settings, seed=21)
        return [tuple(bool(s) for s in steps[b * 16:(b + 1) * 16]) for b in range(40)]

    still = rhythm_of_bars(0.0)
    assert len(set(still)) == 1
    moving = rhythm_of_bars(1.0)
    # a walk among the few rhythms one swap at the edge reaches: 3-6 in 40 bars (seeds 15-29)
    assert len(set(moving)) >= 3
    # slow: consecutive bars differ by at most one swapped pair (two steps)
    for a, b in itertools.pairwise(moving):
        assert sum(x != y for x, y in zip(a, b, strict=True)) <= 2


def test_notes_fit_what_the_clock_can_carry():
    settings = params(density=1, lead=1, bass=1, pad=1, perc=1)
    steps = compose(16 * 16, settings, seed=1)
    assert max(len(s) for s in steps) <= 8
    for note in (n for s in steps for n in s):
        assert 0.05 <= note.velocity <= 1 and note.gate > 0 and -1 <= note.pan <= 1 and 0 <= note.timbre <= 1


# -- form, breathing and deja vu ---------------------------------------------------------

def bars_of(steps: list[list], voice: str | None = None, bar: int = 16) -> list[tuple[bool, ...]]:
    return [tuple(any(voice is None or n.voice == voice for n in s) for s in steps[b:b + bar])
            for b in range(0, len(steps) - bar + 1, bar)]


def test_evolution_zero_is_the_steady_groove_and_evolution_arranges_sections():
    steady = compose(16 * 64, params(evolution=0.0), seed=3)
    arranged = compose(16 * 64, params(evolution=1.0), seed=3)

    def per_section(steps: list[list]) -> list[tuple[int, frozenset]]:
        sections = []
        for start in range(0, len(steps), 16 * 16):
            notes = [n for s in steps[start:start + 16 * 16] for n in s]
            sections.append((len(notes), frozenset(n.voice for n in notes)))
        return sections

    counts = [c for c, _ in per_section(steady)]
    assert max(counts) - min(counts) <= 0.1 * max(counts)          # steady: sections alike
    arranged_sections = per_section(arranged)
    counts = [c for c, _ in arranged_sections]
    assert max(counts) >= 1.5 * min(counts)                         # sections build and thin out
    assert len({voices for _, voices in arranged_sections}) >= 2    # voices enter and leave


def test_evolution_and_form_are_deterministic_and_survive_a_rewind():
    settings = params(evolution=0.8, deja_vu=0.3, density=0.8)
    assert compose(16 * 40, settings, seed=5) == compose(16 * 40, settings, seed=5)
    generator = Generator(seed=5)
    for k in range(16 * 10 + 7):
        generator.step(k, settings)
    saved = generator.snapshot()
    ahead = [generator.step(k, settings) for k in range(16 * 10 + 7, 16 * 30)]
    generator.restore(saved)
    assert [generator.step(k, settings) for k in range(16 * 10 + 7, 16 * 30)] == ahead


def test_the_lead_breathes_at_phrase_ends_and_lands_on_the_chord():
    settings = params(evolution=0.6, density=1.0, lead=1.0)
    generator = Generator(seed=11)
    steps = [generator.step(k, settings) for k in range(16 * 64)]
    lead = bars_of(steps, "Lead")
    rests = sum(not played for bar in lead for played in bar) / (16 * len(lead))
    assert rests >= 0.2                                       # density 1: only breathing rests
    for bar in range(64):
        shape = form.shape(11, bar, 0.6, 16)
        if shape.phrase_end:
            assert not any(lead[bar][12:]), f"bar {bar}: the lead plays through its phrase end"
            last = [n for s in steps[bar * 16:bar * 16 + 12] for n in s if n.voice == "Lead"][-1]
            chord = generator.describe(bar)["chord_notes"]
            assert theory.NOTE_NAMES[int(last.pitch) % 12] in chord, f"bar {bar}: ends off the chord"


def test_deja_vu_locks_loosens_and_shuffles_the_loops():
    def distinct_lead_bars(amount: float) -> int:
        settings = params(deja_vu=amount, density=1.0, lead=0.5, variation=0.0)
        return len(set(bars_of(compose(16 * 32, settings, seed=2), "Lead")))

    assert distinct_lead_bars(0.5) == 1            # locked: the same bar rhythm every bar
    assert distinct_lead_bars(0.0) > 20            # always new
    assert distinct_lead_bars(1.0) > 20            # shuffled within the loop
    assert 1 < distinct_lead_bars(0.4) < distinct_lead_bars(0.0)


def test_status_describes_the_section_chord_scale_and_pattern():
    generator = Generator(seed=1)
    settings = params(evolution=0.6, section=8)
    for k in range(16 * 9):
        generator.step(k, settings)
    described = generator.describe(8)
    assert described is not None
    assert described["section_number"] == 2 and described["bar_in_section"] == 1
    assert described["section"] in {"intro", "build", "peak", "groove", "breakdown", "return"}
    assert described["scale"] == "A dorian" and described["pattern"] == "E(5,16) rotated 0"
    assert described["chord"][0] in "ABCDEFG"
    assert theory.chord_name(theory.SCALES["major"], 0, 0) == "C"
    assert theory.chord_name(theory.SCALES["major"], 0, 1) == "Dm"
    assert theory.chord_name(theory.SCALES["major"], 0, 6) == "Bdim"


def test_returns_may_modulate_and_the_key_stays_near_the_root():
    steady = [form.shape(4, bar, 0.0, 8).key for bar in range(0, 8 * 200, 8)]
    assert set(steady) == {0}
    moving = [form.shape(4, bar, 1.0, 8) for bar in range(0, 8 * 200, 8)]
    keys = [s.key for s in moving]
    assert len(set(keys)) >= 3 and all(-5 <= k <= 6 for k in keys)
    for before, after in itertools.pairwise(moving):            # only a return changes the key
        assert after.key == before.key or after.section == "return"
