"""Another Ableton Link peer, in a process of its own (the tests' and bench/sync.py's).

    python tests/link_peer.py PLAN.json OUT.json

PLAN: {"tempo": 120, "quantum": 4, "seconds": 10, "playing": false,
       "events": [[2.0, "tempo", 133.0], [5.0, "play"], [8.0, "stop"]]}
Times are seconds after the peer starts.  Every 10 ms it writes down where
the session is, so the other side can put the session's beats on the wall
clock: each reading is [monotonic before, monotonic after, beat, tempo,
playing, peers] (the beat was read between the two times).  OUT is written
when the plan ends (or on SIGTERM); "ready" on stdout says the peer is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import sys
import time
from pathlib import Path

from aalink import Link


async def main(plan: dict, out: Path) -> None:
    link = Link(float(plan["tempo"]))
    link.quantum = float(plan.get("quantum", 4))
    link.start_stop_sync_enabled = True
    link.enabled = os.environ.get("LINK_PEER_OFFLINE") != "1"   # offline: a clock, not a peer
    if plan.get("playing"):
        link.set_is_playing_and_request_beat_at_time(True, link.time, 0.0)
    readings: list[list] = []
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    events = sorted(plan.get("events", []))
    start = time.monotonic()
    print("ready", flush=True)
    while not done.is_set() and time.monotonic() - start < plan["seconds"]:
        elapsed = time.monotonic() - start
        while events and events[0][0] <= elapsed:
            _, kind, *args = events.pop(0)
            if kind == "tempo":
                link.tempo = float(args[0])
            elif kind == "play":       # as Ableton's apps start: beat 0 on the next bar
                link.set_is_playing_and_request_beat_at_time(True, link.time + datetime.timedelta(seconds=0.1), 0.0)
            elif kind == "stop":
                link.playing = False
        before = time.monotonic()
        beat = link.beat
        after = time.monotonic()
        # and on Link's own clock (CLOCK_MONOTONIC_RAW, microseconds): beat and time read together
        link_beat, link_time = link.beat, link.time / datetime.timedelta(microseconds=1)
        readings.append([before, after, beat, link.tempo, link.playing, link.num_peers, link_time, link_beat])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.01)
    out.write_text(json.dumps({"readings": readings}))
    link.enabled = False


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])))
