"""`appliance run`: the instrument as a service.

Around the Instrument it adds what a box on its own needs:

* safe mode: an invalid config, an orchestra that does not compile, a crash
  loop (3 unfinished starts within 5 minutes, from the boot log) or the safe
  button held at power-on start factory defaults, and say so in the log, the
  status and the report; the instrument is never a silent box;
* the last state (parameters, learned mappings), restored at start and saved
  every few seconds when it changed, and presets, all in the state directory;
* the control socket;
* systemd's notify protocol: READY=1 once audio runs, STATUS=, and watchdog
  pings from the control loop that stop if the audio engine stalls;
* reload (the `reload` command or SIGHUP): a config that fails validation is
  refused and the running one kept.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import config as config_module
from appliance import notify, paths, state
from appliance.boots import BootLog
from appliance.commands import Commands
from appliance.config import Config
from appliance.engine.engine import RealtimeOutput, check_orchestra
from appliance.engine.orchestra import Orchestra
from appliance.engine.rtprio import lock_memory
from appliance.errors import ApplianceError, ConfigError, OrchestraError, ParamError
from appliance.instrument import Instrument, Stats, layout_of
from appliance.midi.mapping import Mapping
from appliance.params import PARAMETERS
from appliance.presets import Presets
from appliance.scenario import Scenario
from appliance.server import ControlServer, SocketInUse

log = logging.getLogger("appliance")

SAVE_EVERY = 5.0          # seconds between saves of the last state (when it changed)
GOOD_AFTER = 30.0         # a start that has played this long counts as good
STATUS_EVERY = 5.0        # seconds between STATUS= updates to systemd
SAFE_PIN_VARIABLE = "APPLIANCE_SIM_HELD_PINS"   # simulated pins held low at power-on


@dataclass
class ServiceOptions:
    config_path: Path | None
    state_dir: Path
    socket: Path | None
    output: RealtimeOutput
    simulate: bool
    overrides: dict[str, float] = field(default_factory=dict)
    scenario: Scenario | None = None
    record: Path | None = None
    seconds: float | None = None
    force_safe: bool = False
    safe_pin: int = 26


class LogRing(logging.Handler):
    """The last lines logged, for the `logs` command."""

    def __init__(self, size: int = 1000) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Service:
    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.safe_mode = False
        self.reasons: list[str] = []
        self.presets = Presets(options.state_dir / "presets", PARAMETERS)
        self.state_path = options.state_dir / "state.json"
        self.boots = BootLog(options.state_dir / "boots.json")
        self.ring = LogRing()
        self.stop = threading.Event()
        self.started = time.monotonic()
        self._reloads: queue.Queue[tuple[threading.Event, dict[str, Any]]] = queue.Queue()
        self._saved: dict[str, Any] | None = None
        self._next_save = 0.0
        self._next_status = 0.0
        self._next_ping = 0.0
        self._last_audio = -1.0
        self._ready = False
        self._good = False
        self._watchdog = notify.watchdog_interval()
        self.server: ControlServer | None = None
        self.config = Config()
        self._instrument: Instrument | None = None
        self._early_errors: list[str] = []
        self._preset_index = -1
        self.memory_locked = False
        self.persist = True                         # the state directory can be written

    # -- start ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything before sound: state directory, boot log, config, safe mode, last state."""
        logging.getLogger().addHandler(self.ring)
        directory = self.options.state_dir
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            for stale in directory.rglob(".*.tmp"):
                stale.unlink(missing_ok=True)       # a save cut short by a crash or a power cut
            looping, problem = self.boots.start()
        except OSError as exc:                      # a read-only or missing state directory: play anyway
            self.persist = False
            looping, problem = False, None
            self.error(f"state directory {directory}: {exc.strerror or exc}; "
                       "presets and the last state will not be saved")
        if problem:
            self.error(f"boot log: {problem}")
        if looping:
            self.enter_safe_mode(f"{self.boots.failures} starts in {self.boots.window / 60:g} minutes "
                                 "did not finish (a crash loop)")
        if self.options.force_safe:
            self.enter_safe_mode("asked for (--safe-mode)")
        if not self.safe_mode:
            try:
                self.config = config_module.load(self.options.config_path)
            except ConfigError as exc:
                for problem_ in exc.problems:
                    self.error(f"config: {problem_}")
                self.enter_safe_mode("the config is invalid")
        if not self.safe_mode and self._safe_button_held():
            self.enter_safe_mode(f"the safe-mode button (GPIO {self.options.safe_pin}) was held at start")
        if not self.safe_mode and not self._orchestra_compiles():
            self.enter_safe_mode("the orchestra does not compile")
        if self.safe_mode:
            self.config = Config()                  # factory defaults
        values, learned = ({}, []) if self.safe_mode else self._last_state()
        overrides = {**values, **self.options.overrides}
        self.instrument = Instrument(self.config, overrides, self.options.scenario, simulate=self.options.simulate)
        self.instrument.safe_mode = self.safe_mode
        for mapping in learned:
            self.instrument.hardware.router.add(mapping)
            self.instrument.hardware.controls.learned.append(mapping)
        self.instrument.errors[:0] = self._early_errors

    def start(self) -> None:
        """Start the sound, then the socket."""
        instrument = self.instrument
        note = lock_memory()
        self.memory_locked = note is None
        if note:
            log.info("%s", note)
        instrument.preset_action = self._preset_action
        instrument.open(self.options.output)
        if instrument.orchestra_failed:
            self.enter_safe_mode("the orchestra does not compile")
        instrument.perform(self.options.record)
        if self.options.socket is not None:
            self.server = ControlServer(self.options.socket, Commands(self))
            try:
                self.server.start()
            except SocketInUse:
                raise
            except OSError as exc:
                self.server = None
                instrument.warnings.append(f"control socket {self.options.socket} not available: {exc}")
                log.warning("control socket %s not available: %s", self.options.socket, exc)

    def run(self) -> None:
        self.instrument.run(self.options.seconds, self.stop, on_tick=self._tick)

    def close(self) -> None:
        notify.notify("STOPPING=1")
        if self.server is not None:
            self.server.close()
        instrument = self.instrument
        if not self.safe_mode:
            self._save_state(force=True)
        if instrument.engine.is_open:
            self._mark_good()                       # a clean stop is not a crash
        instrument.close()
        logging.getLogger().removeHandler(self.ring)

    # -- safe mode ------------------------------------------------------------------

    def enter_safe_mode(self, reason: str) -> None:
        log.error("SAFE MODE: %s; playing factory defaults", reason)
        self.safe_mode = True
        self.reasons.append(reason)
        if self._instrument is not None:
            self._instrument.safe_mode = True
        self.error(f"safe mode: {reason}")

    def _orchestra_compiles(self) -> bool:
        """Compile the configured orchestra once, without sound (the default one is trusted)."""
        path = self.config.orchestra_path()
        if path.resolve() == paths.default_orchestra().resolve():
            return True
        try:
            check_orchestra(Orchestra.load(path), layout_of(self.config))
        except OrchestraError as exc:
            self.error(str(exc))
            return False
        return True

    def _safe_button_held(self) -> bool:
        """The safe-mode button (pulled up, pressed = low) held while starting."""
        if self.options.simulate:
            held = os.environ.get(SAFE_PIN_VARIABLE, "")
            return str(self.options.safe_pin) in held.replace(",", " ").split()
        try:
            from gpiozero import Button

            from appliance.gpio import real_factory

            button = Button(self.options.safe_pin, pull_up=True, pin_factory=real_factory())
        except Exception:   # no GPIO on this board: there is no button to hold
            return False
        try:
            return bool(button.is_pressed)
        finally:
            button.close()

    # -- state ----------------------------------------------------------------------

    def _last_state(self) -> tuple[dict[str, float], list[Mapping]]:
        loaded = state.load(self.state_path, "state")
        if loaded.problem:
            self.error(f"last state: {loaded.problem}")
        data = loaded.data or {}
        values: dict[str, float] = {}
        for name, raw in dict(data.get("params", {})).items():
            try:
                values[name] = PARAMETERS.spec(name).coerce(raw)
            except ParamError as exc:
                self.error(f"last state: {exc} (factory value kept)")
        learned = []
        for raw in data.get("learned", []):
            try:
                learned.append(Mapping(**raw))
            except TypeError as exc:
                self.error(f"last state: a learned mapping is unreadable ({exc})")
        self._saved = self._state_now(values, learned)
        return values, learned

    def _state_now(self, values: dict[str, float], learned: list[Mapping]) -> dict[str, Any]:
        return {"params": PARAMETERS.external(values),
                "learned": [{k: v for k, v in vars(m).items()} for m in learned]}

    def _save_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.persist or (not force and now < self._next_save):
            return
        self._next_save = now + SAVE_EVERY
        current = self._state_now(self.instrument.params.snapshot(), self.instrument.hardware.learned())
        if current != self._saved:
            try:
                state.save(self.state_path, "state", current)
                self._saved = current
            except OSError as exc:
                self.error(f"cannot save the last state: {exc}")

    def _preset_action(self, name: str, argument: int, source: str) -> None:
        """preset (a program change: its number picks the preset), preset_next, preset_prev."""
        names = self.presets.names()
        if not names:
            log.warning("%s: no presets saved yet", source)
            return
        if name == "preset":
            if argument >= len(names):
                log.warning("%s: program %d, but there are only %d presets", source, argument, len(names))
                return
            self._preset_index = argument
        elif self._preset_index < 0:
            self._preset_index = 0 if name == "preset_next" else len(names) - 1
        else:
            step = 1 if name == "preset_next" else -1
            self._preset_index = (self._preset_index + step) % len(names)
        self.load_preset(names[self._preset_index], source)

    def load_preset(self, name: str, source: str) -> list[str]:
        values, problems = self.presets.load(name)
        for key, value in values.items():
            self.instrument.changes.put(key, value, f"preset {name} ({source})")
        self.instrument.inbox.wake()
        for problem in problems:
            log.warning("%s", problem)
        return problems

    # -- the control loop's extra work ------------------------------------------------

    def _tick(self) -> None:
        instrument = self.instrument
        audio = instrument.audio_time()
        now = time.monotonic()
        if not self._ready:
            if audio <= 0:
                return                              # not playing yet: nothing to tell systemd
            self._ready = True
            notify.notify("READY=1", f"STATUS={self.status_line()}")
            self._next_status = now + STATUS_EVERY
        if self._watchdog is not None and now >= self._next_ping:
            if audio > self._last_audio:            # the audio engine advanced: all is well
                notify.notify("WATCHDOG=1")
                self._next_ping = now + self._watchdog
            self._last_audio = audio
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY
            notify.notify(f"STATUS={self.status_line()}")
        if not self._good and now - self.started >= GOOD_AFTER:
            self._mark_good()
        if not self.safe_mode:
            self._save_state()
        while not self._reloads.empty():
            done, box = self._reloads.get_nowait()
            try:
                box["changed"] = self._reload()
            except ApplianceError as exc:
                box["error"] = exc
            done.set()

    def _mark_good(self) -> None:
        if not self._good and self.persist:
            self._good = True
            try:
                self.boots.good()
            except OSError as exc:
                self.error(f"cannot write the boot log: {exc}")

    # -- reload -------------------------------------------------------------------------

    def request_reload(self, timeout: float = 20.0) -> list[str]:
        """Ask the control loop to reload the config; wait for the outcome."""
        done, box = threading.Event(), {}
        self._reloads.put((done, box))
        self.instrument.inbox.wake()
        if not done.wait(timeout):
            raise ApplianceError("the reload did not finish in time")
        if "error" in box:
            raise box["error"]
        return box["changed"]

    def _reload(self) -> list[str]:
        if self.safe_mode and self.options.config_path is None:
            raise ApplianceError("safe mode with no config file: nothing to reload")
        new = config_module.load(self.options.config_path)     # ConfigError: refused, the old one kept
        changed = self.instrument.reconfigure(new)
        self.config = new
        if self.safe_mode:
            self.safe_mode = False
            self.instrument.safe_mode = False
            changed.append("left safe mode")
        log.info("reloaded %s: %s", self.options.config_path, ", ".join(changed) or "nothing changed")
        return changed

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        instrument = self.instrument
        stats: Stats = instrument.stats()
        beats = instrument.layout.beats_per_bar
        bar, beat = divmod(max(stats.beats - 1, 0), beats)
        return {
            "tempo": round(stats.tempo, 2), "bar": bar + 1, "beat": beat + 1,
            "transport": "playing" if stats.running else "stopped",
            "notes": stats.notes, "late_notes": stats.late_notes, "xruns": stats.xruns,
            "cpu_percent": round(stats.cpu_percent, 1), "temperature_c": temperature(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "safe_mode": self.safe_mode, "safe_mode_reasons": list(self.reasons),
            "last_error": instrument.errors[-1] if instrument.errors else None,
            "audio": instrument.report()["audio"], "orchestra": str(instrument.orchestra),
            "midi": stats.midi, "midi_devices": sorted(instrument.hardware.midi.inputs),
            "gpio": instrument.hardware.gpio_status, "realtime_priority": instrument.engine.realtime,
            "memory_locked": self.memory_locked,
            "presets": self.presets.names(),
        }

    def status_line(self) -> str:
        s = self.status()
        safe = " SAFE MODE" if s["safe_mode"] else ""
        return (f"{s['tempo']:.1f} BPM bar {s['bar']}:{s['beat']} notes {s['notes']} late {s['late_notes']} "
                f"xruns {s['xruns']} CPU {s['cpu_percent']:.0f}%{safe}")

    def log_lines(self, count: int) -> list[str]:
        return list(self.ring.lines)[-count:]

    def error(self, message: str) -> None:
        """An error for the log, the status and the report (kept until the instrument exists)."""
        if self._instrument is not None:
            self._instrument.error(message)
        else:
            log.error("%s", message)
            self._early_errors.append(message)

    @property
    def instrument(self) -> Instrument:
        if self._instrument is None:
            raise ApplianceError("the instrument is not prepared yet")
        return self._instrument

    @instrument.setter
    def instrument(self, value: Instrument) -> None:
        self._instrument = value


def temperature() -> float | None:
    """The SoC temperature in degrees Celsius, where the kernel tells it."""
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000, 1)
    except (OSError, ValueError):
        return None
