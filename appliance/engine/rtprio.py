"""Threads as the operating system sees them: real-time scheduling and names.

The performance thread is created in C (libcsnd6), so Python cannot set its
policy by name.  On Linux a new thread inherits the scheduling policy of the
thread that creates it, so we create it from a short-lived Python thread that
has raised itself to SCHED_FIFO: the native thread inherits the policy, and
no Python thread keeps it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_MCL_CURRENT, _MCL_FUTURE = 1, 2
_PR_SET_NAME = 15
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Spawned(Generic[T]):
    value: T
    realtime: bool
    warning: str | None


def name_this_thread(name: str) -> None:
    """Name the calling OS thread, as `ps -L -o tid,cls,rtprio,comm` and `top -H` show it.

    Python 3.11 names only its own Thread objects; the kernel's name (15 bytes
    at most) is what a person debugging the box sees, and native threads
    created from this one (Csound's) inherit it.
    """
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def start_thread(name: str, target: Callable[[], object], daemon: bool = True) -> threading.Thread:
    """Start a daemon thread that carries its name into the kernel too."""

    def run() -> None:
        name_this_thread(name)
        target()

    thread = threading.Thread(target=run, name=name, daemon=daemon)
    thread.start()
    return thread


def create_with_priority(create: Callable[[], T], priority: int, name: str = "csound") -> Spawned[T]:
    """Call create() in a thread running SCHED_FIFO at priority (0: normal policy).

    If the system refuses real-time scheduling (no CAP_SYS_NICE, no
    LimitRTPRIO, a container), create() still runs, at normal priority, and
    the warning says why.
    """
    box: dict[str, object] = {}

    def run() -> None:
        name_this_thread(name)          # the native thread it creates inherits the name
        if priority > 0:
            try:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
                box["realtime"] = True
            except OSError as exc:
                box["warning"] = (f"cannot give Csound's thread real-time priority {priority} "
                                  f"({exc.strerror}); it runs at normal priority. "
                                  "Allow it with LimitRTPRIO= in the service, "
                                  "or an rtprio limit for the audio group.")
        try:
            box["value"] = create()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"{name}-spawn")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return Spawned(box["value"], bool(box.get("realtime")), box.get("warning"))  # type: ignore[arg-type]


@contextlib.contextmanager
def realtime_thread(priority: int, what: str) -> Iterator[str | None]:
    """Run the calling thread on SCHED_FIFO for the block, then restore its policy.

    Yields a warning if the system refused (the block runs anyway).
    """
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    warning = raise_this_thread(priority, what)
    try:
        yield warning
    finally:
        if warning is None and priority > 0:
            os.sched_setscheduler(0, policy, param)


def raise_this_thread(priority: int, what: str) -> str | None:
    """Put the calling thread on SCHED_FIFO at priority; a warning if refused (0: leave it)."""
    if priority <= 0:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as exc:
        return f"cannot give the {what} real-time priority {priority} ({exc.strerror}); it runs at normal priority"
    return None


def lock_memory() -> str | None:
    """Lock the process's memory (current and future) so the audio path never
    waits for a page to come back from disk; a note why not, if it is not done.

    Only when RLIMIT_MEMLOCK is unlimited (LimitMEMLOCK=infinity in the unit):
    with a finite limit, MCL_FUTURE would make allocations beyond it fail.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY:
        return (f"memory not locked: the memlock limit is {soft // 1024} KiB "
                "(LimitMEMLOCK=infinity in the service lets it lock)")
    if _libc.mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        return f"memory not locked: mlockall failed ({os.strerror(ctypes.get_errno())})"
    return None


def thread_policies() -> dict[int, tuple[str, int]]:
    """{tid: (policy name, rt priority)} for every thread of this process."""
    names = {os.SCHED_OTHER: "other", os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}
    found = {}
    for entry in os.listdir("/proc/self/task"):
        tid = int(entry)
        try:
            policy = os.sched_getscheduler(tid)
            found[tid] = (names.get(policy, str(policy)), os.sched_getparam(tid).sched_priority)
        except OSError:
            continue  # the thread ended while we looked
    return found
