"""Scenarios: what the simulated hardware does, on a timeline.

A scenario is a TOML file of events, each at a time (seconds of audio from
the start) with one action:

    [[event]]
    at = 4.0
    set = { tempo = 140, density = 0.8 }

Events happen in time order (file order for equal times).  The whole file is
checked when it is loaded, every problem reported with its line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ConfigError, ParamError, Problem
from appliance.params import PARAMETERS, Registry, suggest
from appliance.tomlfile import TomlFile


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    value: Any


# action name -> checker(value, where, file, registry, problems) -> parsed value
Checker = Callable[[Any, str, TomlFile, Registry, list[Problem]], Any]


def _check_set(value: Any, where: str, source: TomlFile, registry: Registry,
               problems: list[Problem]) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        problems.append(source.problem(where, "set needs a table of parameters, e.g. set = { tempo = 120 }"))
        return {}
    parsed = {}
    for name, raw in value.items():
        try:
            parsed[name] = registry.spec(name).coerce(raw)
        except ParamError as exc:
            problems.append(source.problem(f"{where}.{name}", str(exc)))
    return parsed


ACTIONS: dict[str, Checker] = {"set": _check_set}


@dataclass(frozen=True)
class Scenario:
    path: Path
    events: tuple[Event, ...]

    @classmethod
    def load(cls, path: Path, registry: Registry = PARAMETERS) -> Scenario:
        source = TomlFile.read(path)
        problems: list[Problem] = []
        for key in source.data:
            if key != "event":
                problems.append(source.problem(key, f"unknown key{suggest(key, ['event'])}; "
                                                    "a scenario is a list of [[event]] tables"))
        raw_events = source.data.get("event", [])
        if not isinstance(raw_events, list):
            problems.append(source.problem("event", "must be written as [[event]] tables"))
            raw_events = []
        events = [e for i, raw in enumerate(raw_events)
                  if (e := _event(raw, f"event[{i}]", source, registry, problems)) is not None]
        if problems:
            raise ConfigError(problems)
        return cls(path, tuple(sorted(events, key=lambda e: e.at)))


def _event(raw: Any, where: str, source: TomlFile, registry: Registry,
           problems: list[Problem]) -> Event | None:
    if not isinstance(raw, dict):
        problems.append(source.problem(where, "must be a table"))
        return None
    at = raw.get("at")
    if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at) or at < 0:
        problems.append(source.problem(f"{where}.at" if "at" in raw else where,
                                       f"needs at = SECONDS (a number >= 0), got {at!r}"))
        return None
    actions = [k for k in raw if k != "at"]
    unknown = [k for k in actions if k not in ACTIONS]
    for key in unknown:
        problems.append(source.problem(f"{where}.{key}", f"unknown action{suggest(key, ACTIONS)}; "
                                                         f"actions: {', '.join(ACTIONS)}"))
    known = [k for k in actions if k in ACTIONS]
    if len(known) != 1:
        if not unknown:
            problems.append(source.problem(where, f"needs exactly one action ({', '.join(ACTIONS)}), "
                                                  f"got {len(known)}"))
        return None
    action = known[0]
    value = ACTIONS[action](raw[action], f"{where}.{action}", source, registry, problems)
    return Event(float(at), action, value)


class Timeline:
    """Hands out a scenario's events as audio time reaches them."""

    def __init__(self, scenario: Scenario | None) -> None:
        self._events = list(scenario.events) if scenario else []
        self._next = 0

    def due(self, now: float) -> list[Event]:
        start = self._next
        while self._next < len(self._events) and self._events[self._next].at <= now:
            self._next += 1
        return self._events[start:self._next]

    @property
    def finished(self) -> bool:
        return self._next >= len(self._events)
