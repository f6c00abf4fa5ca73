"""Rhythm: Euclidean patterns and the order in which steps join as density rises."""

from __future__ import annotations

import random


def euclidean(hits: int, steps: int, rotation: int = 0) -> list[bool]:
    """hits spread as evenly as possible over steps (Bjorklund), rotated left.

    Gives the rhythms as Toussaint catalogued them: E(3, 8) = x..x..x.,
    E(5, 8) = x.xx.xx.; the first step is a hit unless rotated away.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    hits = max(0, min(hits, steps))
    if hits in (0, steps):
        return [hits == steps] * steps
    # Bjorklund: pair the hit groups with the rest groups until one rest group is left
    front: list[list[bool]] = [[True] for _ in range(hits)]
    back: list[list[bool]] = [[False] for _ in range(steps - hits)]
    while len(back) > 1:
        paired = min(len(front), len(back))
        front, back = ([front[i] + back[i] for i in range(paired)],
                       front[paired:] if len(front) > paired else back[paired:])
    pattern = [beat for group in front + back for beat in group]
    rotation %= steps
    return pattern[rotation:] + pattern[:rotation]


def metric_weight(index: int) -> int:
    """How strong a position is in a 4/4 grid of sixteenths: 4 on a bar, 0 on an odd step."""
    for weight, period in ((4, 16), (3, 8), (2, 4), (1, 2)):
        if index % period == 0:
            return weight
    return 0


def ranking(hits: int, steps: int, rotation: int, seed: int) -> list[int]:
    """The steps of a pattern, strongest first.

    The Euclidean hits come first (downbeats before offbeats), then the other
    steps by metric weight, ties broken by a seeded shuffle.  Playing the first
    round(density * steps) of them gives density 0 silence, density 1 every
    step, and density hits/steps exactly the Euclidean pattern.
    """
    pattern = euclidean(hits, steps, rotation)
    shuffle = random.Random(f"ranking:{seed}:{hits}:{steps}:{rotation}")
    tiebreak = [shuffle.random() for _ in range(steps)]
    return sorted(range(steps), key=lambda i: (not pattern[i], -metric_weight(i), tiebreak[i]))


def active_count(density: float, steps: int) -> int:
    """How many steps of a pattern play at a density."""
    return round(min(1.0, max(0.0, density)) * steps)
