"""A real `manage.py qcluster`, started and stopped the way a process manager would, for the
demo, the tests and the benchmarks (development tools, not used by the app itself)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from importer.devtools.tether import start_tethered

ROOT = Path(__file__).resolve().parent.parent.parent


class QCluster:
    """`manage.py qcluster` in a session of its own, with `env` over this process's
    environment and its output appended to `log_path` (or, without one, written where this
    process writes its own).

    With `tethered_grace`, the cluster is stopped when this process ends, however it ends (a
    `kill -9` too), given that many seconds: `process` is then the tether
    (importer/devtools/tether.py), whose child is the cluster's main process.
    """

    def __init__(
        self, *, env: dict[str, str], log_path: Path | None, tethered_grace: float | None = None
    ):
        self.env = env
        self.log_path = log_path
        self.tethered_grace = tethered_grace
        self.process: subprocess.Popen | None = None
        self._tether_end: int | None = None  # the pipe's write end, held by this process only

    def start(self) -> QCluster:
        if self.log_path is None:
            self.process = self._popen(stdout=None, stderr=None)
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:  # kept for reading a failed run
            self.process = self._popen(stdout=log, stderr=subprocess.STDOUT)
        return self

    def _popen(self, **output) -> subprocess.Popen:
        command = [sys.executable, str(ROOT / "manage.py"), "qcluster"]
        env = {**os.environ, **self.env}
        if self.tethered_grace is None:
            return subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True, **output)
        process, self._tether_end = start_tethered(
            command, grace=self.tethered_grace, env=env, cwd=ROOT, **output
        )
        return process

    def worker_pids(self) -> list[int]:
        """Process ids of the cluster's processes other than the main one."""
        found = subprocess.run(
            ["pgrep", "-s", str(self.process.pid)], capture_output=True, text=True
        ).stdout.split()
        return [int(pid) for pid in found if int(pid) != self.process.pid]

    def kill(self) -> None:
        """SIGKILL every process of the cluster at once, as a lost host would."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        if self._tether_end is not None:
            os.close(self._tether_end)
            self._tether_end = None

    def stop(self, grace: float = 30.0) -> None:
        """Stop as a process manager should: SIGTERM to the main process only.

        django-q2's workers die at once on a SIGTERM of their own (SIG_DFL), so signalling the
        whole process group would cut running chunks short; the main process instead lets
        them finish. Whatever is left after `grace` seconds is killed.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
