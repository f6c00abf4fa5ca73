"""The verbs that talk to a running instrument over its control socket.

Light on purpose: a socket, JSON and argparse, nothing of the audio stack.
Values are checked by the instrument, which answers with the range; a
refused value exits 2, as it does on `run --set`.
"""

from __future__ import annotations

import argparse
import json
import sys

from appliance.errors import ApplianceError, ParamError
from appliance.remote import client

TYPE_CHECKING = False           # typing costs a quick verb 3 ms at start
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

EXIT_OK = 0


def _ask(args: argparse.Namespace, **command: Any) -> dict[str, Any]:
    response = client.request(args.socket or _default_socket(), command)
    if not response.get("ok"):
        error = response.get("error", "the instrument refused")
        raise ParamError(error) if response.get("kind") == "value" else ApplianceError(error)
    return response


def _default_socket() -> Path:
    from appliance import paths  # pathlib: not needed when --socket is given

    return paths.client_socket()


def status(args: argparse.Namespace) -> int:
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


def get(args: argparse.Namespace) -> int:
    print(_ask(args, cmd="get", name=args.name)["text"])
    return EXIT_OK


def set(args: argparse.Namespace) -> int:
    print(_ask(args, cmd="set", name=args.name, value=args.value)["text"])
    return EXIT_OK


def params(args: argparse.Namespace) -> int:
    for p in _ask(args, cmd="params")["params"]:
        print(f"{p['name']:<12} {p['text']:<14} {p['range']:<40} {p['doc']}")
    return EXIT_OK


def preset(args: argparse.Namespace, kind: str = "preset") -> int:
    if args.action != "list" and not args.name:
        raise ParamError(f"{kind} {args.action} needs a NAME")
    result = _ask(args, cmd=kind, action=args.action, name=args.name)
    if args.action == "list":
        print("\n".join(result[f"{kind}s"]) if result[f"{kind}s"] else f"(no {kind}s)")
    else:
        at_bar = f" (bar {result['at_bar']})" if result.get("at_bar") else ""
        print(f"{args.action}: {args.name}{at_bar}")
        for warning in result.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
    return EXIT_OK


def scene(args: argparse.Namespace) -> int:
    return preset(args, "scene")


def record(args: argparse.Namespace) -> int:
    result = _ask(args, cmd="record", action=args.action, **({"name": args.name} if args.name else {}))
    if args.action == "list":
        print("\n".join(result["recordings"]) if result["recordings"] else "(no recordings)")
    elif args.action == "start":
        print(f"recording to {result['recording']} (room for about {result['minutes_free']} min)")
    else:
        print(f"recorded {result['recorded']} ({result['seconds']} s)"
              + (f"; {result['ended']}" if result.get("ended") else ""))
    return EXIT_OK


def learn(args: argparse.Namespace) -> int:
    if args.cancel == (args.name is not None):
        raise ParamError("learn needs a NAME, or --cancel")
    if args.cancel:
        result = _ask(args, cmd="learn", cancel=True)
        print(f"stopped learning {result['cancelled']}" if result["cancelled"] else "was not learning")
        return EXIT_OK
    result = _ask(args, cmd="learn", name=args.name)
    print(f"learning {result['learning']}: {result['hint']}")
    return EXIT_OK


def unlearn(args: argparse.Namespace) -> int:
    result = _ask(args, cmd="unlearn", name=args.name)
    print(f"forgot {result['unlearned']} learned mapping(s) to {result['name']}")
    return EXIT_OK


def start(args: argparse.Namespace) -> int:
    return _transport(args, "start")


def stop(args: argparse.Namespace) -> int:
    return _transport(args, "stop", now=args.now)


def continue_(args: argparse.Namespace) -> int:
    return _transport(args, "continue")


def panic(args: argparse.Namespace) -> int:
    return _transport(args, "panic")


def _transport(args: argparse.Namespace, verb: str, **options: bool) -> int:
    print({"start": "playing from the next bar", "continue": "playing on",
           "stop": "stopped (notes ring out)", "panic": "silenced"}[_ask(args, cmd=verb, **options)["transport"]])
    return EXIT_OK


def reload(args: argparse.Namespace) -> int:
    changed = _ask(args, cmd="reload")["changed"]
    print("reloaded: " + (", ".join(changed) if changed else "nothing changed"))
    return EXIT_OK


def midi(args: argparse.Namespace) -> int:
    found = _ask(args, cmd="midi")["midi"]
    print(found["midi"])
    for device in found["devices"]:
        print(f"  in:  {device}")
    for device in found["outputs"]:
        print(f"  out: {device}")
    print(f"{len(found['mappings'])} mappings:")
    for mapping in found["mappings"]:
        print("  " + ", ".join(f"{k}={v}" for k, v in mapping.items()))
    return EXIT_OK


def logs(args: argparse.Namespace) -> int:
    print("\n".join(_ask(args, cmd="logs", lines=args.lines)["lines"]))
    return EXIT_OK


def web_url(args: argparse.Namespace) -> int:
    """The first URL is the box's name on the LAN (zeroconf); the others its addresses."""
    print("\n".join(_ask(args, cmd="web")["urls"]))
    return EXIT_OK
