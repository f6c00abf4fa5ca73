"""Overhead: Python's CPU against Csound's, and the cost of a control command.

    python bench/overhead.py [--seconds N] [--repeats N] [--out FILE.json]
                             [--tree DIR] [--label TEXT] [--python PATH]

Only the command line and /proc are used (the package is never imported), so
the same script measures any checkout: `--tree DIR` runs the package from DIR
(PYTHONPATH=DIR, cwd=DIR).

1. CPU.  The instrument runs in simulated hardware (null audio, paced in real
   time) with a control socket in a temporary directory.  Once it answers and
   has settled, per-thread CPU (utime+stime from /proc/PID/task/TID/stat) and
   voluntary context switches are read at both ends of a window.  Threads are
   told apart by their names (comm) when the code names them ("csound",
   "control-loop", ...); otherwise the loop is the main thread and Csound's
   thread is the busiest other one.  Two conditions, one after the other (the
   box has few cores): "default" and "busy" (density 1, 180 BPM).
2. Commands.  The tree is compiled to bytecode first (as an install is).
   While the default condition plays (after its CPU window),
   `python -m appliance get tempo` against `python -c pass`, alternated, and
   the console script `appliance get tempo` if it is next to the interpreter.

Targets (from the issue): Python's CPU at most 25% of Csound's at the default
patch; a control command within 3x a bare interpreter start.
Writes JSON and a PNG next to it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CONDITIONS: list[tuple[str, list[str]]] = [
    ("default", []),
    ("busy", ["density=1", "tempo=180"]),
]
# Thread names the refactored code gives (comm is at most 15 characters).
CSOUND_NAME = "csound"
LOOP_NAME = "control-loop"
KNOWN_NAMES = {CSOUND_NAME, LOOP_NAME, "midi-poll", "midi-scan", "midi-clock-out", "control-socket", "recorder"}

PYTHON_CPU_TARGET = 0.25      # Python CPU / Csound CPU, at the default patch
COMMAND_TARGET = 3.0          # control command / bare interpreter start (medians)

SOCKET_WAIT_S = 30.0
STOP_WAIT_S = 15.0
COMMAND_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


@dataclass
class ThreadSample:
    tid: int
    comm: str
    ticks: int                # utime + stime, clock ticks
    runtime_ns: int | None    # schedstat's time on CPU: exact, where ticks are sampled
    voluntary: int
    nonvoluntary: int


def read_thread(pid: int, tid: int) -> ThreadSample | None:
    base = Path(f"/proc/{pid}/task/{tid}")
    try:
        stat = (base / "stat").read_text()
        comm = (base / "comm").read_text().strip()
        status = (base / "status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None             # the thread ended between listing and reading
    # comm may contain spaces or parentheses: fields are counted after the last ')'.
    # After it come field 3 (state) onwards, so utime (14) and stime (15) are [11] and [12].
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    switches = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            switches[key] = int(value)
    runtime_ns = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        runtime_ns = int((base / "schedstat").read_text().split()[0])
    return ThreadSample(tid, comm, ticks, runtime_ns,
                        switches.get("voluntary_ctxt_switches", 0), switches.get("nonvoluntary_ctxt_switches", 0))


def snapshot(pid: int) -> tuple[dict[int, ThreadSample], int]:
    """Every thread of pid, and the process's total ticks (which include threads that ended)."""
    threads: dict[int, ThreadSample] = {}
    for entry in os.listdir(f"/proc/{pid}/task"):
        sample = read_thread(pid, int(entry))
        if sample is not None:
            threads[sample.tid] = sample
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return threads, int(fields[11]) + int(fields[12])


