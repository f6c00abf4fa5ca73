"""Presets: named snapshots of the parameters, one file each in the state directory."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from appliance import state
from appliance.errors import ParamError
from appliance.params import Registry

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,39}$")


class PresetError(ParamError):
    """A preset name is not usable, or the preset does not exist."""


class Presets:
    def __init__(self, directory: Path, registry: Registry) -> None:
        self.directory = directory
        self.registry = registry

    def path(self, name: str) -> Path:
        if not _NAME.match(name) or name.endswith((".prev", ".tmp")):
            raise PresetError(f"a preset name is 1..40 letters, digits, spaces or _.+- "
                              f"(starting with a letter or digit), got {name!r}")
        return self.directory / f"{name}.json"

    def save(self, name: str, values: Mapping[str, float]) -> None:
        """Write a preset durably (it survives a power cut once this returns)."""
        state.save(self.path(name), "preset", {"name": name, "params": self.registry.external(values)})

    def load(self, name: str) -> tuple[dict[str, float], list[str]]:
        """(values, problems): the preset's parameters, checked against the registry."""
        path = self.path(name)
        loaded = state.load(path, "preset")
        if loaded.data is None:
            raise PresetError(loaded.problem or f"no preset {name!r}")
        problems = [loaded.problem] if loaded.problem else []
        values = {}
        for key, raw in dict(loaded.data.get("params", {})).items():
            try:
                values[key] = self.registry.spec(key).coerce(raw)
            except ParamError as exc:
                problems.append(f"preset {name!r}: {exc} (left as it is)")
        return values, problems

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        found = {p.name[: -len(".json")] for p in self.directory.glob("*.json")}
        found |= {p.name[: -len(".json.prev")] for p in self.directory.glob("*.json.prev")}
        return sorted(n for n in found if _NAME.match(n))

    def delete(self, name: str) -> bool:
        path = self.path(name)
        existed = path.exists() or path.with_name(path.name + ".prev").exists()
        if existed:
            state.remove(path)
        return existed
