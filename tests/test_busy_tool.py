"""tools/busy.py runs a command beside CPU-bound processes and stops exactly those afterwards
(issue 27: the suite must hold on a busy machine; this is how it is checked)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOL = str(REPO / "tools" / "busy.py")


def _hogs_left() -> list:
    """pids of busy.py hogs still running (their command line carries the tool's marker)."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:
            continue
        if b"gpunet tools/busy.py hog" in cmdline:
            left.append(int(pid))
    return left


def _busy(*argv, timeout=120):
    return subprocess.run([sys.executable, TOOL, *argv], capture_output=True, text=True, timeout=timeout)


def test_the_command_runs_beside_the_hogs_and_they_are_stopped():
    before = _hogs_left()
    # the command sees the two hogs (children of busy.py, like itself: a suite run under busy.py has
    # the outer run's hogs too), and its exit code is passed on
    probe = ("import os, sys; from pathlib import Path; "
             "marked = lambda p: b'gpunet tools/busy.py hog' in Path('/proc', p, 'cmdline').read_bytes(); "
             "parent = lambda p: int(Path('/proc', p, 'stat').read_text().rsplit(')', 1)[1].split()[1]); "
             "hogs = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (os.getpid(), os.getppid()) "
             "and Path('/proc', p, 'cmdline').exists() and marked(p) and parent(p) == os.getppid()]; "
             "sys.exit(10 + len(hogs))")
    r = _busy("--hogs", "2", "--timeout", "60", "--", sys.executable, "-c", probe)
    assert r.returncode == 12, r.stderr
    assert "busy: 2 CPU-bound process(es)" in r.stderr and "highest" in r.stderr and "exit 12" in r.stderr
    assert _hogs_left() == before


def test_a_command_past_the_timeout_is_killed_with_exit_124():
    before = _hogs_left()
    r = _busy("--hogs", "1", "--timeout", "1", "--", sys.executable, "-c", "import time; time.sleep(60)")
    assert r.returncode == 124 and "(timed out)" in r.stderr
    assert _hogs_left() == before


def test_no_command_is_a_usage_error():
    r = _busy("--hogs", "1")
    assert r.returncode == 2 and "give the command after --" in r.stderr


def test_a_terminated_run_stops_its_hogs_and_its_command():
    """``kill PID`` of busy.py (SIGTERM, not Ctrl-C) still stops the hogs and the command it started."""
    import signal
    import time

    before = _hogs_left()
    marker = "gpunet busy test command"
    proc = subprocess.Popen([sys.executable, TOOL, "--hogs", "2", "--timeout", "600", "--", sys.executable, "-c",
                             f"# {marker}\nimport time\ntime.sleep(600)"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # event-based: until the hogs are up, bounded far above need
    while len(_hogs_left()) < len(before) + 2 or not set(_pids_with(marker)) - {proc.pid}:
        assert time.monotonic() < deadline and proc.poll() is None, "busy.py did not start its hogs"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    assert _hogs_left() == before and not _pids_with(marker)


def _pids_with(marker: str) -> list:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path("/proc", pid, "cmdline").read_bytes():
                pids.append(int(pid))
        except OSError:
            continue
    return pids
