"""Grade every submission, several notebooks at once, and record a status for each.

Each (student, notebook) is one task: nbgrader's autograde for that student and notebook, run
by a long-lived worker process (:mod:`coursekit.worker`) in a private folder against a private
copy of the SQLite gradebook, under a memory limit. nbgrader's pipeline there runs the kit's
executor (kernel in bubblewrap, hidden checks in the worker) and takes auto scores from the
checks' ledger (nbgrader_config.py). The task reads its scores back out of its gradebook as
plain data; the parent merges them into the course gradebook (one nbgrader session for the
run, one commit per result, :class:`coursekit.gradebook.CourseGradebook`) and copies the
autograded notebook into ``autograded/``. A crashed or killed task therefore cannot corrupt
the gradebook or touch any other student's grades, and its status says what happened.

The tasks run in the local worker pool, or with ``scheduler=`` on a Dask cluster
(:mod:`coursekit.cluster`); either way the parent merges one result at a time. Only notebooks
that are new or changed since their last final outcome are graded unless ``regrade_all``
(:mod:`coursekit.incremental`); notebooks that grading cannot see are reported
(:mod:`coursekit.intake`). Ctrl-C abandons the running tasks within seconds, reports them as
``interrupted`` and keeps every grade merged so far.
"""

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bn_grader.sandbox import INSTALL_HINT, bwrap_path

from . import status as st
from .errors import KitError
from .flags import notebook_flags
from .gradebook import CourseGradebook, copy_sqlite, require_assignment
from .incremental import GradedVersions, grader_version, run_settings, submission_digest
from .intake import note_for, scan
from .paths import (
    ASSIGNMENT,
    NOTEBOOKS,
    autograded_dir,
    db_url,
    runtime_dir,
    submitted_dir,
    tool_env,
)
from .preflight import require_course_kernel, require_writable_runtime
from .worker import WorkerPool

STATUS_CSV = "status.csv"
DEFAULT_MEMORY_LIMIT_MB = 6144  # TensorFlow alone maps about 2-3 GB of address space


@dataclass
class Task:
    student: str
    notebook: str

    @property
    def stem(self):
        """The notebook's name without ``.ipynb``, as nbgrader and the gradebook name it."""
        return self.notebook.removesuffix(".ipynb")

    @property
    def key(self):
        return f"{self.student}__{self.stem}"


class GradeRun(list):
    """The statuses of the notebooks this run looked at (a list, as ``grade`` always returned).

    Attributes:
        unchanged: (student, notebook) pairs skipped because nothing changed since last time.
        misplaced: :class:`coursekit.intake.Misplaced` notebooks grading could not pick up.
        interrupted: statuses of the tasks that a Ctrl-C or a lost scheduler stopped.
    """

    def __init__(self):
        super().__init__()
        self.unchanged = []
        self.misplaced = []
        self.interrupted = []


class GradingInterrupted(KeyboardInterrupt):
    """Ctrl-C during grading, after the run was wrapped up; ``run`` is the :class:`GradeRun`."""

    def __init__(self, run):
        super().__init__("grading interrupted")
        self.run = run


def list_students(requested=None, misplaced=()):
    """Student ids with a ``submitted/<id>/batchnorm`` folder, or check the requested ones.

    Students whose only notebooks are misplaced (``misplaced``, from
    :func:`coursekit.intake.scan`) count too: they get a status saying where the notebook is.
    """
    folder = submitted_dir()
    if not folder.is_dir():
        raise KitError(
            f"no submissions folder at {folder}: collect submissions first (`nbgrader collect`) or run `make samples`"
        )
    present, _ = scan(folder)
    present = sorted(set(present) | {m.student for m in misplaced if m.student})
    if requested:
        unknown = sorted(set(requested) - set(present))
        if unknown:
            raise KitError(
                f"no submission for {', '.join(unknown)} in {folder} (known: {', '.join(present) or 'none'})"
            )
        return sorted(set(requested))
    if not present:
        raise KitError(
            f"no submissions in {folder}: expected folders like {folder}/<student>/{ASSIGNMENT}/"
        )
    return present


