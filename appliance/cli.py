"""The `appliance` command: play, render, and control a running instrument."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance import audio, client, config, paths
from appliance.atomic import write_json
from appliance.engine.engine import RealtimeOutput
from appliance.errors import ApplianceError, ConfigError, OrchestraError, ParamError
from appliance.instrument import render_to
from appliance.params import PARAMETERS
from appliance.scenario import Scenario
from appliance.status import StatusAwareHandler, StatusLine, format_status

log = logging.getLogger("appliance")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_JOURNAL_LEVELS = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    status = StatusLine()
    _setup_logging(args.verbose, status)
    try:
        return args.command(args, status)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


# -- the parser ---------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="A generative instrument.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log (twice: Csound's too)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = _command(commands, "run", _run, "play in real time (the service)")
    _playing(run)
    run.add_argument("--simulate", action="store_true",
                     help="simulated hardware: null audio, simulated MIDI and GPIO")
    run.add_argument("--record", type=Path, metavar="FILE.wav", help="also write what is played to a file")
    run.add_argument("--seconds", type=_positive, metavar="N", help="stop after N seconds")
    run.add_argument("--state-dir", type=Path, metavar="DIR",
                     help="where presets and the last state live (default /var/lib/appliance or ~/.local/state)")
    run.add_argument("--safe-mode", action="store_true", help="start on factory defaults")
    run.add_argument("--no-socket", action="store_true", help="no control socket")

    render = _command(commands, "render", _render, "render to a WAV file, faster than real time")
    _playing(render)
    render.add_argument("--seconds", type=_positive, required=True, metavar="N")
    render.add_argument("--out", type=Path, required=True, metavar="FILE.wav")
    render.add_argument("--seed", type=int, metavar="N", help="the generator's seed (same as --set seed=N)")

    check = _command(commands, "check-config", _check_config, "check a config file without running")
    check.add_argument("path", nargs="?", type=Path, help="default: the config run would use")

    status = _command(commands, "status", _status, "what the running instrument is doing")
    status.add_argument("--json", action="store_true")
    get = _command(commands, "get", _get, "a parameter's value")
    get.add_argument("name")
    set_ = _command(commands, "set", _set, "set a parameter")
    set_.add_argument("name")
    set_.add_argument("value")
    _command(commands, "params", _params, "every parameter: value, range, default")
    preset = _command(commands, "preset", _preset, "save, load, list or delete presets")
    preset.add_argument("action", choices=["save", "load", "list", "delete"])
    preset.add_argument("name", nargs="?")
    learn = _command(commands, "learn", _learn, "map the next MIDI control moved to a parameter or action")
    learn.add_argument("name")
    _command(commands, "reload", _reload, "apply the changed config file (also: SIGHUP)")
    _command(commands, "midi", _midi, "MIDI devices and mappings")
    logs = _command(commands, "logs", _logs, "the instrument's recent log")
    logs.add_argument("-n", "--lines", type=int, default=100)

    install = _command(commands, "install", _install, "install as a service (as root)")
    _installing(install)
    uninstall = _command(commands, "uninstall", _uninstall, "undo install (as root)")
    _installing(uninstall)
    uninstall.add_argument("--purge", action="store_true", help="also remove config, state and the user")
    return parser


def _command(commands: Any, name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument("--socket", type=Path, metavar="PATH",
                        help="the control socket (default /run/appliance/control.sock, or per user)")
    parser.set_defaults(command=handler)
    return parser


def _playing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="config file (default: config/appliance.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets",
                        help="set a parameter at start (repeatable)")
    parser.add_argument("--scenario", type=Path, metavar="FILE.toml", help="script the simulated hardware")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write a report at exit")


def _installing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=Path("/"), help="install under this root (default /)")
    parser.add_argument("--name", default="appliance", help="service, user and directory name")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a number above 0")
    return value


def _setup_logging(verbose: int, status: StatusLine) -> None:
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


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_JOURNAL_LEVELS.get(record.levelno, 6)}>{super().format(record)}"


# -- playing --------------------------------------------------------------------------

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


def _run(args: argparse.Namespace, status: StatusLine) -> int:
    from appliance.service import Service, ServiceOptions

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
        socket=None if args.no_socket else (args.socket or paths.default_socket()),
        output=output, simulate=choice.simulated, overrides=overrides, scenario=scenario,
        record=args.record, seconds=args.seconds, force_safe=args.safe_mode))

    def request_stop(*_: object) -> None:
        service.stop.set()
        if service._instrument is not None:
            service.instrument.inbox.wake()

    def request_reload(*_: object) -> None:
        import threading

        threading.Thread(target=_reload_quietly, args=(service,), daemon=True).start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    signal.signal(signal.SIGHUP, request_reload)
    service.prepare()
    show = status.enabled
    try:
        service.start()
        instrument = service.instrument
        log.info("playing (%s audio, orchestra %s)", output.backend, instrument.orchestra)
        instrument.run(args.seconds, service.stop,
                       on_status=(lambda s: status.show(format_status(s, instrument.layout.beats_per_bar)))
                       if show else None,
                       on_tick=service._tick)
    finally:
        service.close()
        status.clear()
        if args.report and service._instrument is not None:
            write_json(args.report, service.instrument.report())
    return EXIT_OK


def _reload_quietly(service: Any) -> None:
    try:
        service.request_reload()
    except ApplianceError as exc:
        log.error("reload refused: %s", exc)


def _render(args: argparse.Namespace, status: StatusLine) -> int:
    settings = config.load(_config_path(args))
    scenario = Scenario.load(args.scenario) if args.scenario else None
    overrides = _overrides(args.sets, args.seed)
    started = time.monotonic()
    instrument = render_to(settings, args.out, args.seconds, overrides, scenario)
    log.info("rendered %.1f s in %.2f s to %s", args.seconds, time.monotonic() - started, args.out)
    if args.report:
        write_json(args.report, instrument.report())
    return EXIT_OK


def _check_config(args: argparse.Namespace, status: StatusLine) -> int:
    from appliance.engine.engine import check_orchestra
    from appliance.engine.orchestra import ClockLayout, Orchestra

    path = args.path if args.path is not None else config.default_path()
    if path is None:
        print("no config file: the factory defaults are used")
        return EXIT_OK
    settings = config.load(path)          # ConfigError: every problem, with its line
    tempo = PARAMETERS.spec("tempo")
    layout = ClockLayout(settings.audio.sample_rate, settings.audio.ksmps, settings.clock.steps_per_beat,
                         settings.clock.beats_per_bar, tempo.minimum, tempo.maximum)
    try:
        check_orchestra(Orchestra.load(settings.orchestra_path()), layout)
    except OrchestraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{path}: OK ({len(settings.midi.map)} MIDI mappings, {len(settings.gpio.encoder)} encoders, "
          f"{len(settings.gpio.button)} buttons, orchestra {settings.orchestra_path()})")
    return EXIT_OK


# -- talking to the running instrument ------------------------------------------------

def _ask(args: argparse.Namespace, **command: Any) -> dict[str, Any]:
    response = client.request(args.socket or paths.client_socket(), command)
    if not response.get("ok"):
        raise ApplianceError(response.get("error", "the instrument refused"))
    return response


def _status(args: argparse.Namespace, status: StatusLine) -> int:
    result = _ask(args, cmd="status")["status"]
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    lines = [
        f"{result['transport']}, {result['tempo']:.1f} BPM, bar {result['bar']}:{result['beat']}",
        f"notes {result['notes']}, late {result['late_notes']}, xruns {result['xruns']}, "
        f"CPU {result['cpu_percent']}%"
        + (f", {result['temperature_c']} °C" if result["temperature_c"] is not None else ""),
        f"audio {result['audio']}, orchestra {result['orchestra']}",
        f"{result['midi']}", f"{result['gpio']}",
        f"up {result['uptime_s']:.0f} s" + (", SAFE MODE: " + "; ".join(result["safe_mode_reasons"])
                                            if result["safe_mode"] else ""),
    ]
    if result["last_error"]:
        lines.append(f"last error: {result['last_error']}")
    print("\n".join(lines))
    return EXIT_OK


def _get(args: argparse.Namespace, status: StatusLine) -> int:
    PARAMETERS.spec(args.name)                      # a misspelt name is caught here, with a suggestion
    print(_ask(args, cmd="get", name=args.name)["text"])
    return EXIT_OK


def _set(args: argparse.Namespace, status: StatusLine) -> int:
    PARAMETERS.spec(args.name).parse(args.value)    # out of range: refused here, with the range
    print(_ask(args, cmd="set", name=args.name, value=args.value)["text"])
    return EXIT_OK


def _params(args: argparse.Namespace, status: StatusLine) -> int:
    for p in _ask(args, cmd="params")["params"]:
        print(f"{p['name']:<12} {p['text']:<14} {p['range']:<40} {p['doc']}")
    return EXIT_OK


def _preset(args: argparse.Namespace, status: StatusLine) -> int:
    if args.action != "list" and not args.name:
        raise ParamError(f"preset {args.action} needs a NAME")
    result = _ask(args, cmd="preset", action=args.action, name=args.name)
    if args.action == "list":
        print("\n".join(result["presets"]) if result["presets"] else "(no presets)")
    else:
        print(f"{args.action}: {args.name}")
        for warning in result.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def _learn(args: argparse.Namespace, status: StatusLine) -> int:
    result = _ask(args, cmd="learn", name=args.name)
    print(f"learning {result['learning']}: {result['hint']}")
    return EXIT_OK


def _reload(args: argparse.Namespace, status: StatusLine) -> int:
    changed = _ask(args, cmd="reload")["changed"]
    print("reloaded: " + (", ".join(changed) if changed else "nothing changed"))
    return EXIT_OK


def _midi(args: argparse.Namespace, status: StatusLine) -> int:
    midi = _ask(args, cmd="midi")["midi"]
    print(midi["midi"])
    for device in midi["devices"]:
        print(f"  in:  {device}")
    for device in midi["outputs"]:
        print(f"  out: {device}")
    print(f"{len(midi['mappings'])} mappings:")
    for mapping in midi["mappings"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in mapping.items()))
    return EXIT_OK


def _logs(args: argparse.Namespace, status: StatusLine) -> int:
    print("\n".join(_ask(args, cmd="logs", lines=args.lines)["lines"]))
    return EXIT_OK


# -- installing --------------------------------------------------------------------

def _install(args: argparse.Namespace, status: StatusLine) -> int:
    from appliance import install

    for line in install.install(args.root, args.name):
        print(line)
    return EXIT_OK


def _uninstall(args: argparse.Namespace, status: StatusLine) -> int:
    from appliance import install

    for line in install.uninstall(args.root, args.name, purge=args.purge):
        print(line)
    return EXIT_OK
