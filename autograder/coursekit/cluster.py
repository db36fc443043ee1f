"""Grade on a Dask cluster: one ``dask.distributed`` task per submitted notebook.

What travels, and what a worker must have:

- A task carries the submission notebook's bytes (and its ``timestamp.txt``), the course's
  grading secret (hidden check inputs derive from it, so scores match local grading), a blank
  SQLite gradebook made from the release (zlib-compressed, about 25 kB, no student's data in
  it) and the parent's grader version. It returns the autograded folder as bytes, the scores
  autograde recorded in the private gradebook as plain data
  (:func:`coursekit.gradebook.read_notebook_scores`; the parent merges them one result at a
  time, as in local grading), the status, the flags and the logs. Workers never touch the
  course gradebook or the parent's files.
- A worker needs the same kit checkout (same commit: grader code, source notebooks, release)
  importable as ``coursekit`` (``PYTHONPATH=<kit>/autograder``), the course environment with
  the ``bn-course`` kernel, and bubblewrap. A worker whose kit differs from the parent's
  refuses the task (status ``grading failed``, saying so) instead of grading differently.

The parent keeps one task per worker thread in flight (and follows the cluster as it grows
or shrinks), so no worker holds tasks it is not running: a worker that dies takes only its
running tasks with it.

On the worker the task runs exactly what local grading runs: :func:`coursekit.worker.autograde_one`
in a long-lived worker process (one per Dask worker thread, started on the first task) under
the same memory limit and sandbox, in a private folder that the kernel cannot see.

Failures: a Dask worker that dies mid-task has the task retried once elsewhere (the client
sets the scheduler's ``allowed_failures`` to 1), then the status is ``worker lost``. When the
scheduler goes away, grading stops with a clear message; every grade merged so far stays and a
re-run (incremental) grades the rest.

Stopping: Dask cannot interrupt a task's thread, so a cancelled task (Ctrl-C in the parent,
which cancels its futures, or a parent that vanished, whose futures the scheduler releases)
would grade on for as long as its notebook runs. Each task therefore watches its own state on
the worker; once every task of a grading pool is cancelled, the pool's processes are killed
(their kernels die with them) and the threads are free at once.
"""

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path

from . import status as st
from .errors import KitError
from .paths import ASSIGNMENT, runtime_dir, submitted_dir

# Allowed deaths of a worker holding a task before the scheduler gives up on it: one retry.
ALLOWED_FAILURES = 1
CONNECT_TIMEOUT_S = 10
# How long the scheduler may be unreachable before the run is declared stopped.
SCHEDULER_GRACE_S = 10
POLL_S = 0.2
MIN_POLL_S = 0.002
CAPACITY_REFRESH_S = 2.0
CANCEL_POLL_S = 0.5  # how often a running task checks that it is still wanted
SETTINGS_PASSED = ("BNKIT_CELL_TIMEOUT",)  # environment settings that change outcomes


class SchedulerLost(KitError):
    """The Dask scheduler went away during the run (grades merged so far are kept)."""

    scheduler_lost = True


# ------------------------------------------------------------------------- worker side
_state_lock = threading.Lock()
_worker_root = None
_pools = {}
_running = {}  # WorkerPool -> {task key: cancelled (bool)} of the tasks it is grading
_local_version = None


def _root():
    """This worker process's private runtime folder (logs, task folders), made once."""
    global _worker_root
    with _state_lock:
        if _worker_root is None:
            _worker_root = Path(tempfile.mkdtemp(prefix="bnkit-dask-worker-"))
            (_worker_root / "tasks").mkdir()
            # Removed when the worker exits normally (a killed worker leaves it in /tmp).
            atexit.register(shutil.rmtree, _worker_root, ignore_errors=True)
        return _worker_root


