"""A corpus of hostile and broken submissions of ``bn_numpy.ipynb``, each with its expectation.

Every entry starts from the reference answers typed into the release (what a good student
submits) and breaks one thing. The expectation says which status grading must report for each
notebook, which auto-graded cells must lose their points (all others keep full marks), and
whether the notebook must be flagged. ``same_as`` means: exactly the per-cell scores of another
submission graded in the same run (a cheat must not gain a single point over its honest twin).

Only the NumPy notebook is used (a Keras notebook costs a TensorFlow start per entry), so the
Keras notebook of every entry is "notebook missing".
"""

from dataclasses import dataclass, field

import nbformat

from coursekit import status as st
from coursekit.submissions import apply_edits, reference_notebook, write_submission

NUMPY = "bn_numpy.ipynb"
KERAS = "bn_keras.ipynb"


def _catalogue_sample(name):
    """A mistake sample of the catalogue (bn_grader.samples_numpy), with its expectations."""
    from bn_grader.samples import all_samples

    return next(sample for sample in all_samples() if sample.name == name)


# The honest twin of the NumPy-patching cheat: one classic mistake, as the catalogue writes it.
UNBIASED = _catalogue_sample("np-unbiased-var")


@dataclass(frozen=True)
class Expectation:
    status: str
    lost_cells: frozenset = frozenset()  # auto-graded cells that must score below their max
    all_zero: bool = False  # every auto-graded cell scores 0
    flagged: bool = False
    same_as: str | None = None  # per-cell scores equal to this student's


@dataclass(frozen=True)
class HostileSubmission:
    name: str
    what: str
    build: object  # callable(student) -> writes the submission folder
    numpy: Expectation
    keras: Expectation = field(default_factory=lambda: Expectation(st.MISSING, all_zero=True))


def _with_edits(*edits, mutate=None):
    def build(student):
        notebook = apply_edits(reference_notebook(NUMPY), edits, student)
        if mutate:
            mutate(notebook)
        write_submission(student, {NUMPY: notebook})

    return build


