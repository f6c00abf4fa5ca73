"""Presets and scenes: named snapshots of the parameters, one file each in the state directory.

A preset loads at once; a scene is recalled on the next bar line (instrument/bar_change.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from appliance.controls.inbox import Action, LoadPreset
from appliance.errors import ParamError
from appliance.params import Registry
from appliance.service import state

log = logging.getLogger("appliance")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,39}$")


class PresetError(ParamError):
    """A preset name is not usable, or the preset does not exist."""


class Presets:
    def __init__(self, directory: Path, registry: Registry, kind: str = "preset") -> None:
        self.directory = directory
        self.registry = registry
        self.kind = kind                 # "preset" or "scene": its files and messages

    def path(self, name: str) -> Path:
        if not NAME.fullmatch(name) or name.endswith((".prev", ".tmp")):
            raise PresetError(f"a {self.kind} name is 1..40 letters, digits, spaces or _.+- "
                              f"(starting with a letter or digit), got {name!r}")
        return self.directory / f"{name}.json"

    def save(self, name: str, values: Mapping[str, float]) -> None:
        """Write it durably (it survives a power cut once this returns)."""
        state.save(self.path(name), self.kind, {"name": name, "params": self.registry.external(values)})

    def load(self, name: str) -> tuple[dict[str, float], list[str]]:
        """(values, problems): its parameters, checked against the registry."""
        path = self.path(name)
        loaded = state.load(path, self.kind, _shape)
        if loaded.data is None:
            raise PresetError(loaded.problem or f"no {self.kind} {name!r}")
        problems = [loaded.problem] if loaded.problem else []
        values, errors = self.registry.coerce_all(dict(loaded.data.get("params", {})))
        problems += [f"{self.kind} {name!r}: {exc} (left as it is)" for exc in errors.values()]
        return values, problems

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        found = {p.name[: -len(".json")] for p in self.directory.glob("*.json")}
        found |= {p.name[: -len(".json.prev")] for p in self.directory.glob("*.json.prev")}
        return sorted(n for n in found if NAME.fullmatch(n))

    def delete(self, name: str) -> bool:
        path = self.path(name)
        existed = path.exists() or path.with_name(path.name + ".prev").exists()
        if existed:
            state.remove(path)
        return existed


def _shape(data: dict) -> None:
    state.require(isinstance(data.get("params", {}), dict), "params is not a table")


class PresetRecall:
    """Presets (or scenes) into the control loop: by name (the socket), by number (a
    program change picks one in name order), next and previous (buttons).  `apply` sets
    the values: at once for presets, on the next bar line for scenes (it returns the bar)."""

    def __init__(self, presets: Presets, apply: Callable[[dict[str, float], str], int | None]) -> None:
        self.presets = presets
        self.apply = apply              # runs in the loop
        self._index = -1

    def load(self, command: LoadPreset) -> Any:
        """Load one by name: the problems found in it (it loads what it can); for a scene
        also the bar it lands on."""
        problems, bar = self._load(command.name, command.source)
        return problems if bar is None else {"warnings": problems, "at_bar": bar}

    def step(self, action: Action) -> None:
        """The preset, preset_next and preset_prev actions (scene, scene_next, scene_prev)."""
        kind = self.presets.kind
        names = self.presets.names()
        if not names:
            log.warning("%s: no %ss saved yet", action.source, kind)
            return
        if action.name == kind:
            if action.argument >= len(names):
                log.warning("%s: program %d, but there are only %d %ss",
                            action.source, action.argument, len(names), kind)
                return
            self._index = action.argument
        elif self._index < 0:
            self._index = 0 if action.name.endswith("_next") else len(names) - 1
        else:
            self._index = (self._index + (1 if action.name.endswith("_next") else -1)) % len(names)
        self._load(names[self._index], action.source)

    def _load(self, name: str, source: str) -> tuple[list[str], int | None]:
        values, problems = self.presets.load(name)
        bar = self.apply(values, f"{self.presets.kind} {name} ({source})")
        for problem in problems:
            log.warning("%s", problem)
        return problems, bar
