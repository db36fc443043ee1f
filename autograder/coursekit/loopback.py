"""A Dask cluster on 127.0.0.1 for tests, benchmarks and trying ``grade --scheduler`` out.

Starts ``dask scheduler`` and ``dask worker`` processes (this environment's ``dask`` command,
free ports, a private folder each) with the settings a grading cluster needs:

- ``DASK_DISTRIBUTED__WORKER__DAEMON=False``: grading starts processes (the grading worker
  and its kernel), which a daemonic worker process may not;
- ``PYTHONPATH=<kit>/autograder`` and no ``BNKIT_*`` variables: workers know the kit, not
  the instructor's runtime folder or gradebook.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .paths import GRADER_DIR

BIN = Path(sys.executable).parent


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cluster_env(kit=None):
    """Environment for scheduler and workers (see the module docstring).

    Args:
        kit: the kit checkout the workers import (default: this one).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("BNKIT_")}
    env.update(
        PATH=os.pathsep.join([str(BIN), env.get("PATH", "")]),
        PYTHONPATH=str(Path(kit) / "autograder" if kit else GRADER_DIR),
        DASK_DISTRIBUTED__WORKER__DAEMON="False",
    )
    return env


class LoopbackCluster:
    """``workers`` one-thread Dask workers and their scheduler, as child processes.

    Attributes: ``address`` (tcp://127.0.0.1:PORT), ``client`` (a connected
    ``distributed.Client``), ``scheduler`` and ``workers`` (``subprocess.Popen``).
    """

    def __init__(self, folder, workers=2, threads=1, start_timeout_s=120, kit=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.env = cluster_env(kit)
        self._logs = []
        self.scheduler = self._start(
            "scheduler", ["--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"]
        )
        self.workers = [self._start_worker(index, threads) for index in range(workers)]
        self.client = self._connect(workers, start_timeout_s)

    def _start(self, command, args, log_name=None):
        log = open(self.folder / f"{log_name or command}.log", "w")  # noqa: SIM115
        self._logs.append(log)
        return subprocess.Popen(
            [str(BIN / "dask"), command, *args],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )

    def _start_worker(self, index, threads):
        local = self.folder / f"worker-{index}"
        local.mkdir(exist_ok=True)
        args = [self.address, "--nthreads", str(threads), "--nworkers", "1", "--no-dashboard"]
        args += ["--host", "127.0.0.1", "--local-directory", str(local)]
        return self._start("worker", args, f"worker-{index}")

    def _connect(self, workers, timeout_s):
        from distributed import Client

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client = Client(self.address, timeout=5, set_as_default=False)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        client.wait_for_workers(workers, timeout=timeout_s)
        return client

    def worker_pids(self):
        """{worker address: pid of the worker process (not its nanny)}."""
        return self.client.run(os.getpid)

    def kill_scheduler(self):
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()

    def stop(self):
        """Close the client, stop every process (SIGTERM, then SIGKILL after 15 s)."""
        try:
            self.client.close(timeout=2)
        except Exception:  # noqa: BLE001  the scheduler may be gone already
            pass
        processes = [*self.workers, self.scheduler]
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self._logs:
            log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
