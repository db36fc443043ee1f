"""What happened to each submitted notebook, so that no zero is ever silent.

A status is decided from facts the grading run leaves behind: whether the file was there and
readable, nbgrader's exit code and log, and the error outputs in the autograded notebook.
"""

import csv
from dataclasses import dataclass

import nbformat

GRADED = "graded"
MISSING = "notebook missing"
UNREADABLE = "notebook unreadable"
TIMED_OUT = "timed out"
KERNEL_DIED = "kernel died"
OUT_OF_MEMORY = "out of memory"
GRADER_FAILED = "grading failed"
UNSANDBOXED = "unsandboxed"  # graded, but with --no-sandbox: the kernel could see the machine
INTERRUPTED = "interrupted"  # Ctrl-C or a lost scheduler stopped the run while it was grading
WORKER_LOST = "worker lost"  # the cluster worker running it died, also on the one retry

# Statuses that mean the points recorded are not the student's real result.
PROBLEMS = (
    MISSING,
    UNREADABLE,
    TIMED_OUT,
    KERNEL_DIED,
    OUT_OF_MEMORY,
    GRADER_FAILED,
    INTERRUPTED,
    WORKER_LOST,
)
# Outcomes that say something about the run, not the submission: grading it again may succeed,
# so an incremental run never counts them as done.
RETRY = (GRADER_FAILED, INTERRUPTED, WORKER_LOST)
# No notebook to grade by hand: nothing was there, or nothing could be read.
ABSENT = (MISSING, UNREADABLE)


@dataclass
class NotebookStatus:
    student: str
    notebook: str
    status: str
    detail: str = ""
    flags: str = ""


def readable(path):
    """(True, "") when ``path`` is a valid notebook, else (False, why)."""
    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except Exception as error:  # noqa: BLE001  any parse or schema problem
        return (
            False,
            f"{type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}",
        )
    return True, ""


# What a kernel writes to its C-level stderr when it dies because an allocation failed under the
# grading memory limit (in whichever thread hit the limit first).
MEMORY_SIGNS = (
    "MemoryError",
    "bad_alloc",
    "Cannot allocate memory",
    "out of memory",
    "can't start new thread",
)


def classify(
    exit_code,
    log_text,
    autograded_path,
    kernel_stderr="",
    near_memory_limit=False,
    autograded=None,
):
    """Decide the status of one executed notebook.

    Args:
        exit_code: nbgrader autograde's exit code for this notebook.
        log_text: its combined output.
        autograded_path: where the autograded notebook should be (Path).
        kernel_stderr: what the kernel wrote to its C-level stderr.
        near_memory_limit: the kernel's peak resident memory came close to the grading limit.
            (When the limit is hit, the allocation that fails may be in any thread of the
            kernel; outside the main Python thread that kills the kernel instead of raising
            MemoryError, sometimes without a word on stderr.)
        autograded: the autograded notebook already read (an ``nbformat.NotebookNode``), so
            that a caller reading it for other purposes too parses it once; else it is read
            from ``autograded_path``.

    Returns:
        (status, detail).
    """
    if "DeadKernelError" in log_text or "Kernel died" in log_text:
        said_memory = any(sign in log_text or sign in kernel_stderr for sign in MEMORY_SIGNS)
        if near_memory_limit or said_memory:
            return (
                OUT_OF_MEMORY,
                "the kernel died when an allocation failed under the grading memory limit",
            )
        return KERNEL_DIED, "the kernel stopped while running the notebook (a crash or os._exit)"
    if exit_code != 0 or not autograded_path.exists():
        causes = [
            line.strip() for line in log_text.splitlines() if "Error" in line or "ERROR" in line
        ]
        return GRADER_FAILED, (causes[-1][:200] if causes else f"nbgrader exit code {exit_code}")
    errors = error_names(autograded if autograded is not None else autograded_path)
    if "MemoryError" in errors:
        return (
            OUT_OF_MEMORY,
            "a cell ran out of memory (MemoryError) under the grading memory limit",
        )
    # nbclient interrupts a cell that runs past the timeout; the cell then shows the interrupt
    # (KeyboardInterrupt) or nbgrader's CellTimeoutError, and the log says why.
    if "CellTimeoutError" in errors or "Timeout waiting for execute reply" in log_text:
        return TIMED_OUT, "a cell ran past the execution timeout and was interrupted"
    return GRADED, ""


def _notebook(source):
    """``source`` itself if it is a notebook already read, else the notebook at that path."""
    if isinstance(source, nbformat.NotebookNode):
        return source
    return nbformat.read(source, as_version=4)


def unscored_cells(source):
    """Grade cells of an autograded notebook (path or NotebookNode) that got no check result."""
    from bn_grader.ledger import METADATA_KEY

    notebook = _notebook(source)
    return list(notebook.metadata.get(METADATA_KEY, {}).get("unscored", []))


def error_names(source):
    """The exception names of all error outputs in a notebook (path or NotebookNode)."""
    notebook = _notebook(source)
    return {
        output.get("ename", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    }


def write_status_csv(path, statuses):
    """One row per student and notebook: student_id, notebook, status, detail, flags."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "notebook", "status", "detail", "flags"])
        for item in sorted(statuses, key=lambda s: (s.student, s.notebook)):
            writer.writerow([item.student, item.notebook, item.status, item.detail, item.flags])


def read_status_csv(path):
    """The rows :func:`write_status_csv` wrote, flags included (empty list when no file).

    A file written before the flags column existed reads back with empty flags.
    """
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [
            NotebookStatus(
                row["student_id"],
                row["notebook"],
                row["status"],
                row.get("detail") or "",
                row.get("flags") or "",
            )
            for row in csv.DictReader(handle)
        ]
