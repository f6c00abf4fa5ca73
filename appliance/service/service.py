"""`appliance run`: the instrument as a service.

Around the Instrument it adds what a box on its own needs, each in a module
of its own: safe mode (safe_mode.py), the last state (last_state.py),
presets (presets.py), the boot log (boots.py), systemd's notify protocol and
watchdog (systemd.py), the control socket, OSC and the web page
(appliance/remote) and reload.
Reload, presets and the periodic work run inside the control loop, as
commands and jobs: the loop stays the only writer.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import config as config_module
from appliance.config.scenario import Scenario
from appliance.config.schema import listen_address
from appliance.controls.inbox import Command, LoadPreset, Record, Reload, Reply, SetParam
from appliance.engine.engine import RealtimeOutput
from appliance.engine.rtprio import lock_memory, start_thread
from appliance.errors import ApplianceError
from appliance.instrument.instrument import Instrument
from appliance.params import PARAMETERS
from appliance.remote.commands import Commands
from appliance.remote.server import ControlServer, SocketInUse
from appliance.service import safe_mode
from appliance.service.boots import BootLog
from appliance.service.last_state import LastState
from appliance.service.logring import LogRing
from appliance.service.presets import PresetRecall, Presets
from appliance.service.recordings import Recordings
from appliance.service.systemd import Notifier, notify

if TYPE_CHECKING:
    from appliance.remote.announce import Announcer
    from appliance.remote.osc import OscServer
    from appliance.remote.web import WebServer

log = logging.getLogger("appliance")

GOOD_AFTER = 30.0         # a start that has played this long counts as good


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


class Service:
    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.safe_mode = False
        self.reasons: list[str] = []
        self.presets = Presets(options.state_dir / "presets", PARAMETERS)
        self.stored = {"preset": self.presets, "scene": Presets(options.state_dir / "scenes", PARAMETERS, "scene")}
        self.last_state = LastState(options.state_dir / "state.json", self.error)
        self.boots = BootLog(options.state_dir / "boots.json")
        self.ring = LogRing()
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.server: ControlServer | None = None
        self.osc: OscServer | None = None
        self.web: WebServer | None = None
        self.announcer: Announcer | None = None
        self._restarting: threading.Thread | None = None
        self.memory_locked = False
        self.persist = True                         # the state directory can be written
        self._instrument: Instrument | None = None
        self._early_errors: list[str] = []
        self._good = False
        self._errors_before = 0                     # errors up to here are not shown as the last one

    # -- start ---------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything before sound: state directory, boot log, config, safe mode, last state."""
        logging.getLogger().addHandler(self.ring)
        options = self.options
        start = safe_mode.decide(options.config_path, options.state_dir, self.boots, force=options.force_safe,
                                 simulate=options.simulate, safe_pin=options.safe_pin)
        self._early_errors += start.errors
        self.safe_mode, self.reasons, self.persist = start.safe_mode, start.reasons, start.persist
        self.config = start.config
        self.last_state.enabled = self.persist and not self.safe_mode
        values, learned = self.last_state.load()
        if self.safe_mode:
            values = {}                             # factory music; the learned knobs stay
        instrument = Instrument(self.config, {**values, **options.overrides}, options.scenario,
                                simulate=options.simulate)
        instrument.safe_mode = self.safe_mode
        instrument.hardware.restore_learned(learned)
        instrument.errors[:0] = self._early_errors
        self._instrument = instrument
        self._wire(instrument)

    def _wire(self, instrument: Instrument) -> None:
        """The service's commands and periodic work, carried out by the control loop."""
        loop = instrument.loop
        def at_once(values: dict[str, float], source: str) -> None:
            for name, value in values.items():
                loop.dispatch(SetParam(name, value, source))

        recalls = {"preset": PresetRecall(self.presets, at_once),
                   "scene": PresetRecall(self.stored["scene"], loop.bar_changes.schedule)}
        loop.handle(LoadPreset, lambda command: recalls[command.kind].load(command))
        loop.handle(Reload, self._reload)
        self.recordings = Recordings(self.options.state_dir / "recordings", instrument)
        loop.handle(Record, self.recordings.command)
        loop.actions["record"] = self.recordings.toggle
        for kind, recall in recalls.items():
            for action in (kind, f"{kind}_next", f"{kind}_prev"):
                loop.actions[action] = recall.step
        loop.add_job(Notifier(instrument.elapsed, self.status_line))
        loop.add_job(self.last_state.job(lambda: (instrument.params.snapshot(), instrument.hardware.learned())))
        loop.add_job(self._good_after)

    def start(self) -> None:
        """Start the sound, then OSC, the web page and the socket."""
        instrument = self.instrument
        note = lock_memory()
        self.memory_locked = note is None
        if note:
            log.info("%s", note)
        instrument.open(self.options.output)
        if instrument.orchestra_failed:
            self.enter_safe_mode("the orchestra does not compile")
        # OSC and the page before the sound: their imports (aiohttp's take seconds on a slow
        # board) and threads start while nothing is playing yet; and before the socket, so
        # that when it answers, all of it is up
        self._start_remote()
        instrument.perform(self.options.record)
        if self.options.socket is not None:
            from appliance.service.api import ServiceApi

            self.server = ControlServer(self.options.socket, Commands(ServiceApi(self)))
            try:
                self.server.start()
            except SocketInUse:
                raise
            except (ApplianceError, OSError) as exc:     # it plays without its socket, and says why
                self.server = None
                instrument.error(f"control socket {self.options.socket} not available: {exc}; "
                                 "playing without it")

    def _start_remote(self) -> None:
        """OSC and the web page, if the config listens, then their announcement on the LAN;
        without either the instrument plays on, and says why."""
        from appliance.service.api import ServiceApi

        api = ServiceApi(self)
        services: list[tuple[str, str, int]] = []
        osc_address = listen_address(self.config.osc.listen)
        if osc_address is not None:
            from appliance.remote.osc import OscServer

            self.osc = self._listening("OSC", self.config.osc.listen, OscServer(*osc_address, api))
            if self.osc is not None:
                self.instrument.loop.feedback.append(self.osc.feedback)
                log.info("OSC listening on %s:%d (UDP)", self.osc.host, self.osc.port)
                if self.config.osc.announce:
                    services.append(("_osc._udp", self.osc.host, self.osc.port))
        web_address = listen_address(self.config.web.listen)
        if web_address is not None:
            from appliance.remote import token
            from appliance.remote.web import WebServer

            secret = token.load_or_create(self.options.state_dir)
            self.web = self._listening("the web page", self.config.web.listen, WebServer(*web_address, api, secret))
            if self.web is not None:
                log.info("web page on http://%s:%d/ (`appliance web-url` prints it with its token)",
                         self.web.host, self.web.port)
                if self.config.web.announce:
                    services.append(("_http._tcp", self.web.host, self.web.port))
        services = [service for service in services if not service[1].startswith("127.")]
        if services:
            from appliance.remote.announce import Announcer

            self.announcer = Announcer(f"appliance on {socket.gethostname()}", services)
            self.announcer.start()

    def _listening(self, what: str, listen: str, server: Any) -> Any:
        try:
            server.start()
        except OSError as exc:
            self.instrument.error(f"{what} on {listen} not available: {exc.strerror or exc}; playing without it")
            return None
        return server

    def _restart_remote(self) -> None:
        self._stop_remote()
        self._start_remote()

    def _settle_remote(self, timeout: float | None = None) -> None:
        """Wait for a restart of OSC and the page that a reload began."""
        restarting = self._restarting
        if restarting is not None:
            restarting.join(timeout)

    def _stop_remote(self) -> None:
        if self.announcer is not None:
            self.announcer.close()
            self.announcer = None
        if self.osc is not None:
            self.instrument.loop.feedback.remove(self.osc.feedback)
            self.osc.close()
            self.osc = None
        if self.web is not None:
            self.web.close()
            self.web = None

    def run(self, on_status: Any = None) -> None:
        """Run the control loop on a thread of its own, named so `ps -L` tells it apart,
        while this (main) thread stays free for signals; returns when it ends."""
        failure: list[BaseException] = []

        def loop() -> None:
            try:
                self.instrument.run(self.options.seconds, self.stop, on_status=on_status)
            except BaseException as exc:     # re-raised in the main thread
                failure.append(exc)

        start_thread("control-loop", loop, daemon=False).join()
        if failure:
            raise failure[0]

    def request_stop(self) -> None:
        self.stop.set()
        if self._instrument is not None:
            self._instrument.inbox.wake()

    def submit(self, command: Command, timeout: float | None = None) -> Any:
        """Put a command in the loop's inbox; with a timeout, wait for its answer."""
        if timeout is None:
            self.instrument.submit(command)
            return None
        reply = Reply()
        self.instrument.submit(dataclasses.replace(command, reply=reply))
        answer = reply.wait(timeout)
        if isinstance(command, Reload):
            self._settle_remote(timeout)
        return answer

    def close(self) -> None:
        notify("STOPPING=1")
        if self.server is not None:
            self.server.close()
        self._settle_remote()
        self._stop_remote()
        instrument = self.instrument
        self.last_state.save(instrument.params.snapshot(), instrument.hardware.learned())
        self.last_state.close()
        if instrument.engine.is_open:
            self._mark_good()                       # a clean stop is not a crash
        instrument.close()
        logging.getLogger().removeHandler(self.ring)

    # -- safe mode and the boot log -------------------------------------------------------

    def enter_safe_mode(self, reason: str) -> None:
        log.error("SAFE MODE: %s; playing factory defaults", reason)
        self.safe_mode = True
        self.reasons.append(reason)
        self.last_state.enabled = False
        if self._instrument is not None:
            self._instrument.safe_mode = True
        self.error(f"safe mode: {reason}")

    def _leave_safe_mode(self) -> None:
        """Back to the musician's setup: the last state saved before safe mode (never written
        over during it) comes back, and saving resumes."""
        instrument = self.instrument
        self.safe_mode = instrument.safe_mode = False
        values, _ = self.last_state.load()
        for name, value in values.items():
            instrument.submit(SetParam(name, value, "last state"))    # after the config's own
        self.last_state.enabled = self.persist
        self._errors_before = len(instrument.errors)     # status: the safe-mode errors are history

    def _good_after(self, now: float) -> float:
        if now - self.started < GOOD_AFTER:
            return self.started + GOOD_AFTER
        self._mark_good()
        return float("inf")

    def _mark_good(self) -> None:
        if not self._good and self.persist:
            self._good = True
            try:
                self.boots.good()
            except OSError as exc:
                self.error(f"cannot write the boot log: {exc}")

    # -- reload (in the control loop) ------------------------------------------------------

    def _reload(self, command: Reload) -> list[str]:
        if self.safe_mode and self.options.config_path is None:
            raise ApplianceError("safe mode with no config file: nothing to reload")
        new = config_module.load(self.options.config_path)     # ConfigError: refused, the old one kept
        changed = self.instrument.reconfigure(new)
        old, self.config = self.config, new
        if (old.osc, old.web) != (new.osc, new.web):
            # on a thread of its own: a port, a thread and zeroconf's goodbye never hold the
            # control loop (submit() waits for it before it answers the reload)
            self._restarting = start_thread("remote-restart", self._restart_remote)
            changed.append("OSC and the web page")
        if self.safe_mode:
            self._leave_safe_mode()
            changed.append("left safe mode (the saved setup is back)")
        log.info("reloaded %s: %s", self.options.config_path, ", ".join(changed) or "nothing changed")
        return changed

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        instrument = self.instrument
        stats = instrument.stats()
        beats = instrument.layout.beats_per_bar
        bar, beat = divmod(max(stats.beats - 1, 0), beats)
        return {
            "tempo": round(stats.tempo, 2), "bar": bar + 1, "beat": beat + 1,
            "transport": "playing" if stats.running else "stopped",
            "notes": stats.notes, "late_notes": stats.late_notes, "xruns": stats.xruns,
            "audio_lag_ms": stats.audio_lag_ms, "audio_stalls": instrument.audio_watch.stalls,
            "cpu_percent": round(stats.cpu_percent, 1), "temperature_c": temperature(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "safe_mode": self.safe_mode, "safe_mode_reasons": list(self.reasons),
            "last_error": instrument.errors[-1] if len(instrument.errors) > self._errors_before else None,
            "audio": instrument.driver.name if instrument.driver else None,
            "orchestra": str(instrument.orchestra),
            "midi": stats.midi, "midi_devices": sorted(instrument.hardware.midi.inputs),
            "gpio": instrument.hardware.gpio_status, "realtime_priority": instrument.engine.realtime,
            "memory_locked": self.memory_locked,
            "presets": self.presets.names(),
            "scenes": self.stored["scene"].names(),
            "osc": self.osc.stats() if self.osc is not None else None,
            "web": self.web.stats() if self.web is not None else None,
            "recording": self.recordings.status(),
            "announced": self.announcer.announced if self.announcer is not None else [],
            "scene_pending": self._scene_pending(instrument),
            "loop_wakes": instrument.loop.wakes,
            "sync": instrument.config.sync,
            "sync_error_ms": instrument.sync_error_ms,
            "link": instrument.hardware.link_status,
            "link_peers": instrument.hardware.link.peers if instrument.hardware.link is not None else None,
            "music": instrument.music(),
        }

    @staticmethod
    def _scene_pending(instrument: Instrument) -> dict[str, Any] | None:
        change = instrument.loop.bar_changes.pending
        if change is None:
            return None
        return {"bar": change.step // instrument.generator.bar_steps + 1, "source": change.source}

    def status_line(self) -> str:
        s = self.status()
        safe = " SAFE MODE" if s["safe_mode"] else ""
        music = s["music"]
        where = (f" {music['section']} {music['bar_in_section']}/{music['section_bars']} {music['chord']}"
                 if music else "")
        return (f"{s['tempo']:.1f} BPM bar {s['bar']}:{s['beat']}{where} notes {s['notes']} late {s['late_notes']} "
                f"xruns {s['xruns']} CPU {s['cpu_percent']:.0f}%{safe}")

    def error(self, message: str) -> None:
        """An error for the log, the status and the report (kept until the instrument exists)."""
        if self._instrument is not None:
            self._instrument.error(message)
        else:
            log.error("%s", message)
            self._early_errors.append(message)

    def report(self) -> dict[str, Any] | None:
        """The report of the run (None if it never got as far as an instrument)."""
        return self._instrument.report() if self._instrument is not None else None

    @property
    def instrument(self) -> Instrument:
        if self._instrument is None:
            raise ApplianceError("the instrument is not prepared yet")
        return self._instrument


def temperature() -> float | None:
    """The SoC temperature in degrees Celsius, where the kernel tells it."""
    try:
        return round(int(Path("/sys/class/thermal/thermal_zone0/temp").read_text()) / 1000, 1)
    except (OSError, ValueError):
        return None
