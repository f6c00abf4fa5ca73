"""What saving the last state costs the control loop, while the disk is busy.

    python bench/state_save.py --out FILE.json [--saves N] [--write-mib M]

The last state is saved every few seconds (state.json: a temporary file,
fsync, rename, fsync of the directory).  On a box that is recording, the
disk has writeback of its own to do, and an fsync waits behind it.  Two ways
of saving, in turn, in the same run and under the same load:
  in_loop    the loop writes the file itself (as it did before)
  handed     the loop takes the snapshot and hands it to the state-writer
             thread (LastState.job, as it does now)
Measured: how long the loop's call takes (the time it cannot compose), and
for `handed` also how long until the file is written.  The load is `dd`
writing --write-mib MiB of zeros to the same file system, without syncing,
in a loop for the whole run (bounded by `timeout`), so writeback is always
due; which way goes first alternates, with the same gap before each.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from summary import ms_stats as figures

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.service import state  # noqa: E402
from appliance.service.last_state import LastState  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "state_save.json")
    parser.add_argument("--saves", type=int, default=60, help="saves of each kind")
    parser.add_argument("--write-mib", type=int, default=512, help="MiB each dd writes")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds before each save")
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"), help="on the file system to measure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        in_loop: list[float] = []
        handed: list[float] = []
        written: list[float] = []
        problems: list[str] = []
        last = LastState(directory / "state.json", problems.append)
        loads = 0
        deadline = time.monotonic() + 600                       # bounded, whatever the disk does
        load = None
        try:
            for i in range(args.saves):
                if time.monotonic() > deadline:
                    break
                if load is None or load.poll() is not None:    # writeback always due: dd, again and again
                    load = subprocess.Popen(
                        ["timeout", "600", "sh", "-c", f"while :; do dd if=/dev/zero of='{directory / 'load'}' "
                         f"bs=1M count={args.write_mib} 2>/dev/null; done"], start_new_session=True)
                    loads += 1
                    time.sleep(1.0)
                values = {"tempo": 60.0 + i % 100, "volume": -6.0}
                # in turn which goes first, with time between: an fsync pays for the writeback
                # since the one before it, so each must find the same amount due
                for kind in (("in_loop", "handed") if i % 2 == 0 else ("handed", "in_loop")):
                    time.sleep(args.gap)
                    if kind == "in_loop":
                        began = time.perf_counter()
                        state.save(directory / "old.json", "state", {"params": values, "learned": []})
                        in_loop.append(time.perf_counter() - began)
                        continue
                    snapshot = ({**values, "swing": 50.0 + i % 10}, [])
                    job = last.job(lambda snapshot=snapshot: snapshot)
                    began = time.perf_counter()
                    job(time.monotonic())
                    handed.append(time.perf_counter() - began)
                    writing = last._writing
                    if writing is not None:
                        writing.result(timeout=120)
                        written.append(time.perf_counter() - began)
        finally:
            if load is not None:                               # the loop and its dd, not just timeout
                os.killpg(load.pid, signal.SIGKILL)
                load.wait()
            last.close()
    result = {
        "command": " ".join(["bench/state_save.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.date.today().isoformat(),
        "load": f"dd of {args.write_mib} MiB in a loop (started {loads} times), on {args.dir}",
        "loop_ms": {"in_loop": figures(in_loop), "handed": figures(handed)},
        "handed_until_written_ms": figures(written) if written else None,
        "problems": problems,
    }
    result["ratio_in_loop_over_handed"] = {
        key: round(result["loop_ms"]["in_loop"][key] / max(result["loop_ms"]["handed"][key], 1e-6), 1)
        for key in ("p50", "p99", "max")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
