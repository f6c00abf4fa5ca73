"""The instrument's configuration: typed, validated, every error at once.

A config file is TOML with the sections below; any key left out takes the
default written here, so an empty file (or none) is the factory setup.
Errors name the file, the line and the key, suggest the key that was
probably meant, and are all reported together.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.config.tomlfile import TomlFile
from appliance.controls.gpio import ButtonConfig, EncoderConfig
from appliance.controls.midi.mapping import ACTIONS, CURVES, KINDS, MODES, Mapping
from appliance.engine.orchestra import ClockLayout
from appliance.errors import ConfigError, ParamError, Problem
from appliance.params import PARAMETERS, Registry, suggest

BUTTON_ACTIONS = ("tap_tempo", "start_stop", "click", "preset_next", "preset_prev", "shift",
                  "scene_next", "scene_prev", "temp", "record")


def _choice(*options: str) -> dict[str, Any]:
    return {"choices": options}


def _range(low: float, high: float) -> dict[str, Any]:
    return {"range": (low, high)}


_LISTEN = {"listen": True}       # "HOST:PORT" to listen on, or "" (off)


def listen_address(text: str) -> tuple[str, int] | None:
    """("host", port) of a "HOST:PORT" (an IPv6 host in brackets), None for "" (off); port 0
    takes any free one (status says which).  ValueError says what is wrong."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'must be "HOST:PORT" (e.g. "0.0.0.0:10111", "127.0.0.1:8080") or "" (off), got {text!r}')
    return host, int(port)


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
    control_priority: int = field(default=10, metadata=_range(0, 99))
    lookahead_ms: int = field(default=500, metadata=_range(50, 5000))


@dataclass(frozen=True)
class ClockConfig:
    steps_per_beat: int = field(default=4, metadata=_range(1, 8))
    beats_per_bar: int = field(default=4, metadata=_range(1, 16))
    # whose tempo and transport the box follows: its own, incoming MIDI clock, or an Ableton
    # Link session on the LAN (which the box's knobs move too)
    sync: str = field(default="internal", metadata=_choice("internal", "midi", "link"))
    link_start_stop: bool = True    # Link: start and stop with the session (and start it)

    def layout_fields(self) -> tuple[int, int]:
        """What Csound's clock is built with (a change restarts Csound; sync does not)."""
        return self.steps_per_beat, self.beats_per_bar


@dataclass(frozen=True)
class MidiConfig:
    backend: str = field(default="alsa", metadata=_choice("alsa", "jack", "sim"))
    ignore: tuple[str, ...] = ("Midi Through",)    # ports whose name contains one of these
    scan_seconds: float = field(default=1.0, metadata=_range(0.1, 10))
    follow_clock: bool = False      # older name of [clock] sync = "midi"
    clock_in: str = ""              # follow MIDI clock only from ports whose name contains this ("": any)
    clock_out: str = ""             # send MIDI clock to outputs whose name contains this ("": off)
    clock_out_while_stopped: bool = False   # keep ticking while stopped (receivers that show the tempo)
    notes_out: str = ""             # send the music's notes to outputs whose name contains this ("": off)
    lead_channel: int = field(default=1, metadata=_range(1, 16))
    bass_channel: int = field(default=2, metadata=_range(1, 16))
    pad_channel: int = field(default=3, metadata=_range(1, 16))
    perc_channel: int = field(default=10, metadata=_range(1, 16))    # General MIDI drums
    sim_devices: tuple[str, ...] = ("Sim Controller",)   # plugged in the simulated backend at start
    map: tuple[Mapping, ...] = ()


def note_channels(midi: MidiConfig) -> dict[str, int]:
    """The MIDI channel (1..16) of each voice's notes."""
    return {"Lead": midi.lead_channel, "Bass": midi.bass_channel, "Pad": midi.pad_channel,
            "Perc": midi.perc_channel}


@dataclass(frozen=True)
class OscConfig:
    # OSC over UDP (remote/osc.py); "" is off.  The box's installed config listens on the LAN.
    listen: str = field(default="", metadata=_LISTEN)
    announce: bool = True           # zeroconf: _osc._udp on the LAN


@dataclass(frozen=True)
class WebConfig:
    # The web page (remote/web.py); "" is off.  The box's installed config serves it on the LAN.
    # Every request needs the token in the state directory (`appliance web-url` prints the URL).
    listen: str = field(default="", metadata=_LISTEN)
    announce: bool = True           # zeroconf: _http._tcp on the LAN


@dataclass(frozen=True)
class GpioConfig:
    backend: str = field(default="auto", metadata=_choice("auto", "mock"))
    encoder: tuple[EncoderConfig, ...] = ()
    button: tuple[ButtonConfig, ...] = ()


SECTIONS: dict[str, type] = {"audio": AudioConfig, "engine": EngineConfig, "clock": ClockConfig,
                             "midi": MidiConfig, "gpio": GpioConfig, "osc": OscConfig,
                             "web": WebConfig}


