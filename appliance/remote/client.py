"""The command-line side of the control socket: one request, one answer.

It uses the socket module's C core, _socket, directly: the socket module
adds nothing this needs and costs a quick verb 3 ms at every start.
"""

from __future__ import annotations

import json
import time

try:
    import _socket as sockets
except ImportError:              # not CPython
    import socket as sockets  # type: ignore[no-redef]

from appliance.errors import ApplianceError

TYPE_CHECKING = False            # typing and pathlib cost a quick verb 7 ms at start
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

MAX_ANSWER = 16 * 1024 * 1024    # a status or log answer is far smaller
CONNECT_RETRY_SECONDS = 2.0


class NotRunning(ApplianceError, ConnectionError):
    """No instrument answers on the socket."""


def request(path: Path | str, command: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
    """Send one request and return the response (raises NotRunning, ApplianceError)."""
    sock = _connect(str(path), timeout)
    try:
        sock.sendall((json.dumps(command) + "\n").encode())
        line = _read_line(sock, timeout)
    except OSError as exc:
        raise ApplianceError(f"the connection to the instrument failed: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if not line:
        raise ApplianceError("the instrument closed the connection without answering")
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ApplianceError(f"the instrument answered something that is not an answer: {line[:80]!r}")
    return answer


def _connect(path: str, timeout: float) -> Any:
    """A connected socket; a full listen queue (many clients at once) is waited out briefly."""
    deadline = time.monotonic() + min(timeout, CONNECT_RETRY_SECONDS)
    while True:
        sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            _connect_once(sock, path)
            return sock
        except BlockingIOError:            # EAGAIN: the server's backlog is full right now
            sock.close()
            if time.monotonic() >= deadline:
                raise ApplianceError(f"the instrument is too busy to answer on {path}; try again") from None
            time.sleep(0.01)
        except BaseException:
            sock.close()
            raise


def _connect_once(sock: Any, path: str) -> None:
    try:
        sock.connect(path)
    except FileNotFoundError:
        raise NotRunning(f"the instrument is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise NotRunning(f"the instrument is not running (nothing answers on {path})") from None
    except PermissionError:
        raise ApplianceError(f"not allowed to use {path}: run as the appliance user, "
                             "or join its group (sudo adduser $USER appliance)") from None
    except BlockingIOError:
        raise
    except OSError as exc:
        raise ApplianceError(f"cannot reach the instrument on {path}: {exc.strerror or exc}") from None


def _read_line(sock: Any, timeout: float) -> bytes:
    """Bytes up to the first newline (the whole answer), or what came before the socket closed."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_ANSWER:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise ApplianceError(f"the instrument did not answer within {timeout:g} s") from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk:
            break
    return b"".join(chunks).split(b"\n", 1)[0]
