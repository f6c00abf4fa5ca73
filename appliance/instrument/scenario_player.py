"""Plays a scenario (appliance/config/scenario.py) through the simulated hardware.

Each action drives the same code a real device or person would: parameter
sets and learn go into the inbox as commands, encoders and buttons toggle
gpiozero's mock pins, MIDI goes through the simulated backend.  Offline,
what an event makes the hardware report carries the event's own time, not
the control pass's, so renders stay exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.config.scenario import Event, Scenario, Timeline
from appliance.controls.inbox import Action, Learn, SetParam
from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from appliance.instrument.instrument import Instrument


class ScenarioPlayer:
    def __init__(self, instrument: Instrument, scenario: Scenario | None) -> None:
        self.instrument = instrument
        self.timeline = Timeline(scenario)
        self._actions: dict[str, Callable[[Event], None]] = {
            "set": self._set, "encoder": self._encoder, "detent": self._detent, "button": self._button,
            "release": self._release, "midi": self._midi, "plug": self._plug, "unplug": self._plug,
            "learn": self._learn, "transport": self._transport}

    def play(self, audio_time: float) -> None:
        """Play every event due by `audio_time` (seconds of audio)."""
        for event in self.timeline.due(audio_time):
            self.play_event(event)

    def play_event(self, event: Event) -> None:
        inbox = self.instrument.inbox
        clock = inbox.clock
        if not self.instrument.threaded:
            inbox.clock = lambda: event.at
        try:
            self._actions[event.action](event)
        except (ApplianceError, KeyError) as exc:
            where = f"scenario line {event.line}" if event.line else "scenario"
            self.instrument.error(f"{where}: {event.action}: {exc}")
        finally:
            inbox.clock = clock

    # -- the actions ---------------------------------------------------------------

    def _set(self, event: Event) -> None:
        for name, number in event.value.items():
            self.instrument.inbox.submit(SetParam(name, number, "scenario"))

    def _encoder(self, event: Event) -> None:
        """A turn is a detent after another, `seconds` apart in all."""
        value = event.value
        self.instrument.hardware.require_gpio()
        detents, spacing = abs(value["turn"]), value["seconds"] / abs(value["turn"])
        for i in range(detents):
            detent = {**value, "turn": 1 if value["turn"] > 0 else -1}
            self.timeline.insert(Event(event.at + i * spacing, "detent", detent, event.line))

    def _detent(self, event: Event) -> None:
        value = event.value
        self.instrument.hardware.require_gpio().turn(value["name"], value["turn"], bounce=value["bounce"])

    def _button(self, event: Event) -> None:
        self.instrument.hardware.require_gpio().press(event.value["name"])
        self.timeline.insert(Event(event.at + event.value["press"], "release", event.value["name"], event.line))

    def _release(self, event: Event) -> None:
        self.instrument.hardware.require_gpio().release(event.value)

    def _midi(self, event: Event) -> None:
        value: dict[str, Any] = event.value
        sim = self.instrument.hardware.sim()
        device = value["device"] or next(iter(sim.input_names()), None)
        if device is None or not sim.send(device, value["bytes"]):
            raise ApplianceError(f"no simulated MIDI device {device!r} is plugged in and open")

    def _plug(self, event: Event) -> None:
        getattr(self.instrument.hardware.sim(), event.action)(event.value)

    def _learn(self, event: Event) -> None:
        self.instrument.inbox.submit(Learn(event.value))

    def _transport(self, event: Event) -> None:
        self.instrument.inbox.submit(Action(event.value, 0, "scenario", event.at))
