"""Remote surfaces: what OSC and the web page cost the box and how fast they answer.

    python bench/remote.py --out FILE.json [--messages N] [--idle-seconds S] [--clients 1,4,8,16]

The service runs as on the box (`appliance run --simulate`, null audio paced
in real time, the control socket), without OSC or the page, with `[osc]
listen`, and with `[web] listen`, on the loopback, in turn, and is measured
from outside:

  rss_mib, idle_cpu_percent   /proc of the service after it settled, and over
                              S seconds with no client: the cost of OSC being on
  osc_round_trip_ms           a client sends /param/brightness <v> (a new value
                              each time, N of them, 50 a second) and times the
                              box's feedback of that value: in through the UDP
                              thread and the inbox, applied by the control loop
                              (Csound's channel set), out as feedback.  The part
                              from the message to Csound's channel is at most this.
  refused                     what the box counted as refused (0 expected)

With the web page (a websocket client speaking as the page does, aiohttp's):
  web idle / with a page open  RSS and CPU with no page, then with one page open
                              (status and every value pushed 12.5 times a second)
  page_set_ms                 the page's "set" (a control moved) -> the box's reply, which
                              it sends once the control loop has applied the value
                              (Csound's channel set): N of them, 50 a second
  browser_set_ms              the same from a real page in Debian's Chromium (selenium): the
                              brightness slider's input event -> the reply handled by the
                              page's script (skipped, saying why, where Chromium is missing)
  status_push                 frames a second a page receives, and the gaps between them
  clients                     N pages at once, each taking every push and moving a
                              control 10 times a second, for S seconds: late notes, xruns,
                              the box's CPU, and any page that got nothing (the box
                              serves at most 16; the 17th is refused)
The clients run on the same machine and take CPU of their own: on a Pi the
page is on a phone, so these figures are the harder case.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from summary import ms_stats as stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pythonosc.osc_message_builder import OscMessageBuilder  # noqa: E402
from pythonosc.osc_packet import OscPacket  # noqa: E402

CONFIG = "[audio]\nbackend = 'null'\n"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(tmp: Path, osc_port: int | None, web_port: int | None = None) -> tuple[subprocess.Popen, Path]:
    config = tmp / "remote.toml"
    config.write_text(CONFIG + (f'[osc]\nlisten = "127.0.0.1:{osc_port}"\n' if osc_port else "") +
                      (f'[web]\nlisten = "127.0.0.1:{web_port}"\n' if web_port else ""))
    sock = tmp / "control.sock"
    process = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--simulate", "--config", str(config),
                                "--socket", str(sock), "--state-dir", str(tmp / "state")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process, sock


def ask(sock: Path, command: dict) -> dict:
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(sock))
        client.sendall(json.dumps(command).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            data += client.recv(65536)
    return json.loads(data)


def status(sock: Path) -> dict:
    return ask(sock, {"cmd": "status"})["status"]


def cost(pid: int, seconds: float) -> dict:
    """RSS now, and the CPU the process used over `seconds` (all its threads)."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    before, threads, started = cpu_seconds(pid), thread_seconds(pid), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    after = thread_seconds(pid)
    # the remote surfaces' own threads, exactly (the process's total wanders by a percent or two)
    own = {name: round(100 * (after[name] - threads.get(name, 0.0)) / elapsed, 3) for name in after
           if name in ("osc", "web", "web-command", "zeroconf", "control-socket")}
    return {"rss_mib": round(rss / 1024, 1), "idle_cpu_percent": round(100 * used / elapsed, 2),
            "threads_cpu_percent": own}


def message(address: str, value: float) -> bytes:
    builder = OscMessageBuilder(address=address)
    builder.add_arg(value)
    return builder.build().dgram


def round_trips(port: int, count: int) -> list[float]:
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.settimeout(1.0)
    times: list[float] = []
    for i in range(count):
        value = round(0.001 + (i % 997) / 1000, 3)           # a new value each time
        sent = time.monotonic()
        client.sendto(message("/param/brightness", value), ("127.0.0.1", port))
        deadline = sent + 1.0
        while time.monotonic() < deadline:
            try:
                data = client.recv(65536)
            except TimeoutError:
                break
            got = [t.message for t in OscPacket(data).messages]
            if any(m.address == "/param/brightness" and abs(m.params[0] - value) < 1e-6 for m in got):
                times.append(time.monotonic() - sent)
                break
        time.sleep(max(0.0, sent + 0.02 - time.monotonic()))
    client.close()
    return times


# -- the web page -----------------------------------------------------------------------------

