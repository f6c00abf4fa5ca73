"""What the controls mean: from input events to parameter changes and actions.

Runs in the control loop only.  It turns inbox events (MIDI messages,
encoder steps, button edges) into values for the parameter store and into
actions (tap tempo, start/stop, presets ...), with the behaviour of good
hardware:

* encoders: a step against the direction of the previous one within 25 ms is
  contact bounce and is ignored (a hand cannot reverse that fast), and quick
  turns accelerate (x2, x4, x8);
* buttons: edges closer than 20 ms are bounce; a button with a long action
  fires its short action on release, or its long action once held `hold`
  seconds; without one, it fires on press (tap tempo must count the press);
* shift: while a shift button or note is held, encoders move their
  shift_param;
* MIDI clock: followed through a smoothed tempo estimate, start / continue /
  stop drive the transport.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from appliance.controls.gpio import ButtonConfig, EncoderConfig
from appliance.controls.inbox import Action, ButtonEdge, EncoderStep, InputEvent, MidiEvent, SetParam
from appliance.controls.midi.clock import ClockFollower
from appliance.controls.midi.mapping import Learned, ParamSet, Realtime, Router, Trigger
from appliance.controls.midi.mapping import Mapping as LearnedMapping
from appliance.errors import ParamError
from appliance.params import Registry

log = logging.getLogger("appliance.controls")

BOUNCE_ENCODER = 0.025
BOUNCE_BUTTON = 0.020
TAP_RESET = 2.0              # seconds without a tap start a new count
TAP_AVERAGE = 3              # intervals averaged


Effect = SetParam | Action


def _song_position(event: MidiEvent) -> int:
    """A Song Position Pointer's position, in sixteenths."""
    return event.data[1] | event.data[2] << 7


class TapTempo:
    """Tempo from the intervals between taps: four taps 0.5 s apart give 120 BPM."""

    def __init__(self) -> None:
        self._taps: list[float] = []

    def tap(self, at: float) -> float | None:
        if self._taps and (at - self._taps[-1] > TAP_RESET or at <= self._taps[-1]):
            self._taps.clear()
        self._taps = [*self._taps[-TAP_AVERAGE:], at]
        if len(self._taps) < 2:
            return None
        intervals = [b - a for a, b in zip(self._taps, self._taps[1:], strict=False)]
        return 60.0 / (sum(intervals) / len(intervals))


@dataclass
class _EncoderState:
    direction: int = 0
    time: float = float("-inf")


@dataclass
class _ButtonState:
    pressed: bool = False             # the accepted state
    since: float = float("-inf")
    edge: float = float("-inf")       # when the accepted state last changed
    long_fired: bool = False
    level: bool = False               # the contact's latest level, bounce or not


