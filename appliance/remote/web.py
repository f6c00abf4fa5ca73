"""The web page: the instrument from a phone or a laptop's browser on the LAN.

aiohttp serves it from an asyncio loop on a thread of its own ("web"), so
nothing here ever runs on the audio path or in the control loop.  Chosen with
figures (bench/web_servers.py, bench/remote.py): `websockets` costs less
memory, but its HTTP answers are whole bytes objects, and a recording (about
1 GB an hour) must be streamed; aiohttp streams files, parses HTTP with
limits in C, and speaks websockets, all on one port.

What it serves (every request needs the token, see below):
  GET /                 the page (page/index.html, app.js, style.css: no CDN, the box is often offline)
  GET /ws               a websocket: status and every value pushed STATUS_HZ times a second;
                        commands in, as JSON, the very ones the control socket takes
                        (remote/commands.py): the same validation, the same inbox
  GET /recordings/NAME  a recording, streamed (names checked as at the socket)
Nothing else: no shell, no file browser, no upload; every other method is 405.

Security.  The token (remote/token.py, 0600 in the state directory) comes
once in the URL `appliance web-url` prints; the page answers with a cookie
(HttpOnly, SameSite=Strict) and a redirect that drops it from the address
bar.  A request without it is refused (401).  A websocket must also come
from the page itself (Origin = the Host it asked), so another site open in
the same browser can neither connect nor ride on the cookie; every change
goes through the websocket, so this is where state-changing requests are
checked.  DNS rebinding gets a matching Origin but no cookie.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from appliance.controls.inbox import Busy
from appliance.controls.midi.mapping import ACTIONS as MIDI_ACTIONS
from appliance.engine.rtprio import name_this_thread, start_thread
from appliance.errors import ApplianceError
from appliance.params import GROUPS, PARAMETERS
from appliance.remote import token as tokens
from appliance.remote.api import InstrumentApi
from appliance.remote.commands import Commands

log = logging.getLogger("appliance.web")

STATUS_HZ = 12.5               # pushes a second: "at least 10", with room for a late tick
LISTS_EVERY = 12               # ticks between looks at the recordings and MIDI mappings (~1 s)
MAX_CLIENTS = 16               # open websockets; more are refused (503)
# TCP connections of any kind: the pages, their downloads and a browser's spares (it keeps up to 6
# a host).  A LAN peer opening thousands would otherwise take every file descriptor the box has,
# and the next recording or MIDI device would fail to open.  More are answered 503 and closed.
MAX_CONNECTIONS = 64
# ... and of those, from one address: one machine holding its connections open cannot lock the
# page out for the others.  A browser keeps 6 a host, and a websocket a tab on top: 24 is room
# for every page the box serves (MAX_CLIENTS) from one laptop.
MAX_PER_PEER = 24
BACKLOG = 16
IDLE_SECONDS = 30.0            # a connection with no request (or one never finished) for this long is closed
MAX_MESSAGE = 16 * 1024        # bytes in one websocket message (a command is ~100)
SEND_SECONDS = 10.0            # a client that takes no frame for this long is closed
COOKIE = "appliance_token"
COOKIE_SECONDS = 400 * 24 * 3600    # the longest a browser keeps one
# Verbs the page may use: all the socket's but reload (the config is a file, edited over SSH)
# and web (the token it already has).
VERBS = frozenset({"status", "get", "set", "params", "preset", "scene", "learn", "unlearn", "record",
                   "midi", "start", "stop", "continue", "panic", "tap", "logs"})
STATUS_KEYS = ("tempo", "bar", "beat", "transport", "notes", "late_notes", "xruns", "cpu_percent", "audio_lag_ms",
               "midi_devices", "safe_mode", "safe_mode_reasons", "last_error", "recording", "scene_pending",
               "presets", "scenes", "sync", "link_peers", "temperature_c")
PAGE = Path(__file__).resolve().parent / "page"
FILES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
HEADERS = {
    # the page's own files and its websocket only: an injected script could not load or send anywhere
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Server": "appliance",          # not which aiohttp, to whoever asks
}


class WebServer:
    def __init__(self, host: str, port: int, api: InstrumentApi, token: str) -> None:
        self.host, self.port = host, port
        self.api = api
        self.token = token
        self.refused: Counter[str] = Counter()         # reason -> requests refused
        self.commands = 0
        self.pushes = 0                                 # status frames made (one per tick with a client)
        self._files = {path: ((PAGE / name).read_bytes(), kind) for path, (name, kind) in FILES.items()}
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._someone: asyncio.Event | None = None      # set while a client is connected
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        # commands wait for the control loop's answer (up to seconds): never in the event loop
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="web-command",
                                                           initializer=name_this_thread, initargs=("web-command",))

    # -- life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen, or raise OSError (the address is taken, or not this box's)."""
        self._thread = start_thread("web", self._run)
        self._ready.wait(30)
        if self._failure is not None:
            self._thread.join()
            self._thread = None
            raise self._failure
        if not self._ready.is_set():
            raise OSError("the web server did not start")

    def close(self) -> None:
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):          # the loop already ended (and said why)
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, Any]:
        return {"listen": f"{self.host}:{self.port}", "clients": len(self._clients), "commands": self.commands,
                "pushes": self.pushes, "refused": dict(self.refused)}

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._ready.is_set():
                self._failure = exc if isinstance(exc, OSError) else OSError(str(exc))
                self._ready.set()
            else:
                log.error("the web page stopped: %s", exc)
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping, self._someone = asyncio.Event(), asyncio.Event()
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_MESSAGE)
        app.router.add_get("/", self._file)
        app.router.add_get("/app.js", self._file)
        app.router.add_get("/style.css", self._file)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/recordings/{name}", self._recording)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=IDLE_SECONDS)
        await runner.setup()
        listener = None
        try:
            # our own listener rather than a TCPSite: each connection is admitted here, or refused
            server = runner.server
            assert server is not None
            listener = await asyncio.get_running_loop().create_server(
                lambda: self._admit(server), self.host or None, self.port, reuse_address=True, backlog=BACKLOG)
            self.port = listener.sockets[0].getsockname()[1]
            self._ready.set()
            pusher = asyncio.create_task(self._push())
            await self._stopping.wait()
            pusher.cancel()
            for client in list(self._clients):
                await client.close()
        finally:
            if listener is not None:
                listener.close()
            await runner.cleanup()

    def _admit(self, server: web.Server) -> asyncio.BaseProtocol:
        return _Gate(server, self.refused)

    # -- every request: the token ------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        in_url = tokens.matches(request.query.get("token"), self.token)
        if in_url and request.path == "/":     # keep it out of the address bar and the history
            response: web.StreamResponse = web.Response(status=303, headers={"Location": "/"})
        elif in_url or tokens.matches(request.cookies.get(COOKIE), self.token):
            try:
                response = await handler(request)
            except web.HTTPException as exc:   # 404, 405: answered with the same headers
                response = web.Response(status=exc.status, text=exc.text, headers=exc.headers)
        else:
            self.refused["token"] += 1
            response = web.Response(status=401, text="This page needs its token: on the box, run "
                                    "`appliance web-url` and open the URL it prints.\n")
        if not response.prepared:
            response.headers.update(HEADERS)
            if in_url:
                response.set_cookie(COOKIE, self.token, max_age=COOKIE_SECONDS, httponly=True,
                                    samesite="Strict", path="/")
        return response

    async def _file(self, request: web.Request) -> web.Response:
        body, kind = self._files[request.path]
        return web.Response(body=body, content_type=kind, charset="utf-8")

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        try:
            path = self.api.recording_path(request.match_info["name"])
        except ApplianceError as exc:
            raise web.HTTPNotFound(text=f"{exc}\n") from None
        return web.FileResponse(path, headers={
            "Content-Disposition": f'attachment; filename="{path.name}"', "Content-Type": "audio/wav"})

    # -- the websocket -----------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not _same_origin(request):
            self.refused["origin"] += 1
            raise web.HTTPForbidden(text="a websocket from another site\n")
        if len(self._clients) >= MAX_CLIENTS:
            self.refused["clients"] += 1
            raise web.HTTPServiceUnavailable(text=f"{MAX_CLIENTS} pages are open already\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=20.0)
        for name, value in HEADERS.items():
            ws.headers[name] = value
        await ws.prepare(request)
        peer = request.remote or "?"
        client = _Client(ws, Commands(self.api, source=f"web {peer}"))
        self._clients.add(client)
        self._someone.set()
        sender = asyncio.create_task(client.send_all())
        try:
            client.post("hello", json.dumps({"type": "hello", **self._hello()}))
            client.post("lists", self._lists())
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    self.refused["not text"] += 1
                    continue
                await self._command(client, message.data)
        finally:
            self._clients.discard(client)
            if not self._clients:
                self._someone.clear()
            sender.cancel()
            await ws.close()
        return ws

    async def _command(self, client: _Client, text: str) -> None:
        """One command, answered before the next is read: a page that sends faster than the
        loop answers waits, it does not queue."""
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            self.refused["malformed"] += 1
            client.reply({"ok": False, "error": 'a command is a JSON object with "cmd"'})
            return
        ident = request.get("id")
        if not (ident is None or (isinstance(ident, int) and not isinstance(ident, bool))):
            ident = None
        if request["cmd"] not in VERBS:
            self.refused["verb"] += 1
            client.reply({"ok": False, "id": ident, "error": f"the page cannot ask {request['cmd'][:40]!r}"})
            return
        self.commands += 1
        try:
            answer = await asyncio.get_running_loop().run_in_executor(self._pool, client.commands, request)
        except Busy:
            answer = {"ok": False, "error": "the instrument is busy: try again"}
        except ApplianceError as exc:
            answer = {"ok": False, "error": str(exc)}
        except Exception as exc:                      # a bug: said, never fatal to the page
            log.warning("web command %s failed: %s", request["cmd"], exc)
            answer = {"ok": False, "error": "internal error (logged)"}
        client.reply({**answer, "id": ident, "cmd": request["cmd"]})
        if request["cmd"] in ("preset", "scene", "learn", "unlearn", "record"):
            self._post_all("lists", self._lists())

    # -- pushes --------------------------------------------------------------------------------

    async def _push(self) -> None:
        """STATUS_HZ frames of status and every value while a page is open; asleep otherwise."""
        loop = asyncio.get_running_loop()
        period = 1.0 / STATUS_HZ
        tick = 0
        lists = ""
        while True:
            await self._someone.wait()
            started = loop.time()
            try:
                self._post_all("status", self._status())
                tick += 1
                if tick % LISTS_EVERY == 0:
                    fresh = self._lists()
                    if fresh != lists:
                        lists = fresh
                        self._post_all("lists", fresh)
            except Exception as exc:                  # never the end of the pushes
                log.warning("web status failed: %s", exc)
            await asyncio.sleep(max(0.0, period - (loop.time() - started)))

    def _post_all(self, kind: str, text: str) -> None:
        for client in self._clients:
            client.post(kind, text)

    def _status(self) -> str:
        status = self.api.status()
        values = self.api.values()
        self.pushes += 1
        music = status.get("music") or {}
        return json.dumps({
            "type": "status", **{key: status.get(key) for key in STATUS_KEYS},
            "music": {key: music.get(key) for key in ("section", "bar_in_section", "section_bars", "chord",
                                                      "scale")} if music else None,
            "values": {spec.name: [spec.external(values[spec.name]), spec.format(values[spec.name]),
                                   round(spec.to_unit(values[spec.name]), 5)] for spec in PARAMETERS},
        })

    def _lists(self) -> str:
        midi = self.api.midi()
        return json.dumps({"type": "lists", "recordings": self.api.recording_names(),
                           "mappings": midi["mappings"], "outputs": midi["outputs"], "learning": midi["learning"]})

    def _hello(self) -> dict[str, Any]:
        return {"groups": list(GROUPS), "actions": list(MIDI_ACTIONS),
                **Commands(self.api).params({"cmd": "params"})}


class _Client:
    """One open page: what it has not been sent yet.  Status and lists are latest-wins (a slow
    phone skips frames, it never makes the box hold them); replies all go, in order."""

    def __init__(self, ws: web.WebSocketResponse, commands: Commands) -> None:
        self.ws = ws
        self.commands = commands
        self._latest: dict[str, str] = {}
        self._replies: list[str] = []
        self._waiting = asyncio.Event()

    def post(self, kind: str, text: str) -> None:
        self._latest[kind] = text
        self._waiting.set()

    def reply(self, answer: dict[str, Any]) -> None:
        self._replies.append(json.dumps({"type": "reply", **answer}))
        self._waiting.set()

    async def send_all(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError, RuntimeError):
            while not self.ws.closed:
                await self._waiting.wait()
                self._waiting.clear()
                frames = self._replies + [self._latest.pop(kind) for kind in ("hello", "lists", "status")
                                          if kind in self._latest]
                self._replies = []
                for frame in frames:
                    await asyncio.wait_for(self.ws.send_str(frame), SEND_SECONDS)
        await self.close()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()


class _Gate(asyncio.Protocol):
    """A new TCP connection, handed to aiohttp's handler; or, past MAX_CONNECTIONS in all or
    MAX_PER_PEER from its address, told 503 and closed before anything is read.  A gate and not
    a check in the factory, because only connection_made knows the peer."""

    def __init__(self, server: web.Server, refused: Counter[str]) -> None:
        self._server = server
        self._refused = refused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = _address(transport)
        handlers = self._server.connections
        if len(handlers) >= MAX_CONNECTIONS:
            self._refused["connections"] += 1
        elif sum(_address(h.transport) == peer for h in handlers if h.transport is not None) >= MAX_PER_PEER:
            self._refused["connections from one address"] += 1
        else:
            handler = self._server()
            transport.set_protocol(handler)     # from now on the transport talks to aiohttp
            handler.connection_made(transport)
            return
        transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        transport.close()


def _address(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return peer[0] if isinstance(peer, tuple) else None


def _same_origin(request: web.Request) -> bool:
    """The websocket was opened by a page from this very server (scheme, host and port)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower() \
        and not parts.path.strip("/")
