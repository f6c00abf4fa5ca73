"""The service's side of appliance/remote/api.py: what the socket, OSC and the web
page see of the running instrument."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.controls.inbox import Command

if TYPE_CHECKING:
    from appliance.service.service import Service


class ServiceApi:
    def __init__(self, service: Service) -> None:
        self._service = service

    def status(self) -> dict[str, Any]:
        return self._service.status()

    def values(self) -> dict[str, float]:
        return self._service.instrument.params.snapshot()

    def midi(self) -> dict[str, Any]:
        hardware = self._service.instrument.hardware
        return {**hardware.status(), "mappings": [m.describe() for m in hardware.router.mappings],
                "outputs": sorted(hardware.midi.outputs), "learning": hardware.router.learning}

    def logs(self, count: int) -> list[str]:
        return self._service.ring.last(count)

    def stored_names(self, kind: str) -> list[str]:
        return self._service.stored[kind].names()

    def save_stored(self, kind: str, name: str, values: dict[str, float]) -> None:
        self._service.stored[kind].save(name, values)

    def delete_stored(self, kind: str, name: str) -> bool:
        return self._service.stored[kind].delete(name)

    def recording_names(self) -> list[str]:
        return self._service.recordings.names()

    def recording_path(self, name: str) -> Path:
        return self._service.recordings.existing(name)

    def web_access(self) -> dict[str, Any] | None:
        web = self._service.web
        return None if web is None else {"host": web.host, "port": web.port, "token": web.token}

    def submit(self, command: Command, timeout: float | None = None) -> Any:
        return self._service.submit(command, timeout)
