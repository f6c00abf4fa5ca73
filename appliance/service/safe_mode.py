"""Safe mode: start on factory defaults when starting as configured could leave the box silent.

Decided once, before any sound, from: a crash loop in the boot log, an
invalid config, the safe-mode button held at power-on, an orchestra that
does not compile, or `--safe-mode`.  Whatever the reason the instrument
plays; it says why in the log, the status and the report.

Safe mode means factory *music*: parameters and the default orchestra.  The
controls stay: a config that parses keeps its audio, MIDI and GPIO
sections, and learned mappings come back from the last state, so the
musician's knobs still work.  Nothing saved is written over while in safe
mode; leaving it (a reload) brings the saved setup back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from appliance import config as config_module
from appliance import paths
from appliance.config.schema import Config
from appliance.errors import ConfigError, OrchestraError
from appliance.service.boots import BootLog

log = logging.getLogger("appliance")

SAFE_PIN_VARIABLE = "APPLIANCE_SIM_HELD_PINS"   # simulated pins held low at power-on


@dataclass
class Start:
    """How this start goes: the config to play, and why safe mode, if it is."""

    config: Config = field(default_factory=Config)
    reasons: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    persist: bool = True            # the state directory can be written

    @property
    def safe_mode(self) -> bool:
        return bool(self.reasons)

    def enter_safe_mode(self, reason: str) -> None:
        log.error("SAFE MODE: %s; playing factory defaults", reason)
        self.reasons.append(reason)
        self.error(f"safe mode: {reason}")

    def error(self, message: str) -> None:
        log.error("%s", message)
        self.errors.append(message)


def decide(config_path: Path | None, state_dir: Path, boots: BootLog, *, force: bool, simulate: bool,
           safe_pin: int) -> Start:
    start = Start()
    looping = _record_boot(start, state_dir, boots)
    if looping:
        start.enter_safe_mode(f"{boots.failures} starts in {boots.window / 60:g} minutes "
                              "did not finish (a crash loop)")
    if force:
        start.enter_safe_mode("asked for (--safe-mode)")
    parsed: Config | None = None
    try:
        parsed = config_module.load(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            start.error(f"config: {problem}")
        start.enter_safe_mode("the config is invalid")
    if parsed is not None:
        start.config = parsed
    if not start.safe_mode and _safe_button_held(safe_pin, simulate):
        start.enter_safe_mode(f"the safe-mode button (GPIO {safe_pin}) was held at start")
    if not start.safe_mode and not _orchestra_compiles(start):
        start.enter_safe_mode("the orchestra does not compile")
    if start.safe_mode:
        # factory music, not a dead control surface: a config that parses keeps its MIDI and GPIO
        start.config = Config() if parsed is None else \
            Config(source=parsed.source, audio=parsed.audio, midi=parsed.midi, gpio=parsed.gpio)
    return start


def _record_boot(start: Start, directory: Path, boots: BootLog) -> bool:
    """Prepare the state directory and log this start; True if starts keep failing."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        for stale in directory.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)       # a save cut short by a crash or a power cut
        looping, problem = boots.start()
    except OSError as exc:                      # a read-only or missing state directory: play anyway
        start.persist = False
        start.error(f"state directory {directory}: {exc.strerror or exc}; "
                    "presets and the last state will not be saved")
        return False
    if problem:
        start.error(f"boot log: {problem}")
    return looping


def _orchestra_compiles(start: Start) -> bool:
    """Compile the configured orchestra once, without sound (the default one is trusted)."""
    from appliance.engine.engine import check_orchestra
    from appliance.engine.orchestra import Orchestra

    path = start.config.orchestra_path()
    if path.resolve() == paths.default_orchestra().resolve():
        return True
    try:
        check_orchestra(Orchestra.load(path), start.config.clock_layout())
    except OrchestraError as exc:
        start.error(str(exc))
        return False
    return True


def _safe_button_held(pin: int, simulate: bool) -> bool:
    """The safe-mode button (pulled up, pressed = low) held while starting."""
    if simulate:
        held = os.environ.get(SAFE_PIN_VARIABLE, "")
        return str(pin) in held.replace(",", " ").split()
    try:
        from gpiozero import Button

        from appliance.controls.gpio import real_factory

        button = Button(pin, pull_up=True, pin_factory=real_factory())
    except Exception:   # no GPIO on this board: there is no button to hold
        return False
    try:
        return bool(button.is_pressed)
    finally:
        button.close()
