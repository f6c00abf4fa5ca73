"""Rotary encoders and buttons on GPIO pins, through gpiozero.

Devices never touch hardware themselves: a gpiozero pin factory does.  On a
Pi that is gpiozero's default (lgpio on a Pi 5); in simulation it is
gpiozero's MockFactory, and scenarios turn encoders and press buttons by
driving the mock pins exactly as the contacts would (in quadrature for an
encoder), so the same code runs as on hardware.

Callbacks only put an event in the inbox.  Debouncing beyond what gpiozero
does, acceleration and long presses are the control loop's work
(appliance/controls.py).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.controls.inbox import Inbox
from appliance.errors import GpioError

log = logging.getLogger("appliance.controls.gpio")

# an encoder's contacts (A, B) while turning one detent; 0 = closed (pulled low)
_CLOCKWISE = ((0, 1), (0, 0), (1, 0), (1, 1))
_COUNTER_CLOCKWISE = ((1, 0), (0, 0), (0, 1), (1, 1))


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    pins: tuple[int, int]
    param: str
    step: float = 1.0
    shift_param: str | None = None     # what the encoder moves while a shift button is held
    acceleration: bool = True


@dataclass(frozen=True)
class ButtonConfig:
    name: str
    pin: int
    action: str
    long_action: str | None = None     # fired instead when held for `hold` seconds
    hold: float = 0.6


class Gpio:
    """The configured encoders and buttons on a pin factory."""

    def __init__(self, encoders: Iterable[EncoderConfig], buttons: Iterable[ButtonConfig],
                 inbox: Inbox, simulate: bool) -> None:
        from gpiozero import Button, RotaryEncoder

        self.simulated = simulate
        self.factory = _factory(simulate)
        self._devices: list = []
        self._encoders: dict[str, RotaryEncoder] = {}
        self._buttons: dict[str, Button] = {}
        try:
            for enc in encoders:
                device = RotaryEncoder(*enc.pins, max_steps=0, pin_factory=self.factory)
                device.when_rotated_clockwise = _put(inbox.encoder, enc.name, +1)
                device.when_rotated_counter_clockwise = _put(inbox.encoder, enc.name, -1)
                self._encoders[enc.name] = device
                self._devices.append(device)
            for cfg in buttons:
                device = Button(cfg.pin, pull_up=True, pin_factory=self.factory)
                device.when_pressed = _put(inbox.button, cfg.name, True)
                device.when_released = _put(inbox.button, cfg.name, False)
                self._buttons[cfg.name] = device
                self._devices.append(device)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()

    # -- simulation: drive the mock pins as the contacts would -----------------

    def turn(self, name: str, detents: int, bounce: bool = False) -> None:
        """Turn an encoder by detents (negative: counter-clockwise).

        With bounce, each contact chatters (closes, opens, closes) as it
        makes, as worn encoders do.
        """
        encoder = self._encoders[name]
        a, b = encoder.a.pin, encoder.b.pin
        sequence = _CLOCKWISE if detents > 0 else _COUNTER_CLOCKWISE
        for _ in range(abs(detents)):
            for level_a, level_b in sequence:
                for pin, level in ((a, level_a), (b, level_b)):
                    if bounce and pin.state != level:
                        _drive(pin, level)
                        _drive(pin, 1 - level)
                    _drive(pin, level)

    def press(self, name: str) -> None:
        _drive(self._buttons[name].pin, 0)

    def release(self, name: str) -> None:
        _drive(self._buttons[name].pin, 1)


def _put(sink, name: str, value):  # type: ignore[no-untyped-def]
    def callback() -> None:
        sink(name, value)
    return callback


def _drive(pin, level: int) -> None:  # type: ignore[no-untyped-def]
    if level:
        pin.drive_high()
    else:
        pin.drive_low()


def _factory(simulate: bool):  # type: ignore[no-untyped-def]
    """MockFactory in simulation, else the board's."""
    from gpiozero.pins.mock import MockFactory

    return MockFactory() if simulate else real_factory()


def real_factory():  # type: ignore[no-untyped-def]
    """gpiozero's default pin factory (lgpio on a Pi 5).

    GpioError if none works, naming why each pin library failed (gpiozero
    says only "unable to load any default pin factory"; the reason a person
    needs, such as lgpio's PinUnknownPi, is in the warnings it gives on the way).
    """
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return Device._default_pin_factory()
        except BadPinFactory as exc:
            reasons = "; ".join(str(w.message) for w in caught) or str(exc)
            raise GpioError(f"no GPIO pin library works here ({reasons})") from None