async def _page(base: str, token: str, phone: int = 0):
    """A page, from its own loopback address (127.0.0.2 and up: each a phone of its own, as the box
    admits at most MAX_PER_PEER connections from one address)."""
    import aiohttp

    connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + phone}", 0))
    session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), connector=connector)
    try:
        ws = await session.ws_connect(base + "/ws", headers={"Cookie": f"appliance_token={token}", "Origin": base},
                                      max_msg_size=1 << 20)
    except BaseException:
        await session.close()             # a refused page leaves no connection behind
        raise
    return session, ws


async def _reply(ws, ident: int, seconds: float = 5.0) -> dict | None:
    import aiohttp

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = await ws.receive(timeout=seconds)
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        data = json.loads(message.data)
        if data["type"] == "reply" and data.get("id") == ident:
            return data
    return None


async def page_sets(base: str, token: str, count: int) -> list[float]:
    """A control moved on the page: the "set" out, the box's reply back (sent once applied)."""
    session, ws = await _page(base, token)
    times: list[float] = []
    try:
        for i in range(count):
            sent = time.monotonic()
            value = round(0.001 + (i % 997) / 1000, 3)               # a new value each time
            await ws.send_str(json.dumps({"cmd": "set", "name": "brightness", "value": value, "id": i}))
            reply = await _reply(ws, i)
            if reply is not None and reply["ok"]:
                times.append(time.monotonic() - sent)
            await asyncio.sleep(max(0.0, sent + 0.02 - time.monotonic()))
    finally:
        await ws.close()
        await session.close()
    return times


async def pushes(base: str, token: str, seconds: float) -> dict:
    import aiohttp

    session, ws = await _page(base, token)
    arrivals: list[float] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = await ws.receive(timeout=seconds)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            if json.loads(message.data)["type"] == "status":
                arrivals.append(time.monotonic())
    finally:
        await ws.close()
        await session.close()
    gaps = np.diff(arrivals) if len(arrivals) > 1 else np.array([])
    return {"per_second": round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 2) if len(arrivals) > 1 else 0,
            "gap_ms": stats(list(gaps))}


