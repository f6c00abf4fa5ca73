"""What a web page costs a Pi-class box, per server library: the choice for issue 12's page.

    python bench/web_servers.py --out bench/results/web_servers.json

Each candidate serves a page and a websocket from a bare Python process of its
own (the box's process already holds much of what they import, so these are
upper bounds); after one request it is left idle.  Reported: RSS against a bare
Python (extra_rss_mib) and idle CPU over 5 s.  And import_in_box_mib: what
importing it adds to a process that already holds what the box's does
(asyncio, zeroconf, json, http.client: zeroconf runs on asyncio), the nearer
figure for the page inside the service.  Candidates not installed are
skipped and said so: they are not the box's dependencies; for a comparison run
it in a scratch venv (`python3 -m venv /tmp/w && /tmp/w/bin/pip install websockets
aiohttp starlette uvicorn && /tmp/w/bin/python bench/web_servers.py`).
"""
import argparse
import datetime
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

IMPORTS = {"websockets": ["websockets.asyncio.server"], "aiohttp": ["aiohttp.web"],
           "starlette+uvicorn": ["starlette.applications", "starlette.routing", "uvicorn", "websockets.asyncio.server"]}
NEEDS = {"websockets": ["websockets"], "aiohttp": ["aiohttp"], "starlette+uvicorn": ["starlette", "uvicorn"]}
SERVERS = {
"baseline": "import time\nprint('ready', flush=True)\ntime.sleep(60)",
"stdlib http.server": """
import http.server, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(('127.0.0.1', PORT), H)
threading.Thread(target=s.serve_forever, daemon=True).start()
print('ready', flush=True)
import time; time.sleep(60)
""",
"websockets": """
import asyncio, threading
from websockets.asyncio.server import serve
async def handler(ws):
    async for m in ws: await ws.send(m)
def process_request(conn, req):
    if req.path != '/ws': return conn.respond(200, 'ok')
async def main():
    async with serve(handler, '127.0.0.1', PORT, process_request=process_request):
        print('ready', flush=True); await asyncio.sleep(60)
asyncio.run(main())
""",
"aiohttp": """
from aiohttp import web
async def page(r): return web.Response(text='ok')
async def ws(r):
    w = web.WebSocketResponse(); await w.prepare(r); return w
app = web.Application(); app.add_routes([web.get('/', page), web.get('/ws', ws)])
print('ready', flush=True)
web.run_app(app, host='127.0.0.1', port=PORT, print=None)
""",
"starlette+uvicorn": """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
import uvicorn
async def page(r): return PlainTextResponse('ok')
async def ws(w): await w.accept()
app = Starlette(routes=[Route('/', page), WebSocketRoute('/ws', ws)])
print('ready', flush=True)
uvicorn.run(app, host='127.0.0.1', port=PORT, log_level='error')
""",
}


def rss(pid: int) -> float:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")) / 1024


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "web_servers.json")
    args = parser.parse_args()
    out: dict = {}
    for name, code in SERVERS.items():
        missing = [m for m in NEEDS.get(name, []) if importlib.util.find_spec(m) is None]
        if missing:
            out[name] = {"skipped": f"not installed: {', '.join(missing)}"}
            continue
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-c", code.replace("PORT", str(port))],
                                   stdout=subprocess.PIPE, text=True)
        try:
            process.stdout.readline()
            time.sleep(1.0)
            for _ in range(20 if name != "baseline" else 0):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.2)
            time.sleep(0.5)
            before = cpu(process.pid)
            time.sleep(5)
            out[name] = {"rss_mib": round(rss(process.pid), 1),
                         "idle_cpu_percent": round((cpu(process.pid) - before) / 5 * 100, 2)}
        finally:
            process.kill()
            process.wait()
    for name, modules in IMPORTS.items():
        if name in out and "skipped" not in out[name]:
            code = ("import asyncio, json, http.client, zeroconf, importlib\n"
                    "def rss(): return next(int(l.split()[1]) for l in open('/proc/self/status') "
                    "if l.startswith('VmRSS'))\n"
                    f"before = rss()\nfor m in {modules!r}: importlib.import_module(m)\nprint((rss() - before) / 1024)")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            out[name]["import_in_box_mib"] = round(float(done.stdout), 1) if done.returncode == 0 else \
                f"failed: {done.stderr.strip()[-200:]}"
    base = out["baseline"]["rss_mib"]
    for figures in out.values():
        if "rss_mib" in figures:
            figures["extra_rss_mib"] = round(figures["rss_mib"] - base, 1)
    result = {"command": "bench/web_servers.py", "date": datetime.date.today().isoformat(),
              "python": sys.version.split()[0], "servers": out}
    print(json.dumps(out, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
