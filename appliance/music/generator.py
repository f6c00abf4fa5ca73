"""The music generator: composes the notes of each step from the parameters.

It composes in four layers over one rhythm:

* Rhythm: a Euclidean pattern (hits, steps, rotation) ranks the steps of the
  pattern; density chooses how many of the strongest play (rhythm.ranking).
* Lead: a short phrase held as a loop of random numbers, as in a Turing
  Machine sequencer.  The numbers stay, so the phrase repeats and is
  recognisable; each bar, with probability `variation`, one of them is
  replaced, so the phrase drifts slowly.  Motion and range shape how the
  numbers become melodic moves, so turning those knobs reshapes the same
  phrase at once.  The phrase is sung on the current chord, and strong steps
  land on chord tones.
* Harmony: chord roots follow a weighted functional progression, one chord
  every `changes` bars; the bass plays the roots (and fifths) on the Euclidean
  hits, the pad holds the chord.
* Percussion on the playing steps, accented by metre.
* Form (form.py): sections that build, peak, break down and return shape
  density, which voices play, the lead's register and the notes' brightness
  and loudness, as much as `evolution` asks.  With evolution the lead
  breathes: it rests at the end of each phrase, lands on a chord tone before
  the rest, and the second phrase of a pair answers the first (same rhythm,
  mirrored contour); the percussion fills the last beat of a phrase pair.
* Deja vu (after Mutable Instruments Marbles): the lead's and the
  percussion's rhythms and the lead's melody are loops of random values;
  `deja_vu` below the middle replaces values as they are read (0: always
  new), at the middle the loops repeat exactly, above it reads jump within
  the loop (1: shuffled).

Everything random comes from one seeded generator consumed in a fixed order,
so the same seed and parameters give the same music.  The whole state can be
snapshot and restored: the sequencer rewinds to a snapshot to recompose the
steps it has already sent when a parameter changes.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from appliance.music import form, rhythm, theory
from appliance.params import PARAMETERS

PHRASE_LENGTH = 8
LOOP_LENGTH = 16            # steps in the lead's and the percussion's rhythm loops
DESCRIBED_BARS = 64         # bars whose description is kept (status reads the one being heard)


@dataclass(frozen=True)
class Note:
    """One note as the clock will play it; gate is in beats."""

    voice: str
    pitch: float
    velocity: float
    gate: float
    pan: float = 0.0
    timbre: float = 0.5


@dataclass
class _State:
    seed: int
    rng: random.Random
    phrase: list[float]
    phrase_pos: int = 0
    ranking: list[int] = field(default_factory=list)
    ranking_key: tuple[int, ...] = ()
    chord_root: int = 0
    bars_in_chord: int = 0
    pad_pending: bool = True
    timbre: float = 0.5
    pan: float = 0.0
    lead_rhythm: list[float] = field(default_factory=list)
    perc_rhythm: list[float] = field(default_factory=list)
    shape: form.Shape | None = None
    rest_from: int = 0          # the step of the bar from which the lead rests (phrase ends)


def _fresh_state(seed: int) -> _State:
    rng = random.Random(seed)
    phrase = [rng.random() for _ in range(PHRASE_LENGTH)]
    loops = random.Random(f"loops:{seed}")       # apart, so the main stream is as it always was
    return _State(seed=seed, rng=rng, phrase=phrase,
                  lead_rhythm=[loops.random() for _ in range(LOOP_LENGTH)],
                  perc_rhythm=[loops.random() for _ in range(LOOP_LENGTH)])


def deja_vu(loop: list[float], position: int, amount: float, rng: random.Random) -> float:
    """Read a loop of random values the way Marbles' deja vu does: below 0.5 the value
    read may first be replaced by a new one (always at 0), at 0.5 the loop repeats as it
    is, above it the read may jump to any place in the loop (always at 1)."""
    if amount < 0.5:
        if rng.random() < (1 - 2 * amount) ** 2:
            loop[position] = rng.random()
        return loop[position]
    if amount > 0.5 and rng.random() < (2 * amount - 1) ** 2:
        return loop[rng.randrange(len(loop))]
    return loop[position]


class Generator:
    """Composes step after step; step(k) must be called for k = 0, 1, 2 ..."""

    def __init__(self, steps_per_beat: int = 4, beats_per_bar: int = 4, seed: int = 1) -> None:
        self.steps_per_beat = steps_per_beat
        self.beats_per_bar = beats_per_bar
        self._state = _fresh_state(seed)
        self.described: dict[int, dict[str, object]] = {}   # bar -> what it plays (status)

    @property
    def bar_steps(self) -> int:
        return self.steps_per_beat * self.beats_per_bar

    def snapshot(self) -> _State:
        return copy.deepcopy(self._state)

    def restore(self, state: _State) -> None:
        self._state = copy.deepcopy(state)

    def step(self, index: int, params: Mapping[str, float]) -> list[Note]:
        """The notes of global step `index`."""
        if int(params["seed"]) != self._state.seed:
            self._state = _fresh_state(int(params["seed"]))
        s = self._state
        if index % self.bar_steps == 0 or s.shape is None:
            self._new_bar(index, params)
        length = int(params["steps"])
        key = (int(params["hits"]), length, int(params["rotation"]), s.seed)
        if key != s.ranking_key:
            s.ranking, s.ranking_key = rhythm.ranking(*key), key
        position = index % length
        rank = s.ranking.index(position)
        shape = s.shape
        assert shape is not None
        density = params["density"] * shape.density
        in_bar = index % self.bar_steps
        if shape.fill and in_bar >= self.bar_steps - self.steps_per_beat and params["density"] > 0:
            return self._fill(index, in_bar, params)
        if rank >= rhythm.active_count(density, length):
            return []
        return self._compose(index, position, rank, params)

    def describe(self, bar: int) -> dict[str, object] | None:
        """What the generator composed for a bar (None if it is not kept)."""
        return self.described.get(bar)

    # -- bar-level changes -------------------------------------------------

    def _new_bar(self, index: int, params: Mapping[str, float]) -> None:
        s = self._state
        bar = index // self.bar_steps
        s.shape = form.shape(s.seed, bar, params["evolution"], int(params["section"]))
        s.rest_from = self.bar_steps
        evolution = params["evolution"]
        if evolution > 0 and (s.shape.phrase_end or (s.shape.bar_in_phrase + 1) * 2 == s.shape.phrase_bars):
            # breathe: the lead rests over the last beats of its phrase (1-3, more with more
            # evolution), and for a beat halfway through it (a comma)
            beats = 1 if not s.shape.phrase_end else random.Random(f"rest:{s.seed}:{bar}").choice(
                (1, 2, 2, 3)[:2 + round(2 * evolution)])
            s.rest_from = self.bar_steps - self.steps_per_beat * beats
        if index % self.bar_steps != 0:
            return                      # composing from mid-bar (a new seed): no bar change
        scale = theory.SCALES[_choice(params, "scale")]
        if index > 0 and s.rng.random() < params["variation"]:
            s.phrase[s.rng.randrange(PHRASE_LENGTH)] = s.rng.random()
        if index > 0 and s.rng.random() < params["variation"] * 0.5:
            self._shift_groove(params)
        s.bars_in_chord += 1
        if index == 0 or s.bars_in_chord >= int(params["changes"]):
            s.bars_in_chord = 0
            if index > 0:
                choices, weights = zip(*theory.next_roots(scale, s.chord_root), strict=False)
                s.chord_root = s.rng.choices(choices, weights)[0]
            s.pad_pending = True
        self._describe(bar, params)

    def _describe(self, bar: int, params: Mapping[str, float]) -> None:
        s = self._state
        shape = s.shape
        assert shape is not None
        scale_name = _choice(params, "scale")
        scale = theory.SCALES[scale_name]
        tonic = int(params["root"]) + shape.key
        self.described[bar] = {
            "section": shape.section, "section_number": shape.section_index + 1,
            "bar_in_section": shape.bar_in_section + 1, "section_bars": shape.section_bars,
            "chord": theory.chord_name(scale, tonic, s.chord_root),
            "chord_notes": [theory.NOTE_NAMES[theory.pitch(scale, tonic, d) % 12] for d in theory.chord(s.chord_root)],
            "scale": f"{theory.NOTE_NAMES[tonic % 12]} {scale_name}",
            "pattern": f"E({int(params['hits'])},{int(params['steps'])}) rotated {int(params['rotation'])}",
            "density": round(min(1.0, params["density"] * shape.density), 2),
            "voices": sorted(v for v in form.VOICES if params[v] * shape.voices[v] > 0),
        }
        for old in [b for b in self.described if b <= bar - DESCRIBED_BARS or b > bar]:
            del self.described[old]

    def _shift_groove(self, params: Mapping[str, float]) -> None:
        """Swap two neighbouring ranks at the edge of what plays: one step
        leaves the groove, its neighbour in rank joins.  The Euclidean hits
        keep their ranks, so the pattern keeps its identity."""
        s = self._state
        hits = min(int(params["hits"]), len(s.ranking))
        edge = rhythm.active_count(params["density"], len(s.ranking))
        low, high = max(hits, edge - 2), min(len(s.ranking) - 1, edge + 2)
        if low < high:
            i = s.rng.randrange(low, high)
            s.ranking[i], s.ranking[i + 1] = s.ranking[i + 1], s.ranking[i]

    # -- one playing step --------------------------------------------------

    def _compose(self, index: int, position: int, rank: int, params: Mapping[str, float]) -> list[Note]:
        s = self._state
        rng = s.rng
        shape = s.shape
        assert shape is not None
        scale = theory.SCALES[_choice(params, "scale")]
        tonic = _tonic(int(params["root"]) + shape.key, int(params["register"]))
        in_bar = index % self.bar_steps
        weight = rhythm.metric_weight(in_bar)
        gate = params["length"] / self.steps_per_beat
        loop_at = index % LOOP_LENGTH
        notes: list[Note] = []

        if s.pad_pending and params["pad"] * shape.voices["pad"] > 0:
            s.pad_pending = False
            notes += self._pad(scale, tonic, params)
        perc = params["perc"] * shape.voices["perc"]
        if deja_vu(s.perc_rhythm, loop_at, params["deja_vu"], rng) < perc:
            notes.append(self._shaped(Note("Perc", 60, self._velocity(weight, params), 0.1,
                                           pan=rng.uniform(-0.6, 0.6), timbre=rng.random())))
        is_hit = rank < min(int(params["hits"]), int(params["steps"]))
        if is_hit and rng.random() < params["bass"] * shape.voices["bass"]:
            fifth = weight < 2 and rng.random() < 0.3
            degree = s.chord_root + (4 if fifth else 0)
            bass = theory.pitch(scale, _bass_tonic(tonic), degree)
            notes.append(self._shaped(Note("Bass", bass, self._velocity(weight, params),
                                           max(gate, 1 / self.steps_per_beat) * 1.5, timbre=rng.random())))
        lead = params["lead"] * shape.voices["lead"]
        if in_bar < s.rest_from and deja_vu(s.lead_rhythm, loop_at, params["deja_vu"], rng) < lead:
            # the last beat before a rest lands on the chord
            landing = s.rest_from < self.bar_steps and in_bar >= s.rest_from - self.steps_per_beat
            notes.append(self._shaped(self._lead(scale, tonic, 2 if landing else weight, gate, params,
                                                 landing)))
        return notes

    def _fill(self, index: int, in_bar: int, params: Mapping[str, float]) -> list[Note]:
        """The last beat of a phrase pair: the percussion rolls in (every step, rising),
        the bass marks the beat, the lead rests."""
        s = self._state
        if params["perc"] <= 0:
            return []
        rise = (in_bar - (self.bar_steps - self.steps_per_beat) + 1) / self.steps_per_beat
        velocity = min(1.0, params["velocity"] * (0.45 + 0.45 * rise))
        return [self._shaped(Note("Perc", 60, velocity, 0.1, pan=s.rng.uniform(-0.4, 0.4),
                                  timbre=0.3 + 0.7 * rise))]

    def _shaped(self, note: Note) -> Note:
        """A note as the section wants it: brighter or darker, louder or softer."""
        shape = self._state.shape
        assert shape is not None
        if shape.brightness == 0 and shape.loudness == 1:
            return note
        return Note(note.voice, note.pitch, min(1.0, max(0.05, note.velocity * shape.loudness)), note.gate,
                    note.pan, min(1.0, max(0.0, note.timbre + shape.brightness)))

    def _lead(self, scale: tuple[int, ...], tonic: int, weight: int, gate: float,
              params: Mapping[str, float], landing: bool = False) -> Note:
        s = self._state
        shape = s.shape
        assert shape is not None
        reach = max(1, round(params["range"] * len(scale) / 24))
        phrase = s.phrase
        if params["deja_vu"] != 0.5:
            deja_vu(phrase, s.phrase_pos, params["deja_vu"], s.rng)
        if shape.response:
            phrase = [1 - u for u in phrase]         # the answer: the call's rhythm, its contour mirrored
        degree = s.chord_root + _phrase_degree(phrase, s.phrase_pos, params["motion"], reach)
        s.phrase_pos = (s.phrase_pos + 1) % PHRASE_LENGTH
        if weight >= 2:
            tones = theory.chord(s.chord_root)[:1] if landing and shape.response else theory.chord(s.chord_root)
            degree = min((t + len(scale) * o for t in tones for o in (-2, -1, 0, 1)),
                         key=lambda d: (abs(d - degree), d))
        note = theory.pitch(scale, tonic, degree)
        note = _fold(note, int(params["register"]) + round(shape.register), int(params["range"]))
        s.timbre = min(1.0, max(0.0, s.timbre + s.rng.uniform(-0.08, 0.08)))
        s.pan = min(0.3, max(-0.3, s.pan + s.rng.uniform(-0.1, 0.1)))
        return Note("Lead", note, self._velocity(weight, params), gate, pan=s.pan, timbre=s.timbre)

    def _pad(self, scale: tuple[int, ...], tonic: int, params: Mapping[str, float]) -> list[Note]:
        s = self._state
        shape = s.shape
        assert shape is not None
        size = 4 if len(scale) == 7 and s.rng.random() < 0.5 else 3
        gate = int(params["changes"]) * self.beats_per_bar * 0.95
        velocity = (0.35 + 0.5 * params["pad"]) * min(1.0, shape.voices["pad"])
        pans = (-0.5, 0.0, 0.5, 0.2)
        return [self._shaped(Note("Pad", theory.pitch(scale, tonic - 12, d), velocity, gate,
                                  pan=pans[i], timbre=s.rng.random()))
                for i, d in enumerate(theory.chord(s.chord_root, size))]

    def _velocity(self, weight: int, params: Mapping[str, float]) -> float:
        accent = 0.7 + 0.075 * weight
        spread = 1 + params["dynamics"] * self._state.rng.uniform(-0.5, 0.5)
        return min(1.0, max(0.05, params["velocity"] * accent * spread))


def _choice(params: Mapping[str, float], name: str) -> str:
    return PARAMETERS.spec(name).choices[int(params[name])]


def _tonic(root: int, register: int) -> int:
    """The pitch of the key's root nearest to the register's centre."""
    below = register - ((register - root) % 12)
    return below if register - below <= 6 else below + 12


def _bass_tonic(tonic: int) -> int:
    bass = tonic - 24
    while bass > 47:
        bass -= 12
    while bass < 33:
        bass += 12
    return bass


def _phrase_degree(phrase: list[float], position: int, motion: float, reach: int) -> int:
    """Scale degree (from the chord root) of the phrase at a position.

    The phrase is a walk from degree 0: each number u in the loop is a move
    whose size grows with motion (0: repeated notes, 1: leaps up to 7 degrees)
    and whose sign is u >= 0.5.  The walk reflects at +-reach.
    """
    degree = 0
    for u in phrase[: position + 1]:
        size = int(abs(2 * u - 1) * (0.999 + 7 * motion))
        degree += size if u >= 0.5 else -size
        if degree > reach:
            degree = 2 * reach - degree
        if degree < -reach:
            degree = -2 * reach - degree
        degree = max(-reach, min(reach, degree))
    return degree


def _fold(note: int, centre: int, span: int) -> int:
    """Move a pitch by octaves into centre +- span/2 (if the span allows)."""
    low, high = centre - span / 2, centre + span / 2
    while note > high and note - 12 >= low - 6:
        note -= 12
    while note < low and note + 12 <= high + 6:
        note += 12
    return note