def _pool(grading_env, memory_limit_mb, size):
    """The long-lived grading processes of this Dask worker for these settings."""
    from .paths import tool_env
    from .worker import WorkerPool

    key = (tuple(sorted(grading_env.items())), memory_limit_mb)
    with _state_lock:
        if key not in _pools:
            env = tool_env({**grading_env, "BNKIT_RUNTIME": str(_worker_root)})
            env.pop("BNKIT_DB_URL", None)  # a task only ever writes its private gradebook
            _pools[key] = WorkerPool(size, env, memory_limit_mb * 1024 * 1024)
        return _pools[key]


def _stop_when_cancelled(worker, key, pool, finished):
    """Thread: once task ``key`` is cancelled, and so is every task of ``pool``, kill the pool.

    A pool shared by several tasks (a worker with several threads) is killed only when none of
    its tasks is wanted any more; a single cancelled task among running ones grades on to
    its end (bounded by the cell timeout) rather than killing its neighbours' work.
    """
    while not finished.wait(CANCEL_POLL_S):
        task_state = worker.state.tasks.get(key)
        if task_state is not None and task_state.state != "cancelled":
            continue
        with _state_lock:
            tasks = _running.get(pool, {})
            if key in tasks:
                tasks[key] = True
            doomed = bool(tasks) and all(tasks.values())
            if doomed:
                # Tasks that come later get a fresh pool.
                for settings, known in list(_pools.items()):
                    if known is pool:
                        del _pools[settings]
        if doomed:
            pool.abandon()
        return


def _version():
    global _local_version
    if _local_version is None:
        from .incremental import grader_version

        _local_version = grader_version()
    return _local_version