async def many_pages(base: str, token: str, count: int, seconds: float) -> dict:
    """`count` pages at once, each taking every push and moving a control 10 times a second."""
    import aiohttp

    async def page(index: int) -> dict:
        try:
            session, ws = await _page(base, token, index)
        except aiohttp.WSServerHandshakeError as exc:
            return {"refused": exc.status}
        frames = sets = 0
        try:
            deadline = time.monotonic() + seconds
            next_set = time.monotonic()
            while time.monotonic() < deadline:
                if time.monotonic() >= next_set:
                    await ws.send_str(json.dumps({"cmd": "set", "name": "echo", "value": (index + sets) % 10 / 10}))
                    sets += 1
                    next_set += 0.1
                try:
                    message = await ws.receive(timeout=max(0.001, next_set - time.monotonic()))
                except TimeoutError:
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frames += json.loads(message.data)["type"] == "status"
        finally:
            await ws.close()
            await session.close()
        return {"frames": frames, "sets": sets}

    return {"pages": await asyncio.gather(*(page(i) for i in range(count)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "remote.json")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,4,8,16", help="how many pages at once, in turn")
    args = parser.parse_args(argv)
    result: dict = {"command": " ".join(["bench/remote.py", *(argv if argv is not None else sys.argv[1:])]),
                    "date": datetime.date.today().isoformat()}
    runs = (("without OSC", None, None), ("with OSC", free_port(), None),
            ("with the web page", None, free_port(socket.SOCK_STREAM)))
    for name, port, web_port in runs:
        with tempfile.TemporaryDirectory() as tmp:
            process, sock = start_service(Path(tmp), port, web_port)
            try:
                time.sleep(3.0)                                   # settled
                run = cost(process.pid, args.idle_seconds)
                if port:
                    trips = round_trips(port, args.messages)
                    run["osc_round_trip_ms"] = stats(trips)
                    run["lost"] = args.messages - len(trips)
                    run["osc"] = status(sock)["osc"]
                    run["late_notes"] = status(sock)["late_notes"]
                if web_port:
                    run.update(web(process.pid, sock, args))
                result[name] = run
                print(name, json.dumps(run), flush=True)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    base, osc, page = result["without OSC"], result["with OSC"], result["with the web page"]
    result["osc_extra_rss_mib"] = round(osc["rss_mib"] - base["rss_mib"], 1)
    result["osc_extra_idle_cpu_percent"] = round(osc["idle_cpu_percent"] - base["idle_cpu_percent"], 2)
    result["web_extra_rss_mib"] = round(page["rss_mib"] - base["rss_mib"], 1)
    result["web_extra_idle_cpu_percent"] = round(page["idle_cpu_percent"] - base["idle_cpu_percent"], 2)
    result["web_one_page_extra_cpu_percent"] = round(page["one_page_open"]["idle_cpu_percent"] -
                                                     base["idle_cpu_percent"], 2)
    result["web_threads_cpu_percent"] = {
        "idle": round(sum(v for k, v in page["threads_cpu_percent"].items() if k.startswith("web")), 3),
        "one page open": round(sum(v for k, v in page["one_page_open"]["threads_cpu_percent"].items()
                                   if k.startswith("web")), 3)}
    served = [n for n, figures in page["clients"].items() if figures["late_notes"] == 0 and not figures["starved"]]
    result["web_pages_served_with_no_late_note"] = max((int(n) for n in served), default=0)
    print("OSC adds", result["osc_extra_rss_mib"], "MiB and", result["osc_extra_idle_cpu_percent"], "% CPU idle;",
          "the web page", result["web_extra_rss_mib"], "MiB,", result["web_extra_idle_cpu_percent"], "% idle,",
          result["web_one_page_extra_cpu_percent"], "% with a page open (its own threads:",
          result["web_threads_cpu_percent"], ");",
          result["web_pages_served_with_no_late_note"], "pages at once with no late note")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def web(pid: int, sock: Path, args: argparse.Namespace) -> dict:
    base, token = ask(sock, {"cmd": "web"})["urls"][0].split("/?token=")
    figures: dict = {}

    async def open_page_cost() -> dict:
        session, ws = await _page(base, token)
        try:
            async def drain() -> None:
                async for _ in ws:
                    pass
            reader = asyncio.create_task(drain())
            await asyncio.sleep(1.0)
            measured = await asyncio.to_thread(cost, pid, args.idle_seconds)
            reader.cancel()
            return measured
        finally:
            await ws.close()
            await session.close()

    figures["one_page_open"] = asyncio.run(open_page_cost())
    figures["page_set_ms"] = stats(asyncio.run(page_sets(base, token, args.messages)))
    figures["browser_set_ms"] = browser_sets(base + "/?token=" + token, min(args.messages, 500))
    figures["status_push"] = asyncio.run(pushes(base, token, 5.0))
    figures["clients"] = {}
    for count in (int(n) for n in args.clients.split(",")):
        before = status(sock)
        started = cpu_seconds(pid)
        pages = asyncio.run(many_pages(base, token, count, args.idle_seconds))["pages"]
        used = cpu_seconds(pid) - started
        after = status(sock)
        served = [p for p in pages if "frames" in p]
        figures["clients"][str(count)] = {
            "late_notes": after["late_notes"] - before["late_notes"], "xruns": after["xruns"] - before["xruns"],
            "cpu_percent": round(100 * used / args.idle_seconds, 1),
            "frames_per_page_per_second": round(min((p["frames"] for p in served), default=0) / args.idle_seconds, 1),
            "sets": sum(p["sets"] for p in served), "refused": len(pages) - len(served),
            "starved": sum(1 for p in served if p["frames"] == 0)}
        print(f"  {count} pages:", json.dumps(figures["clients"][str(count)]), flush=True)
    figures["web"] = status(sock)["web"]
    figures["late_notes"] = status(sock)["late_notes"]
    return figures


def thread_seconds(pid: int) -> dict[str, float]:
    """CPU seconds by thread name (the kernel's: the box names its threads)."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:                      # the thread ended
            continue
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


# The page's own script is timed from inside: its `answered` (a global function of app.js) is
# wrapped, and each reply to a brightness set moves the slider again.
_BROWSER_SETS = """
const done = arguments[arguments.length - 1], count = arguments[0];
const range = document.getElementById("p-brightness"), original = answered, times = [];
let sent = 0, started = 0;
function next() {
  if (times.length >= count) { answered = original; done(times); return; }
  started = performance.now();
  range.value = String((sent++ % 999) + 1);
  range.dispatchEvent(new Event("input"));
}
answered = (reply) => {
  original(reply);
  if (reply.cmd === "set" && reply.name === "brightness") { times.push(performance.now() - started); next(); }
};
next();
"""


def browser_sets(url: str, count: int) -> dict:
    try:
        from tests.test_web import chromium

        driver = chromium()
    except Exception as exc:                        # no browser here: said, not fatal
        return {"skipped": f"no Chromium: {str(exc).splitlines()[0][:200]}"}
    try:
        driver.set_script_timeout(120)
        driver.get(url)
        deadline = time.monotonic() + 30
        while driver.find_element("id", "connection").text != "connected" and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        times = driver.execute_async_script(_BROWSER_SETS, count)
    finally:
        driver.quit()
    return stats([t / 1000 for t in times])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    raise SystemExit(main())
