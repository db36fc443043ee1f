"""A corpus of hostile and broken submissions of ``bn_numpy.ipynb``, each with its expectation.

Every entry starts from the reference answers typed into the release (what a good student
submits), from one classic mistake (the honest twin) or from the untouched release, and breaks
one thing. The attacks are written as a student who has read this repository would write them:
they know the kit's paths, the runtime folder, the victims' names and the grading protocol. The expectation says which status grading must report for each
notebook, which auto-graded cells must lose their points (all others keep full marks), and
whether the notebook must be flagged. ``same_as`` means: exactly the per-cell scores of another
submission graded in the same run (a cheat must not gain a single point over its honest twin).

Only the NumPy notebook is used (a Keras notebook costs a TensorFlow start per entry), so the
Keras notebook of every entry is "notebook missing".

``EARLY_VICTIM`` is graded in a run before the corpus, ``BYSTANDER`` in the same run; the test
checks that neither one's grades nor files change, and that no process an attack started is
still alive afterwards (attacks that start processes put ``SURVIVOR_MARK`` in their command).
"""

from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from coursekit import status as st
from coursekit.paths import KIT_ROOT, runtime_dir
from coursekit.submissions import apply_edits, reference_notebook, write_submission

SURVIVOR_MARK = "BNKIT-CORPUS-SURVIVOR"
EARLY_VICTIM = "hostile-early-victim"

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
    # Per-cell scores never above this student's: for an attack whose only possible effect is
    # on its own cells (a rogue request that wins its cell's one check, then hangs up).
    at_most: str | None = None


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


def _attack(template):
    """Attack code with the kit's paths filled in (what a student who read the repo knows)."""
    return (
        template.replace("@KIT@", str(KIT_ROOT))
        .replace("@RUNTIME@", str(runtime_dir()))
        .replace("@HOME@", str(Path.home()))
        .replace("@VICTIMS@", repr([BYSTANDER, EARLY_VICTIM]))
        .replace("@MARK@", SURVIVOR_MARK)
    )


def _untouched_attack(template):
    def build(student):
        _untouched_with(_append("batchnorm_forward", _attack(template)))(student)

    return build


def _twin_attack(template):
    def build(student):
        mutate = _append("batchnorm_forward", _attack(template))
        _with_edits(*UNBIASED.edits, mutate=mutate)(student)

    return build


# Look for anything secret in the kernel's memory, environment and the runtime folder, then
# print what a grader's success looks like (a silent or cheerful grade cell scored in nbgrader).
_READ_SECRETS = """
import gc, os
_found = [o for o in gc.get_objects() if isinstance(o, (bytes, bytearray)) and len(o) == 32]
_found += [v for k, v in os.environ.items() if "KEY" in k or "SECRET" in k or "DB" in k]
for _path in ("@RUNTIME@/grading.secret", "/proc/1/environ", "/proc/self/environ"):
    try:
        _found.append(open(_path, "rb").read())
    except OSError:
        pass
print("[PASS] everything", len(_found))
"""

# Rewrite the stub in place: the same function object, new code (defeats identity snapshots).
_REWRITE_STUB = """
import bnkit.grading
bnkit.grading.check.__code__ = (lambda check_id: 3).__code__
bnkit.grading._serve = lambda connection, namespace: print("[PASS] all checks")
"""

# Use the grader's own float64 reference, or the model answers on disk, as one's functions.
_STEAL_ANSWERS = """
import glob, json, sys
sys.path[:0] = ["@KIT@/autograder", "@KIT@/solutions/batchnorm"]
try:
    from bn_grader import reference as _ref
    batchnorm_forward = _ref.batchnorm_forward
    batchnorm_backward = _ref.batchnorm_backward
except Exception:
    pass
for _path in glob.glob("@KIT@/solutions/batchnorm/*.ipynb"):
    try:
        for _cell in json.load(open(_path))["cells"]:
            _meta = _cell.get("metadata", {}).get("nbgrader", {})
            if _meta.get("solution") and _cell["cell_type"] == "code":
                exec("".join(_cell["source"]))
    except Exception:
        pass
"""

# A detached process that waits until grading has merged, then rewrites the gradebook.
_GRADEBOOK_WRITER = """
import subprocess, sys
_code = "\\n".join([
    "import sqlite3, time",
    "for _ in range(600):",
    "    time.sleep(1)",
    "    try:",
    "        db = sqlite3.connect('@RUNTIME@/gradebook.db')",
    "        db.execute('update grade set auto_score = 0')",
    "        db.commit()",
    "    except Exception:",
    "        pass",
])
subprocess.Popen([sys.executable, "-c", _code, "@MARK@"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
"""

# Change what grades the next students: grader code, the course environment, an IPython
# startup file in the grading user's home.
_DISK_WRITER = """
import numpy, os
_targets = [
    "@KIT@/autograder/bn_grader/compare.py",
    "@KIT@/solutions/batchnorm/bnkit/wire.py",
    "@KIT@/nbgrader_config.py",
    os.path.join(os.path.dirname(numpy.__file__), "__init__.py"),
    "@HOME@/.ipython/profile_default/startup/00-bnkit-corpus.py",
]
for _target in _targets:
    try:
        os.makedirs(os.path.dirname(_target), exist_ok=True)
        with open(_target, "a") as _handle:
            _handle.write("\\nraise SystemExit  # corpus attack\\n")
    except OSError:
        pass
"""

# Overwrite the other students' submitted and autograded notebooks.
_OVERWRITE_VICTIMS = """
for _victim in @VICTIMS@:
    for _step in ("submitted", "autograded"):
        _path = f"@RUNTIME@/{_step}/{_victim}/batchnorm/bn_numpy.ipynb"
        try:
            with open(_path, "w") as _handle:
                _handle.write("{}")
        except OSError:
            pass
"""

