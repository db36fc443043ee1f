"""Validate the source notebooks: every grade cell of the solutions must earn full marks.

The hidden part of a grade cell asks the grader (over a socket) to run its check, so a plain
nbgrader ``Validator`` cannot see hidden-check results: without a grader the stub only prints
"run when graded" and every cell looks fine. This runs each solution notebook exactly as
grading does, with :class:`bn_grader.executor.SandboxedExecute`, and reads the scores from the
checks' ledger. A failure is any grade cell below full marks or without a ledger entry, any
request the grader refused, and any cell that raised or wrote to stderr.
"""

import os
from pathlib import Path

import nbformat

from .config import load_nbgrader_config
from .paths import ASSIGNMENT, NOTEBOOKS, SOURCE_DIR, tool_env
from .preflight import require_course_kernel
from .quiet import stderr_to_log

LEDGER_KEY = "bnkit"  # bn_grader.executor.RESOURCE_KEY
DETAIL_LINES = 3  # [FAIL] lines quoted per failing grade cell


def _executor_class():
    from bn_grader.executor import SandboxedExecute

    return SandboxedExecute


def execute_like_grading(path, source_dir, executor_class=None, config=None):
    """Run one notebook as autograde does; return (executed notebook, grading resources).

    Args:
        path: the notebook to run.
        source_dir: the folder the kernel gets a copy of (the notebook's helpers live there).
        executor_class: the Execute preprocessor (default: the kit's SandboxedExecute).
        config: traitlets Config (default: the kit's nbgrader_config.py).
    """
    executor_class = executor_class or _executor_class()
    config = config if config is not None else load_nbgrader_config()
    notebook = nbformat.read(str(path), as_version=4)
    resources = {
        "metadata": {"path": str(source_dir)},
        "nbgrader": {"notebook": Path(path).stem, "student": "validate", "assignment": ASSIGNMENT},
    }
    executor = executor_class(config=config)
    notebook, resources = executor.preprocess(notebook, resources)
    return notebook, resources.get(LEDGER_KEY) or {}


def _text(cell, name):
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == name
    )


def grading_failures(notebook, grading):
    """Every reason the executed ``notebook`` does not earn full marks, one text each.

    Args:
        notebook: the notebook after :func:`execute_like_grading`.
        grading: its grading resources (``ledger``, ``flags``).
    """
    ledger = grading.get("ledger", {})
    failures = [f"grader flag: {flag}" for flag in grading.get("flags", [])]
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        where = meta.get("grade_id") or f"cell {index}"
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                failures.append(f"{where}: raised {output.get('ename')}: {output.get('evalue')}")
        stderr = _text(cell, "stderr").strip()
        if stderr:
            failures.append(f"{where}: wrote to stderr: {stderr.splitlines()[0][:200]}")
        if not meta.get("grade"):
            continue
        points = float(meta.get("points", 0))
        entry = ledger.get(meta["grade_id"])
        if entry is None:
            failures.append(f"{where}: no hidden-check result (0 / {points:g} points)")
            continue
        score = float(entry["score"])
        if score < points:
            failed = [line for line in _text(cell, "stdout").splitlines() if "[FAIL]" in line]
            detail = "; ".join(line.strip() for line in failed[:DETAIL_LINES])
            failures.append(
                f"{where}: {score:g} / {points:g} points" + (f": {detail}" if detail else "")
            )
    return failures


def validate_solutions(
    notebooks=NOTEBOOKS, progress=None, source_dir=SOURCE_DIR, executor_class=None
):
    """Execute each solution notebook as grading does and collect what did not earn full marks.

    Args:
        notebooks: notebook file names in ``source_dir``.
        progress: optional callback, called with each name when it is done.
        source_dir: the folder holding the notebooks and their helper package.
        executor_class: the Execute preprocessor (default: SandboxedExecute).

    Returns:
        dict notebook name -> list of failure texts (empty lists when everything passed).
    """
    require_course_kernel()
    config = load_nbgrader_config()
    os.environ.update(tool_env())  # kernels inherit PATH/PYTHONPATH from this process
    failures = {}
    for name in notebooks:
        with stderr_to_log("validate"):
            notebook, grading = execute_like_grading(
                Path(source_dir) / name, source_dir, executor_class, config
            )
        failures[name] = grading_failures(notebook, grading)
        if progress:
            progress(name)
    return failures
