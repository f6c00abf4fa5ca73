"""Scales, degrees and chords: the music theory the generator composes with."""

from __future__ import annotations

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

# semitones above the tonic
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
    "whole_tone": (0, 2, 4, 6, 8, 10),
}

# Where a chord root (scale degree) tends to go next, for seven-note scales:
# functional harmony, with weights.  I->IV/V/vi/ii, ii->V, V->I/vi ...
_PROGRESSIONS_7: dict[int, tuple[tuple[int, float], ...]] = {
    0: ((3, 3.0), (4, 3.0), (5, 2.0), (1, 1.5), (2, 0.5)),
    1: ((4, 4.0), (6, 1.0), (3, 1.0)),
    2: ((5, 3.0), (3, 2.0)),
    3: ((4, 3.0), (0, 2.0), (1, 2.0), (6, 0.5)),
    4: ((0, 4.0), (5, 2.0), (3, 1.0)),
    5: ((1, 3.0), (3, 3.0), (4, 2.0)),
    6: ((0, 3.0), (5, 1.0)),
}
# For scales of other sizes: tonic, "fourth", "fifth" and "sixth" degrees.
_GENERIC_ROOTS = (0, 3, 4, 5)


def pitch(scale: tuple[int, ...], tonic: int, degree: int) -> int:
    """MIDI pitch of a scale degree counted from the tonic (degree 0)."""
    octave, index = divmod(degree, len(scale))
    return tonic + 12 * octave + scale[index]


def chord(root_degree: int, size: int = 3) -> tuple[int, ...]:
    """Degrees of a chord stacked in thirds on a root degree."""
    return tuple(root_degree + 2 * i for i in range(size))


def next_roots(scale: tuple[int, ...], root_degree: int) -> tuple[tuple[int, float], ...]:
    """Weighted choices of the next chord root after root_degree."""
    if len(scale) == 7:
        return _PROGRESSIONS_7[root_degree % 7]
    n = len(scale)
    return tuple((d % n, 1.0) for d in _GENERIC_ROOTS if d % n != root_degree % n)


def chord_name(scale: tuple[int, ...], tonic: int, root_degree: int) -> str:
    """A triad's name, as a musician reads it off a lead sheet: "Bm", "F#dim", "C"."""
    root = pitch(scale, tonic, root_degree)
    third = pitch(scale, tonic, root_degree + 2) - root
    fifth = pitch(scale, tonic, root_degree + 4) - root
    quality = {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug"}.get((third, fifth), "")
    if (third, fifth) not in {(4, 7), (3, 7), (3, 6), (4, 8)}:
        quality = f"({third},{fifth})"          # scales without thirds (whole tone, pentatonic)
    return NOTE_NAMES[root % 12] + quality
