"""MIDI mappings: which message moves which parameter, and how.

A mapping names a source (a CC, a 14-bit CC pair, an NRPN, a note or a
program change, optionally on one channel and one device) and either a
parameter, with a mode, a sub-range and a curve, or an action to trigger.

Modes for continuous controls:
  jump             the value follows the knob at once
  pickup           soft takeover: after the value was changed elsewhere (a
                   preset, another knob), the knob does nothing until it
                   passes the value, then takes it over
  scale            value scaling: the knob moves the value proportionally, so
                   knob and value meet at the ends of the knob's travel
  relative-twos    endless encoders: 1..63 up, 127..65 down (two's complement)
  relative-offset  64 is rest, 65 = +1, 63 = -1 (binary offset)
  relative-signed  bit 6 is the sign: 1..63 up, 65..127 down
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from appliance.params import Registry

KINDS = ("cc", "cc14", "nrpn", "note", "program")
MODES = ("jump", "pickup", "scale", "relative-twos", "relative-offset", "relative-signed")
CURVES = ("linear", "exp", "log")
ACTIONS = ("tap_tempo", "start_stop", "click", "preset", "preset_next", "preset_prev", "shift",
           "scene", "scene_next", "scene_prev", "temp", "record")

_CURVE_K = 3.0   # how bent the exp and log curves are
_PORT_NUMBER = re.compile(r"\s*(\[\d+\]|\d+:\d+)\s*")


def device_key(port: str) -> str:
    """A port name without the numbers ALSA and a2j give it on each plug."""
    return _PORT_NUMBER.sub(" ", port).strip()


@dataclass(frozen=True)
class Mapping:
    """One mapping, as written in [[midi.map]] (channels are 1..16)."""

    kind: str
    number: int | None              # controller, NRPN, note or program number; None: any program
    param: str | None = None
    action: str | None = None
    channel: int | None = None
    device: str | None = None
    mode: str = "jump"
    low: float | None = None        # the value at the knob's bottom (parameter units)
    high: float | None = None       # ... at its top; low > high turns the knob around
    curve: str = "linear"
    step: float | None = None       # relative modes: value per encoder tick
    lsb: int | None = None          # cc14: the LSB controller (default number + 32)
    feedback: bool = False

    def accepts(self, port: str, channel: int) -> bool:
        if self.channel is not None and self.channel != channel:
            return False
        # by the port's name without the numbers a re-plug changes ("[20]" -> "[24]")
        return self.device is None or device_key(self.device).lower() in device_key(port).lower()

    def numbers(self) -> set[int]:
        """The controller (or note, NRPN, program) numbers this mapping listens to."""
        found = {self.number} if self.number is not None else set()
        if self.lsb_number is not None:
            found.add(self.lsb_number)
        return found

    def shadows(self, other: Mapping) -> bool:
        """True if this mapping (a learned one) takes over a control `other` also listens to."""
        kinds = {self.kind, other.kind}
        same_kind = len(kinds) == 1 or kinds == {"cc", "cc14"}
        same_number = bool(self.numbers() & other.numbers()) or (other.number is None and self.kind == other.kind)
        same_channel = other.channel is None or self.channel is None or other.channel == self.channel
        same_device = other.device is None or self.device is None or \
            device_key(other.device).lower() in device_key(self.device).lower()
        return same_kind and same_number and same_channel and same_device

    def describe(self) -> dict[str, Any]:
        """The fields that say something (for status, the socket and the saved state)."""
        return {k: v for k, v in vars(self).items() if v not in (None, False)}

    @property
    def lsb_number(self) -> int | None:
        if self.kind != "cc14":
            return None
        return self.lsb if self.lsb is not None else (self.number or 0) + 32


@dataclass(frozen=True)
class ParamSet:
    name: str
    value: float
    mapping: Mapping


@dataclass(frozen=True)
class Trigger:
    action: str
    argument: int                   # note or program number, CC value
    mapping: Mapping | None


@dataclass(frozen=True)
class Realtime:
    """MIDI clock and transport: tick, start, continue, stop, position (Song Position Pointer)."""

    kind: str
    value: int = 0                  # position: sixteenths from the song's start


@dataclass(frozen=True)
class Learned:
    mapping: Mapping


Routed = ParamSet | Trigger | Realtime | Learned


def bend(unit: float, curve: str) -> float:
    if curve == "exp":
        return (math.exp(_CURVE_K * unit) - 1) / (math.exp(_CURVE_K) - 1)
    if curve == "log":
        return math.log1p((math.exp(_CURVE_K) - 1) * unit) / _CURVE_K
    return unit


def unbend(unit: float, curve: str) -> float:
    return bend(unit, {"exp": "log", "log": "exp"}.get(curve, curve))


@dataclass
class _Control:
    """A mapping and what it remembers between messages."""

    mapping: Mapping
    knob: float | None = None       # the knob's last position, 0..1
    engaged: bool = False           # pickup: the knob holds the value (not at first: where is it?)
    wrote: float | None = None      # the value this mapping last set


@dataclass
class _Pair:
    msb: int | None = None
    lsb: int | None = None


@dataclass
class _Nrpn:
    number_msb: int | None = None
    number_lsb: int | None = None
    value_msb: int = 0

    @property
    def number(self) -> int | None:
        if self.number_msb is None or self.number_lsb is None:
            return None
        return (self.number_msb << 7) | self.number_lsb


@dataclass
class Router:
    """Turns MIDI messages into parameter values and triggers."""

    registry: Registry
    mappings: list[Mapping] = field(default_factory=list)
    learning: str | None = None
    invalid: int = 0                # messages that were not MIDI (dropped)

    def __post_init__(self) -> None:
        self._controls: list[_Control] = []
        self._pairs: dict[tuple[str, int, int], _Pair] = {}
        self._nrpn: dict[tuple[str, int], _Nrpn] = {}
        self.replace(self.mappings)

    def replace(self, mappings: Iterable[Mapping]) -> None:
        self.mappings = list(mappings)
        self._controls = [_Control(m) for m in self.mappings]
        self._uses_nrpn = any(m.kind == "nrpn" for m in self.mappings)

    def add(self, mapping: Mapping) -> None:
        """Add a (learned) mapping; it takes over its control from every mapping that listened to
        it, so one knob never moves two things."""
        self.replace([m for m in self.mappings if not mapping.shadows(m)] + [mapping])

    def remove(self, mappings: Iterable[Mapping]) -> None:
        gone = list(mappings)
        self.replace([m for m in self.mappings if m not in gone])

    # -- routing -----------------------------------------------------------

    def route(self, port: str, data: bytes, value_of: Callable[[str], float]) -> list[Routed]:
        """What one complete MIDI message does; value_of(name) is a parameter's value."""
        if not data or data[0] < 0x80 or any(b > 0x7F for b in data[1:]):
            self.invalid += 1
            return []
        status = data[0]
        if status == 0xF2 and len(data) == 3:
            return [Realtime("position", data[1] | data[2] << 7)]
        if status >= 0xF0:
            return self._system(status)
        kind, channel = status & 0xF0, (status & 0x0F) + 1
        needed = 2 if kind in (0xC0, 0xD0) else 3
        if len(data) < needed:
            self.invalid += 1
            return []
        if kind == 0xB0:
            return self._control_change(port, channel, data[1], data[2], value_of)
        if kind == 0x90 and data[2] > 0:
            return self._learn_or(port, channel, "note", data[1], value_of) or \
                self._triggers(port, channel, "note", data[1], data[1])
        if kind == 0xC0:
            return self._triggers(port, channel, "program", data[1], data[1])
        return []

    def _system(self, status: int) -> list[Routed]:
        names = {0xF8: "tick", 0xFA: "start", 0xFB: "continue", 0xFC: "stop"}
        return [Realtime(names[status])] if status in names else []

    def _control_change(self, port: str, channel: int, number: int, value: int,
                        value_of: Callable[[str], float]) -> list[Routed]:
        if self._uses_nrpn and number in (99, 98, 6, 38, 96, 97):
            return self._nrpn_part(port, channel, number, value, value_of)
        learned = self._learn_or(port, channel, "cc", number, value_of, value)
        if learned:
            return learned
        out: list[Routed] = []
        for control in self._controls:
            m = control.mapping
            if not m.accepts(port, channel):
                continue
            if m.kind == "cc" and m.number == number:
                out += self._apply(control, value, 127, value_of)
            elif m.kind == "cc14" and number in (m.number, m.lsb_number):
                out += self._pair_part(control, port, channel, number, value, value_of)
        return out

    def _pair_part(self, control: _Control, port: str, channel: int, number: int, value: int,
                   value_of: Callable[[str], float]) -> list[Routed]:
        # Apply on the LSB, which follows its MSB; an MSB alone counts only
        # until the device has shown it sends LSBs (else a wrapping LSB glitches).
        pair = self._pairs.setdefault((port, channel, control.mapping.number or 0), _Pair())
        if number == control.mapping.number:
            pair.msb = value
            if pair.lsb is not None:
                return []
            return self._apply(control, value << 7, 16383, value_of)
        pair.lsb = value
        if pair.msb is None:
            return []
        return self._apply(control, (pair.msb << 7) | value, 16383, value_of)

    def _nrpn_part(self, port: str, channel: int, number: int, value: int,
                   value_of: Callable[[str], float]) -> list[Routed]:
        state = self._nrpn.setdefault((port, channel), _Nrpn())
        if number == 99:
            state.number_msb = value
            return []
        if number == 98:
            state.number_lsb = value
            return []
        if state.number is None:
            return []
        controls = [c for c in self._controls if c.mapping.kind == "nrpn"
                    and c.mapping.number == state.number and c.mapping.accepts(port, channel)]
        out: list[Routed] = []
        for control in controls:
            if number == 6:
                state.value_msb = value
                out += self._apply(control, value << 7, 16383, value_of)
            elif number == 38:
                out += self._apply(control, (state.value_msb << 7) | value, 16383, value_of)
            elif control.mapping.param:
                # data increment (96) / decrement (97): one step
                spec = self.registry.spec(control.mapping.param)
                step = _relative_step(control.mapping, spec)
                current = value_of(spec.name)
                delta = step if number == 96 else -step
                out += self._set(control, spec.clamp(current + delta))
        return out

    def _triggers(self, port: str, channel: int, kind: str, number: int, argument: int) -> list[Routed]:
        return [Trigger(c.mapping.action or "", argument, c.mapping) for c in self._controls
                if c.mapping.kind == kind and c.mapping.action
                and (c.mapping.number is None or c.mapping.number == number)
                and c.mapping.accepts(port, channel)]

    def _learn_or(self, port: str, channel: int, kind: str, number: int,
                  value_of: Callable[[str], float], value: int | None = None) -> list[Routed]:
        """In learn mode, the first control moved is mapped to what is being learnt.

        A parameter learns a CC (mode pickup, and the learning move takes the
        value over at once); an action learns a CC or a note.
        """
        target = self.learning
        if target is None or (kind == "note" and target not in ACTIONS):
            return []
        self.learning = None
        if target in ACTIONS:
            mapping = Mapping(kind=kind, number=number, action=target, channel=channel,
                              device=device_key(port))
        else:
            mapping = Mapping(kind="cc", number=number, param=target, channel=channel,
                              device=device_key(port), mode="pickup")
        self.add(mapping)
        out: list[Routed] = [Learned(mapping)]
        if value is not None and mapping.param:
            control = next(c for c in self._controls if c.mapping == mapping)
            control.engaged = True
            out += self._apply(control, value, 127, value_of)
        return out

    # -- values ------------------------------------------------------------

    def _apply(self, control: _Control, raw: int, full: int,
               value_of: Callable[[str], float]) -> list[Routed]:
        m = control.mapping
        if m.action:
            pressed = raw * 2 > full
            was = control.knob is not None and control.knob > 0.5
            control.knob = raw / full
            return [Trigger(m.action, raw, m)] if pressed and not was else []
        if m.param is None:
            return []
        spec = self.registry.spec(m.param)
        current = value_of(m.param)
        if control.wrote is not None and current != control.wrote:
            control.engaged = False      # someone else moved the value: pick it up again
        if m.mode.startswith("relative"):
            ticks = _relative_ticks(m.mode, raw if full == 127 else raw >> 7)
            return self._set(control, spec.clamp(current + ticks * _relative_step(m, spec)))
        knob = raw / full
        previous, control.knob = control.knob, knob
        if m.mode == "jump":
            return self._set(control, self.from_knob(m, knob))
        held = self.to_knob(m, current)
        if m.mode == "pickup":
            if not control.engaged:
                crossed = previous is not None and (previous - held) * (knob - held) <= 0
                if not crossed and abs(knob - held) > 1.5 / full:
                    return []
                control.engaged = True
            return self._set(control, self.from_knob(m, knob))
        # scale: move the value by the knob's share of the way left to the end
        if previous is None or knob == previous:
            return []
        if knob > previous:
            moved = held + (knob - previous) * (1 - held) / (1 - previous)
        else:
            moved = held - (previous - knob) * held / previous
        return self._set(control, self.from_knob(m, min(1.0, max(0.0, moved))))

    def _set(self, control: _Control, value: float) -> list[Routed]:
        control.wrote = value
        control.engaged = True
        assert control.mapping.param is not None
        return [ParamSet(control.mapping.param, value, control.mapping)]

    def from_knob(self, m: Mapping, knob: float) -> float:
        """The parameter value at a knob position (0..1)."""
        spec = self.registry.spec(m.param or "")
        low = spec.to_unit(m.low if m.low is not None else spec.minimum)
        high = spec.to_unit(m.high if m.high is not None else spec.maximum)
        return spec.from_unit(low + bend(knob, m.curve) * (high - low))

    def to_knob(self, m: Mapping, value: float) -> float:
        """The knob position (0..1) that gives a value."""
        spec = self.registry.spec(m.param or "")
        low = spec.to_unit(m.low if m.low is not None else spec.minimum)
        high = spec.to_unit(m.high if m.high is not None else spec.maximum)
        if high == low:
            return 0.0
        return unbend(min(1.0, max(0.0, (spec.to_unit(value) - low) / (high - low))), m.curve)

    # -- feedback ------------------------------------------------------------

    def feedback(self, name: str, value: float) -> list[tuple[Mapping, list[bytes]]]:
        """Messages that show a parameter's value on the controllers that map it (LED rings)."""
        out = []
        for control in self._controls:
            m = control.mapping
            if not m.feedback or m.param != name or m.mode.startswith("relative"):
                continue
            status = 0xB0 | ((m.channel or 1) - 1)
            knob = self.to_knob(m, value)
            number = m.number or 0
            if m.kind == "cc":
                out.append((m, [bytes([status, number, round(knob * 127)])]))
            elif m.kind == "cc14":
                raw = round(knob * 16383)
                out.append((m, [bytes([status, number, raw >> 7]),
                                bytes([status, m.lsb_number or 0, raw & 0x7F])]))
            elif m.kind == "nrpn":
                raw = round(knob * 16383)
                out.append((m, [bytes([status, 99, number >> 7]), bytes([status, 98, number & 0x7F]),
                                bytes([status, 6, raw >> 7]), bytes([status, 38, raw & 0x7F])]))
        return out


def _relative_ticks(mode: str, value: int) -> int:
    if mode == "relative-twos":
        return value if value < 64 else value - 128
    if mode == "relative-offset":
        return value - 64
    return -(value & 0x3F) if value & 0x40 else value & 0x3F


def _relative_step(m: Mapping, spec) -> float:  # type: ignore[no-untyped-def]
    if m.step is not None:
        return m.step
    # 200 ticks end to end, but never less than the parameter's own step, which would round
    # every tick away (swing moves in 0.5 % steps: 25 % / 200 would never move it)
    return max(spec.step, (spec.maximum - spec.minimum) / 200)