# The Keras notebook compares with the student's own NumPy functions (bnkit.nbimport reads
# bn_numpy.ipynb from the notebook's folder): its task carries that notebook too, read-only.
COMPANIONS = {"bn_keras.ipynb": ("bn_numpy.ipynb",)}


def companion_bytes(folder, notebook):
    """{name: bytes} of the submitted notebooks the task of ``notebook`` needs beside it."""
    folder = Path(folder)
    return {
        name: (folder / name).read_bytes()
        for name in COMPANIONS.get(notebook, ())
        if (folder / name).is_file()
    }


def stage_submission(
    work, student, notebook, notebook_bytes, timestamp_bytes=None, companions=None
):
    """Lay out one submission as nbgrader wants it: ``work/submitted/<student>/batchnorm/``.

    ``companions`` ({name: bytes}) are other notebooks of the student's the graded one reads;
    nbgrader grades only ``notebook`` (the task's notebook id).
    """
    staged = Path(work) / "submitted" / student / ASSIGNMENT
    staged.mkdir(parents=True)
    (staged / notebook).write_bytes(notebook_bytes)
    for name, data in (companions or {}).items():
        (staged / name).write_bytes(data)
        (staged / name).chmod(0o444)
    if timestamp_bytes is not None:
        (staged / "timestamp.txt").write_bytes(timestamp_bytes)
    return staged


def task_outcome(task, work, success, log, peak_mb, memory_limit_mb, sandboxed, scores):
    """Decide a finished task's status from what autograde left in ``work`` (any machine).

    ``scores`` is what autograde recorded in the task's gradebook
    (:func:`coursekit.gradebook.read_notebook_scores`). Also writes ``work/autograde.log``.
    Returns a :class:`coursekit.status.NotebookStatus`.
    """
    import nbformat

    work = Path(work)
    (work / "autograde.log").write_text(log)
    graded_path = work / "autograded" / task.student / ASSIGNMENT / task.notebook
    stderr_path = work / "kernel.stderr.log"
    kernel_stderr = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
    near_limit = peak_mb is not None and peak_mb >= 0.8 * memory_limit_mb
    # Parsed once here for the status and the unscored cells (flags.notebook_flags reads
    # the file itself).
    graded = nbformat.read(graded_path, as_version=4) if graded_path.exists() else None
    status, detail = st.classify(
        0 if success else 1, log, graded_path, kernel_stderr, near_limit, autograded=graded
    )
    flags = []
    if graded is not None:
        flags = notebook_flags(graded_path, task.notebook)
        unscored = st.unscored_cells(graded)
        if unscored and status == st.GRADED:
            detail = f"no check result, scored 0: {', '.join(unscored)}"
        if scores is None and status not in st.PROBLEMS:
            # An autograded notebook with nothing in the gradebook: never merge silence.
            status, detail = st.GRADER_FAILED, "autograde recorded no scores in the gradebook"
    if not sandboxed:
        flags.append("unsandboxed")
        if status == st.GRADED:
            status = st.UNSANDBOXED
    return st.NotebookStatus(task.student, task.notebook, status, detail, "; ".join(flags))


def _run_task(task, course_url, lock, pool, memory_limit_mb, sandboxed):
    """Grade one notebook of one student in a private folder; return what the parent needs."""
    work = runtime_dir() / "work" / task.key
    shutil.rmtree(work, ignore_errors=True)
    source = submitted_dir() / task.student / ASSIGNMENT
    timestamp = source / "timestamp.txt"
    stage_submission(
        work,
        task.student,
        task.notebook,
        (source / task.notebook).read_bytes(),
        timestamp.read_bytes() if timestamp.exists() else None,
        companion_bytes(source, task.notebook),
    )
    if course_url.startswith("sqlite:///"):
        with lock:  # don't copy the gradebook while the parent writes to it
            worker_url = copy_sqlite(course_url, work / "gradebook.db")
    else:
        worker_url = course_url  # a server database serialises concurrent writers itself
    success, log, peak_mb, scores = pool.autograde(
        task.student,
        task.stem,
        str(work / "submitted"),
        str(work / "autograded"),
        worker_url,
        str(work / "kernel.stderr.log"),
    )
    # With a server gradebook the worker wrote these scores itself; the parent merges them
    # again anyway (the same values, once the task is over): one code path for every route.
    outcome = task_outcome(task, work, success, log, peak_mb, memory_limit_mb, sandboxed, scores)
    return task, scores, work / "autograded" / task.student / ASSIGNMENT, outcome


