"""Grade every submission, several notebooks at once, and record a status for each.

Each (student, notebook) is one task: nbgrader's autograde for that student and notebook, run
by a long-lived worker process (:mod:`coursekit.worker`) in a private folder against a private
copy of the SQLite gradebook, under a memory limit. nbgrader's pipeline there runs the kit's
executor (kernel in bubblewrap, hidden checks in the worker) and takes auto scores from the
checks' ledger (nbgrader_config.py). The parent then copies the result into the course
gradebook (serialised, through nbgrader's API) and the autograded notebook into
``autograded/``. A crashed or killed task therefore cannot corrupt the gradebook or touch any
other student's grades, and its status says what happened.
"""

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bn_grader.sandbox import INSTALL_HINT, bwrap_path

from . import status as st
from .errors import KitError
from .flags import notebook_flags
from .gradebook import (
    copy_sqlite,
    ensure_submissions,
    merge_notebook_grades,
    require_assignment,
    zero_notebook,
)
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


def list_students(requested=None):
    """Student ids with a ``submitted/<id>/batchnorm`` folder, or check the requested ones."""
    folder = submitted_dir()
    if not folder.is_dir():
        raise KitError(
            f"no submissions folder at {folder}: collect submissions first (`nbgrader collect`) or run `make samples`"
        )
    present = sorted(p.name for p in folder.iterdir() if (p / ASSIGNMENT).is_dir())
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


def _run_task(task, course_url, lock, pool, memory_limit_mb, sandboxed):
    """Grade one notebook of one student in a private folder; return what the parent needs."""
    work = runtime_dir() / "work" / task.key
    shutil.rmtree(work, ignore_errors=True)
    source = submitted_dir() / task.student / ASSIGNMENT
    staged = work / "submitted" / task.student / ASSIGNMENT
    staged.mkdir(parents=True)
    shutil.copy2(source / task.notebook, staged / task.notebook)
    if (source / "timestamp.txt").exists():
        shutil.copy2(source / "timestamp.txt", staged / "timestamp.txt")
    if course_url.startswith("sqlite:///"):
        with lock:  # don't copy the gradebook while the parent writes to it
            worker_url = copy_sqlite(course_url, work / "gradebook.db")
    else:
        worker_url = course_url  # a server database serialises concurrent writers itself
    success, log, peak_mb = pool.autograde(
        task.student,
        task.stem,
        str(work / "submitted"),
        str(work / "autograded"),
        worker_url,
        str(work / "kernel.stderr.log"),
    )
    (work / "autograde.log").write_text(log)
    graded_folder = work / "autograded" / task.student / ASSIGNMENT
    kernel_stderr = (work / "kernel.stderr.log").read_text(errors="replace")
    near_limit = peak_mb is not None and peak_mb >= 0.8 * memory_limit_mb
    status, detail = st.classify(
        0 if success else 1, log, graded_folder / task.notebook, kernel_stderr, near_limit
    )
    flags = []
    if (graded_folder / task.notebook).exists():
        flags = notebook_flags(graded_folder / task.notebook, task.notebook)
        unscored = st.unscored_cells(graded_folder / task.notebook)
        if unscored and status == st.GRADED:
            detail = f"no check result, scored 0: {', '.join(unscored)}"
    if not sandboxed:
        flags.append("unsandboxed")
        if status == st.GRADED:
            status = st.UNSANDBOXED
    return (
        task,
        worker_url,
        graded_folder,
        st.NotebookStatus(task.student, task.notebook, status, detail, "; ".join(flags)),
    )