def _cell(notebook, grade_id):
    return next(
        c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def _prepend(grade_id, code):
    def mutate(notebook):
        cell = _cell(notebook, grade_id)
        cell.source = code + "\n" + cell.source

    return mutate


def _append(grade_id, code):
    def mutate(notebook):
        cell = _cell(notebook, grade_id)
        cell.source = cell.source + "\n" + code

    return mutate


def _delete_cell(grade_id):
    def mutate(notebook):
        notebook.cells = [
            c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id
        ]

    return mutate


def _untouched_with(mutate):
    def build(student):
        from coursekit.paths import RELEASE_DIR

        notebook = nbformat.read(RELEASE_DIR / NUMPY, as_version=4)
        mutate(notebook)
        write_submission(student, {NUMPY: notebook})

    return build


def _edit_all_test_cells(notebook):
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cell.source = "99  # full marks, please"


def _invalid_json(student):
    folder = write_submission(student, {})
    (folder / NUMPY).write_text('{"cells": [{"cell_type": "code", "source": "x = 1"')


def _no_notebooks(student):
    folder = write_submission(student, {})
    (folder / "notes.txt").write_text("I forgot to upload my notebooks")


def _foreign_kernel(notebook):
    notebook.metadata["kernelspec"] = {
        "name": "julia-1.10",
        "display_name": "Julia 1.10",
        "language": "julia",
    }


_MEMORY_BOMB = """
def _fill_memory():
    hoard = []
    while True:
        hoard.append(bytearray(1 << 27))  # 128 MB at a time until the limit stops it
_fill_memory()
"""

_PATCH_GRADER = """
import bn_grader
bn_grader.check = lambda *args, **kwargs: None  # a grade cell with no output gets full marks
"""

_PATCH_NUMPY = """
import numpy
numpy.allclose = lambda *args, **kwargs: True
numpy.testing.assert_allclose = lambda *args, **kwargs: None
numpy.abs = lambda value: 0 * numpy.asarray(value)
"""

_PATCH_GRADER_INTERNALS = """
import bn_grader.checks_numpy, bn_grader.compare, bn_grader.report
bn_grader.compare.mismatch = lambda *args, **kwargs: None  # every comparison "matches"
bn_grader.checks_numpy.mismatch = bn_grader.compare.mismatch
bn_grader.report.Report.score = lambda self: self.points  # and full marks whatever happened
"""

_REDEFINE_CHECK = """
def check(*args, **kwargs):
    return 3
"""

BYSTANDER = "hostile-bystander"

CORPUS = [
    HostileSubmission(
        BYSTANDER,
        "the reference answers, graded in the same run as the hostile ones",
        _with_edits(),
        Expectation(st.GRADED),
    ),
    HostileSubmission(
        "hostile-infinite-loop",
        "an endless loop at the top of the layernorm_backward cell",
        _with_edits(mutate=_prepend("layernorm_backward", "while True:\n    pass")),
        Expectation(st.TIMED_OUT, lost_cells=frozenset({"test_layernorm_backward"})),
    ),
    HostileSubmission(
        "hostile-os-exit",
        "os._exit(1) in the spatial_batchnorm_forward cell kills the kernel",
        _with_edits(mutate=_append("spatial_batchnorm_forward", "import os\nos._exit(1)")),
        Expectation(st.KERNEL_DIED, all_zero=True),
    ),
    HostileSubmission(
        "hostile-memory-bomb",
        "allocates until the grading memory limit stops it (after defining layernorm_forward)",
        _with_edits(mutate=_append("layernorm_forward", _MEMORY_BOMB)),
        Expectation(st.OUT_OF_MEMORY),
    ),
    HostileSubmission(
        "hostile-output-flood",
        "prints a million lines",
        _with_edits(
            mutate=_append("batchnorm_backward_alt", "for i in range(1_000_000):\n    print(i)")
        ),
        Expectation(st.GRADED),
    ),
    HostileSubmission(
        "hostile-syntax-error",
        "a syntax error in the layernorm_forward cell (layernorm_backward needs its cache)",
        _with_edits(
            (
                "layernorm_forward",
                "def layernorm_forward(x, gamma, beta, ln_param):",
                "def layernorm_forward(x, gamma, beta, ln_param)",
            )
        ),
        Expectation(
            st.GRADED, lost_cells=frozenset({"test_layernorm_forward", "test_layernorm_backward"})
        ),
    ),
    HostileSubmission(
        "hostile-deleted-test-cell",
        "the test_layernorm_forward grade cell deleted (nbgrader puts it back)",
        _with_edits(mutate=_delete_cell("test_layernorm_forward")),
        Expectation(st.GRADED),
    ),
    HostileSubmission(
        "hostile-edited-test-cells",
        "the untouched release with every locked grade cell replaced by a big number",
        _untouched_with(_edit_all_test_cells),
        Expectation(st.GRADED, all_zero=True),
    ),
    HostileSubmission(
        "hostile-patched-grader",
        "the untouched release that replaces bn_grader.check",
        _untouched_with(_append("batchnorm_forward", _PATCH_GRADER)),
        Expectation(st.GRADED, all_zero=True, flagged=True),
    ),
    HostileSubmission(
        "hostile-honest-twin",
        "one classic mistake (unbiased variance), nothing else",
        _with_edits(*UNBIASED.edits),
        Expectation(st.GRADED, lost_cells=UNBIASED.affected_cells),
    ),
    HostileSubmission(
        "hostile-patched-numpy",
        "the same mistake, plus np.allclose / np.testing / np.abs replaced",
        _with_edits(*UNBIASED.edits, mutate=_append("batchnorm_forward", _PATCH_NUMPY)),
        Expectation(st.GRADED, flagged=True, same_as="hostile-honest-twin"),
    ),
    HostileSubmission(
        "hostile-patched-grader-internals",
        "the same mistake, plus the grader's comparison and scoring replaced",
        _with_edits(*UNBIASED.edits, mutate=_append("batchnorm_forward", _PATCH_GRADER_INTERNALS)),
        Expectation(st.GRADED, flagged=True, same_as="hostile-honest-twin"),
    ),
    HostileSubmission(
        "hostile-redefined-check",
        "the untouched release with its own check() that returns 3",
        _untouched_with(_append("batchnorm_forward", _REDEFINE_CHECK)),
        Expectation(st.GRADED, all_zero=True, flagged=True),
    ),
    HostileSubmission(
        "hostile-invalid-json",
        "bn_numpy.ipynb is truncated JSON",
        _invalid_json,
        Expectation(st.UNREADABLE, all_zero=True),
    ),
    HostileSubmission(
        "hostile-no-notebooks",
        "a submission folder without notebooks",
        _no_notebooks,
        Expectation(st.MISSING, all_zero=True),
    ),
    HostileSubmission(
        "hostile-foreign-kernel",
        "the reference answers saved with a Julia kernelspec",
        _with_edits(mutate=_foreign_kernel),
        Expectation(st.GRADED),
    ),
]


def build_corpus(names=None):
    """Write the corpus submissions; return their student ids."""
    written = []
    for entry in CORPUS:
        if names is None or entry.name in names:
            entry.build(entry.name)
            written.append(entry.name)
    return written
