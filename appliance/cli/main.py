"""The `appliance` command: play, render, and control a running instrument.

This module and the control verbs (control.py) import nothing of Csound,
numpy or the engine: a musician typing `appliance get tempo` over SSH waits
for one line over a socket, not for the audio stack to load.  The verbs
that play (play.py) import it when they run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from appliance.errors import ApplianceError, ConfigError, ParamError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

TYPE_CHECKING = False           # typing and pathlib cost a quick verb 7 ms at start
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

Verb = Callable[[argparse.Namespace], int]
_PLAYING = ("run", "render", "check-config", "install", "uninstall")    # the verbs that load the audio stack


def main(argv: Sequence[str] | None = None) -> int:
    words = _options_first(list(sys.argv[1:] if argv is None else argv))
    args = _parser(words).parse_args(words)
    code = _answer(args)
    if argv is None and (args.verb not in _PLAYING or _abandoned_jack_clients()):
        _leave_now(code)
    return code


def _abandoned_jack_clients() -> bool:
    """Clients of a JACK server that went away, which must never be freed (midi/backends.py)."""
    backends = sys.modules.get("appliance.controls.midi.backends")
    return bool(backends is not None and backends.ABANDONED)


def _leave_now(code: int) -> None:
    """End without the interpreter's tear-down of every module: for a quick verb, 5 ms of
    the 40 it takes; after `run` lost its JACK server, the tear-down would free the dead
    server's clients and crash.  Either way nothing is left to do but flush the output."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:               # the reader went away (appliance status | head)
        code = code or EXIT_FAILED
    os._exit(code)


def _answer(args: argparse.Namespace) -> int:
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
    if name in _PLAYING:
        # numpy's OpenBLAS would start a worker thread per core that the instrument never uses
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        from appliance.cli import play

        return getattr(play, name.replace("-", "_"))
    from appliance.cli import control

    return getattr(control, "continue_" if name == "continue" else name.replace("-", "_"))


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


def _parser(words: list[str]) -> argparse.ArgumentParser:
    """The parser; with a known verb and no --help, only that verb's part is built (argparse
    makes a help formatter for every argument added, a few ms a verb at every start)."""
    parser = argparse.ArgumentParser(prog="appliance", description="A generative instrument.",
                                     formatter_class=_Formatter)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log (twice: Csound's too)")
    parser.add_argument("--socket", metavar="PATH",
                        help="the control socket (default /run/appliance/control.sock, or per user); "
                             "may be given after the verb too")
    verbs = parser.add_subparsers(required=True, metavar="COMMAND", dest="verb")
    asked = next((w for w in words if not w.startswith("-")), None)
    wanted = [asked] if asked in _VERBS and not {"-h", "--help"} & set(words) else list(_VERBS)
    for name in wanted:
        help_text, add_arguments = _VERBS[name]
        add_arguments(verbs.add_parser(name, help=help_text, formatter_class=_Formatter))
    return parser


def _run_arguments(run: argparse.ArgumentParser) -> None:
    _playing(run)
    run.add_argument("--simulate", action="store_true",
                     help="simulated hardware: null audio, simulated MIDI and GPIO")
    run.add_argument("--record", type=_path, metavar="FILE.wav", help="also write what is played to a file")
    run.add_argument("--seconds", type=_positive, metavar="N", help="stop after N seconds")
    run.add_argument("--state-dir", type=_path, metavar="DIR",
                     help="where presets and the last state live (default /var/lib/appliance or ~/.local/state)")
    run.add_argument("--safe-mode", action="store_true", help="start on factory defaults")
    run.add_argument("--no-socket", action="store_true", help="no control socket")


def _render_arguments(render: argparse.ArgumentParser) -> None:
    _playing(render)
    render.add_argument("--seconds", type=_positive, required=True, metavar="N")
    render.add_argument("--out", type=_path, required=True, metavar="FILE.wav")
    render.add_argument("--midi", type=_path, metavar="FILE.mid",
                        help="also write the notes heard, as a Standard MIDI File (channels as [midi] says)")
    render.add_argument("--seed", type=int, metavar="N", help="the generator's seed (same as --set seed=N)")


def _installing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=_path, default="/", help="install under this root (default /)")
    parser.add_argument("--name", default="appliance", help="service, user and directory name")


def _uninstalling(parser: argparse.ArgumentParser) -> None:
    _installing(parser)
    parser.add_argument("--purge", action="store_true", help="also remove config, state and the user")


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--now", action="store_true", help="silence at once (a panic)")


def _learn_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?")
    parser.add_argument("--cancel", action="store_true", help="stop learning")


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--lines", type=int, default=100)


def _positionals(*names: str, **options: Any) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        for name in names:
            parser.add_argument(name, **options.get(name, {}))
    return add


def _playing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=_path, metavar="PATH",
                        help="config file (default: config/appliance.toml)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="sets",
                        help="set a parameter at start (repeatable)")
    parser.add_argument("--scenario", type=_path, metavar="FILE.toml", help="script the simulated hardware")
    parser.add_argument("--report", type=_path, metavar="FILE.json", help="write a report at exit")


class _Formatter(argparse.HelpFormatter):
    """argparse's help, sized by os rather than shutil: argparse makes a formatter for every
    argument added, and shutil costs a quick verb 2.5 ms at start."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                width = os.get_terminal_size(sys.stdout.fileno()).columns
            except (OSError, ValueError):
                width = int(os.environ.get("COLUMNS", 80))
        super().__init__(prog, indent_increment, max_help_position, width)


def _path(text: str) -> Path:
    from pathlib import Path  # not at the top: pathlib costs a quick verb 4 ms at start

    return Path(text)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be a number above 0")
    return value


_VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("play in real time (the service)", _run_arguments),
    "render": ("render to a WAV file, faster than real time", _render_arguments),
    "check-config": ("check a config file without running",
                     _positionals("path", path={"nargs": "?", "type": _path,
                                                "help": "default: the config run would use"})),
    "status": ("what the running instrument is doing", _status_arguments),
    "get": ("a parameter's value", _positionals("name")),
    "set": ("set a parameter", _positionals("name", "value")),
    "params": ("every parameter: value, range, default", _positionals()),
    "preset": ("save, load, list or delete presets",
               _positionals("action", "name", action={"choices": ["save", "load", "list", "delete"]},
                            name={"nargs": "?"})),
    "scene": ("save, recall (on the next bar line), list or delete scenes",
              _positionals("action", "name", action={"choices": ["save", "recall", "list", "delete"]},
                           name={"nargs": "?"})),
    "record": ("record what is heard: start [NAME], stop, list (files in the state directory)",
               _positionals("action", "name", action={"choices": ["start", "stop", "list"]}, name={"nargs": "?"})),
    "learn": ("map the next MIDI control moved to a parameter or action", _learn_arguments),
    "unlearn": ("forget the learned mappings to a parameter or action", _positionals("name")),
    "start": ("start playing on the next bar", _positionals()),
    "stop": ("stop playing (notes ring out; --now: silence at once)", _stop_arguments),
    "continue": ("play on from where it stopped", _positionals()),
    "panic": ("stop and silence everything within 10 ms", _positionals()),
    "reload": ("apply the changed config file (also: SIGHUP)", _positionals()),
    "midi": ("MIDI devices and mappings", _positionals()),
    "logs": ("the instrument's recent log", _logs_arguments),
    "web-url": ("the web page's address with its token: open it on a phone or a laptop", _positionals()),
    "install": ("install as a service (as root)", _installing),
    "uninstall": ("undo install (as root)", _uninstalling),
}
