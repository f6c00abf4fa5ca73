"""The control socket under attack from a local user: bounded threads, memory and CPU; every
request answered or refused plainly; and the instrument plays on."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.remote import client
from tests.test_service import GOOD_CONFIG


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def _cpu_seconds(pid: int, thread: str) -> float:
    """CPU seconds of the process's threads named `thread` (the box names its threads in the
    kernel): the socket's own thread, not the music, whose share depends on the machine."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().strip() != thread:
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:                       # the thread ended
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _connect_many(path: Path, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        held.append(sock)
    return held


def test_idle_connections_cost_no_thread_and_cannot_lock_a_person_out(box):
    box.ok("status")
    before, deadline = -1, time.monotonic() + 20           # every thread of the instrument is up
    while before != _threads(box.process.pid) and time.monotonic() < deadline:
        before = _threads(box.process.pid)
        time.sleep(0.5)
    held = _connect_many(box.socket, 200)
    try:
        assert box.ok("get", "tempo") == "111.0 BPM"         # a person still gets in
        assert _threads(box.process.pid) <= before             # no thread per connection
    finally:
        for sock in held:
            sock.close()


def test_forty_clients_at_once_all_get_their_answer(box):
    answers: list[dict] = []
    errors: list[Exception] = []

    def ask() -> None:
        try:
            answers.append(client.request(box.socket, {"cmd": "status"}, timeout=30))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(answers) == 40 and all(a["ok"] for a in answers)


def test_more_connections_than_file_descriptors_do_not_spin_the_instrument(box):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2200:
        pytest.skip(f"this test needs 2200 file descriptors, the limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2200), hard))
    held: list[socket.socket] = []
    try:
        for _ in range(1100):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            with contextlib.suppress(OSError):          # a full backlog refuses some: fine
                sock.connect(str(box.socket))
            held.append(sock)
        start = _cpu_seconds(box.process.pid, "control-socket")
        threading.Event().wait(2.0)
        spent = _cpu_seconds(box.process.pid, "control-socket") - start
        assert spent < 0.5                  # a spinning accept loop would take the whole 2 s
    finally:
        for sock in held:
            sock.close()
    assert box.ok("get", "tempo") == "111.0 BPM"


def test_deeply_nested_json_is_refused_with_an_answer(box):
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(box.socket))
        raw.settimeout(10)
        raw.sendall(b"[" * 30000 + b"]" * 30000 + b"\n" + b'{"cmd": "get", "name": "tempo"}\n')
        reader = raw.makefile("rb")
        first, second = json.loads(reader.readline()), json.loads(reader.readline())
    assert first["ok"] is False and "bad request" in first["error"]
    assert second["ok"] is True and second["value"] == 111.0


def test_a_client_that_floods_without_newlines_is_answered_and_dropped(box):
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(str(box.socket))
        raw.settimeout(10)
        with contextlib.suppress(OSError):            # dropped while still sending: as intended
            raw.sendall(b"x" * (1024 * 1024))
        answer = raw.recv(4096)
    assert b"longer than" in answer or answer == b""
    assert box.ok("get", "tempo") == "111.0 BPM"


@pytest.mark.parametrize("case", ["a regular file", "another user's directory"])
def test_without_its_socket_the_instrument_still_plays_and_says_why(tmp_path, case):
    path = tmp_path / "run" / "control.sock"
    path.parent.mkdir()
    if case == "a regular file":
        path.write_text("not a socket")
    else:
        if os.geteuid() != 0:
            pytest.skip("giving a directory to another user needs root")
        os.chown(path.parent, 65534, 65534)
    config, report = tmp_path / "c.toml", tmp_path / "report.json"
    config.write_text(GOOD_CONFIG)
    done = subprocess.run([sys.executable, "-m", "appliance", "run", "--simulate", "--config", str(config),
                           "--socket", str(path), "--state-dir", str(tmp_path / "state"), "--seconds", "1.5",
                           "--report", str(report)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["notes"] > 0
    assert any("control socket" in e and "playing without it" in e for e in result["errors"])


def test_the_cli_never_prints_a_traceback_for_a_strange_answer(tmp_path):
    path = tmp_path / "fake.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def answer_nonsense() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"\xff not json\n")
        conn.close()

    server = threading.Thread(target=answer_nonsense)
    server.start()
    done = subprocess.run([sys.executable, "-m", "appliance", "status", "--socket", str(path)],
                          capture_output=True, text=True, timeout=60)
    server.join(10)
    listener.close()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "not an answer" in done.stderr


