"""The control socket: a Unix stream socket speaking one JSON object per line.

Request:   {"cmd": "set", "name": "tempo", "value": "128"}
Response:  {"ok": true, ...}   or   {"ok": false, "error": "tempo must be within 20..300 BPM, got 900"}

Commands: see appliance/remote/commands.py.  The socket is created owner-
and group-accessible only (0660, in a 0750 directory); anyone who can reach
it controls the instrument.

Served so that no client, however hostile, costs more than a bounded share:
* one thread ("control-socket") watches every connection with a selector;
  there is no thread per client (under mlockall each thread's stack would be
  locked into RAM);
* commands run on a small fixed pool of workers with small stacks, since a
  change waits for the control loop's answer;
* at most MAX_CLIENTS connections: a newcomer over the cap takes the place of
  the one idle the longest, so idle connections cannot lock a person out (a
  client waiting for its answer is never the one to go);
* a line longer than 64 KiB, bytes that are not JSON, or JSON nested too
  deeply get an error, not a crash; a client that does not read its answers
  is dropped once MAX_PENDING bytes wait for it;
* when the process runs out of file descriptors the listener rests for a
  moment instead of spinning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.engine.rtprio import start_thread
from appliance.errors import ApplianceError

log = logging.getLogger("appliance.remote")

MAX_LINE = 64 * 1024
MAX_CLIENTS = 32
MAX_PENDING = 1024 * 1024        # answer bytes waiting for a client that does not read
BACKLOG = 128
WORKERS = 2
WORKER_STACK = 512 * 1024        # enough for a command, small enough to lock into RAM
REST_SECONDS = 0.5               # the listener's rest when there are no file descriptors left

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class SocketInUse(ApplianceError, OSError):
    """Another instrument already answers on the socket."""


@dataclass(eq=False)
class _Client:
    sock: socket.socket
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    busy: bool = False                 # a request of this client is with a worker
    closing: bool = False              # close once the answers are out
    active: float = field(default_factory=time.monotonic)
    watched: bool = True               # registered with the selector


class ControlServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._listener: socket.socket | None = None
        self._selector: selectors.DefaultSelector | None = None
        self._clients: dict[int, _Client] = {}
        self._work: queue.Queue[tuple[_Client, dict[str, Any]] | None] = queue.Queue()
        self._done: queue.Queue[tuple[_Client, dict[str, Any]]] = queue.Queue()
        self._wake_r, self._wake_w = -1, -1
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._resting_until = 0.0
        self.refused = 0                   # connections turned away or dropped (status)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._prepare_path()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)              # the socket is born 0660: never world-accessible, even briefly
        try:
            listener.bind(str(self.path))
        except OSError:
            listener.close()
            raise
        finally:
            os.umask(old)
        listener.listen(BACKLOG)
        listener.setblocking(False)
        self._listener = listener
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._threads.append(start_thread("control-socket", self._serve))
        previous = threading.stack_size(WORKER_STACK)
        try:
            self._threads += [start_thread("control-worker", self._worker) for _ in range(WORKERS)]
        finally:
            threading.stack_size(previous)

    def close(self) -> None:
        if self._listener is None:
            return
        self._stop.set()
        for _ in range(WORKERS):
            self._work.put(None)
        self._wake()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        for client in list(self._clients.values()):
            self._drop(client)
        assert self._selector is not None
        self._selector.close()
        self._listener.close()
        self._listener = None
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.path.unlink(missing_ok=True)

    def _prepare_path(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        owner = self.path.parent.lstat().st_uid
        if owner not in (os.getuid(), 0) or self.path.parent.is_symlink():
            raise ApplianceError(f"{self.path.parent} belongs to another user: not putting the socket there")
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ApplianceError(f"{self.path} exists and is not a socket")
            if _answers(self.path):
                raise SocketInUse(f"another instrument is running on {self.path}")
            self.path.unlink()             # left over from a crash

    # -- the selector thread ------------------------------------------------------------

    def _serve(self) -> None:
        assert self._selector is not None
        while not self._stop.is_set():
            timeout = max(0.0, self._resting_until - time.monotonic()) if self._resting_until else None
            for key, events in self._selector.select(timeout):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                else:
                    self._serve_client(key.data, events)
            self._deliver_answers()
            if self._resting_until and time.monotonic() >= self._resting_until:
                self._resting_until = 0.0
                self._selector.register(self._listener, selectors.EVENT_READ, "listen")

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        except OSError as exc:             # EMFILE, ENFILE: rest rather than spin on a ready listener
            log.warning("control socket: cannot accept (%s); resting %g s", exc.strerror, REST_SECONDS)
            self._selector.unregister(self._listener)
            self._resting_until = time.monotonic() + REST_SECONDS
            return
        if len(self._clients) >= MAX_CLIENTS and not self._evict_idle():
            self.refused += 1
            with contextlib.suppress(OSError):
                sock.send(b'{"ok": false, "error": "too many connections; try again"}\n')
            sock.close()
            return
        sock.setblocking(False)
        client = _Client(sock)
        self._clients[sock.fileno()] = client
        self._selector.register(sock, selectors.EVENT_READ, client)

    def _evict_idle(self) -> bool:
        """Make room by closing the connection idle the longest (none with a request in hand)."""
        idle = [c for c in self._clients.values() if not c.busy and not c.outbox]
        oldest = min(idle, key=lambda c: c.active, default=None)
        if oldest is None:
            return False
        self.refused += 1
        self._drop(oldest)
        return True

    def _serve_client(self, client: _Client, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._flush(client)
        if events & selectors.EVENT_READ and _open(client):
            try:
                data = client.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                client.closing = True      # the client is done: answer what it asked, then close
            client.inbox += data
            client.active = time.monotonic()
        self._next_requests(client)

    def _next_requests(self, client: _Client) -> None:
        """Answer bad lines at once and hand the next good one to a worker (one at a time, in order)."""
        while _open(client) and not client.busy:
            end = client.inbox.find(b"\n")
            if end < 0 and len(client.inbox) <= MAX_LINE:
                break
            line = bytes(client.inbox[: end if end >= 0 else len(client.inbox)])
            del client.inbox[: end + 1 if end >= 0 else len(client.inbox)]
            if len(line) > MAX_LINE:
                self._answer(client, {"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                client.closing = True
                client.inbox.clear()
                break
            request, problem = _parse(line)
            if problem is not None:
                self._answer(client, {"ok": False, "error": f"bad request: {problem}"})
                continue
            client.busy = True
            self._work.put((client, request))
        self._settle(client)

    def _answer(self, client: _Client, response: dict[str, Any]) -> None:
        client.outbox += (json.dumps(response) + "\n").encode()
        if len(client.outbox) > MAX_PENDING:       # it does not read its answers
            self.refused += 1
            self._drop(client)
            return
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        if not _open(client) or not client.outbox:
            return
        try:
            sent = client.sock.send(client.outbox)
            del client.outbox[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:                    # the client went away
            self._drop(client)

    def _settle(self, client: _Client) -> None:
        """Close a finished client, or watch for what it is waiting for: reading while its
        unread requests are few (a flood waits in the kernel, not here), writing while answers wait."""
        if not _open(client):
            return
        if client.closing and not client.busy and not client.outbox and b"\n" not in client.inbox:
            self._drop(client)
            return
        reading = not client.closing and len(client.inbox) <= MAX_LINE
        events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if client.outbox else 0)
        assert self._selector is not None
        if client.watched and events:
            self._selector.modify(client.sock, events, client)
        elif client.watched:
            self._selector.unregister(client.sock)
            client.watched = False
        elif events:
            self._selector.register(client.sock, events, client)
            client.watched = True

    def _deliver_answers(self) -> None:
        while True:
            try:
                client, response = self._done.get_nowait()
            except queue.Empty:
                return
            client.busy = False
            client.active = time.monotonic()
            if _open(client):
                self._answer(client, response)
                self._next_requests(client)

    def _drop(self, client: _Client) -> None:
        if _open(client):
            assert self._selector is not None
            if client.watched:
                self._selector.unregister(client.sock)
            self._clients.pop(client.sock.fileno(), None)
            client.sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- the workers ----------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            job = self._work.get()
            if job is None:
                return
            client, request = job
            self._done.put((client, self._run(request)))
            self._wake()

    def _run(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._handler(request)
        except ApplianceError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:   # a bug must not take the instrument down with it
            log.exception("control command %r failed", request.get("cmd"))
            return {"ok": False, "error": f"internal error: {exc}"}


def _open(client: _Client) -> bool:
    return client.sock.fileno() >= 0


def _parse(line: bytes) -> tuple[dict[str, Any], str | None]:
    try:
        request = json.loads(line)
    except RecursionError:
        return {}, "nested too deeply"
    except (UnicodeDecodeError, ValueError) as exc:
        return {}, str(exc)
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        return {}, 'a request is a JSON object with "cmd"'
    return request, None


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False