# Make every grade cell run nothing (a silent grade cell got full marks in nbgrader), while the
# notebook's source stays intact.
_SILENCE_GRADE_CELLS = """
def _silence(lines):
    return ["pass\\n"] if any("check(" in line for line in lines) else lines
get_ipython().input_transformers_post.append(_silence)
"""

# Make every grade cell ask for another check than its own.
_SWAP_CHECK_IDS = """
import re
def _swap(lines):
    return [re.sub(r'check[(]"[a-z_]+"[)]', 'check("bn_forward_properties")', x) for x in lines]
get_ipython().input_transformers_post.append(_swap)
"""

# Hide an import of the grader behind split strings.
_SPLIT_STRINGS = """
for _name in ("bn_" + "grader", "bn_" + "grader.reference"):
    try:
        __import__(_name)
    except ImportError:
        pass
"""

# A thread that keeps asking for checks outside their grade cells.
_THREAD_REQUESTS = """
import os, socket, threading, time
from bnkit import wire
def _pester():
    for _ in range(400):
        for _check in ("bn_forward_train", "bn_forward_running", "ln_backward"):
            try:
                _s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                _s.connect(os.environ["BNKIT_CHECKER_SOCKET"])
                wire.send(_s, {"op": "request", "check": _check})
                _s.close()
            except Exception:
                pass
        time.sleep(0.05)
threading.Thread(target=_pester, daemon=True).start()
"""

ATTACKS = [
    HostileSubmission(
        "attack-read-secrets",
        "searches the kernel's memory, environment and the runtime folder for secrets",
        _untouched_attack(_READ_SECRETS),
        Expectation(st.GRADED, all_zero=True),
    ),
    HostileSubmission(
        "attack-rewrite-stub",
        "replaces the grade cells' check() in place through __code__",
        _untouched_attack(_REWRITE_STUB),
        Expectation(st.GRADED, all_zero=True, flagged=True),
    ),
    HostileSubmission(
        "attack-steal-answers",
        "imports the grader's reference and runs the model answers from solutions/",
        _untouched_attack(_STEAL_ANSWERS),
        Expectation(st.GRADED, all_zero=True),
    ),
    HostileSubmission(
        "attack-gradebook-writer",
        "the honest twin plus a detached process that later rewrites the gradebook",
        _twin_attack(_GRADEBOOK_WRITER),
        Expectation(st.GRADED, same_as="hostile-honest-twin"),
    ),
    HostileSubmission(
        "attack-disk-writer",
        "the honest twin plus writes to grader code, the venv and an IPython startup file",
        _twin_attack(_DISK_WRITER),
        Expectation(st.GRADED, same_as="hostile-honest-twin"),
    ),
    HostileSubmission(
        "attack-overwrite-victims",
        "the honest twin plus overwrites of other students' notebooks",
        _twin_attack(_OVERWRITE_VICTIMS),
        Expectation(st.GRADED, same_as="hostile-honest-twin"),
    ),
    HostileSubmission(
        "attack-silence-grade-cells",
        "an input transformer turns every grade cell into `pass`",
        _untouched_attack(_SILENCE_GRADE_CELLS),
        Expectation(st.GRADED, all_zero=True, flagged=True),
    ),
    HostileSubmission(
        "attack-swap-check-ids",
        "an input transformer makes every grade cell ask for another check",
        _untouched_attack(_SWAP_CHECK_IDS),
        Expectation(st.GRADED, all_zero=True, flagged=True),
    ),
    HostileSubmission(
        "attack-split-strings",
        "imports the grader under split strings",
        _untouched_attack(_SPLIT_STRINGS),
        Expectation(st.GRADED, all_zero=True),
    ),
    HostileSubmission(
        "attack-thread-requests",
        "the honest twin plus a thread asking for checks outside their grade cells",
        _twin_attack(_THREAD_REQUESTS),
        # Whether a pestering request or the grade cell's own comes first in a cell is a race:
        # the one accepted is checked, the other refused. The thread hangs up, so when it wins
        # the cell scores 0. Either way it scores nothing the honest twin does not.
        Expectation(st.GRADED, at_most="hostile-honest-twin", flagged=True),
    ),
    HostileSubmission(
        "harmless-builtins-import",
        "the reference answers plus `from builtins import range` (must not be flagged)",
        _with_edits(mutate=_append("batchnorm_forward", "from builtins import range")),
        Expectation(st.GRADED),
    ),
]

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
        Expectation(st.GRADED, all_zero=True),
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
        Expectation(st.GRADED, same_as="hostile-honest-twin"),
    ),
    HostileSubmission(
        "hostile-patched-grader-internals",
        "the same mistake, plus the grader's comparison and scoring replaced",
        _with_edits(*UNBIASED.edits, mutate=_append("batchnorm_forward", _PATCH_GRADER_INTERNALS)),
        Expectation(st.GRADED, same_as="hostile-honest-twin"),
    ),
    HostileSubmission(
        "hostile-redefined-check",
        "the untouched release with its own check() that returns 3",
        _untouched_with(_append("batchnorm_forward", _REDEFINE_CHECK)),
        Expectation(st.GRADED, all_zero=True),
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
    *ATTACKS,
]


def build_early_victim():
    """The victim graded before the corpus: the reference answers."""
    _with_edits()(EARLY_VICTIM)
    return EARLY_VICTIM


def build_corpus(names=None):
    """Write the corpus submissions; return their student ids."""
    written = []
    for entry in CORPUS:
        if names is None or entry.name in names:
            entry.build(entry.name)
            written.append(entry.name)
    return written
