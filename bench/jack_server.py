"""A private JACK server on the dummy driver, for benchmarks that need JACK audio and MIDI."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

RATE, PERIOD = 48000, 64


@contextmanager
def dummy_jack(prefix: str) -> Iterator[str]:
    """Start `jackd -d dummy` (48 kHz, 64-frame periods, real-time when root), make it the
    default server of this process and its children, and stop it afterwards.  Yields a
    description for the results file."""
    for tool in ("jackd", "stress-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install jackd2 stress-ng")
    name = f"{prefix}-{os.getpid()}"
    os.environ["JACK_DEFAULT_SERVER"] = name
    realtime = ["-R", "-P", "80"] if os.geteuid() == 0 else ["--no-realtime"]
    jack = subprocess.Popen(["jackd", *realtime, "-n", name, "-d", "dummy", "-r", str(RATE), "-p", str(PERIOD)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not glob.glob(f"/dev/shm/jack_{name}_*") and time.monotonic() < deadline:
            time.sleep(0.05)
        yield (f"dummy driver, {RATE // 1000} kHz, {PERIOD}-frame periods ({PERIOD / RATE * 1000:.2f} ms), "
               f"{' '.join(realtime)}")
    finally:
        jack.terminate()
        jack.wait()


def stress_all_cores() -> subprocess.Popen:
    return subprocess.Popen(["stress-ng", "--cpu", str(os.cpu_count()), "--quiet"])
