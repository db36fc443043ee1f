"""Long-lived grading worker processes: nbgrader's autograde, in-process, one task at a time.

Starting ``nbgrader autograde`` as a new command costs about 3.5 s of imports and set-up per call
(FACTS), as much as grading a small notebook. A worker pays it once: it loads nbgrader and the
kit's configuration when it starts, then grades task after task through ``NbGraderAPI`` (the API
the formgrader itself calls repeatedly), each task against its own folders and gradebook copy.

The memory limit is set on the worker process and inherited by every kernel it starts, so a
memory bomb ends in a MemoryError inside the kernel. A worker whose parent dies (Ctrl-C, a
killed Dask worker) exits within a second; its sandboxed kernel dies with it (bubblewrap's
``--die-with-parent``).
"""

import copy
import multiprocessing
import os
import resource
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .paths import ASSIGNMENT

_config = None


def _exit_with_parent(parent_pid):
    """Exit as soon as the process that started this worker is gone (polled every 0.5 s)."""
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os._exit(1)


def _initialise(env, memory_limit_bytes):
    """Runs once in each worker process."""
    global _config
    # A process group of its own: the terminal's Ctrl-C goes to the parent only, which then
    # abandons (kills) the workers. Ignoring SIGINT instead would be inherited by the kernels,
    # and a kernel must stay interruptible for the cell timeout.
    os.setpgrp()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    os.environ.update(env)
    if memory_limit_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_bytes, memory_limit_bytes))
    from .config import load_nbgrader_config
    from .quiet import redirect_stderr_to_log

    redirect_stderr_to_log(f"worker-{os.getpid()}")
    _config = load_nbgrader_config()


def autograde_one(
    student, notebook_stem, submitted, autograded, db_url, stderr_log, secret_file=None
):
    """Autograde one notebook of one student.

    Args:
        student: student id. notebook_stem: e.g. ``"bn_numpy"``.
        submitted, autograded: the task's private submitted/ and autograded/ folders (str).
        db_url: the gradebook this task writes to.
        stderr_log: file that receives the kernel's C-level stderr (kept to tell a kernel that
            died of memory exhaustion from one that crashed otherwise).
        secret_file: the grading secret to use instead of the configured one (a Dask task
            brings the course's secret with it).

    Returns:
        (success, log text, peak memory of the kernel in MB or None, scores). The peak is the
        largest resident size of this worker's finished children when this task's kernel set a
        new record, so a kernel that died near the memory limit can be told from one that
        crashed. ``scores`` is what the task recorded in ``db_url`` for this notebook, as plain
        data (:func:`coursekit.gradebook.read_notebook_scores`; None when nothing was
        recorded): read here, in the worker, so the parent never opens a task's gradebook.
    """
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = copy.deepcopy(_config)
    config.CourseDirectory.submitted_directory = submitted
    config.CourseDirectory.autograded_directory = autograded
    config.CourseDirectory.db_url = db_url
    config.CourseDirectory.notebook_id = notebook_stem
    if secret_file:
        config.SandboxedExecute.secret_file = secret_file
    with open(stderr_log, "a") as log:
        os.dup2(log.fileno(), 2)  # the kernel started next inherits this descriptor
    peak_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    result = api.autograde(ASSIGNMENT, student, force=True, create=True)
    peak_after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_mb = peak_after / 1024 if peak_after > peak_before else None
    log = (result.get("log") or "") + (result.get("error") or "")
    from .gradebook import read_notebook_scores

    scores = read_notebook_scores(db_url, student, notebook_stem)
    return bool(result.get("success")), log, peak_mb, scores


class WorkerPool:
    """A process pool that replaces itself if a worker process dies, so grading goes on."""

    def __init__(self, workers, env, memory_limit_bytes):
        self._arguments = (workers, env, memory_limit_bytes)
        self._lock = threading.Lock()
        self._abandoned = False
        self._executor = self._new_executor()

    def _new_executor(self):
        workers, env, memory_limit_bytes = self._arguments
        # "spawn": the parent runs threads (progress bar, task threads), which fork would copy.
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_initialise,
            initargs=(env, memory_limit_bytes),
        )

    def autograde(self, *args):
        """Run :func:`autograde_one` in a worker; one retry on a fresh pool if the pool broke."""
        for _attempt in (1, 2):
            executor = self._executor
            try:
                return executor.submit(autograde_one, *args).result()
            except (BrokenProcessPool, RuntimeError):
                # RuntimeError: submit after abandon() shut the executor down.
                with self._lock:
                    if self._abandoned:
                        break
                    if self._executor is executor:
                        self._executor = self._new_executor()
        if self._abandoned:
            return False, "Grading was stopped (Ctrl-C) while this notebook ran", None, None
        return False, "Worker process died (BrokenProcessPool) twice on this task", None, None

    def abandon(self):
        """Stop now: kill the worker processes (their kernels die with them), start no more.

        Threads waiting in :meth:`autograde` return at once with a "stopped" result.
        """
        with self._lock:
            self._abandoned = True
            executor = self._executor
        for process in list(getattr(executor, "_processes", {}).values()):
            try:
                process.kill()
            except (OSError, AttributeError):
                pass  # already gone
        executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self):
        self._executor.shutdown(wait=not self._abandoned, cancel_futures=self._abandoned)