def _record(task, scores, graded_folder, outcome, course):
    """Parent side: merge the scores and copy the autograded notebook, or record a zero.

    Args:
        task: the :class:`Task`. scores: the task's scores as plain data
            (:func:`coursekit.gradebook.read_notebook_scores`), None when nothing was recorded.
        graded_folder: the task's ``autograded/<student>/batchnorm`` folder (logs two levels
            above). outcome: its :class:`coursekit.status.NotebookStatus`.
        course: the run's :class:`coursekit.gradebook.CourseGradebook`.

    A notebook whose grading was stopped or whose worker was lost keeps whatever the gradebook
    had: its status says the points are not this submission's result.
    """
    destination = autograded_dir() / task.student / ASSIGNMENT
    logs = runtime_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, suffix in (("autograde.log", ".log"), ("kernel.stderr.log", ".kernel-stderr.log")):
        kept = graded_folder.parents[2] / name
        if kept.exists():
            # Moved, not copied: the task's folder is thrown away anyway.
            shutil.move(kept, logs / f"{task.key}{suffix}")
    if outcome.status in (st.INTERRUPTED, st.WORKER_LOST):
        return
    if (graded_folder / task.notebook).exists() and scores is not None:
        course.merge(task.student, task.stem, scores)
        for item in sorted(graded_folder.rglob("*")):
            if item.is_file():
                target = destination / item.relative_to(graded_folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(item, target)
    else:
        course.zero(task.student, task.stem, f"Not graded: {outcome.status}. {outcome.detail}")
        (destination / task.notebook).unlink(missing_ok=True)


class LocalExecutor:
    """Runs tasks in this machine's :class:`coursekit.worker.WorkerPool`, results as they end."""

    def __init__(self, workers, env, memory_limit_mb, sandboxed, course_url, lock):
        self._pool = WorkerPool(workers, env, memory_limit_mb * 1024 * 1024)
        self._threads = ThreadPoolExecutor(workers)
        self._arguments = (course_url, lock, self._pool, memory_limit_mb, sandboxed)
        self._running = {}
        self._running_lock = threading.Lock()
        self.description = f"{workers} local worker{'s' if workers != 1 else ''}"

    def _run(self, task):
        with self._running_lock:
            self._running[task.key] = task
        try:
            return _run_task(task, *self._arguments)
        except Exception as error:  # noqa: BLE001  a task's failure is a status, not a crash
            work = runtime_dir() / "work" / task.key
            work.mkdir(parents=True, exist_ok=True)
            detail = f"{type(error).__name__}: {error}"[:200]
            outcome = st.NotebookStatus(task.student, task.notebook, st.GRADER_FAILED, detail)
            return task, None, work / "autograded" / task.student / ASSIGNMENT, outcome
        finally:
            with self._running_lock:
                self._running.pop(task.key, None)

    def results(self, tasks):
        """Yield ``(task, scores, graded_folder, outcome)`` per task, in finishing order."""
        futures = [self._threads.submit(self._run, task) for task in tasks]
        for future in as_completed(futures):
            yield future.result()

    def running(self):
        """Tasks being graded right now."""
        with self._running_lock:
            return list(self._running.values())

    def abandon(self):
        """Ctrl-C: kill the workers, drop the queue; waiting threads return at once."""
        self._pool.abandon()
        self._threads.shutdown(wait=False, cancel_futures=True)

    def close(self):
        self._pool.shutdown()
        self._threads.shutdown(wait=True)


def plan(students, course, versions, version, settings, regrade_all, misplaced):
    """Decide, per student and notebook, what to do in this run.

    ``course`` is the run's :class:`coursekit.gradebook.CourseGradebook`; the zeros of
    missing and unreadable notebooks are written in one transaction. They need no commit each:
    those notebooks are never recorded as done, so a run stopped here redoes them.

    Returns:
        (tasks, immediate, unchanged, digests): the notebooks to grade; statuses decided without
        grading (missing, unreadable), already recorded as zeros; the (student, notebook) pairs
        skipped as unchanged; and {task key: digest} to record when a task ends.
    """
    previous = {(s.student, s.notebook): s for s in st.read_status_csv(runtime_dir() / STATUS_CSV)}
    tasks, immediate, unchanged, digests = [], [], [], {}
    for student in students:
        for notebook in NOTEBOOKS:
            path = submitted_dir() / student / ASSIGNMENT / notebook
            if not path.exists():
                versions.forget(student, notebook)  # its zero must not count as graded later
                found = note_for(misplaced, student, notebook)
                detail = "not in the submission" + (f"; {found}" if found else "")
                immediate.append(st.NotebookStatus(student, notebook, st.MISSING, detail))
                course.zero(
                    student,
                    notebook.removesuffix(".ipynb"),
                    "Not graded: the notebook was not submitted.",
                    commit=False,
                )
                continue
            task = Task(student, notebook)
            digests[task.key] = submission_digest(path, version, settings)
            before = previous.get((student, notebook))
            must_have_copy = before is not None and before.status in (st.GRADED, st.UNSANDBOXED)
            if (
                not regrade_all
                and before is not None
                and before.status not in st.RETRY
                and versions.is_current(student, notebook, digests[task.key])
                and (
                    not must_have_copy
                    or (autograded_dir() / student / ASSIGNMENT / notebook).exists()
                )
            ):
                unchanged.append((student, notebook))  # not even parsed again
                continue
            versions.forget(student, notebook)  # until this run reaches a final outcome
            ok, why = st.readable(path)
            if not ok:
                immediate.append(st.NotebookStatus(student, notebook, st.UNREADABLE, why))
                course.zero(
                    student,
                    notebook.removesuffix(".ipynb"),
                    f"Not graded: the file is not a valid notebook ({why}).",
                    commit=False,
                )
                continue
            tasks.append(task)
    course.commit()
    return tasks, immediate, unchanged, digests


def _executor_for(scheduler, workers, env, memory_limit_mb, sandbox, course_url, lock):
    if scheduler:
        from .cluster import DaskExecutor  # dask is imported only when a cluster is used

        return DaskExecutor(scheduler, env, memory_limit_mb, sandbox, course_url)
    return LocalExecutor(workers, env, memory_limit_mb, sandbox, course_url, lock)


def grade(
    students=None,
    workers=None,
    memory_limit_mb=DEFAULT_MEMORY_LIMIT_MB,
    show_progress=True,
    sandbox=True,
    scheduler=None,
    regrade_all=False,
):
    """Autograde submissions in parallel and write ``status.csv`` in the runtime folder.

    Args:
        students: student ids to grade; all submitted students when None. Students named here
            are graded even when unchanged (asking for them is asking for a re-grade).
        workers: parallel grading kernels on this machine; default the number of CPU cores.
        memory_limit_mb: address-space limit per grading task.
        sandbox: run kernels in bubblewrap (stops with how to install it when missing);
            False grades without it and marks every notebook ``unsandboxed``.
        scheduler: a Dask scheduler's address (``tcp://host:port``), a ``distributed.Client``
            or a Dask cluster object (dask-jobqueue, dask-kubernetes, Dask Gateway): grade there
            instead of in the local pool (:mod:`coursekit.cluster`).
        regrade_all: grade every notebook, also those unchanged since their last outcome.

    Returns:
        :class:`GradeRun`, the list of :class:`coursekit.status.NotebookStatus` of the
        notebooks looked at, with the unchanged, misplaced and interrupted ones as attributes.

    Raises:
        GradingInterrupted: on Ctrl-C, after recording what was done (statuses included).
        KitError: bad set-up, or the Dask scheduler went away (grades merged so far are kept).
    """
    if sandbox and not bwrap_path():
        raise KitError(INSTALL_HINT)
    require_writable_runtime()
    require_course_kernel()
    course_url = db_url()
    require_assignment(course_url)
    with CourseGradebook(course_url) as course:
        return _grade(
            course,
            students,
            workers,
            memory_limit_mb,
            show_progress,
            sandbox,
            scheduler,
            regrade_all,
        )


def _grade(
    course, students, workers, memory_limit_mb, show_progress, sandbox, scheduler, regrade_all
):
    """:func:`grade` once the set-up is checked and the course gradebook is open."""
    course_url = course.url
    run = GradeRun()
    if submitted_dir().is_dir():
        run.misplaced = scan(submitted_dir())[1]
    explicit = bool(students)
    students = list_students(students, run.misplaced)
    workers = max(1, int(workers or os.cpu_count() or 1))
    from bn_grader.executor import load_secret

    secret_file = runtime_dir() / "grading.secret"
    load_secret(secret_file)  # created before the run so every task (and its digest) shares it
    versions = GradedVersions()
    version = grader_version()
    settings = run_settings(sandbox, memory_limit_mb, course_url, secret_file)
    # Every student's rows up front, in one transaction: cheaper than one commit per new
    # student, and with a server gradebook (which workers write to directly) two tasks of
    # one student never race to create the same rows.
    course.ensure_submissions(students)
    tasks, immediate, unchanged, digests = plan(
        students, course, versions, version, settings, regrade_all or explicit, run.misplaced
    )
    run.extend(immediate)
    run.unchanged = unchanged

    lock = threading.Lock()
    columns = [
        TextColumn("grading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    ]
    env = tool_env({"BNKIT_SANDBOX": "1" if sandbox else "0"})
    finished = set()
    executor = None
    stopped = None
    try:
        if tasks:
            executor = _executor_for(
                scheduler, workers, env, memory_limit_mb, sandbox, course_url, lock
            )
        with Progress(*columns, disable=not show_progress) as progress:
            bar = progress.add_task("", total=len(tasks))
            for task, scores, graded_folder, outcome in executor.results(tasks) if tasks else ():
                with lock:
                    _record(task, scores, graded_folder, outcome, course)
                finished.add(task.key)
                run.append(outcome)
                if outcome.status not in st.RETRY:
                    versions.record(task.student, task.notebook, digests[task.key])
                progress.update(
                    bar, advance=1, description=f"{task.student}/{task.notebook}: {outcome.status}"
                )
    except KeyboardInterrupt:
        stopped = "Ctrl-C"
    except KitError as error:
        if not getattr(error, "scheduler_lost", False):
            raise
        stopped = error
    finally:
        if executor is not None:
            running = {task.key for task in executor.running()}
            if stopped is not None:
                executor.abandon()
            else:
                executor.close()
            for task in tasks:
                if task.key in finished:
                    continue
                why = "Ctrl-C" if stopped == "Ctrl-C" else "the Dask scheduler went away"
                when = (
                    "while this notebook was graded"
                    if task.key in running
                    else "before this notebook was graded"
                )
                item = st.NotebookStatus(
                    task.student,
                    task.notebook,
                    st.INTERRUPTED,
                    f"{why} stopped grading {when}; run grade again to finish it",
                )
                run.interrupted.append(item)
                run.append(item)
        # Every outcome of this run replaces its row; everyone else's status and flags stay.
        status_path = runtime_dir() / STATUS_CSV
        done = {(item.student, item.notebook) for item in run}
        kept = [
            item
            for item in st.read_status_csv(status_path)
            if (item.student, item.notebook) not in done
        ]
        st.write_status_csv(status_path, kept + list(run))
        shutil.rmtree(runtime_dir() / "work", ignore_errors=True)
    if stopped == "Ctrl-C":
        raise GradingInterrupted(run)
    if stopped is not None:
        raise KitError(
            f"{stopped} Merged this run and kept: {len(finished)} notebooks; "
            f"{len(run.interrupted)} not finished (status 'interrupted'): run grade again to finish them"
        )
    return run
