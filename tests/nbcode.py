"""Run a notebook's code without Jupyter: exec its setup cell and solution cells in a namespace.

Used by the fast unit tests: ``namespace_from_notebook(path, edits=sample.edits)`` gives the
namespace a grade cell would see after a student with that sample's edits ran the notebook, so
``bn_grader.check(check_id, namespace)`` can grade it in milliseconds.
"""

import contextlib
import io
import sys
from pathlib import Path

import nbformat

# Solution cells of bn_keras.ipynb that define functions (not the slow training experiments).
KERAS_FUNCTION_CELLS = (
    "choose_device",
    "make_keras_bn",
    "keras_bn_forward",
    "keras_bn_backward",
    "used_batch_statistics",
    "mode_answers",
    "build_mlp",
    "build_cnn",
    "keras_groupnorm_forward",
    "keras_layernorm_forward",
    "keras_groupnorm_backward",
)


def _grade_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solution_sources(path):
    """{grade_id: source} of the notebook's code solution cells, in notebook order."""
    notebook = nbformat.read(str(path), as_version=4)
    return {
        _grade_id(cell): cell.source
        for cell in notebook.cells
        if cell.cell_type == "code" and cell.get("metadata", {}).get("nbgrader", {}).get("solution")
    }


def apply_edits(sources, edits):
    """Apply (grade_id, old, new) replacements; each ``old`` must occur exactly once."""
    sources = dict(sources)
    for grade_id, old, new in edits:
        if grade_id not in sources:
            raise KeyError(f"no solution cell {grade_id!r}; cells: {sorted(sources)}")
        count = sources[grade_id].count(old)
        if count != 1:
            raise ValueError(f"{old!r} occurs {count} times in cell {grade_id!r}, expected once")
        sources[grade_id] = sources[grade_id].replace(old, new)
    return sources


def namespace_from_notebook(
    path, cell_ids=None, edits=(), setup_id="setup", replace=None, quiet=True
):
    """A namespace holding what the notebook's setup and solution cells define.

    Args:
        path: the notebook (its folder goes on ``sys.path`` so its helper package imports).
        cell_ids: grade_ids of the solution cells to run, in notebook order (default: all).
        edits: (grade_id, old text, new text) replacements applied first.
        setup_id: grade_id of the setup cell run before them (``None`` to skip it).
        replace: optional {grade_id: source} that replaces whole cells (e.g. other correct
            implementations).
        quiet: swallow what the cells print.

    Returns:
        dict, the namespace (``__name__`` is ``"__main__"``, as in a kernel).
    """
    path = Path(path)
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    notebook = nbformat.read(str(path), as_version=4)
    sources = apply_edits(solution_sources(path), edits)
    sources.update(replace or {})
    namespace = {"__name__": "__main__"}
    output = io.StringIO()
    with contextlib.redirect_stdout(output) if quiet else contextlib.nullcontext():
        for cell in notebook.cells:
            grade_id = _grade_id(cell)
            if cell.cell_type != "code" or grade_id is None:
                continue
            if grade_id == setup_id:
                exec(compile(cell.source, f"<{path.name}:{grade_id}>", "exec"), namespace)
            elif grade_id in sources and (cell_ids is None or grade_id in cell_ids):
                exec(compile(sources[grade_id], f"<{path.name}:{grade_id}>", "exec"), namespace)
    return namespace