def _folder_bytes(folder):
    """{relative path: bytes} of every file under ``folder`` (empty when it does not exist)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def grade_task(spec):
    """Run on a Dask worker: autograde one notebook, return everything the parent merges.

    Args:
        spec: dict with ``student``, ``notebook`` (file name), ``notebook_bytes``,
            ``timestamp_bytes`` (or None), ``secret`` (bytes), ``kit_version`` (the parent's
            :func:`coursekit.incremental.grader_version`), ``grading_env`` (BNKIT_SANDBOX and
            settings such as BNKIT_CELL_TIMEOUT), ``memory_limit_mb``, ``sandboxed`` and
            ``gradebook_z`` (a blank SQLite gradebook of the release, zlib-compressed).

    Returns:
        dict with ``status``, ``detail``, ``flags``, ``files`` ({path: bytes} of the autograded
        folder), ``scores`` (what autograde recorded, as plain data:
        :func:`coursekit.gradebook.read_notebook_scores`; None when nothing was), ``log``,
        ``kernel_stderr``, ``worker`` (address) and ``seconds``.
    """
    from distributed import get_worker

    from .grade import Task, stage_submission, task_outcome

    started = time.monotonic()
    worker = get_worker()
    task = Task(spec["student"], spec["notebook"])
    result = {"files": {}, "scores": None, "log": "", "kernel_stderr": ""}
    result.update(worker=worker.address, flags="")
    import multiprocessing

    if multiprocessing.current_process().daemon:
        return {
            **result,
            "status": st.GRADER_FAILED,
            "detail": (
                f"the Dask worker {worker.address} runs as a daemonic process, which may not "
                "start grading processes: start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False "
                "(or `dask worker --no-nanny`)"
            ),
            "seconds": time.monotonic() - started,
        }
    if spec["kit_version"] != _version():
        return {
            **result,
            "status": st.GRADER_FAILED,
            "detail": (
                f"the Dask worker {worker.address} has a different kit (grader version "
                f"{_version()[:12]}, the parent's is {spec['kit_version'][:12]}): check out the "
                "same commit on every worker"
            ),
            "seconds": time.monotonic() - started,
        }
    work = Path(tempfile.mkdtemp(prefix=f"{task.key}-", dir=_root() / "tasks"))
    try:
        stage_submission(
            work,
            task.student,
            task.notebook,
            spec["notebook_bytes"],
            spec["timestamp_bytes"],
            spec.get("companions"),
        )
        (work / "gradebook.db").write_bytes(zlib.decompress(spec["gradebook_z"]))
        secret = work / "grading.secret"
        secret.write_bytes(spec["secret"])
        secret.chmod(0o600)
        pool = _pool(spec["grading_env"], spec["memory_limit_mb"], worker.state.nthreads)
        key = worker.get_current_task()
        finished = threading.Event()
        with _state_lock:
            _running.setdefault(pool, {})[key] = False
        threading.Thread(
            target=_stop_when_cancelled, args=(worker, key, pool, finished), daemon=True
        ).start()
        try:
            success, log, peak_mb, scores = pool.autograde(
                task.student,
                task.stem,
                str(work / "submitted"),
                str(work / "autograded"),
                f"sqlite:///{work / 'gradebook.db'}",
                str(work / "kernel.stderr.log"),
                str(secret),
            )
        finally:
            finished.set()
            with _state_lock:
                tasks = _running.get(pool, {})
                tasks.pop(key, None)
                if not tasks:
                    _running.pop(pool, None)
        outcome = task_outcome(
            task, work, success, log, peak_mb, spec["memory_limit_mb"], spec["sandboxed"], scores
        )
        stderr_path = work / "kernel.stderr.log"
        return {
            **result,
            "status": outcome.status,
            "detail": outcome.detail,
            "flags": outcome.flags,
            "files": _folder_bytes(work / "autograded" / task.student / ASSIGNMENT),
            "scores": scores,
            "log": log,
            "kernel_stderr": stderr_path.read_text(errors="replace")
            if stderr_path.exists()
            else "",
            "seconds": time.monotonic() - started,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------- parent side
def remote_entry():
    """The function each task runs: made here so cloudpickle sends it by value.

    Recent Dask schedulers unpickle the task graph; a module-level function would travel as a
    reference to ``coursekit.cluster`` and the scheduler would need the kit. This one imports
    the kit only when it runs, on the worker.
    """

    def grade_on_worker(spec):
        from coursekit.cluster import grade_task

        return grade_task(spec)

    return grade_on_worker


def blank_gradebook():
    """Bytes of a SQLite gradebook holding the assignment and no student (from the release).

    Built with ``nbgrader generate_assignment`` into a temporary folder, so it does not matter
    whether the course gradebook is SQLite or PostgreSQL, and workers see no student's grades.
    """
    from .nbgrader_cli import run_nbgrader

    with tempfile.TemporaryDirectory(prefix="bnkit-blank-") as tmp:
        tmp = Path(tmp)
        (tmp / "runtime").mkdir()
        run_nbgrader(
            [
                "generate_assignment",
                ASSIGNMENT,
                "--force",
                f"--CourseDirectory.release_directory={tmp / 'release'}",
            ],
            env_extra={
                "BNKIT_RUNTIME": str(tmp / "runtime"),
                "BNKIT_DB_URL": f"sqlite:///{tmp / 'gradebook.db'}",
            },
        )
        return (tmp / "gradebook.db").read_bytes()


def cached_blank_gradebook(version):
    """:func:`blank_gradebook`, zlib-compressed, kept in the runtime folder per grader version.

    Building it runs nbgrader once (about 5-15 s); a release or grader change makes a new one.
    """
    folder = runtime_dir() / "cluster"
    path = folder / f"blank-gradebook-{version[:16]}.db.z"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("blank-gradebook-*.db.z"):
            old.unlink()
        partial = path.with_suffix(".partial")
        partial.write_bytes(zlib.compress(blank_gradebook()))
        partial.replace(path)
    return path.read_bytes()


def allow_one_retry(client):
    """Set the scheduler's ``allowed_failures``: one retry after a worker dies, then give up.

    The function sent is made here, so cloudpickle sends it by value: the scheduler needs no
    copy of the kit (a module-level function would be sent by reference, as an import).
    """
    limit = ALLOWED_FAILURES

    def allow(dask_scheduler):
        dask_scheduler.allowed_failures = limit
        return limit

    return client.run_on_scheduler(allow)


def connect(scheduler):
    """A ``distributed.Client`` for ``scheduler``, or a KitError that says what to do.

    Args:
        scheduler: an address (``tcp://host:port``), a ``distributed.Client``, or a cluster
            object with ``get_client()`` (dask-jobqueue's ``SLURMCluster``, dask-kubernetes'
            ``KubeCluster``, a Dask Gateway cluster, whose addresses need their own security).
    """
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler
    if hasattr(scheduler, "get_client"):
        return scheduler.get_client()
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise KitError(
            f"cannot reach the Dask scheduler at {scheduler} ({type(error).__name__}): start it "
            "(`dask scheduler`) or fix --scheduler / BNKIT_SCHEDULER"
        ) from None


class DaskExecutor:
    """Sends one task per notebook to a Dask scheduler; yields results in finishing order."""

    def __init__(self, address, env, memory_limit_mb, sandboxed, course_url):
        # distributed logs its reconnection attempts with tracebacks, also after the client
        # is closed; grading says what happened in one line of its own. (This stays for the
        # rest of the process: a script that needs distributed's logs can set them again.)
        import distributed  # noqa: F401  its import configures its loggers: do it first

        from .incremental import grader_version

        for name in ("distributed", "distributed.client", "distributed.comm"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self.client = connect(address)
        self._own_client = self.client is not address  # a client passed in stays open
        self.address = address if isinstance(address, str) else self.client.scheduler.address
        allow_one_retry(self.client)
        self._memory_limit_mb = memory_limit_mb
        self._sandboxed = sandboxed
        self._version = grader_version()
        self._secret = (runtime_dir() / "grading.secret").read_bytes()
        self._grading_env = {"BNKIT_SANDBOX": env.get("BNKIT_SANDBOX", "1")}
        self._grading_env.update({k: os.environ[k] for k in SETTINGS_PASSED if k in os.environ})
        self._gradebook_z = cached_blank_gradebook(self._version)
        self._futures = {}
        self._done = set()
        self._threads, self._capacity_checked = 1, float("-inf")
        self.description = f"Dask scheduler {address}"

    def _spec(self, task):
        from .grade import companion_bytes

        folder = submitted_dir() / task.student / ASSIGNMENT
        timestamp = folder / "timestamp.txt"
        return {
            "student": task.student,
            "notebook": task.notebook,
            "notebook_bytes": (folder / task.notebook).read_bytes(),
            "timestamp_bytes": timestamp.read_bytes() if timestamp.exists() else None,
            "companions": companion_bytes(folder, task.notebook),
            "secret": self._secret,
            "kit_version": self._version,
            "grading_env": self._grading_env,
            "memory_limit_mb": self._memory_limit_mb,
            "sandboxed": self._sandboxed,
            "gradebook_z": self._gradebook_z,
        }

    def _capacity(self):
        """Worker threads in the cluster now (at least 1), asked at most every few seconds.

        Clusters grow and shrink (Slurm jobs start, pods are evicted): the number of tasks
        kept in flight follows.
        """
        now = time.monotonic()
        if now - self._capacity_checked > CAPACITY_REFRESH_S:
            self._capacity_checked = now
            try:
                self._threads = max(1, sum(self.client.nthreads().values()))
            except Exception:  # noqa: BLE001  scheduler unreachable: the loop below notices
                pass
        return self._threads

    def results(self, tasks):
        """Yield ``(task, scores, graded_folder, outcome)`` per task as each one ends.

        At most one task per worker thread is in flight. The scheduler's own queueing only
        holds back tasks of large groups, so without this a worker would be handed several
        tasks at once, and one that died would take them all down (each counted as a
        failure); it also keeps the parent from reading all submissions into memory at once.
        """
        run_id = uuid.uuid4().hex[:8]
        entry = remote_entry()
        queue = list(reversed(tasks))
        in_flight = set()
        unreachable_since = None
        delay = MIN_POLL_S
        while queue or in_flight:
            while queue and len(in_flight) < self._capacity():
                task = queue.pop()
                future = self.client.submit(
                    entry, self._spec(task), key=f"bnkit-{task.key}-{run_id}", pure=False
                )
                self._futures[future.key] = (future, task)
                in_flight.add(future)
            finished = [future for future in in_flight if future.done()]
            in_flight.difference_update(finished)
            if finished:
                delay = MIN_POLL_S
            else:
                # Short sleeps while results come quickly, up to POLL_S when they do not;
                # sleeping in small steps also keeps Ctrl-C immediate.
                time.sleep(delay)
                delay = min(POLL_S, delay * 2)
            for future in finished:
                task = self._futures[future.key][1]
                self._done.add(task.key)
                yield self._collect(future, task)
            if self.client.status == "running" and not self._scheduler_says_lost(in_flight):
                unreachable_since = None
                continue
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > SCHEDULER_GRACE_S:
                raise SchedulerLost(
                    f"the Dask scheduler at {self.address} went away (client {self.client.status})."
                )

    @staticmethod
    def _scheduler_says_lost(pending):
        # After the scheduler dies the client cancels or loses futures: none can finish.
        return any(future.status in ("cancelled", "lost") for future in pending)

    def _collect(self, future, task):
        """Turn a finished future into what :func:`coursekit.grade._record` takes."""
        from distributed.scheduler import KilledWorker

        work = runtime_dir() / "work" / task.key
        shutil.rmtree(work, ignore_errors=True)
        graded_folder = work / "autograded" / task.student / ASSIGNMENT
        graded_folder.mkdir(parents=True)
        try:
            result = future.result()
        except KilledWorker:
            outcome = st.NotebookStatus(
                task.student,
                task.notebook,
                st.WORKER_LOST,
                f"the Dask worker grading it died, also on the retry ({ALLOWED_FAILURES + 1} "
                "workers lost): run grade again; if it repeats, the notebook kills its worker",
            )
            return task, None, graded_folder, outcome
        except Exception as error:  # noqa: BLE001  the task itself failed on the worker
            if future.status == "cancelled":
                raise SchedulerLost(
                    f"the Dask scheduler at {self.address} went away (task cancelled)."
                ) from None
            outcome = st.NotebookStatus(
                task.student,
                task.notebook,
                st.GRADER_FAILED,
                f"the task failed on the Dask worker: {type(error).__name__}: {error}"[:200],
            )
            return task, None, graded_folder, outcome
        finally:
            future.release()
        for relative, data in result["files"].items():
            path = graded_folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (work / "autograde.log").write_text(f"[dask worker {result['worker']}]\n{result['log']}")
        (work / "kernel.stderr.log").write_text(result["kernel_stderr"])
        outcome = st.NotebookStatus(
            task.student, task.notebook, result["status"], result["detail"], result["flags"]
        )
        return task, result["scores"], graded_folder, outcome

    def running(self):
        """Tasks sent and not finished that the scheduler has given to a worker.

        With the scheduler gone there is nobody to ask: every unfinished task is reported.
        """
        unfinished = {
            key: task for key, (_, task) in self._futures.items() if task.key not in self._done
        }
        if self.client.status != "running":
            return list(unfinished.values())
        try:
            processing = set()
            for keys in self.client.processing().values():
                processing.update(str(key) for key in keys)
        except Exception:  # noqa: BLE001  the scheduler went away just now
            return list(unfinished.values())
        return [task for key, task in unfinished.items() if str(key) in processing]

    def abandon(self):
        """Stop: cancel every task still queued or running, close the connection."""
        try:
            self.client.cancel([future for future, _ in self._futures.values()], force=True)
        except Exception:  # noqa: BLE001  the scheduler may be gone already
            pass
        self.close()

    def close(self):
        try:
            if self._own_client:
                self.client.close(timeout=2)
        except Exception:  # noqa: BLE001  closing a client whose scheduler is gone
            pass
