"""The one registry of named parameters, used by every input.

A parameter has a range, a default, a unit, a curve and a step, and maps
0..1 to its value and back (as norns' controlspec does), so that a knob, an
encoder, the command line, a preset and a scenario all go through the same
checks.  Values are held as floats; a parameter with choices holds the index
of its choice.
"""

from __future__ import annotations

import difflib
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from appliance.errors import ParamError
from appliance.music.theory import NOTE_NAMES, SCALES

CURVES = ("linear", "exp")
GROUPS = ("clock", "generator", "sound")

_TRUE = {"on", "true", "yes"}
_FALSE = {"off", "false", "no"}


def _number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class ParamSpec:
    """What a parameter accepts and how a 0..1 control maps onto it."""

    name: str
    minimum: float
    maximum: float
    default: float
    group: str
    unit: str = ""
    curve: str = "linear"
    step: float = 0.0
    choices: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if self.choices:
            object.__setattr__(self, "minimum", 0.0)
            object.__setattr__(self, "maximum", float(len(self.choices) - 1))
            object.__setattr__(self, "step", 1.0)
        if self.curve not in CURVES:
            raise ValueError(f"{self.name}: curve must be one of {CURVES}")
        if self.curve == "exp" and self.minimum <= 0:
            raise ValueError(f"{self.name}: an exp curve needs a minimum above 0")
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: group must be one of {GROUPS}")
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"{self.name}: default outside its range")

    @property
    def range_text(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        unit = f" {self.unit}" if self.unit else ""
        return f"{_number(self.minimum)}..{_number(self.maximum)}{unit}"

    def validate(self, value: float) -> float:
        """Return the value quantised to the step, or refuse it with the range."""
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ParamError(f"{self.name} must be a number within {self.range_text}, got {value!r}")
        if not self.minimum <= value <= self.maximum:
            raise ParamError(f"{self.name} must be within {self.range_text}, got {_number(value)}")
        return self.quantize(value)

    def quantize(self, value: float) -> float:
        if self.step <= 0:
            return float(value)
        steps = round((value - self.minimum) / self.step)
        return min(self.maximum, round(self.minimum + steps * self.step, 9))

    def clamp(self, value: float) -> float:
        return self.quantize(min(self.maximum, max(self.minimum, value)))

    def parse(self, text: str) -> float:
        """Read a value as a person types it: a number, a choice or on/off."""
        word = text.strip()
        if self.choices:
            for index, choice in enumerate(self.choices):
                if word.lower() == choice.lower():
                    return float(index)
            raise ParamError(f"{self.name} must be one of {self.range_text}, got {word!r}")
        if self.minimum == 0 and self.maximum == 1 and self.step == 1:
            if word.lower() in _TRUE:
                return 1.0
            if word.lower() in _FALSE:
                return 0.0
        try:
            number = float(word)
        except ValueError:
            raise ParamError(f"{self.name} must be a number within {self.range_text}, got {word!r}") from None
        return self.validate(number)

    def coerce(self, value: object) -> float:
        """Accept a value from TOML or JSON: a number, a bool or a choice name."""
        if isinstance(value, str):
            return self.parse(value)
        if isinstance(value, (bool, int, float)):
            return self.validate(float(value))
        raise ParamError(f"{self.name} must be a number within {self.range_text}, got {value!r}")

    def to_unit(self, value: float) -> float:
        """Map a value to 0..1 along the parameter's curve."""
        if self.maximum == self.minimum:
            return 0.0
        if self.curve == "exp":
            return math.log(value / self.minimum) / math.log(self.maximum / self.minimum)
        return (value - self.minimum) / (self.maximum - self.minimum)

    def from_unit(self, unit: float) -> float:
        """Map 0..1 (a knob's position) to a value along the curve."""
        unit = min(1.0, max(0.0, unit))
        if self.curve == "exp":
            value = self.minimum * (self.maximum / self.minimum) ** unit
        else:
            value = self.minimum + unit * (self.maximum - self.minimum)
        return self.clamp(value)

    def external(self, value: float) -> float | int | str:
        """The value as a report or a person reads it."""
        if self.choices:
            return self.choices[int(value)]
        if self.step >= 1 and float(self.step).is_integer() and float(self.minimum).is_integer():
            return round(value)
        return round(value, 6)

    def format(self, value: float) -> str:
        shown = self.external(value)
        return f"{shown} {self.unit}".rstrip() if not self.choices else str(shown)


@dataclass(frozen=True)
class Registry:
    """All parameters, by name."""

    specs: Mapping[str, ParamSpec]

    @classmethod
    def of(cls, specs: Iterable[ParamSpec]) -> Registry:
        return cls({spec.name: spec for spec in specs})

    def __iter__(self) -> Iterator[ParamSpec]:
        return iter(self.specs.values())

    def __contains__(self, name: object) -> bool:
        return name in self.specs

    def spec(self, name: str) -> ParamSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise ParamError(f"unknown parameter {name!r}{suggest(name, self.specs)}") from None

    def defaults(self) -> dict[str, float]:
        return {spec.name: spec.default for spec in self}

    def coerce_all(self, raw: Mapping[str, object]) -> tuple[dict[str, float], dict[str, ParamError]]:
        """Values from a file or a request, each checked: (the good ones, what was wrong with the rest)."""
        values: dict[str, float] = {}
        errors: dict[str, ParamError] = {}
        for name, value in raw.items():
            try:
                values[name] = self.spec(name).coerce(value)
            except ParamError as exc:
                errors[name] = exc
        return values, errors

    def external(self, values: Mapping[str, float]) -> dict[str, float | int | str]:
        return {name: self.spec(name).external(value) for name, value in values.items()}


def suggest(word: str, known: Iterable[str]) -> str:
    """'. Did you mean ...?' for a misspelt name, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass
class ParamStore:
    """The current value of every parameter.

    Written by the control loop only; other threads read snapshots.
    """

    registry: Registry
    _values: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not self._values:
            self._values = self.registry.defaults()

    def get(self, name: str) -> float:
        self.registry.spec(name)
        with self._lock:
            return self._values[name]

    def set(self, name: str, value: float) -> float:
        """Validate and store a value; return what was stored."""
        checked = self.registry.spec(name).validate(value)
        with self._lock:
            self._values[name] = checked
        return checked

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)


def _spec(name: str, lo: float, hi: float, default: float, group: str, **kw: object) -> ParamSpec:
    return ParamSpec(name, float(lo), float(hi), float(default), group, **kw)  # type: ignore[arg-type]


PARAMETERS = Registry.of([
    # the clock (read by Csound at every beat)
    _spec("tempo", 20, 300, 100, "clock", unit="BPM", step=0.1, doc="beats per minute"),
    _spec("swing", 50, 75, 50, "clock", unit="%", step=0.5,
          doc="share of each pair of steps taken by the first (50 straight, 66.7 triplet)"),
    _spec("click", 0, 1, 0, "clock", step=1, doc="metronome click on every beat"),
    _spec("click_level", 0, 1, 0.7, "clock", doc="loudness of the click"),
    # the generator (read by Python when it composes a step)
    _spec("density", 0, 1, 0.6, "generator", doc="share of steps that play: 0 silent, 1 every step"),
    _spec("hits", 0, 32, 5, "generator", step=1, doc="Euclidean hits: the strongest steps of the pattern"),
    _spec("steps", 1, 32, 16, "generator", step=1, doc="pattern length in steps"),
    _spec("rotation", 0, 31, 0, "generator", step=1, doc="rotation of the Euclidean pattern"),
    _spec("scale", 0, 0, list(SCALES).index("dorian"), "generator", choices=tuple(SCALES),
          doc="scale of every voice"),
    _spec("root", 0, 0, 9, "generator", choices=NOTE_NAMES, doc="key"),
    _spec("register", 36, 84, 62, "generator", unit="note", step=1, doc="centre of the lead (MIDI note)"),
    _spec("range", 5, 36, 17, "generator", unit="st", step=1, doc="span of the lead in semitones"),
    _spec("motion", 0, 1, 0.35, "generator", doc="melodic motion: 0 repeated notes, 1 wide leaps"),
    _spec("length", 0.1, 8, 0.9, "generator", unit="steps", curve="exp", doc="note length"),
    _spec("velocity", 0, 1, 0.8, "generator", doc="loudness of notes"),
    _spec("dynamics", 0, 1, 0.3, "generator", doc="random variation of velocity"),
    _spec("variation", 0, 1, 0.25, "generator", doc="how much the pattern changes from bar to bar"),
    _spec("changes", 1, 8, 2, "generator", unit="bars", step=1, doc="bars per chord"),
    _spec("lead", 0, 1, 1, "generator", doc="share of playing steps the lead takes"),
    _spec("bass", 0, 1, 0.7, "generator", doc="activity of the bass"),
    _spec("pad", 0, 1, 0.5, "generator", doc="chords held under the melody"),
    _spec("perc", 0, 1, 0.5, "generator", doc="activity of the percussion"),
    _spec("seed", 0, 2**31 - 1, 1, "generator", step=1, doc="seed of the generator's randomness"),
    _spec("evolution", 0, 1, 0.6, "generator",
          doc="how much the music is arranged over minutes: 0 a steady groove, 1 sections that build, "
              "peak and break down, voices entering and leaving"),
    _spec("section", 4, 64, 16, "generator", unit="bars", step=1, doc="bars per section"),
    _spec("deja_vu", 0, 1, 0.4, "generator",
          doc="the melody's and rhythms' loops: 0 always new, 0.5 locked, 1 shuffled within the loop"),
    # the sound (control channels read by the orchestra)
    _spec("volume", -60, 0, -6, "sound", unit="dB", doc="master volume (the minimum, -60, is silence)"),
    _spec("brightness", 0, 1, 0.5, "sound", doc="filter opening of every voice"),
    _spec("reverb", 0, 1, 0.3, "sound", doc="reverb send"),
    _spec("echo", 0, 1, 0.2, "sound", doc="tempo-synced echo send"),
])