@dataclass(frozen=True)
class Config:
    source: Path | None = None
    audio: AudioConfig = AudioConfig()
    engine: EngineConfig = EngineConfig()
    clock: ClockConfig = ClockConfig()
    midi: MidiConfig = MidiConfig()
    gpio: GpioConfig = GpioConfig()
    osc: OscConfig = OscConfig()
    web: WebConfig = WebConfig()
    params: dict[str, float] = field(default_factory=dict)

    @property
    def follows_midi_clock(self) -> bool:
        return self.sync == "midi"

    @property
    def sync(self) -> str:
        """Whose clock the box follows (the older [midi] follow_clock = true means MIDI)."""
        return "midi" if self.clock.sync == "internal" and self.midi.follow_clock else self.clock.sync

    def clock_layout(self) -> ClockLayout:
        """What Csound's clock is built for: rates, steps and the tempo range."""
        tempo = PARAMETERS.spec("tempo")
        return ClockLayout(sample_rate=self.audio.sample_rate, ksmps=self.audio.ksmps,
                           steps_per_beat=self.clock.steps_per_beat, beats_per_bar=self.clock.beats_per_bar,
                           tempo_min=tempo.minimum, tempo_max=tempo.maximum)

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
            built[name] = _section(SECTIONS[name], name, table, source, problems, registry)
        else:
            known = [*SECTIONS, "params"]
            problems.append(source.problem(name, f"unknown section{suggest(name, known)}"))
    if problems:
        raise ConfigError(problems)
    return Config(source=path, **built)


def _section(cls: type, name: str, table: object, source: TomlFile, problems: list[Problem],
             registry: Registry) -> Any:
    if not isinstance(table, dict):
        problems.append(source.problem(name, "must be a table ([" + name + "])"))
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{name}.{key}"
        if key not in fields:
            problems.append(source.problem(where, f"unknown key{suggest(key, fields)}"))
            continue
        table_of = _TABLES.get((name, key))
        if table_of is not None:
            values[key] = _entries(value, where, source, problems, registry, table_of)
            continue
        message = _check(value, hints[key], fields[key].metadata)
        if message:
            problems.append(source.problem(where, message))
        else:
            values[key] = tuple(value) if isinstance(value, list) else value
    built = cls(**values)
    if cls is GpioConfig:
        _check_pins(built, source, problems)
    return built


def _entries(value: object, where: str, source: TomlFile, problems: list[Problem], registry: Registry,
             parse: Any) -> tuple:
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        problems.append(source.problem(where, f"must be written as [[{where}]] tables"))
        return ()
    parsed = [parse(entry, f"{where}[{i}]", source, problems, registry) for i, entry in enumerate(value)]
    seen: set[str] = set()
    for i, entry in enumerate(parsed):
        name = getattr(entry, "name", None)
        if name is not None and name in seen:
            problems.append(source.problem(f"{where}[{i}].name", f"{name!r} is used twice"))
        seen.add(name)
    return tuple(p for p in parsed if p is not None)


class _Entry:
    """Reads one [[table]] entry, collecting problems with their lines."""

    def __init__(self, raw: dict, where: str, source: TomlFile, problems: list[Problem],
                 known: tuple[str, ...]) -> None:
        self.raw, self.where, self.source, self.problems = raw, where, source, problems
        self.ok = True
        for key in raw:
            if key not in known:
                self.fail(key, f"unknown key{suggest(key, known)}")

    def fail(self, key: str | None, message: str) -> None:
        self.ok = False
        self.problems.append(self.source.problem(f"{self.where}.{key}" if key else self.where, message))

    def get(self, key: str, kind: type, low: float | None = None, high: float | None = None,
            choices: tuple[str, ...] = (), default: Any = None) -> Any:
        if key not in self.raw:
            return default
        value = self.raw[key]
        rules: dict[str, Any] = {}
        if choices:
            rules["choices"] = choices
        if low is not None and high is not None:
            rules["range"] = (low, high)
        message = _check(value, kind, rules)
        if message:
            self.fail(key, message)
            return default
        return float(value) if kind is float else value

    def param(self, key: str, registry: Registry) -> str | None:
        name = self.get(key, str)
        if name is not None and name not in registry:
            self.fail(key, f"unknown parameter {name!r}{suggest(name, registry.specs)}")
            return None
        return name

    def param_value(self, key: str, param: str | None, registry: Registry) -> float | None:
        if key not in self.raw or param is None:
            return None
        try:
            return registry.spec(param).coerce(self.raw[key])
        except ParamError as exc:
            self.fail(key, str(exc))
            return None


_MAPPING_KEYS = (*KINDS, "param", "action", "channel", "device", "mode", "min", "max", "curve", "step",
                 "lsb", "feedback")


