"""The instrument's configuration: typed, validated, every error at once.

A config file is TOML with the sections below; any key left out takes the
default written here, so an empty file (or none) is the factory setup.
Errors name the file, the line and the key, suggest the key that was
probably meant, and are all reported together.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.errors import ConfigError, ParamError, Problem
from appliance.params import PARAMETERS, Registry, suggest
from appliance.tomlfile import TomlFile


def _choice(*options: str) -> dict[str, Any]:
    return {"choices": options}


def _range(low: float, high: float) -> dict[str, Any]:
    return {"range": (low, high)}


@dataclass(frozen=True)
class AudioConfig:
    backend: str = field(default="auto", metadata=_choice("auto", "null", "alsa", "jack"))
    device: str = "default"
    sample_rate: int = field(default=48000, metadata=_range(8000, 192000))
    ksmps: int = field(default=64, metadata=_range(8, 1024))
    buffer: int = field(default=256, metadata=_range(16, 16384))
    hardware_buffer: int = field(default=1024, metadata=_range(16, 65536))


@dataclass(frozen=True)
class EngineConfig:
    orchestra: str = "default"
    realtime_priority: int = field(default=70, metadata=_range(0, 99))
    lookahead_ms: int = field(default=500, metadata=_range(50, 5000))


@dataclass(frozen=True)
class ClockConfig:
    steps_per_beat: int = field(default=4, metadata=_range(1, 8))
    beats_per_bar: int = field(default=4, metadata=_range(1, 16))


SECTIONS: dict[str, type] = {"audio": AudioConfig, "engine": EngineConfig, "clock": ClockConfig}


@dataclass(frozen=True)
class Config:
    source: Path | None = None
    audio: AudioConfig = AudioConfig()
    engine: EngineConfig = EngineConfig()
    clock: ClockConfig = ClockConfig()
    params: Mapping[str, float] = field(default_factory=dict)

    def orchestra_path(self) -> Path:
        """The orchestra file: a name in orchestras/ or a path (relative to the config file)."""
        name = self.engine.orchestra
        if "/" not in name and not name.endswith(".orc"):
            return paths.orchestras() / f"{name}.orc"
        path = Path(name).expanduser()
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path


def default_path() -> Path | None:
    """The config used when none is given: config/appliance.toml, if present."""
    path = paths.config_dir() / "appliance.toml"
    return path if path.is_file() else None


def load(path: Path | None, registry: Registry = PARAMETERS) -> Config:
    """Read and check a config file (None: the factory defaults)."""
    if path is None:
        return Config()
    source = TomlFile.read(path)
    problems: list[Problem] = []
    built: dict[str, Any] = {}
    for name, table in source.data.items():
        if name == "params":
            built["params"] = _params(table, source, registry, problems)
        elif name in SECTIONS:
            built[name] = _section(SECTIONS[name], name, table, source, problems)
        else:
            known = [*SECTIONS, "params"]
            problems.append(source.problem(name, f"unknown section{suggest(name, known)}"))
    if problems:
        raise ConfigError(problems)
    return Config(source=path, **built)


def _section(cls: type, name: str, table: object, source: TomlFile, problems: list[Problem]) -> Any:
    if not isinstance(table, dict):
        problems.append(source.problem(name, "must be a table ([" + name + "])"))
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in table.items():
        where = f"{name}.{key}"
        if key not in fields:
            problems.append(source.problem(where, f"unknown key{suggest(key, fields)}"))
            continue
        message = _check(value, hints[key], fields[key].metadata)
        if message:
            problems.append(source.problem(where, message))
        else:
            values[key] = value
    return cls(**values)


def _check(value: object, kind: type, rules: Mapping[str, Any]) -> str | None:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be a whole number, got {value!r}"
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"must be a number, got {value!r}"
    if kind is str and not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if kind is bool and not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    if "choices" in rules and value not in rules["choices"]:
        hint = suggest(str(value), rules["choices"])
        return f"must be one of {', '.join(rules['choices'])}, got {value!r}{hint}"
    if "range" in rules:
        low, high = rules["range"]
        if not low <= value <= high:  # type: ignore[operator]
            return f"must be within {low}..{high}, got {value!r}"
    return None


def _params(table: object, source: TomlFile, registry: Registry, problems: list[Problem]) -> dict[str, float]:
    if not isinstance(table, dict):
        problems.append(source.problem("params", "must be a table ([params])"))
        return {}
    values = {}
    for key, value in table.items():
        try:
            values[key] = registry.spec(key).coerce(value)
        except ParamError as exc:
            problems.append(source.problem(f"params.{key}", str(exc)))
    return values
