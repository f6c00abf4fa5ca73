"""Remote surfaces: what OSC costs the box and how fast it answers.

    python bench/remote.py --out FILE.json [--messages N] [--idle-seconds S]

The service runs as on the box (`appliance run --simulate`, null audio paced
in real time, the control socket), once without OSC and once with `[osc]
listen` on the loopback, in turn, and is measured from outside:

  rss_mib, idle_cpu_percent   /proc of the service after it settled, and over
                              S seconds with no client: the cost of OSC being on
  osc_round_trip_ms           a client sends /param/brightness <v> (a new value
                              each time, N of them, 50 a second) and times the
                              box's feedback of that value: in through the UDP
                              thread and the inbox, applied by the control loop
                              (Csound's channel set), out as feedback.  The part
                              from the message to Csound's channel is at most this.
  refused                     what the box counted as refused (0 expected)

The web page (issue 12) is not built yet; its figures will join these.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pythonosc.osc_message_builder import OscMessageBuilder  # noqa: E402
from pythonosc.osc_packet import OscPacket  # noqa: E402

CONFIG = "[audio]\nbackend = 'null'\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_service(tmp: Path, osc_port: int | None) -> tuple[subprocess.Popen, Path]:
    config = tmp / "remote.toml"
    config.write_text(CONFIG + (f'[osc]\nlisten = "127.0.0.1:{osc_port}"\n' if osc_port else ""))
    sock = tmp / "control.sock"
    process = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--simulate", "--config", str(config),
                                "--socket", str(sock), "--state-dir", str(tmp / "state")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return process, sock


def status(sock: Path) -> dict:
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(sock))
        client.sendall(b'{"cmd": "status"}\n')
        data = b""
        while not data.endswith(b"\n"):
            data += client.recv(65536)
    return json.loads(data)["status"]


def cost(pid: int, seconds: float) -> dict:
    """RSS now, and the CPU the process used over `seconds` (all its threads)."""
    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    before, started = cpu(), time.monotonic()
    time.sleep(seconds)
    used = cpu() - before
    return {"rss_mib": round(rss / 1024, 1), "idle_cpu_percent": round(100 * used / (time.monotonic() - started), 2)}


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


def stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    ms = np.array(values) * 1000
    return {"count": len(values), "p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3), "max": round(float(ms.max()), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "remote.json")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    result: dict = {"command": " ".join(["bench/remote.py", *(argv if argv is not None else sys.argv[1:])]),
                    "date": datetime.date.today().isoformat()}
    for name, port in (("without OSC", None), ("with OSC", free_port())):
        with tempfile.TemporaryDirectory() as tmp:
            process, sock = start_service(Path(tmp), port)
            try:
                time.sleep(3.0)                                   # settled
                run = cost(process.pid, args.idle_seconds)
                if port:
                    trips = round_trips(port, args.messages)
                    run["osc_round_trip_ms"] = stats(trips)
                    run["lost"] = args.messages - len(trips)
                    run["osc"] = status(sock)["osc"]
                    run["late_notes"] = status(sock)["late_notes"]
                result[name] = run
                print(name, json.dumps(run), flush=True)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    base, osc = result["without OSC"], result["with OSC"]
    result["osc_extra_rss_mib"] = round(osc["rss_mib"] - base["rss_mib"], 1)
    result["osc_extra_idle_cpu_percent"] = round(osc["idle_cpu_percent"] - base["idle_cpu_percent"], 2)
    print("OSC adds", result["osc_extra_rss_mib"], "MiB and", result["osc_extra_idle_cpu_percent"], "% CPU idle")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
