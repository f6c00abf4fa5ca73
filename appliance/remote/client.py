"""The command-line side of the control socket."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError


class NotRunning(ApplianceError, ConnectionError):
    """No instrument answers on the socket."""


def request(path: Path, command: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
    """Send one request and return the response (raises NotRunning, ApplianceError)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise NotRunning(f"the instrument is not running (no control socket at {path})") from None
        except ConnectionRefusedError:
            raise NotRunning(f"the instrument is not running (nothing answers on {path})") from None
        except PermissionError:
            raise ApplianceError(f"not allowed to use {path}: run as the appliance user, "
                                 "or join its group (sudo adduser $USER appliance)") from None
        sock.sendall((json.dumps(command) + "\n").encode())
        reader = sock.makefile("rb")
        try:
            line = reader.readline()
        except TimeoutError:
            raise ApplianceError(f"the instrument did not answer within {timeout:g} s") from None
    if not line:
        raise ApplianceError("the instrument closed the connection without answering")
    return json.loads(line)