def system_ticks() -> list[int]:
    """/proc/stat's all-CPU line: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:]]


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the instrument accepts a connection on its control socket."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise BenchError(f"the instrument exited with status {proc.returncode} before answering")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(str(path))
                return time.monotonic() - start
            except OSError:
                pass
        time.sleep(0.1)
    raise BenchError(f"no answer on {path} within {timeout:.0f} s")


def measure_cpu(pid: int, window: float) -> dict[str, Any]:
    t0 = time.monotonic()
    system_before = system_ticks()
    before, process_before = snapshot(pid)
    time.sleep(window)
    after, process_after = snapshot(pid)
    system_after = system_ticks()
    elapsed = time.monotonic() - t0
    system = [a - b for a, b in zip(system_after, system_before, strict=True)]

    common = sorted(set(before) & set(after))
    delta = {tid: after[tid].ticks - before[tid].ticks for tid in common}
    comms = {tid: after[tid].comm for tid in common}
    named = set(comms.values()) & KNOWN_NAMES

    # The loop: named, else the main thread (today's code runs it there).
    loop_tids = [tid for tid in common if comms[tid] == LOOP_NAME]
    if loop_tids:
        loop_tid, loop_rule = loop_tids[0], "by name"
    else:
        loop_tid, loop_rule = (pid if pid in delta else None), "heuristic"
    # Csound's performance thread: named, else the busiest thread but the main one
    # (paced in real time, it is the only one that computes continuously).
    csound_tids = [tid for tid in common if comms[tid] == CSOUND_NAME]
    if csound_tids:
        csound_tid, csound_rule = csound_tids[0], "by name"
    else:
        others = [tid for tid in common if tid != pid]
        csound_tid = max(others, key=lambda tid: delta[tid]) if others else None
        csound_rule = "heuristic"

    def label(tid: int) -> str:
        if comms[tid] in named:
            return comms[tid]
        if tid == csound_tid:
            return "csound?"
        if tid == loop_tid:
            return "main (loop?)"
        if tid == pid:
            return "main"
        return f"{comms[tid]}:{tid}"

    threads = []
    for tid in common:
        b, a = before[tid], after[tid]
        runtime = (a.runtime_ns - b.runtime_ns) / 1e9 if a.runtime_ns is not None and b.runtime_ns is not None else None
        threads.append({
            "name": label(tid), "tid": tid, "comm": comms[tid],
            "group": label(tid) if comms[tid] in named or tid in (csound_tid, loop_tid, pid) else "other",
            "cpu_s": delta[tid] / CLK_TCK,
            "cpu_s_schedstat": runtime,
            # A voluntary switch is the thread blocking (sleep, wait, select) and later
            # being woken, so for the loop it counts its wake-ups.
            "switches_per_s": (a.voluntary - b.voluntary) / elapsed,
            "nonvoluntary_per_s": (a.nonvoluntary - b.nonvoluntary) / elapsed,
        })
    threads.sort(key=lambda row: -row["cpu_s"])

    csound_cpu = delta[csound_tid] / CLK_TCK if csound_tid is not None else 0.0
    python_cpu = sum(d for tid, d in delta.items() if tid != csound_tid) / CLK_TCK
    loop_row = next((row for row in threads if row["tid"] == loop_tid), None)

    def exact(tids: list[int]) -> float | None:
        rows = [row["cpu_s_schedstat"] for row in threads if row["tid"] in tids]
        return None if any(r is None for r in rows) else sum(rows)

    return {
        "window_s": elapsed,
        "csound_cpu_s": csound_cpu,
        "python_cpu_s": python_cpu,
        "ratio": python_cpu / csound_cpu if csound_cpu else None,
        "csound_cpu_s_schedstat": exact([csound_tid] if csound_tid is not None else []),
        "python_cpu_s_schedstat": exact([tid for tid in common if tid != csound_tid]),
        "loop_wakeups_per_s": loop_row["switches_per_s"] if loop_row else None,
        "identified": {"csound": {"tid": csound_tid, "rule": csound_rule},
                       "loop": {"tid": loop_tid, "rule": loop_rule}},
        "threads": threads,
        # Threads that started or ended inside the window are not in the deltas above;
        # their CPU shows in the process total minus the threads' sum.
        "appeared": [{"tid": t, "comm": after[t].comm} for t in sorted(set(after) - set(before))],
        "vanished": [{"tid": t, "comm": before[t].comm} for t in sorted(set(before) - set(after))],
        "process_cpu_s": (process_after - process_before) / CLK_TCK,
        "unattributed_cpu_s": (process_after - process_before - sum(delta.values())) / CLK_TCK,
        # The whole machine over the window: other load, and time a hypervisor took (steal),
        # explain differences between runs.
        "machine_busy_fraction": 1 - (system[3] + system[4]) / sum(system) if sum(system) else None,
        "machine_steal_s": system[7] / CLK_TCK if len(system) > 7 else None,
    }


def time_command(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          check=False)
    return time.perf_counter() - start, done


def summarize(times: list[float]) -> dict[str, Any]:
    if not times:
        return {"n": 0}
    return {"n": len(times), "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "times_s": times}


def measure_commands(python: str, sock: Path, env: dict[str, str], cwd: Path, repeats: int) -> dict[str, Any]:
    script = Path(python).parent / "appliance"
    commands = {
        "python_c_pass": [python, "-c", "pass"],
        "get_tempo": [python, "-m", "appliance", "get", "tempo", "--socket", str(sock)],
    }
    if script.is_file() and os.access(script, os.X_OK):
        commands["console_script"] = [str(script), "get", "tempo", "--socket", str(sock)]
    times: dict[str, list[float]] = {name: [] for name in commands}
    errors: list[str] = []
    sample_output = None
    # One untimed round first: bytecode caches and the page cache are warm for every timed one.
    for round_ in range(repeats + 1):
        for name, argv in commands.items():      # alternated, so drifts in load hit all alike
            try:
                elapsed, done = time_command(argv, env, cwd)
            except subprocess.TimeoutExpired:
                errors.append(f"{name}: timed out after {COMMAND_TIMEOUT_S:.0f} s")
                continue
            if name != "python_c_pass" and (done.returncode != 0 or "BPM" not in done.stdout):
                errors.append(f"{name}: exit {done.returncode}, stdout {done.stdout.strip()!r}, "
                              f"stderr {done.stderr.strip()[-300:]!r}")
                continue
            if name == "get_tempo":
                sample_output = done.stdout.strip()
            if round_ > 0:
                times[name].append(elapsed)
    result: dict[str, Any] = {name: {"argv": commands[name], **summarize(times[name])} for name in commands}
    base = result["python_c_pass"].get("median_s")
    for name in commands:
        if name != "python_c_pass" and base and result[name].get("median_s"):
            result[name]["ratio_to_python_c_pass"] = result[name]["median_s"] / base
    result["get_tempo_output"] = sample_output
    result["errors"] = errors[:20]
    result["error_count"] = len(errors)
    return result


def stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_WAIT_S)
    return proc.returncode


def run_condition(name: str, sets: list[str], args: argparse.Namespace, env: dict[str, str], tree: Path,
                  with_commands: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "sets": sets}
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "config.toml"
        config.write_text('[audio]\nbackend = "null"\n')
        sock = tmp / "control.sock"
        log_path = tmp / "instrument.log"
        # A backstop only: the bench stops it itself; long enough never to end mid-measurement.
        lifetime = SOCKET_WAIT_S + args.settle + args.seconds + 60 + (args.repeats + 1) * 3 * 5
        argv = [args.python, "-m", "appliance", "run", "--simulate", "--config", str(config),
                "--socket", str(sock), "--state-dir", str(tmp / "state"), "--seconds", str(int(lifetime))]
        for item in sets:
            argv += ["--set", item]
        result["argv"] = argv
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=tree, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        try:
            result["pid"] = proc.pid
            result["startup_s"] = wait_for_socket(sock, proc, SOCKET_WAIT_S)
            time.sleep(args.settle)
            result["cpu"] = measure_cpu(proc.pid, args.seconds)
            if proc.poll() is not None:
                raise BenchError(f"the instrument exited with status {proc.returncode} during the window")
            if with_commands:
                result["commands"] = measure_commands(args.python, sock, env, tree, args.repeats)
        except (BenchError, OSError) as exc:
            result["error"] = str(exc)
        finally:
            result["exit_status"] = stop(proc)
            log_text = log_path.read_text(errors="replace")
            result["log_tail"] = log_text.splitlines()[-15:]
    return result


def git_commit(tree: Path) -> dict[str, Any]:
    def git(*cmd: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(tree), *cmd], capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_file(python: str, env: dict[str, str], tree: Path) -> str | None:
    """Which package the subprocesses import: proves PYTHONPATH beats the venv's editable install."""
    try:
        done = subprocess.run([python, "-c", "import appliance; print(appliance.__file__)"], env=env, cwd=tree,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = [c for c in report["conditions"] if "cpu" in c]
    fig, (ax_cpu, ax_cmd) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    names: list[str] = []
    for cond in conditions:
        for row in cond["cpu"]["threads"]:
            if row["group"] not in names and row["cpu_s"] > 0:
                names.append(row["group"])
    width = 0.8 / max(len(conditions), 1)
    for i, cond in enumerate(conditions):
        by_name: dict[str, float] = {}
        for row in cond["cpu"]["threads"]:
            by_name[row["group"]] = by_name.get(row["group"], 0.0) + row["cpu_s"]
        xs = [j + (i - (len(conditions) - 1) / 2) * width for j in range(len(names))]
        ratio = cond["cpu"]["ratio"]
        ax_cpu.bar(xs, [by_name.get(n, 0.0) for n in names], width,
                   label=f"{cond['name']} (python/csound {ratio:.2f})" if ratio is not None else cond["name"])
    ax_cpu.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax_cpu.set_ylabel(f"CPU seconds in {report['window_s']:.0f} s")
    ax_cpu.set_title("CPU per thread (unnamed minor threads summed as 'other')")
    ax_cpu.legend()

    commands = next((c["commands"] for c in report["conditions"] if "commands" in c), {})
    labels, medians, mins = [], [], []
    for key, text in (("python_c_pass", "python -c pass"), ("get_tempo", "python -m appliance get"),
                      ("console_script", "appliance get (script)")):
        if commands.get(key, {}).get("median_s") is not None:
            labels.append(text)
            medians.append(commands[key]["median_s"] * 1000)
            mins.append(commands[key]["min_s"] * 1000)
    ax_cmd.bar(labels, medians, label="median")
    ax_cmd.scatter(labels, mins, color="black", marker="_", s=400, zorder=3, label="min")
    if medians:
        ax_cmd.axhline(medians[0] * COMMAND_TARGET, color="red", linestyle="--", label=f"target {COMMAND_TARGET:g}x")
    ax_cmd.set_ylabel("wall time, ms")
    ax_cmd.set_title("control command")
    ax_cmd.tick_params(axis="x", rotation=15)
    ax_cmd.legend()
    fig.suptitle(f"overhead: {report['label'] or ''} {report['tree']['commit'] or ''}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_summary(report: dict[str, Any]) -> None:
    print(f"overhead {report['label'] or ''} tree {report['tree']['path']} @ {report['tree']['commit']} "
          f"(package {report['package_file']}), window {report['window_s']:g} s")
    for cond in report["conditions"]:
        if "error" in cond:
            print(f"  {cond['name']}: ERROR {cond['error']}")
        if "cpu" not in cond:
            continue
        cpu = cond["cpu"]
        ratio = f"{cpu['ratio']:.3f}" if cpu["ratio"] is not None else "-"
        wakes = f"{cpu['loop_wakeups_per_s']:.0f}" if cpu["loop_wakeups_per_s"] is not None else "-"
        print(f"  {cond['name']:8} csound {cpu['csound_cpu_s']:.2f} s  python {cpu['python_cpu_s']:.2f} s  "
              f"ratio {ratio}  loop wakes {wakes}/s  "
              f"(csound {cpu['identified']['csound']['rule']}, loop {cpu['identified']['loop']['rule']}; "
              f"machine busy {cpu['machine_busy_fraction']:.0%}, steal {cpu['machine_steal_s']:.2f} s)")
        for row in cpu["threads"]:
            exact = f"{row['cpu_s_schedstat']:.3f}" if row["cpu_s_schedstat"] is not None else "-"
            print(f"      {row['name']:16} {row['cpu_s']:6.2f} s (schedstat {exact})"
                  f"  {row['switches_per_s']:7.1f} sw/s")
    commands = next((c["commands"] for c in report["conditions"] if "commands" in c), None)
    if commands:
        for key in ("python_c_pass", "get_tempo", "console_script"):
            if commands.get(key, {}).get("median_s") is not None:
                c = commands[key]
                ratio = c.get("ratio_to_python_c_pass")
                print(f"  {key:15} median {c['median_s'] * 1000:7.1f} ms  min {c['min_s'] * 1000:7.1f} ms"
                      + (f"  x{ratio:.2f}" if ratio else ""))
        if commands["error_count"]:
            print(f"  command errors: {commands['error_count']}, first: {commands['errors'][0]}")
    for name, target in report["targets"].items():
        print(f"  target {name}: {target['value']} vs {target['limit']} -> {'PASS' if target['pass'] else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU window per condition (default 20)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs of each command (default 15, min 10)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between answering and measuring")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "overhead.json")
    parser.add_argument("--tree", type=Path, default=ROOT, help="run the package from this checkout")
    parser.add_argument("--label", default="", help="saved in the JSON")
    parser.add_argument("--python", default=sys.executable, help="interpreter for every subprocess")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 10:
        parser.error("--seconds must be > 0 and --repeats at least 10")
    tree = args.tree.resolve()
    if not (tree / "appliance").is_dir():
        parser.error(f"{tree} has no appliance package")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # measure the package as installed, from bytecode: with PYTHONDONTWRITEBYTECODE (set on
    # some machines) a checkout would be compiled again at every start
    subprocess.run([args.python, "-m", "compileall", "-q", str(tree / "appliance")], check=False,
                   capture_output=True, timeout=300)

    report: dict[str, Any] = {
        "label": args.label,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"nproc": os.cpu_count(), "platform": platform.platform(), "machine": platform.machine(),
                    "python": platform.python_version(), "loadavg_at_start": os.getloadavg(),
                    "clk_tck": CLK_TCK},
        "tree": {"path": str(tree), **git_commit(tree)},
        "python": args.python,
        "package_file": package_file(args.python, env, tree),
        "window_s": args.seconds,
        "settle_s": args.settle,
        "repeats": args.repeats,
        "conditions": [],
    }
    for i, (name, sets) in enumerate(CONDITIONS):
        print(f"{name}: measuring {args.seconds:g} s ...", file=sys.stderr, flush=True)
        report["conditions"].append(run_condition(name, sets, args, env, tree, with_commands=i == 0))

    default = report["conditions"][0]
    ratio = default.get("cpu", {}).get("ratio")
    command_ratio = default.get("commands", {}).get("get_tempo", {}).get("ratio_to_python_c_pass")
    report["targets"] = {
        "python_cpu_vs_csound": {"value": ratio, "limit": PYTHON_CPU_TARGET,
                                 "pass": ratio is not None and ratio <= PYTHON_CPU_TARGET},
        "get_vs_python_start": {"value": command_ratio, "limit": COMMAND_TARGET,
                                "pass": command_ratio is not None and command_ratio <= COMMAND_TARGET},
    }

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    try:
        plot(report, png)
    except Exception as exc:  # the JSON is the result; a chart that fails must not lose it
        print(f"chart not written: {exc}", file=sys.stderr)
    print_summary(report)
    print(f"wrote {args.out} and {png}")
    failed = any("error" in c for c in report["conditions"]) or default.get("commands", {}).get("error_count", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
