"""The verbs that play or prepare playing: run, render, check-config, install, uninstall.

These load the audio stack (ctcsound, numpy, the engine); main.py imports
this module only when one of them is asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from appliance import config, paths
from appliance.cli.status_line import StatusAwareHandler, StatusLine, format_status
from appliance.config.scenario import Scenario
from appliance.controls.inbox import Reload
from appliance.engine import audio
from appliance.engine.engine import RealtimeOutput
from appliance.errors import ConfigError, OrchestraError, ParamError
from appliance.instrument.instrument import render_to
from appliance.params import PARAMETERS
from appliance.service.atomic import write_json

log = logging.getLogger("appliance")

EXIT_OK, EXIT_USAGE = 0, 2
_JOURNAL_LEVELS = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def run(args: argparse.Namespace) -> int:
    from appliance.service.service import Service, ServiceOptions

    status = _setup_logging(args.verbose)
    overrides = _overrides(args.sets)
    scenario = Scenario.load(args.scenario) if args.scenario else None
    path = _config_path(args)
    # the audio choice needs the config; a broken one means factory audio settings (safe mode)
    try:
        settings = config.load(path)
    except ConfigError:
        settings = config.Config()
    choice = audio.choose(settings.audio.backend, args.simulate)
    if choice.reason:
        log.info("%s", choice.reason)
    output = RealtimeOutput(backend=choice.backend, device=settings.audio.device,
                            buffer=settings.audio.buffer, hardware_buffer=settings.audio.hardware_buffer,
                            realtime_priority=settings.engine.realtime_priority)
    service = Service(ServiceOptions(
        config_path=path, state_dir=args.state_dir or paths.default_state_dir(),
        socket=None if args.no_socket else (Path(args.socket) if args.socket else paths.default_socket()),
        output=output, simulate=choice.simulated, overrides=overrides, scenario=scenario,
        record=args.record, seconds=args.seconds, force_safe=args.safe_mode))

    def reload_on_hangup(*_: object) -> None:
        service.submit(Reload())                  # a refusal is logged by the loop

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: service.request_stop())
    service.prepare()
    signal.signal(signal.SIGHUP, reload_on_hangup)
    try:
        service.start()
        instrument = service.instrument
        log.info("playing (%s audio, orchestra %s)", output.backend, instrument.orchestra)
        beats_per_bar = instrument.layout.beats_per_bar
        show = (lambda: status.show(format_status(instrument.stats(), beats_per_bar, instrument.music()))) \
            if status.enabled else None
        service.run(on_status=show)
    finally:
        service.close()
        status.clear()
        report = service.report()
        if args.report and report is not None:
            write_json(args.report, report)
    return EXIT_OK


def render(args: argparse.Namespace) -> int:
    _setup_logging(args.verbose)
    settings = config.load(_config_path(args))
    scenario = Scenario.load(args.scenario) if args.scenario else None
    overrides = _overrides(args.sets, args.seed)
    started = time.monotonic()
    instrument = render_to(settings, args.out, args.seconds, overrides, scenario, midi=args.midi)
    log.info("rendered %.1f s in %.2f s to %s%s", args.seconds, time.monotonic() - started, args.out,
             f" and {args.midi}" if args.midi else "")
    if args.report:
        write_json(args.report, instrument.report())
    return EXIT_OK


def check_config(args: argparse.Namespace) -> int:
    from appliance.engine.engine import check_orchestra
    from appliance.engine.orchestra import Orchestra

    _setup_logging(args.verbose)
    path = args.path if args.path is not None else config.default_path()
    if path is None:
        print("no config file: the factory defaults are used")
        return EXIT_OK
    settings = config.load(path)          # ConfigError: every problem, with its line
    try:
        check_orchestra(Orchestra.load(settings.orchestra_path()), settings.clock_layout())
    except OrchestraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{path}: OK ({len(settings.midi.map)} MIDI mappings, {len(settings.gpio.encoder)} encoders, "
          f"{len(settings.gpio.button)} buttons, orchestra {settings.orchestra_path()})")
    return EXIT_OK


def install(args: argparse.Namespace) -> int:
    from appliance.service import install as installer

    for line in installer.install(args.root, args.name):
        print(line)
    return EXIT_OK


def uninstall(args: argparse.Namespace) -> int:
    from appliance.service import install as installer

    for line in installer.uninstall(args.root, args.name, purge=args.purge):
        print(line)
    return EXIT_OK


# -- helpers --------------------------------------------------------------------------

def _overrides(sets: list[str], seed: int | None = None) -> dict[str, float]:
    values = {}
    for item in sets:
        name, sep, text = item.partition("=")
        if not sep:
            raise ParamError(f"--set needs NAME=VALUE, got {item!r}")
        values[name.strip()] = PARAMETERS.spec(name.strip()).parse(text)
    if seed is not None:
        values["seed"] = PARAMETERS.spec("seed").validate(float(seed))
    return values


def _config_path(args: argparse.Namespace) -> Path | None:
    return args.config if args.config is not None else config.default_path()


def _setup_logging(verbose: int) -> StatusLine:
    status = StatusLine()
    handler = StatusAwareHandler(status)
    if os.environ.get("JOURNAL_STREAM"):
        # under systemd: the journal adds the time; "<N>" gives it the level
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO)
    logging.getLogger("appliance").setLevel(logging.INFO if verbose == 0 else logging.DEBUG)
    logging.getLogger("appliance.engine").setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)
    return status


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_JOURNAL_LEVELS.get(record.levelno, 6)}>{super().format(record)}"
