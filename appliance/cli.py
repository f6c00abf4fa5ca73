"""The `appliance` command."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from appliance import audio, config
from appliance.atomic import write_json
from appliance.engine.engine import RealtimeOutput
from appliance.errors import ApplianceError, ConfigError, ParamError
from appliance.instrument import Instrument, render_to
from appliance.params import PARAMETERS
from appliance.scenario import Scenario
from appliance.status import StatusAwareHandler, StatusLine, format_status

log = logging.getLogger("appliance")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="A generative instrument.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log (twice: Csound's too)")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="play in real time")
    _common(run)
    run.add_argument("--simulate", action="store_true",
                     help="simulated hardware: null audio, simulated MIDI and GPIO")
    run.add_argument("--record", type=Path, metavar="FILE.wav", help="also write what is played to a file")
    run.add_argument("--seconds", type=_positive, metavar="N", help="stop after N seconds")
    run.set_defaults(command=_run)

    render = commands.add_parser("render", help="render to a WAV file, faster than real time")
    _common(render)
    render.add_argument("--seconds", type=_positive, required=True, metavar="N")
    render.add_argument("--out", type=Path, required=True, metavar="FILE.wav")
    render.add_argument("--seed", type=int, metavar="N", help="the generator's seed (same as --set seed=N)")
    render.set_defaults(command=_render)

    params = commands.add_parser("params", help="list the parameters, their ranges and defaults")
    params.set_defaults(command=_params)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="config file (default: config/appliance.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets",
                        help="set a parameter at start (repeatable)")
    parser.add_argument("--scenario", type=Path, metavar="FILE.toml", help="script the simulated hardware")
    parser.add_argument("--report", type=Path, metavar="FILE.json", help="write a report at exit")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a number above 0")
    return value


def _setup_logging(verbose: int, status: StatusLine) -> None:
    handler = StatusAwareHandler(status)
    # no timestamps: the journal adds its own
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO)
    logging.getLogger("appliance").setLevel(logging.INFO if verbose == 0 else logging.DEBUG)
    logging.getLogger("appliance.engine").setLevel(logging.WARNING if verbose < 2 else logging.DEBUG)


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


def _load(args: argparse.Namespace) -> tuple[config.Config, Scenario | None]:
    path = args.config if args.config is not None else config.default_path()
    settings = config.load(path)
    scenario = Scenario.load(args.scenario) if args.scenario else None
    return settings, scenario


def _run(args: argparse.Namespace, status: StatusLine) -> int:
    settings, scenario = _load(args)
    overrides = _overrides(args.sets)
    choice = audio.choose(settings.audio.backend, args.simulate)
    if choice.reason:
        log.info("%s", choice.reason)
    output = RealtimeOutput(backend=choice.backend, device=settings.audio.device,
                            buffer=settings.audio.buffer, hardware_buffer=settings.audio.hardware_buffer,
                            realtime_priority=settings.engine.realtime_priority)
    instrument = Instrument(settings, overrides, scenario)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    show = status.enabled
    try:
        instrument.open(output)
        instrument.perform(args.record)
        log.info("playing (%s audio, orchestra %s)", choice.backend, instrument.orchestra)
        instrument.run(args.seconds, stop,
                       on_status=(lambda s: status.show(format_status(s, instrument.layout.beats_per_bar)))
                       if show else None)
    finally:
        instrument.close()
        status.clear()
        if args.report:
            write_json(args.report, instrument.report())
    return EXIT_OK


def _render(args: argparse.Namespace, status: StatusLine) -> int:
    settings, scenario = _load(args)
    overrides = _overrides(args.sets, args.seed)
    started = time.monotonic()
    instrument = render_to(settings, args.out, args.seconds, overrides, scenario)
    log.info("rendered %.1f s in %.2f s to %s", args.seconds, time.monotonic() - started, args.out)
    if args.report:
        write_json(args.report, instrument.report())
    return EXIT_OK


def _params(args: argparse.Namespace, status: StatusLine) -> int:
    for spec in PARAMETERS:
        print(f"{spec.name:<12} {spec.range_text:<40} default {spec.format(spec.default):<12} {spec.doc}")
    return EXIT_OK
