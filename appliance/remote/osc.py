"""OSC over UDP: the instrument from a phone or a laptop (TouchOSC, Max, SuperCollider, norns).

python-osc reads and builds the messages; the socket and its thread are ours,
so that a hostile packet can do nothing but be counted: every packet is at
most one datagram (64 KiB), parsed in a try, handled without waiting (a
bundle's time tag is ignored: python-osc's strict timing would sleep until
it, a thread held for as long as a stranger likes), and a handler only puts
a command into the control loop's inbox, with the same validation as the
socket and the knobs.

Addresses (values in the parameter's units unless /norm):
  /param/<name> <value>        set (a number, or text such as "lydian" or "on")
  /param/<name>/norm <0..1>    set through the parameter's curve (a fader)
  /transport/start | stop | continue | panic
  /tap                         tap tempo
  /preset/load <name>          /scene/recall <name> (on the next bar line)
  /record/start [name]         /record/stop (to the state directory)
  /status                      answered to the sender: /status/<key> <value> ...

Every change, whatever its source (a knob, the socket, another OSC client),
is sent back as /param/<name> <value> to every client heard from in the last
minute, so a fader on a phone follows a MIDI knob.  Unknown addresses and
refused values are counted by reason, never fatal.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading
import time
from collections import Counter
from typing import Any

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from appliance.controls.inbox import Action, Busy, LoadPreset, Record, SetParam
from appliance.engine.rtprio import start_thread
from appliance.errors import ParamError
from appliance.params import PARAMETERS
from appliance.remote.api import InstrumentApi

log = logging.getLogger("appliance.osc")

MAX_DATAGRAM = 65536
MAX_CLIENTS = 32               # fed back to at most this many, the most recent first
CLIENT_SECONDS = 60.0          # a client that has not spoken for this long gets no more feedback
MAX_MESSAGES = 64              # messages handled from one packet (a bundle); the rest counted
TRANSPORT = ("start", "stop", "continue", "panic")
STATUS_KEYS = ("tempo", "bar", "beat", "transport", "notes", "late_notes", "xruns", "cpu_percent")


class OscServer:
    def __init__(self, host: str, port: int, api: InstrumentApi) -> None:
        self.host, self.port = host, port
        self.api = api
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._clients: dict[tuple[str, int], float] = {}      # address -> last heard (monotonic)
        self._lock = threading.Lock()
        self.received = 0                                      # messages
        self.refused: Counter[str] = Counter()                 # reason -> count
        self.sent = 0
        self.send_failed = 0

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._socket = sock
        self._thread = start_thread("osc", self._serve)

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            clients = len(self._clients)
        return {"listen": f"{self.host}:{self.port}", "received": self.received, "refused": dict(self.refused),
                "sent": self.sent, "send_failed": self.send_failed, "clients": clients}

    # -- feedback (called by the control loop: never blocks) --------------------------

    def feedback(self, name: str, value: float) -> None:
        spec = PARAMETERS.spec(name)
        self._send_all(f"/param/{name}", [spec.external(value)])

    def _send_all(self, address: str, values: list[Any]) -> None:
        sock = self._socket
        if sock is None:
            return
        now = time.monotonic()
        with self._lock:
            for client in [c for c, heard in self._clients.items() if now - heard > CLIENT_SECONDS]:
                del self._clients[client]
            clients = list(self._clients)
        if not clients:
            return
        datagram = _message(address, values)
        for client in clients:
            self._send(sock, datagram, client)

    def _send(self, sock: socket.socket, datagram: bytes, client: tuple[str, int]) -> None:
        try:
            sock.sendto(datagram, client)
            self.sent += 1
        except OSError as exc:           # a full buffer or an unreachable client: counted, never waited for
            self.send_failed += 1
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNREFUSED):
                log.debug("OSC send to %s failed: %s", client, exc)

    # -- receiving -----------------------------------------------------------------------

    def _serve(self) -> None:
        sock = self._socket
        assert sock is not None
        while not self._closing.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if not ready:
                continue
            for _ in range(256):                      # drain what is there, then look at _closing again
                try:
                    data, client = sock.recvfrom(MAX_DATAGRAM)
                except BlockingIOError:
                    break
                except OSError as exc:
                    log.debug("OSC receive failed: %s", exc)
                    break
                self._packet(data, client[:2])

    def _packet(self, data: bytes, client: tuple[str, int]) -> None:
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except Exception:
            self.refused["malformed"] += 1
            return
        if len(messages) > MAX_MESSAGES:
            self.refused["too many in one bundle"] += len(messages) - MAX_MESSAGES
            messages = messages[:MAX_MESSAGES]
        with self._lock:
            self._clients[client] = time.monotonic()
            while len(self._clients) > MAX_CLIENTS:
                del self._clients[min(self._clients, key=self._clients.__getitem__)]
        for message in messages:
            self.received += 1
            try:
                self._handle(message.address, list(message.params), client)
            except ParamError as exc:
                self.refused["value"] += 1
                log.debug("OSC %s from %s refused: %s", message.address, client, exc)
            except Busy:                              # a flood: the loop's inbox is full, drop (counted)
                self.refused["busy"] += 1
            except Exception as exc:
                self.refused["error"] += 1
                log.warning("OSC %s from %s failed: %s", message.address, client, exc)

    def _handle(self, address: str, args: list[Any], client: tuple[str, int]) -> None:
        source = f"OSC {client[0]}:{client[1]}"
        parts = address.strip("/").split("/")
        if parts[0] == "param" and len(parts) in (2, 3):
            if parts[1] not in PARAMETERS:
                self.refused["unknown parameter"] += 1
                return
            spec = PARAMETERS.spec(parts[1])
            raw = _one(args, address)
            if len(parts) == 3:
                if parts[2] != "norm":
                    self.refused["unknown address"] += 1
                    return
                if isinstance(raw, str) or not 0.0 <= float(raw) <= 1.0:
                    raise ParamError(f"{address} takes 0..1, got {raw!r}")
                value = spec.from_unit(float(raw))
            else:
                value = spec.parse(raw) if isinstance(raw, str) else spec.coerce(raw)
            self.api.submit(SetParam(spec.name, value, source))
        elif parts[0] == "transport" and len(parts) == 2 and parts[1] in TRANSPORT:
            self.api.submit(Action(parts[1], 0, source, time.monotonic()))
        elif address == "/tap":
            self.api.submit(Action("tap_tempo", 0, source, time.monotonic()))
        elif address in ("/preset/load", "/scene/recall"):
            name = _one(args, address)
            if not isinstance(name, str):
                raise ParamError(f"{address} takes a name, got {name!r}")
            self.api.submit(LoadPreset(name, source, kind="preset" if address == "/preset/load" else "scene"))
        elif address in ("/record/start", "/record/stop"):
            name = _one(args, address) if args else None
            if name is not None and not isinstance(name, str):
                raise ParamError(f"{address} takes a name, got {name!r}")
            self.api.submit(Record(address == "/record/start", name, source))
        elif address == "/status":
            self._status(client)
        else:
            self.refused["unknown address"] += 1

    def _status(self, client: tuple[str, int]) -> None:
        status = self.api.status()
        music = status.get("music") or {}
        items = [(key, status.get(key)) for key in STATUS_KEYS] + \
                [(key, music.get(key)) for key in ("section", "bar_in_section", "chord", "scale")]
        sock = self._socket
        for key, value in items:
            if value is not None and sock is not None:
                self._send(sock, _message(f"/status/{key}", [value]), client)


def _one(args: list[Any], address: str) -> Any:
    if len(args) != 1 or not isinstance(args[0], (int, float, str)) or isinstance(args[0], bool):
        raise ParamError(f"{address} takes one value, got {args!r}")
    return args[0]


def _message(address: str, values: list[Any]) -> bytes:
    builder = OscMessageBuilder(address=address)
    for value in values:
        builder.add_arg(value if isinstance(value, (int, float, str)) else str(value))
    return builder.build().dgram