@dataclass
class Controls:
    registry: Registry
    router: Router
    encoders: Mapping[str, EncoderConfig] = field(default_factory=dict)
    buttons: Mapping[str, ButtonConfig] = field(default_factory=dict)
    follow_clock: bool = False
    clock_in: str = ""               # only ports whose name contains this ("": any)

    def __post_init__(self) -> None:
        self.tap = TapTempo()
        self.follower = ClockFollower()
        self._encoder_state: dict[str, _EncoderState] = {}
        self._button_state: dict[str, _ButtonState] = {}
        self._shift_sources: set[str] = set()
        self._temp_sources: set[str] = set()      # MIDI notes holding TEMP
        self.learned: list = []
        self.ignored_bounces = 0

    @property
    def shift(self) -> bool:
        return bool(self._shift_sources)

    def handle(self, events: list[InputEvent], value_of: Callable[[str], float]) -> list[Effect]:
        """Effects of a batch of events; value_of(name) is a parameter's current value."""
        pending: dict[str, float] = {}

        def current(name: str) -> float:
            return pending[name] if name in pending else value_of(name)

        effects: list[Effect] = []
        for event in events:
            try:
                produced = self._one(event, current)
            except ParamError as exc:        # a mapping that names what no longer exists
                self.router.invalid += 1
                log.warning("%s: %s", event, exc)
                continue
            for effect in produced:
                if isinstance(effect, SetParam):
                    pending[effect.name] = effect.value
                effects.append(effect)
        return effects

    def remember(self, mapping: LearnedMapping) -> None:
        """Keep a learned mapping (for the last state); one it takes a control over from goes."""
        self.learned = [m for m in self.learned if not mapping.shadows(m)] + [mapping]

    def unlearn(self, name: str) -> int:
        """Forget the learned mappings to a parameter or action; how many there were."""
        gone = [m for m in self.learned if name in (m.param, m.action)]
        self.learned = [m for m in self.learned if m not in gone]
        self.router.remove(gone)
        return len(gone)

    def poll(self, now: float, value_of: Callable[[str], float]) -> list[Effect]:
        """Effects that come with time: long presses, the followed MIDI clock."""
        effects: list[Effect] = []
        for name, state in self._button_state.items():
            if state.level != state.pressed and now - state.edge >= BOUNCE_BUTTON:
                # the contact settled on the other level within the bounce time of the last
                # edge (a tap shorter than 20 ms): that is a real edge, taken now
                effects += self._settle(name, state, now)
            config = self.buttons[name]
            held = state.pressed and now - state.since >= config.hold
            if held and config.long_action and not state.long_fired:
                state.long_fired = True
                effects += self._action(config.long_action, 0, f"button {name} (long)", now)
        if self.follow_clock:
            tempo = self.follower.update(now)
            if tempo is not None:
                spec = self.registry.spec("tempo")
                value = spec.clamp(tempo)
                if abs(value - value_of("tempo")) >= spec.step / 2:
                    effects.append(SetParam("tempo", value, "MIDI clock"))
        return effects

    def next_deadline(self) -> float | None:
        """When poll() next has something to do without any input: a long press coming due,
        or a contact that has settled on a level the bounce filter has not taken yet."""
        due = [state.since + self.buttons[name].hold for name, state in self._button_state.items()
               if state.pressed and not state.long_fired and self.buttons[name].long_action]
        due += [state.edge + BOUNCE_BUTTON for state in self._button_state.values() if state.level != state.pressed]
        return min(due, default=None)

    def release_device(self, port: str) -> None:
        """A MIDI device went away: let go of anything it held (shift)."""
        self._shift_sources = {s for s in self._shift_sources if not s.startswith(f"midi:{port}:")}

    # -- one event ---------------------------------------------------------------

    def _one(self, event: InputEvent, current: Callable[[str], float]) -> list[Effect]:
        if isinstance(event, MidiEvent):
            return self._midi(event, current)
        if isinstance(event, EncoderStep):
            return self._encoder(event, current)
        return self._button(event)

    def _midi(self, event: MidiEvent, current: Callable[[str], float]) -> list[Effect]:
        effects: list[Effect] = []
        for routed in self.router.route(event.port, event.data, current):
            if isinstance(routed, ParamSet):
                effects.append(SetParam(routed.name, routed.value, f"MIDI {event.port}", event.time))
            elif isinstance(routed, Trigger):
                if routed.action == "shift":
                    self._shift_sources.add(f"midi:{event.port}:{routed.mapping}")
                elif routed.action == "temp":
                    self._temp_sources.add(f"midi:{event.port}:{routed.mapping}")
                    effects.append(Action("temp", 1, f"MIDI {event.port}", event.time))
                else:
                    effects += self._action(routed.action, routed.argument, f"MIDI {event.port}", event.time)
            elif isinstance(routed, Learned):
                self.remember(routed.mapping)
                log.info("learned: %s", routed.mapping)
            elif isinstance(routed, Realtime):
                effects += self._clock(routed.kind, event)
        # a note-off (or a note-on at velocity 0) lets go of a shift held by a note
        kind = event.data[0] & 0xF0
        released = kind == 0x80 or (kind == 0x90 and len(event.data) > 2 and event.data[2] == 0)
        if self._shift_sources and released:
            self._shift_sources = {s for s in self._shift_sources if not s.startswith(f"midi:{event.port}:")}
        if released and any(s.startswith(f"midi:{event.port}:") for s in self._temp_sources):
            self._temp_sources = {s for s in self._temp_sources if not s.startswith(f"midi:{event.port}:")}
            effects.append(Action("temp", 0, f"MIDI {event.port}", event.time))     # TEMP let go
        return effects

    def _clock(self, kind: str, event: MidiEvent) -> list[Effect]:
        """Incoming MIDI clock: its ticks and place feed the follower (whose beats the
        instrument's clock is steered onto), start, continue and stop drive the transport."""
        if not self.follow_clock:
            return []
        if self.clock_in and self.clock_in.lower() not in event.port.lower():
            return []                    # another device's clock: following two would mix their tempos
        if kind == "tick":
            self.follower.tick(event.time)
            return []
        if kind == "position":
            self.follower.song_position(_song_position(event))
            return []
        if kind == "start":
            self.follower.start()
        source = f"MIDI clock {event.port}"
        return [Action(kind, 0, source, event.time)]      # start, continue or stop

    def _encoder(self, event: EncoderStep, current: Callable[[str], float]) -> list[Effect]:
        config = self.encoders.get(event.name)
        if config is None:
            return []
        state = self._encoder_state.setdefault(event.name, _EncoderState())
        gap = event.time - state.time
        if state.direction and event.direction != state.direction and gap < BOUNCE_ENCODER:
            self.ignored_bounces += 1
            return []
        factor = 1
        if config.acceleration and event.direction == state.direction:
            factor = 8 if gap < 0.012 else 4 if gap < 0.025 else 2 if gap < 0.05 else 1
        state.direction, state.time = event.direction, event.time
        name = config.shift_param if self.shift and config.shift_param else config.param
        spec = self.registry.spec(name)
        value = spec.clamp(current(name) + event.direction * config.step * factor)
        return [SetParam(name, value, f"encoder {event.name}", event.time)]

    def _button(self, event: ButtonEdge) -> list[Effect]:
        config = self.buttons.get(event.name)
        if config is None:
            return []
        state = self._button_state.setdefault(event.name, _ButtonState())
        state.level = event.pressed
        if event.time - state.edge < BOUNCE_BUTTON:
            self.ignored_bounces += 1
            return []
        effects: list[Effect] = []
        if event.pressed == state.pressed:
            if not event.pressed:
                return []                      # released twice: nothing new
            # pressed again while taken as held: the release between came within the bounce
            # time of the press (a quick tap) and no poll settled it yet
            effects += self._accept(config, state, ButtonEdge(event.name, False, event.time))
        return effects + self._accept(config, state, event)

    def _settle(self, name: str, state: _ButtonState, now: float) -> list[Effect]:
        config = self.buttons.get(name)
        if config is None:
            return []
        return self._accept(config, state, ButtonEdge(name, state.level, now))

    def _accept(self, config: ButtonConfig, state: _ButtonState, event: ButtonEdge) -> list[Effect]:
        state.pressed, state.edge = event.pressed, event.time
        source = f"button {event.name}"
        if config.action == "shift":
            if event.pressed:
                self._shift_sources.add(source)
            else:
                self._shift_sources.discard(source)
            return []
        if config.action == "temp":                     # held: press and release both count
            return [Action("temp", 1 if event.pressed else 0, source, event.time)]
        if event.pressed:
            state.since, state.long_fired = event.time, False
            return [] if config.long_action else self._action(config.action, 0, source, event.time)
        if config.long_action and not state.long_fired:
            return self._action(config.action, 0, source, event.time)
        return []

    def _action(self, name: str, argument: int, source: str, at: float) -> list[Effect]:
        if name == "tap_tempo":
            tempo = self.tap.tap(at)
            if tempo is None:
                return []
            return [SetParam("tempo", self.registry.spec("tempo").clamp(tempo), f"tap tempo ({source})")]
        return [Action(name, argument, source, at)]
