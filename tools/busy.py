"""Run a command beside N CPU-bound processes: does it hold on a busy machine (a laptop with a
build going, a shared CI runner)?

    python tools/busy.py --hogs 2 --timeout 3600 -- python -m pytest -q

The hogs are plain busy loops started here and stopped by their pids when the command ends, fails,
times out or this script is interrupted or sent SIGTERM (exit 143); nothing else is touched. While
the command runs the 1-minute load average is sampled every second; the summary line on stderr
gives the load at the start, the highest reached, the command's wall time and exit code. Exit code: the command's, or
124 when it ran past ``--timeout`` (its process group is then killed).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from typing import List

HOG = "# gpunet tools/busy.py hog\nwhile True:\n    pass\n"  # the comment lets a test find leftovers


def _start_hogs(n: int) -> List[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.DEVNULL, start_new_session=True)
            for _ in range(n)]


def _stop(procs: List[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()  # by pid: only what this script started
    for p in procs:
        p.wait()


class _LoadSampler(threading.Thread):
    """The highest 1-minute load average seen while the command runs (sampled every ``every`` s)."""

    def __init__(self, every: float = 1.0):
        super().__init__(daemon=True)
        self.every, self.peak, self._done = every, os.getloadavg()[0], threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, os.getloadavg()[0])

    def stop(self) -> float:
        self._done.set()
        self.join()
        return max(self.peak, os.getloadavg()[0])


def _run(command: List[str], timeout: float) -> int:
    cmd = subprocess.Popen(command, start_new_session=True)
    try:
        return cmd.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(cmd.pid, signal.SIGKILL)
        cmd.wait()
        return 124
    except BaseException:
        os.killpg(cmd.pid, signal.SIGKILL)
        cmd.wait()
        raise


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: List[str] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hogs", type=int, default=2, help="CPU-bound processes to run beside the command (default 2)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before the command is killed (exit 124)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command after --, e.g. tools/busy.py -- python -m pytest -q")
    if args.hogs < 0 or args.timeout <= 0:
        ap.error("--hogs must be >= 0 and --timeout > 0")
    signal.signal(signal.SIGTERM, _terminated)  # a `kill` of this script still stops what it started
    start_load = os.getloadavg()[0]
    hogs = _start_hogs(args.hogs)
    sampler = _LoadSampler()
    sampler.start()
    t0 = time.monotonic()
    try:
        code = _run(command, args.timeout)
    finally:
        peak = sampler.stop()
        _stop(hogs)
    print(f"busy: {args.hogs} CPU-bound process(es) beside {' '.join(command)!r} on {os.cpu_count()} core(s): "
          f"load average {start_load:.2f} at start, {peak:.2f} highest; {time.monotonic() - t0:.0f} s; "
          f"exit {code}" + (" (timed out)" if code == 124 else ""), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
