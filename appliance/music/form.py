"""Form: how the music is arranged over minutes.

A piece is a chain of sections of `section` bars each.  Each kind of section
shapes the generator: how dense it plays, which voices are in, where the lead
sits, how bright and loud the notes are, each as an arc from the section's
first bar to its last (a build rises, a breakdown thins out and comes back).
The chain is a seeded walk over which kind may follow which, as a musician
arranges: an intro builds, a build peaks, a peak breaks down or holds, a
breakdown returns, and a return may come back in another key (up or down a
fourth or a fifth mostly; the key stays within a tritone of the set root).
The last bar of a phrase pair has a fill.

`evolution` says how much of that is heard: 0 is the steady groove (every
shape neutral), 1 the full arc.  In between, arcs are scaled and each planned
voice exit happens with that probability, so a low setting breathes a little
and a high one rearranges.

Everything here is a pure function of the seed and the bar number (memoised),
so it needs no state in the generator's snapshots and is the same however the
sequencer rewinds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

VOICES = ("lead", "bass", "pad", "perc")


@dataclass(frozen=True)
class Kind:
    name: str
    density: tuple[float, float]            # multiplier of density, first bar -> last bar
    voices: tuple[float, float, float, float]   # activity multiplier of lead, bass, pad, perc (0: out)
    register: tuple[float, float]           # semitones added to the lead's register
    brightness: tuple[float, float]         # added to each note's timbre
    loudness: tuple[float, float]           # multiplier of velocity
    follows: tuple[tuple[str, float], ...]  # which kinds may come next, weighted


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("intro", (0.45, 0.7), (0.0, 1.0, 1.0, 0.0), (-5, -2), (-0.35, -0.15), (0.75, 0.85),
         (("build", 1.0),)),
    Kind("build", (0.6, 1.05), (0.8, 1.0, 0.0, 1.0), (-2, 3), (-0.15, 0.25), (0.8, 1.0),
         (("peak", 3.0), ("build", 0.5))),
    Kind("peak", (1.15, 1.2), (1.0, 1.0, 1.0, 1.2), (3, 5), (0.3, 0.35), (1.05, 1.1),
         (("breakdown", 2.0), ("peak", 0.8), ("groove", 1.0))),
    Kind("groove", (1.0, 1.0), (0.85, 1.0, 0.6, 0.8), (0, 0), (0.0, 0.05), (0.95, 0.95),
         (("breakdown", 1.0), ("build", 1.0), ("peak", 0.5))),
    Kind("breakdown", (0.4, 0.55), (0.6, 0.0, 1.0, 0.0), (-3, -1), (-0.4, -0.25), (0.7, 0.75),
         (("build", 2.0), ("return", 1.5))),
    Kind("return", (0.8, 1.0), (1.0, 1.0, 1.0, 0.6), (0, 1), (-0.05, 0.1), (0.9, 1.0),
         (("peak", 2.0), ("groove", 1.0))),
)}
NEUTRAL = Kind("steady", (1.0, 1.0), (1.0, 1.0, 1.0, 1.0), (0, 0), (0.0, 0.0), (1.0, 1.0), ())


@dataclass(frozen=True)
class Shape:
    """What the form asks of one bar."""

    section: str
    section_index: int
    bar_in_section: int          # 0-based
    section_bars: int
    phrase_bars: int
    bar_in_phrase: int           # 0-based
    density: float
    voices: dict[str, float]
    register: float
    brightness: float
    loudness: float
    fill: bool                   # last bar of a phrase pair: the percussion fills
    response: bool               # the second phrase of a pair answers the first
    key: int = 0                 # semitones from the set root (a section that modulated)

    @property
    def phrase_end(self) -> bool:
        return self.bar_in_phrase == self.phrase_bars - 1


def shape(seed: int, bar: int, evolution: float, section_bars: int) -> Shape:
    """The form at a bar (0-based) for these settings."""
    section_bars = max(1, section_bars)
    index, within = divmod(max(0, bar), section_bars)
    phrase_bars = _phrase_bars(seed, index, section_bars)
    phrase, in_phrase = divmod(within, phrase_bars)
    if evolution <= 0:
        return Shape("steady", index, within, section_bars, phrase_bars, in_phrase, 1.0,
                     dict.fromkeys(VOICES, 1.0), 0.0, 0.0, 1.0, False, False)
    kind = KINDS[_kinds(seed, index // 100 + 1)[index]]
    t = within / max(1, section_bars - 1)
    exits = random.Random(f"exits:{seed}:{index}")
    voices = {}
    for name, planned in zip(VOICES, kind.voices, strict=True):
        chance = exits.random()
        if planned == 0.0 and chance >= evolution:
            planned = 1.0 - evolution              # an exit not taken: only thinned
        voices[name] = planned if planned == 0.0 else 1.0 + evolution * (planned - 1.0)
    fill = in_phrase == phrase_bars - 1 and (within == section_bars - 1 or phrase % 2 == 1)
    key = _keys(seed, evolution, index // 100 + 1)[index]
    return Shape(kind.name, index, within, section_bars, phrase_bars, in_phrase,
                 density=1.0 + evolution * (_arc(kind.density, t) - 1.0),
                 voices=voices,
                 register=evolution * _arc(kind.register, t),
                 brightness=evolution * _arc(kind.brightness, t),
                 loudness=1.0 + evolution * (_arc(kind.loudness, t) - 1.0),
                 fill=fill, response=phrase % 2 == 1, key=key)


def _arc(ends: tuple[float, float], t: float) -> float:
    return ends[0] + (ends[1] - ends[0]) * t


def _phrase_bars(seed: int, section: int, section_bars: int) -> int:
    """Phrases of 2 or 4 bars (varying by section), never longer than the section."""
    choices = [n for n in (2, 4, 4) if n <= section_bars and section_bars % n == 0] or [section_bars]
    return random.Random(f"phrase:{seed}:{section}").choice(choices)


@lru_cache(maxsize=64)
def _kinds(seed: int, blocks: int) -> tuple[str, ...]:
    """The kinds of the first 100 * blocks sections: an intro, then a seeded walk over
    `follows` (each block extends the one before, so a long set walks each block once)."""
    kinds = list(_kinds(seed, blocks - 1)) if blocks > 1 else ["intro"]
    rng = random.Random(f"form:{seed}:{blocks}")
    while len(kinds) < 100 * blocks:
        names, weights = zip(*KINDS[kinds[-1]].follows, strict=True)
        kinds.append(rng.choices(names, weights)[0])
    return tuple(kinds)


MODULATIONS = ((5, 3.0), (-5, 3.0), (7, 2.0), (2, 1.0), (-2, 1.0), (3, 1.0), (-3, 1.0))


@lru_cache(maxsize=64)
def _keys(seed: int, evolution: float, blocks: int) -> tuple[int, ...]:
    """The key (semitones from the root, -5..6) of the first 100 * blocks sections: a return
    modulates with probability `evolution`; every other section keeps the key before it."""
    kinds = _kinds(seed, blocks)
    keys = list(_keys(seed, evolution, blocks - 1)) if blocks > 1 else [0]
    rng = random.Random(f"keys:{seed}:{blocks}")
    while len(keys) < 100 * blocks:
        key = keys[-1]
        chance, (names, weights) = rng.random(), zip(*MODULATIONS, strict=True)
        step = rng.choices(names, weights)[0]
        if kinds[len(keys)] == "return" and chance < evolution:
            key = (key + step + 5) % 12 - 5
        keys.append(key)
    return tuple(keys)
