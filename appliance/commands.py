"""What the control socket can be asked, and the answers.

Every command answers a JSON object with "ok".  Parameter values are
checked by the registry, so `set tempo 900` is refused with the range, as on
the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.errors import ApplianceError, ParamError
from appliance.midi.mapping import ACTIONS as MIDI_ACTIONS
from appliance.params import PARAMETERS, suggest

if TYPE_CHECKING:
    from appliance.service import Service


class Commands:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._verbs: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "status": self.status, "get": self.get, "set": self.set, "params": self.params,
            "preset": self.preset, "learn": self.learn, "reload": self.reload, "midi": self.midi,
            "logs": self.logs,
        }

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        verb = request["cmd"]
        if verb not in self._verbs:
            raise ApplianceError(f"unknown command {verb!r}{suggest(verb, self._verbs)}; "
                                 f"commands: {', '.join(self._verbs)}")
        return {"ok": True, **self._verbs[verb](request)}

    def status(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"status": self.service.status()}

    def get(self, request: dict[str, Any]) -> dict[str, Any]:
        spec = PARAMETERS.spec(_text(request, "name"))
        value = self.service.instrument.params.get(spec.name)
        return {"name": spec.name, "value": spec.external(value), "text": spec.format(value)}

    def set(self, request: dict[str, Any]) -> dict[str, Any]:
        spec = PARAMETERS.spec(_text(request, "name"))
        raw = request.get("value")
        value = spec.parse(raw) if isinstance(raw, str) else spec.coerce(raw)
        self.service.instrument.changes.put(spec.name, value, "control socket")
        self.service.instrument.inbox.wake()
        return {"name": spec.name, "value": spec.external(value), "text": spec.format(value)}

    def params(self, request: dict[str, Any]) -> dict[str, Any]:
        values = self.service.instrument.params.snapshot()
        return {"params": [{
            "name": spec.name, "value": spec.external(values[spec.name]), "text": spec.format(values[spec.name]),
            "range": spec.range_text, "default": spec.external(spec.default), "unit": spec.unit,
            "curve": spec.curve, "step": spec.step, "group": spec.group, "doc": spec.doc,
            **({"choices": list(spec.choices)} if spec.choices else {}),
        } for spec in PARAMETERS]}

    def preset(self, request: dict[str, Any]) -> dict[str, Any]:
        action = _text(request, "action")
        presets = self.service.presets
        if action == "list":
            return {"presets": presets.names()}
        name = _text(request, "name")
        if action == "save":
            try:
                presets.save(name, self.service.instrument.params.snapshot())
            except OSError as exc:
                raise ApplianceError(f"cannot save preset {name!r}: {exc.strerror or exc}") from None
            return {"saved": name}
        if action == "load":
            return {"loaded": name, "warnings": self.service.load_preset(name, "control socket")}
        if action == "delete":
            if not presets.delete(name):
                raise ParamError(f"no preset {name!r}")
            return {"deleted": name}
        raise ApplianceError(f"preset needs save, load, list or delete, got {action!r}")

    def learn(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _text(request, "name")
        if name not in PARAMETERS and name not in MIDI_ACTIONS:
            raise ParamError(f"learn needs a parameter or an action, got {name!r}"
                             f"{suggest(name, [*PARAMETERS.specs, *MIDI_ACTIONS])}")
        self.service.instrument.hardware.router.learning = name
        return {"learning": name, "hint": "move a control (or press a pad) on a MIDI device"}

    def reload(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"changed": self.service.request_reload()}

    def midi(self, request: dict[str, Any]) -> dict[str, Any]:
        hardware = self.service.instrument.hardware
        mappings = [{k: v for k, v in vars(m).items() if v not in (None, False)}
                    for m in hardware.router.mappings]
        return {"midi": {**hardware.status(), "mappings": mappings,
                         "outputs": sorted(hardware.midi.outputs)}}

    def logs(self, request: dict[str, Any]) -> dict[str, Any]:
        count = request.get("lines", 100)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 10000:
            raise ApplianceError(f"lines must be within 1..10000, got {count!r}")
        return {"lines": self.service.log_lines(count)}


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ApplianceError(f"{request.get('cmd')} needs {key}")
    return value
