"""Presets: named snapshots of the parameters, one file each in the state directory."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from appliance.controls.inbox import Action, LoadPreset, SetParam
from appliance.errors import ParamError
from appliance.params import Registry
from appliance.service import state

log = logging.getLogger("appliance")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,39}$")


class PresetError(ParamError):
    """A preset name is not usable, or the preset does not exist."""


class Presets:
    def __init__(self, directory: Path, registry: Registry) -> None:
        self.directory = directory
        self.registry = registry

    def path(self, name: str) -> Path:
        if not _NAME.fullmatch(name) or name.endswith((".prev", ".tmp")):
            raise PresetError(f"a preset name is 1..40 letters, digits, spaces or _.+- "
                              f"(starting with a letter or digit), got {name!r}")
        return self.directory / f"{name}.json"

    def save(self, name: str, values: Mapping[str, float]) -> None:
        """Write a preset durably (it survives a power cut once this returns)."""
        state.save(self.path(name), "preset", {"name": name, "params": self.registry.external(values)})

    def load(self, name: str) -> tuple[dict[str, float], list[str]]:
        """(values, problems): the preset's parameters, checked against the registry."""
        path = self.path(name)
        loaded = state.load(path, "preset", _shape)
        if loaded.data is None:
            raise PresetError(loaded.problem or f"no preset {name!r}")
        problems = [loaded.problem] if loaded.problem else []
        values, errors = self.registry.coerce_all(dict(loaded.data.get("params", {})))
        problems += [f"preset {name!r}: {exc} (left as it is)" for exc in errors.values()]
        return values, problems

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        found = {p.name[: -len(".json")] for p in self.directory.glob("*.json")}
        found |= {p.name[: -len(".json.prev")] for p in self.directory.glob("*.json.prev")}
        return sorted(n for n in found if _NAME.fullmatch(n))

    def delete(self, name: str) -> bool:
        path = self.path(name)
        existed = path.exists() or path.with_name(path.name + ".prev").exists()
        if existed:
            state.remove(path)
        return existed


def _shape(data: dict) -> None:
    state.require(isinstance(data.get("params", {}), dict), "params is not a table")


class PresetRecall:
    """Presets into the control loop: by name (the socket), by number (a program
    change picks the preset in name order), next and previous (buttons)."""

    def __init__(self, presets: Presets, set_param: Callable[[SetParam], None]) -> None:
        self.presets = presets
        self.set_param = set_param      # the loop's own dispatch: this runs in the loop
        self._index = -1

    def load(self, command: LoadPreset) -> list[str]:
        """Load a preset by name; the problems found in it (it loads what it can)."""
        return self._load(command.name, command.source)

    def step(self, action: Action) -> None:
        """The preset, preset_next and preset_prev actions."""
        names = self.presets.names()
        if not names:
            log.warning("%s: no presets saved yet", action.source)
            return
        if action.name == "preset":
            if action.argument >= len(names):
                log.warning("%s: program %d, but there are only %d presets",
                            action.source, action.argument, len(names))
                return
            self._index = action.argument
        elif self._index < 0:
            self._index = 0 if action.name == "preset_next" else len(names) - 1
        else:
            self._index = (self._index + (1 if action.name == "preset_next" else -1)) % len(names)
        self._load(names[self._index], action.source)

    def _load(self, name: str, source: str) -> list[str]:
        values, problems = self.presets.load(name)
        for key, value in values.items():
            self.set_param(SetParam(key, value, f"preset {name} ({source})"))
        for problem in problems:
            log.warning("%s", problem)
        return problems
