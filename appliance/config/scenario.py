"""Scenarios: what the simulated hardware does, on a timeline.

A scenario is a TOML file of events, each at a time (seconds of audio from
the start) with one action:

    [[event]]
    at = 4.0
    set = { tempo = 140, density = 0.8 }

Actions:
    set = { NAME = VALUE, ... }        set parameters, as the command line does
    encoder = { name = "tempo", turn = 10 }     turn an encoder (negative: down) over
                                       `seconds` (default 0.06 s per detent, too slow
                                       to accelerate); bounce = true makes the
                                       contacts chatter
    button = { name = "tap", press = 0.05 }      hold a button for that many seconds
    midi = { type = "control_change", channel = 1, control = 20, value = 100 }
                                       a MIDI message (mido's names; channel 1..16)
                                       from a simulated device (device = "name",
                                       default: the first plugged in); or
                                       midi = { bytes = [176, 20, 100] } for raw bytes
    plug = "Device name"               plug a simulated MIDI device in
    unplug = "Device name"             ... and out
    learn = "tempo"                    learn mode: the next control moved maps to it
    transport = "stop"                 start, stop, continue, start_stop, or panic (silence now)

Events happen in time order (file order for equal times).  The whole file is
checked when it is loaded, every problem reported with its line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mido

from appliance.config.schema import param_values
from appliance.config.tomlfile import TomlFile
from appliance.controls.midi.mapping import ACTIONS as MIDI_ACTIONS
from appliance.errors import ConfigError, Problem
from appliance.params import PARAMETERS, Registry, suggest


@dataclass(frozen=True)
class Event:
    at: float
    action: str
    value: Any
    line: int | None = None


# action name -> checker(value, where, file, registry, problems) -> parsed value
Checker = Callable[[Any, str, TomlFile, Registry, list[Problem]], Any]


def _check_set(value: Any, where: str, source: TomlFile, registry: Registry,
               problems: list[Problem]) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        problems.append(source.problem(where, "set needs a table of parameters, e.g. set = { tempo = 120 }"))
        return {}
    return param_values(value, where, source, registry, problems)


def _check_encoder(value: Any, where: str, source: TomlFile, registry: Registry,
                   problems: list[Problem]) -> dict[str, Any]:
    turn = value.get("turn") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or \
            isinstance(turn, bool) or not isinstance(turn, int) or turn == 0:
        problems.append(source.problem(where, 'encoder needs { name = "NAME", turn = DETENTS } '
                                              f"(a whole number, not 0), got {value!r}"))
        return {}
    seconds = value.get("seconds", 0.06 * abs(turn))
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 60:
        problems.append(source.problem(f"{where}.seconds", f"must be within 0..60, got {seconds!r}"))
        return {}
    return {"name": value["name"], "turn": turn, "bounce": bool(value.get("bounce", False)),
            "seconds": float(seconds)}


def _check_button(value: Any, where: str, source: TomlFile, registry: Registry,
                  problems: list[Problem]) -> dict[str, Any]:
    press = value.get("press", 0.05) if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or \
            isinstance(press, bool) or not isinstance(press, (int, float)) or not 0 < press <= 60:
        problems.append(source.problem(where, 'button needs { name = "NAME", press = SECONDS } '
                                              f"(0 < press <= 60), got {value!r}"))
        return {}
    return {"name": value["name"], "press": float(press)}


def _check_midi(value: Any, where: str, source: TomlFile, registry: Registry,
                problems: list[Problem]) -> dict[str, Any]:
    if not isinstance(value, dict):
        problems.append(source.problem(where, "midi needs a table, e.g. "
                                              '{ type = "control_change", control = 20, value = 100 }'))
        return {}
    device = value.get("device")
    if device is not None and not isinstance(device, str):
        problems.append(source.problem(f"{where}.device", f"must be a device name, got {device!r}"))
    if "bytes" in value:
        raw = value["bytes"]
        if not isinstance(raw, list) or not all(isinstance(b, int) and 0 <= b <= 255 for b in raw):
            problems.append(source.problem(f"{where}.bytes", f"must be a list of bytes 0..255, got {raw!r}"))
            return {}
        return {"device": device, "bytes": bytes(raw)}
    fields = {k: v for k, v in value.items() if k != "device"}
    if "channel" in fields:
        channel = fields["channel"]
        if not isinstance(channel, int) or not 1 <= channel <= 16:
            problems.append(source.problem(f"{where}.channel", f"must be within 1..16, got {channel!r}"))
            return {}
        fields["channel"] = channel - 1
    try:
        message = mido.Message(**fields)
    except (TypeError, ValueError) as exc:
        problems.append(source.problem(where, f"not a MIDI message: {exc}"))
        return {}
    return {"device": device, "bytes": bytes(message.bytes())}


def _check_device(value: Any, where: str, source: TomlFile, registry: Registry,
                  problems: list[Problem]) -> str:
    if not isinstance(value, str) or not value:
        problems.append(source.problem(where, f"needs a device name, got {value!r}"))
        return ""
    return value


TRANSPORT = ("start", "stop", "continue", "start_stop", "panic")


def _check_transport(value: Any, where: str, source: TomlFile, registry: Registry,
                     problems: list[Problem]) -> str:
    if value not in TRANSPORT:
        problems.append(source.problem(where, f"transport must be one of {', '.join(TRANSPORT)}, got {value!r}"
                                              f"{suggest(str(value), TRANSPORT)}"))
        return ""
    return value


def _check_learn(value: Any, where: str, source: TomlFile, registry: Registry,
                 problems: list[Problem]) -> str:
    if not isinstance(value, str) or (value not in registry and value not in MIDI_ACTIONS):
        hint = suggest(str(value), [*registry.specs, *MIDI_ACTIONS])
        problems.append(source.problem(where, f"learn needs a parameter or an action, got {value!r}{hint}"))
        return ""
    return value


ACTIONS: dict[str, Checker] = {"set": _check_set, "encoder": _check_encoder, "button": _check_button,
                               "midi": _check_midi, "plug": _check_device, "unplug": _check_device,
                               "learn": _check_learn, "transport": _check_transport}


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
    return Event(float(at), action, value, source.keys.line_of(f"{where}.{action}"))


class Timeline:
    """Hands out a scenario's events as audio time reaches them."""

    def __init__(self, scenario: Scenario | None) -> None:
        self._events = list(scenario.events) if scenario else []
        self._next = 0

    def insert(self, event: Event) -> None:
        """Add an event (a button's release) after those already due at its time."""
        index = self._next
        while index < len(self._events) and self._events[index].at <= event.at:
            index += 1
        self._events.insert(index, event)

    def due(self, now: float) -> list[Event]:
        start = self._next
        while self._next < len(self._events) and self._events[self._next].at <= now:
            self._next += 1
        return self._events[start:self._next]

    @property
    def finished(self) -> bool:
        return self._next >= len(self._events)
