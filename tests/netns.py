"""Tests that multicast (Ableton Link finds peers by UDP multicast on every
interface) run in a network namespace of their own, with only the loopback:
nothing they send can leave this machine.

A test calls `inside(request)` first: outside a namespace it runs that same
test again in a fresh one (`unshare -n`, as root) and checks that it passed
there, then returns False (the test body is not run out here); inside, it
returns True and the test goes on.  Without root or unshare the test skips,
saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = "APPLIANCE_PRIVATE_NETNS"
# the loopback, up, carrying multicast: two peers on it find each other
SETUP = "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"


def inside(request: pytest.FixtureRequest, timeout: float = 300) -> bool:
    if os.environ.get(MARK) == "1":
        return True
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs a network namespace of its own (root, unshare and ip): Link multicasts on every "
                    "interface, and a test's traffic must not leave the machine")
    probe = subprocess.run(["unshare", "-n", "sh", "-c", SETUP], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.strip()}")
    command = ["unshare", "-n", "sh", "-c", f'{SETUP} && exec "$0" -m pytest -q -p no:cacheprovider "$1"',
               sys.executable, request.node.nodeid]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, MARK: "1"}, capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.returncode == 0 and "1 passed" in result.stdout, output
    return False
