"""What the control socket can be asked, and the answers.

Every command answers a JSON object with "ok".  Values are checked by the
parameter registry before they go anywhere, so `set tempo 900` is refused
with the range, as on the command line.  Changes are commands into the
control loop's inbox; the answer comes once the loop has applied them, so a
`get` after a `set` sees the new value.  A refusal of a value says
"kind": "value" (the CLI exits 2 for it, as for a bad value typed at start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from appliance.controls.inbox import Action, Learn, LoadPreset, Record, Reload, SetParam, Unlearn
from appliance.controls.midi.mapping import ACTIONS as MIDI_ACTIONS
from appliance.errors import ApplianceError, ParamError
from appliance.params import PARAMETERS, suggest
from appliance.remote.api import InstrumentApi

ANSWER_SECONDS = 5.0      # a change answers once the loop applied it (well under a second)
RELOAD_SECONDS = 20.0     # a reload may restart Csound
SOURCE = "control socket"


class Commands:
    def __init__(self, api: InstrumentApi, source: str = SOURCE) -> None:
        self.api = api
        self.source = source            # who asked, for the log ("control socket", "web 192.168.1.20")
        self._verbs: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "status": self.status, "get": self.get, "set": self.set, "params": self.params,
            "preset": self.preset, "scene": self.scene, "learn": self.learn, "unlearn": self.unlearn,
            "reload": self.reload, "record": self.record,
            "midi": self.midi, "start": self.transport, "stop": self.transport, "continue": self.transport,
            "panic": self.transport, "tap": self.tap,
            "logs": self.logs, "web": self.web,
        }

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        verb = request["cmd"]
        if verb not in self._verbs:
            raise ApplianceError(f"unknown command {verb!r}{suggest(verb, self._verbs)}; "
                                 f"commands: {', '.join(self._verbs)}")
        try:
            return {"ok": True, **self._verbs[verb](request)}
        except ParamError as exc:
            return {"ok": False, "error": str(exc), "kind": "value"}

    def status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.api.status()}

    def get(self, request: dict[str, Any]) -> dict[str, Any]:
        spec = PARAMETERS.spec(_text(request, "name"))
        return _value(spec.name, self.api.values()[spec.name])

    def set(self, request: dict[str, Any]) -> dict[str, Any]:
        spec = PARAMETERS.spec(_text(request, "name"))
        if "norm" in request:                      # a fader's 0..1 position, through the parameter's curve
            norm = request["norm"]
            if isinstance(norm, bool) or not isinstance(norm, (int, float)) or not 0.0 <= norm <= 1.0:
                raise ParamError(f"{spec.name}: norm takes 0..1, got {norm!r}")
            value = spec.from_unit(float(norm))
        else:
            raw = request.get("value")
            value = spec.parse(raw) if isinstance(raw, str) else spec.coerce(raw)
        stored = self.api.submit(SetParam(spec.name, value, self.source), ANSWER_SECONDS)
        return _value(spec.name, stored)

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        values = self.api.values()
        return {"params": [{
            "name": spec.name, "value": spec.external(values[spec.name]), "text": spec.format(values[spec.name]),
            "norm": round(spec.to_unit(values[spec.name]), 6), "min": spec.minimum, "max": spec.maximum,
            "range": spec.range_text, "default": spec.external(spec.default), "unit": spec.unit,
            "curve": spec.curve, "step": spec.step, "group": spec.group, "doc": spec.doc,
            **({"choices": list(spec.choices)} if spec.choices else {}),
        } for spec in PARAMETERS]}

    def preset(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._stored("preset", "load", request)

    def scene(self, request: dict[str, Any]) -> dict[str, Any]:
        """A scene: a preset recalled on the next bar line, never mid-bar."""
        return self._stored("scene", "recall", request)

    def _stored(self, kind: str, recall: str, request: dict[str, Any]) -> dict[str, Any]:
        action = _text(request, "action")
        if action == "list":
            return {f"{kind}s": self.api.stored_names(kind)}
        name = _text(request, "name")
        if action == "save":
            try:
                self.api.save_stored(kind, name, self.api.values())
            except OSError as exc:
                raise ApplianceError(f"cannot save {kind} {name!r}: {exc.strerror or exc}") from None
            return {"saved": name}
        if action == recall:
            answer = self.api.submit(LoadPreset(name, self.source, kind=kind), ANSWER_SECONDS)
            return {"loaded": name, "warnings": answer} if kind == "preset" else \
                {"recalled": name, "warnings": answer["warnings"], "at_bar": answer["at_bar"]}
        if action == "delete":
            if not self.api.delete_stored(kind, name):
                raise ParamError(f"no {kind} {name!r}")
            return {"deleted": name}
        raise ApplianceError(f"{kind} needs save, {recall}, list or delete, got {action!r}")

    def record(self, request: dict[str, Any]) -> dict[str, Any]:
        """Record what is heard to the state directory: start [name], stop, list."""
        action = _text(request, "action")
        if action == "list":
            return {"recordings": self.api.recording_names()}
        if action not in ("start", "stop"):
            raise ApplianceError(f"record needs start, stop or list, got {action!r}")
        name = request.get("name")
        if name is not None and not isinstance(name, str):
            raise ParamError(f"a recording name is text, got {name!r}")
        return self.api.submit(Record(action == "start", name, self.source), ANSWER_SECONDS)

    def learn(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("cancel") is True:
            was = self.api.submit(Learn(None), ANSWER_SECONDS)["was"]
            return {"learning": None, "cancelled": was}
        name = _text(request, "name")
        if name not in PARAMETERS and name not in MIDI_ACTIONS:
            raise ParamError(f"learn needs a parameter or an action, got {name!r}"
                             f"{suggest(name, [*PARAMETERS.specs, *MIDI_ACTIONS])}")
        self.api.submit(Learn(name), ANSWER_SECONDS)
        return {"learning": name, "hint": "move a control (or press a pad) on a MIDI device"}

    def unlearn(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _text(request, "name")
        if name not in PARAMETERS and name not in MIDI_ACTIONS:
            raise ParamError(f"unlearn needs a parameter or an action, got {name!r}"
                             f"{suggest(name, [*PARAMETERS.specs, *MIDI_ACTIONS])}")
        return {"unlearned": self.api.submit(Unlearn(name), ANSWER_SECONDS), "name": name}

    def transport(self, request: dict[str, Any]) -> dict[str, Any]:
        """start, stop (with "now": true, a panic), continue, panic."""
        action = request["cmd"]
        if action == "stop" and request.get("now") is True:
            action = "panic"
        self.api.submit(Action(action, 0, self.source, 0.0), ANSWER_SECONDS)
        return {"transport": action}

    def tap(self, request: dict[str, Any]) -> dict[str, Any]:
        """Tap tempo: timed as it arrives (over WiFi a tap may wander by some milliseconds)."""
        self.api.submit(Action("tap_tempo", 0, self.source, time.monotonic()), ANSWER_SECONDS)
        return {"tapped": True}

    def reload(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"changed": self.api.submit(Reload(), RELOAD_SECONDS)}

    def midi(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"midi": self.api.midi()}

    def web(self, request: dict[str, Any]) -> dict[str, Any]:
        """The web page's URLs with the token (whoever may use this socket may have it)."""
        access = self.api.web_access()
        if access is None:
            raise ApplianceError("the web page is off: set [web] listen in the config, then reload")
        host, port, token = access["host"], access["port"], access["token"]
        if host in ("0.0.0.0", "::", ""):
            import socket

            from appliance.remote.announce import addresses

            hosts = [f"{socket.gethostname().split('.')[0]}.local", *addresses(host)]
        else:
            hosts = [host]
        return {"urls": [f"http://{f'[{h}]' if ':' in h else h}:{port}/?token={token}" for h in hosts]}

    def logs(self, request: dict[str, Any]) -> dict[str, Any]:
        count = request.get("lines", 100)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10000:
            raise ApplianceError(f"lines must be within 1..10000, got {count!r}")
        return {"lines": self.api.logs(count)}


def _value(name: str, value: float) -> dict[str, Any]:
    spec = PARAMETERS.spec(name)
    return {"name": spec.name, "value": spec.external(value), "text": spec.format(value)}


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ApplianceError(f"{request.get('cmd')} needs {key}")
    return value
