"""Shared test set-up: the grader and the student helpers are importable, as in a grading kernel."""

import os
import sys
from pathlib import Path

import nbformat
import pytest

KIT_ROOT = Path(__file__).resolve().parents[1]
GRADER_DIR = KIT_ROOT / "autograder"
ASSIGNMENT_SOURCE = KIT_ROOT / "solutions" / "batchnorm"

for path in (GRADER_DIR, ASSIGNMENT_SOURCE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# Kernels started by tests must import the grader and stay quiet on stderr, as when grading.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(GRADER_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@pytest.fixture
def isolated_runtime(tmp_path, monkeypatch):
    """A private runtime folder and gradebook, so tests never touch an instructor's grades."""
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("BNKIT_RUNTIME", str(runtime))
    monkeypatch.delenv("BNKIT_DB_URL", raising=False)
    return runtime


def auto_points(notebook):
    """{grade_id: points} of the auto-graded (code) grade cells of a source notebook.

    Expected scores in the end-to-end tests come from here: the notebook's own metadata.
    """
    nb = nbformat.read(ASSIGNMENT_SOURCE / f"{notebook}.ipynb", as_version=4)
    return {
        cell.metadata["nbgrader"]["grade_id"]: float(cell.metadata["nbgrader"]["points"])
        for cell in nb.cells
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade")
    }


def auto_scores(scores, student, notebook):
    """{grade_id: score} of the auto-graded cells, from ``coursekit.gradebook.cell_scores``."""
    cells = scores.get(student, {}).get(notebook, {})
    return {cell: score for cell, (score, _, is_auto) in cells.items() if is_auto}


def runtime_env(monkeypatch, runtime, **extra):
    """Point the kit at a private runtime folder (and SQLite gradebook) for one test scope."""
    monkeypatch.setenv("BNKIT_RUNTIME", str(runtime))
    monkeypatch.delenv("BNKIT_DB_URL", raising=False)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
