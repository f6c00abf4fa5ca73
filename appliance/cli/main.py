"""The `appliance` command: play, render, and control a running instrument.

This module and the control verbs (control.py) import nothing of Csound,
numpy or the engine: a musician typing `appliance get tempo` over SSH waits
for one line over a socket, not for the audio stack to load.  The verbs
that play (play.py) import it when they run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.errors import ApplianceError, ConfigError, ParamError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Verb = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(_options_first(list(sys.argv[1:] if argv is None else argv)))
    try:
        return _verb(args.verb)(args)
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


def _verb(name: str) -> Verb:
    """The function for a verb, importing the heavy module only for the verbs that play."""
    if name in ("run", "render", "check-config", "install", "uninstall"):
        from appliance.cli import play

        return getattr(play, name.replace("-", "_"))
    from appliance.cli import control

    return getattr(control, name)


# -- the parser ---------------------------------------------------------------------

_GLOBAL_OPTIONS = {"--socket": 1, "-v": 0, "--verbose": 0}


def _options_first(argv: list[str]) -> list[str]:
    """Move the options every verb shares (--socket PATH, -v) in front of the verb, so
    they may stand anywhere: `appliance preset save --socket P NAME` works as written.
    (argparse cannot take an option between a subcommand's positionals.)"""
    front: list[str] = []
    rest: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            rest += [word, *words]
            break
        name = word.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS or (word.startswith("-v") and set(word[1:]) == {"v"}):
            front.append(word)
            if _GLOBAL_OPTIONS.get(name) and "=" not in word:
                front.append(next(words, ""))
        else:
            rest.append(word)
    return front + rest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="A generative instrument.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log (twice: Csound's too)")
    parser.add_argument("--socket", type=Path, metavar="PATH",
                        help="the control socket (default /run/appliance/control.sock, or per user); "
                             "may be given after the verb too")
    verbs = parser.add_subparsers(required=True, metavar="COMMAND", dest="verb")

    run = verbs.add_parser("run", help="play in real time (the service)")
    _playing(run)
    run.add_argument("--simulate", action="store_true",
                     help="simulated hardware: null audio, simulated MIDI and GPIO")
    run.add_argument("--record", type=Path, metavar="FILE.wav", help="also write what is played to a file")
    run.add_argument("--seconds", type=_positive, metavar="N", help="stop after N seconds")
    run.add_argument("--state-dir", type=Path, metavar="DIR",
                     help="where presets and the last state live (default /var/lib/appliance or ~/.local/state)")
    run.add_argument("--safe-mode", action="store_true", help="start on factory defaults")
    run.add_argument("--no-socket", action="store_true", help="no control socket")

    render = verbs.add_parser("render", help="render to a WAV file, faster than real time")
    _playing(render)
    render.add_argument("--seconds", type=_positive, required=True, metavar="N")
    render.add_argument("--out", type=Path, required=True, metavar="FILE.wav")
    render.add_argument("--seed", type=int, metavar="N", help="the generator's seed (same as --set seed=N)")

    check = verbs.add_parser("check-config", help="check a config file without running")
    check.add_argument("path", nargs="?", type=Path, help="default: the config run would use")

    status = verbs.add_parser("status", help="what the running instrument is doing")
    status.add_argument("--json", action="store_true")
    verbs.add_parser("get", help="a parameter's value").add_argument("name")
    set_ = verbs.add_parser("set", help="set a parameter")
    set_.add_argument("name")
    set_.add_argument("value")
    verbs.add_parser("params", help="every parameter: value, range, default")
    preset = verbs.add_parser("preset", help="save, load, list or delete presets")
    preset.add_argument("action", choices=["save", "load", "list", "delete"])
    preset.add_argument("name", nargs="?")
    learn = verbs.add_parser("learn", help="map the next MIDI control moved to a parameter or action")
    learn.add_argument("name")
    verbs.add_parser("reload", help="apply the changed config file (also: SIGHUP)")
    verbs.add_parser("midi", help="MIDI devices and mappings")
    logs = verbs.add_parser("logs", help="the instrument's recent log")
    logs.add_argument("-n", "--lines", type=int, default=100)

    for name, help_text in (("install", "install as a service (as root)"), ("uninstall", "undo install (as root)")):
        installing = verbs.add_parser(name, help=help_text)
        installing.add_argument("--root", type=Path, default=Path("/"), help="install under this root (default /)")
        installing.add_argument("--name", default="appliance", help="service, user and directory name")
        if name == "uninstall":
            installing.add_argument("--purge", action="store_true", help="also remove config, state and the user")
    return parser


def _playing(parser: argparse.ArgumentParser) -> None:
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