def _mapping(raw: dict, where: str, source: TomlFile, problems: list[Problem],
             registry: Registry) -> Mapping | None:
    entry = _Entry(raw, where, source, problems, _MAPPING_KEYS)
    kinds = [k for k in KINDS if k in raw]
    if len(kinds) != 1:
        entry.fail(None, f"needs exactly one source: {', '.join(KINDS)}")
        return None
    kind = kinds[0]
    limits = {"cc": 127, "cc14": 31, "nrpn": 16383, "note": 127, "program": 127}
    number = None
    if not (kind == "program" and raw[kind] == "any"):
        number = entry.get(kind, int, 0, limits[kind])
    param, action = entry.param("param", registry), entry.get("action", str, choices=ACTIONS)
    if ("param" in raw) == ("action" in raw):
        entry.fail(None, "needs either param = NAME or action = NAME")
    if kind in ("note", "program") and "param" in raw:
        entry.fail("param", f"a {kind} can trigger an action, not move a parameter")
    mode = entry.get("mode", str, choices=MODES, default="jump")
    if mode.startswith("relative") and kind != "cc":
        entry.fail("mode", f"{mode} works with cc only")
    mapping = Mapping(
        kind=kind, number=number, param=param, action=action,
        channel=entry.get("channel", int, 1, 16), device=entry.get("device", str),
        mode=mode, low=entry.param_value("min", param, registry),
        high=entry.param_value("max", param, registry),
        curve=entry.get("curve", str, choices=CURVES, default="linear"),
        step=entry.get("step", float, 1e-6, 1e6), lsb=entry.get("lsb", int, 0, 127),
        feedback=entry.get("feedback", bool, default=False))
    if "lsb" in raw and kind != "cc14":
        entry.fail("lsb", "only a cc14 mapping has an LSB controller")
    return mapping if entry.ok else None


def _encoder(raw: dict, where: str, source: TomlFile, problems: list[Problem],
             registry: Registry) -> EncoderConfig | None:
    entry = _Entry(raw, where, source, problems,
                   ("name", "pins", "param", "step", "shift_param", "acceleration"))
    pins = raw.get("pins")
    good = isinstance(pins, list) and len(pins) == 2 and all(_is_pin(p) for p in pins) and pins[0] != pins[1]
    if not good:
        entry.fail("pins" if "pins" in raw else None,
                   f"needs pins = [A, B]: two different GPIO numbers, got {pins!r}")
    for key in ("name", "param"):
        if key not in raw:
            entry.fail(None, f"needs {key} = ...")
    config = EncoderConfig(name=entry.get("name", str, default=""), pins=tuple(pins) if good else (0, 1),
                           param=entry.param("param", registry) or "",
                           step=entry.get("step", float, 1e-6, 1e6, default=1.0),
                           shift_param=entry.param("shift_param", registry),
                           acceleration=entry.get("acceleration", bool, default=True))
    return config if entry.ok else None


def _button(raw: dict, where: str, source: TomlFile, problems: list[Problem],
            registry: Registry) -> ButtonConfig | None:
    entry = _Entry(raw, where, source, problems, ("name", "pin", "action", "long_action", "hold"))
    for key in ("name", "pin", "action"):
        if key not in raw:
            entry.fail(None, f"needs {key} = ...")
    if "pin" in raw and not _is_pin(raw["pin"]):
        entry.fail("pin", f"must be a GPIO number 0..53, got {raw['pin']!r}")
    pin = raw["pin"] if _is_pin(raw.get("pin")) else 0
    config = ButtonConfig(name=entry.get("name", str, default=""), pin=pin,
                          action=entry.get("action", str, choices=BUTTON_ACTIONS, default=""),
                          long_action=entry.get("long_action", str, choices=BUTTON_ACTIONS),
                          hold=entry.get("hold", float, 0.1, 10, default=0.6))
    return config if entry.ok else None


def _is_pin(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 53


def _check_pins(config: GpioConfig, source: TomlFile, problems: list[Problem]) -> None:
    used: dict[int, str] = {}
    for kind, devices in (("encoder", config.encoder), ("button", config.button)):
        for i, device in enumerate(devices):
            pins = device.pins if isinstance(device, EncoderConfig) else (device.pin,)
            for pin in pins:
                if pin in used:
                    problems.append(source.problem(f"gpio.{kind}[{i}]",
                                                   f"pin {pin} is already used by {used[pin]}"))
                used[pin] = f"{kind} {device.name!r}"


_TABLES = {("midi", "map"): _mapping, ("gpio", "encoder"): _encoder, ("gpio", "button"): _button}


def _check(value: object, kind: Any, rules: dict[str, Any]) -> str | None:
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if not isinstance(value, list) or not all(_check(v, item, {}) is None for v in value):
            return f"must be a list of {item.__name__}s, got {value!r}"
        return None
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
    if "listen" in rules:
        try:
            listen_address(str(value))
        except ValueError as exc:
            return str(exc)
    return None


def _params(table: object, source: TomlFile, registry: Registry, problems: list[Problem]) -> dict[str, float]:
    if not isinstance(table, dict):
        problems.append(source.problem("params", "must be a table ([params])"))
        return {}
    return param_values(table, "params", source, registry, problems)


def param_values(table: dict[str, Any], where: str, source: TomlFile, registry: Registry,
                 problems: list[Problem]) -> dict[str, float]:
    """A table of parameter values from a file, each checked by the registry."""
    values, errors = registry.coerce_all(table)
    problems += [source.problem(f"{where}.{key}", str(exc)) for key, exc in errors.items()]
    return values
