"""Write sample submissions into the runtime ``submitted/`` folder, as nbgrader expects them.

A sample is built from the committed release notebook: each solution cell gets the reference
code from ``solutions/`` (markers removed), then the sample's edits are applied. That is what a
student who typed the reference answer into the release would submit, metadata and all.
"""

import shutil

import nbformat

from bn_grader.samples import all_samples

from .errors import KitError
from .paths import ASSIGNMENT, NOTEBOOKS, RELEASE_DIR, SOURCE_DIR, submitted_dir

REFERENCE = "reference"
UNTOUCHED = "untouched"


def solution_code(source):
    """The code a student would write: the source cell without the solution marker lines.

    The stub's ``raise NotImplementedError(...)`` after END SOLUTION stays: it is unreachable
    after the reference's ``return``, exactly as in a student's finished cell.
    """
    markers = {"### BEGIN SOLUTION", "### END SOLUTION"}
    return "\n".join(line for line in source.splitlines() if line.strip() not in markers)


def reference_notebook(name):
    """The release notebook ``name`` with every solution cell answered by the reference code."""
    release = nbformat.read(RELEASE_DIR / name, as_version=4)
    source = nbformat.read(SOURCE_DIR / name, as_version=4)
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = solution_code(answers[meta["grade_id"]])
    return release


def apply_edits(notebook, edits, sample_name):
    """Apply ``(grade_id, old, new)`` text edits to solution cells of ``notebook`` in place."""
    cells = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell for cell in notebook.cells}
    for grade_id, old, new in edits:
        cell = cells.get(grade_id)
        if cell is None or cell.source.count(old) != 1:
            raise KitError(
                f"sample {sample_name}: edit for cell {grade_id!r} does not apply ({old[:40]!r})"
            )
        cell.source = cell.source.replace(old, new)
    return notebook


def write_submission(student, notebooks):
    """Write ``{file name: notebook}`` as ``submitted/<student>/batchnorm/`` (replacing it)."""
    folder = submitted_dir() / student / ASSIGNMENT
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, notebook in notebooks.items():
        nbformat.write(notebook, folder / name)
    return folder


def sample_submission(sample):
    """A mistake sample as a whole submission: ``{file name: notebook}`` for both notebooks.

    The sample's notebook carries its edits; the other one is the reference answer, as a
    student who got the rest right would hand in. Grading then shows the mistake alone, with no
    "notebook missing" beside it, and the Keras notebook finds the student's bn_numpy.ipynb.
    """
    notebooks = {name: reference_notebook(name) for name in NOTEBOOKS}
    apply_edits(notebooks[sample.notebook], sample.edits, sample.name)
    return notebooks


def demo_samples(samples):
    """One mistake sample per solution cell: the first the catalogue lists for that cell.

    Every sample is a whole submission, so each costs a graded bn_keras notebook (about a
    minute of a core); one per function the students write shows every kind of feedback while
    keeping ``make demo`` within minutes. The tests check every sample.

    Args:
        samples: sequence of ``MistakeSample`` in catalogue order.

    Returns:
        list of the chosen samples, in catalogue order.
    """
    chosen, seen = [], set()
    for sample in samples:
        cells = tuple(sorted({grade_id for grade_id, _, _ in sample.edits}))
        if cells not in seen:
            seen.add(cells)
            chosen.append(sample)
    return chosen


def build_samples(include_mistakes=True, every_sample=False):
    """Write the reference, untouched and (optionally) mistake samples as submissions.

    Args:
        include_mistakes: False writes only the reference and the untouched release.
        every_sample: True writes every catalogued sample, False one per solution cell
            (:func:`demo_samples`).

    Returns:
        list of student ids written.
    """
    write_submission(REFERENCE, {name: reference_notebook(name) for name in NOTEBOOKS})
    write_submission(
        UNTOUCHED, {name: nbformat.read(RELEASE_DIR / name, as_version=4) for name in NOTEBOOKS}
    )
    students = [REFERENCE, UNTOUCHED]
    if include_mistakes:
        samples = all_samples() if every_sample else demo_samples(all_samples())
        for sample in samples:
            write_submission(sample.name, sample_submission(sample))
            students.append(sample.name)
    return students
