"""`python importer/devtools/tether.py GRACE COMMAND...`: run COMMAND for as long as the process
that started this one lives, however that one ends (a `kill -9` or an OOM kill too).

The starter gives this process, as its stdin, the read end of a pipe whose write end it alone
holds. The kernel closes that end when the starter ends, whichever way: stdin then reads EOF,
and COMMAND is stopped as a process manager would stop it (SIGTERM, GRACE seconds, then SIGKILL
to this process group, which holds COMMAND's children too). A signal cannot say as much: a
process killed with SIGKILL sends none, and a parent-death signal set between fork and exec is
not safe in a process with threads, as the demo is.

A SIGTERM to this process is passed on to COMMAND, which ends as it would have; this process
then ends with COMMAND's exit status.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys


def start_tethered(command: list[str], *, grace: float, **popen) -> tuple[subprocess.Popen, int]:
    """Start `command` under a tether, in a session of its own; with the write end of its pipe,
    to keep open for as long as the command is to run (it is closed when this process ends).
    The write end is not inherited (os.pipe's ends never are): no other child of this process
    keeps the command running once this process is gone."""
    tether_start, tether_end = os.pipe()
    try:
        process = subprocess.Popen(
            # By its path, from any directory: it needs nothing but the standard library.
            [sys.executable, __file__, str(grace), *command],
            start_new_session=True,
            stdin=tether_start,
            **popen,
        )
    except BaseException:
        os.close(tether_end)
        raise
    finally:
        os.close(tether_start)
    return process, tether_end


def run_tethered(grace: float, command: list[str]) -> int:
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    starter = sys.stdin.fileno()
    watched = selectors.DefaultSelector()
    watched.register(starter, selectors.EVENT_READ)
    # Linux tells of the child's end on a file descriptor; elsewhere (macOS) it is looked at
    # twice a second.
    if hasattr(os, "pidfd_open"):
        watched.register(os.pidfd_open(child.pid), selectors.EVENT_READ)
        look_again = None
    else:
        look_again = 0.5
    while child.poll() is None:
        for key, _ in watched.select(timeout=look_again):
            if key.fd == starter and not os.read(starter, 512):  # EOF: the starter is gone
                _stop(child, grace)
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def _stop(child: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL to the whole group (this process too) after `grace` seconds."""
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(run_tethered(float(sys.argv[1]), sys.argv[2:]))