def _record(task, worker_url, graded_folder, outcome, course_url):
    """Parent side: copy grades and the autograded notebook, or record a zero with its reason."""
    destination = autograded_dir() / task.student / ASSIGNMENT
    logs = runtime_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name, suffix in (("autograde.log", ".log"), ("kernel.stderr.log", ".kernel-stderr.log")):
        kept = graded_folder.parents[2] / name
        if kept.exists():
            shutil.copy2(kept, logs / f"{task.key}{suffix}")
    if (graded_folder / task.notebook).exists():
        if worker_url != course_url:
            merge_notebook_grades(worker_url, course_url, task.student, task.stem)
        destination.mkdir(parents=True, exist_ok=True)
        for item in graded_folder.iterdir():
            target = destination / item.name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
    else:
        zero_notebook(
            course_url,
            task.student,
            task.stem,
            f"Not graded: {outcome.status}. {outcome.detail}",
        )
        (destination / task.notebook).unlink(missing_ok=True)


def grade(
    students=None,
    workers=None,
    memory_limit_mb=DEFAULT_MEMORY_LIMIT_MB,
    show_progress=True,
    sandbox=True,
):
    """Autograde submissions in parallel and write ``status.csv`` in the runtime folder.

    Args:
        students: student ids to (re)grade; all submitted students when None.
        workers: parallel grading kernels; default the number of CPU cores.
        memory_limit_mb: address-space limit per grading task.
        sandbox: run kernels in bubblewrap (stops with how to install it when missing);
            False grades without it and marks every notebook ``unsandboxed``.

    Returns:
        list of :class:`coursekit.status.NotebookStatus` for the graded students.
    """
    if sandbox and not bwrap_path():
        raise KitError(INSTALL_HINT)
    require_writable_runtime()
    require_course_kernel()
    course_url = db_url()
    require_assignment(course_url)
    students = list_students(students)
    workers = max(1, int(workers or os.cpu_count() or 1))
    statuses, tasks = [], []
    for student in students:
        for notebook in NOTEBOOKS:
            path = submitted_dir() / student / ASSIGNMENT / notebook
            if not path.exists():
                statuses.append(
                    st.NotebookStatus(student, notebook, st.MISSING, "not in the submission")
                )
                zero_notebook(
                    course_url,
                    student,
                    notebook.removesuffix(".ipynb"),
                    "Not graded: the notebook was not submitted.",
                )
                continue
            ok, why = st.readable(path)
            if not ok:
                statuses.append(st.NotebookStatus(student, notebook, st.UNREADABLE, why))
                zero_notebook(
                    course_url,
                    student,
                    notebook.removesuffix(".ipynb"),
                    f"Not graded: the file is not a valid notebook ({why}).",
                )
                continue
            tasks.append(Task(student, notebook))

    if not course_url.startswith("sqlite:///"):
        # Workers write straight to a server database; create each submission here first so
        # two tasks of one student never race to create the same rows.
        ensure_submissions(course_url, sorted({task.student for task in tasks}))
    lock = threading.Lock()
    columns = [
        TextColumn("grading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    ]
    env = tool_env({"BNKIT_SANDBOX": "1" if sandbox else "0"})
    workers_pool = WorkerPool(workers, env, memory_limit_mb * 1024 * 1024)
    try:
        with (
            Progress(*columns, disable=not show_progress) as progress,
            ThreadPoolExecutor(workers) as threads,
        ):
            bar = progress.add_task("", total=len(tasks))
            futures = [
                threads.submit(
                    _run_task, task, course_url, lock, workers_pool, memory_limit_mb, sandbox
                )
                for task in tasks
            ]
            for future in as_completed(futures):
                task, worker_url, graded_folder, outcome = future.result()
                with lock:
                    _record(task, worker_url, graded_folder, outcome, course_url)
                statuses.append(outcome)
                progress.update(
                    bar, advance=1, description=f"{task.student}/{task.notebook}: {outcome.status}"
                )
    finally:
        # Also on Ctrl-C: the grades merged so far are in the gradebook; keep their statuses.
        workers_pool.shutdown()
        status_path = runtime_dir() / STATUS_CSV
        done = {(item.student, item.notebook) for item in statuses}
        kept = [
            item
            for item in st.read_status_csv(status_path)
            if (item.student, item.notebook) not in done
        ]
        st.write_status_csv(status_path, kept + statuses)
        shutil.rmtree(runtime_dir() / "work", ignore_errors=True)
    return statuses
