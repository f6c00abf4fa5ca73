"""The control socket: a Unix stream socket speaking one JSON object per line.

Request:   {"cmd": "set", "name": "tempo", "value": "128"}
Response:  {"ok": true, ...}   or   {"ok": false, "error": "tempo must be within 20..300 BPM, got 900"}

Commands (see appliance/commands.py): status, get, set, params, preset
(save | load | list | delete), learn, reload, midi, logs.  The socket is
created owner- and group-accessible only (0660, in a 0750 directory);
anyone who can reach it controls the instrument.  Each client is served on
a thread of its own; a line longer than 64 KiB or not JSON gets an error,
not a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.engine.rtprio import start_thread
from appliance.errors import ApplianceError

log = logging.getLogger("appliance.remote.server")

MAX_LINE = 64 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class SocketInUse(ApplianceError, OSError):
    """Another instrument already answers on the socket."""


class _Connection(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                self._reply({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                return
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                    raise ValueError('a request is a JSON object with "cmd"')
            except (UnicodeDecodeError, ValueError) as exc:
                self._reply({"ok": False, "error": f"bad request: {exc}"})
                continue
            try:
                response = self.server.handler(request)
            except ApplianceError as exc:
                response = {"ok": False, "error": str(exc)}
            except Exception as exc:   # a bug must not take the instrument down with it
                log.exception("control command %r failed", request.get("cmd"))
                response = {"ok": False, "error": f"internal error: {exc}"}
            self._reply(response)

    def _reply(self, response: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):    # the client went away
            self.wfile.write((json.dumps(response) + "\n").encode())


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handler: Handler


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._handler = handler

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        owner = self.path.parent.lstat().st_uid
        if owner not in (os.getuid(), 0) or self.path.parent.is_symlink():
            raise ApplianceError(f"{self.path.parent} belongs to another user: not putting the socket there")
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ApplianceError(f"{self.path} exists and is not a socket")
            if _answers(self.path):
                raise SocketInUse(f"another instrument is running on {self.path}")
            self.path.unlink()          # left over from a crash
        old = os.umask(0o117)           # the socket is born 0660: never world-accessible, even briefly
        try:
            self._server = _Server(str(self.path), _Connection)
        finally:
            os.umask(old)
        self._server.handler = self._handler
        self._thread = start_thread("control-socket", self._server.serve_forever)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self.path.unlink(missing_ok=True)
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False
