"""nbgrader configuration for the BatchNorm course kit (instructor and grading side).

Folders: notebooks are authored in ``solutions/`` (nbgrader's source step) and released into
``assignments/`` (committed). Everything nbgrader writes while grading lives under one
git-ignored runtime folder, ``autograder/runtime/`` unless ``BNKIT_RUNTIME`` says otherwise.
The gradebook is SQLite there unless ``BNKIT_DB_URL`` gives another SQLAlchemy URL
(for example ``postgresql://user@host/gradebook``).

Grading (every route: ``coursekit grade``, ``nbgrader autograde``, the formgrader's button) runs
the notebook with ``bn_grader.executor.SandboxedExecute`` (kernel in bubblewrap, hidden checks in
this process) and scores it with ``bn_grader.ledger.LedgerScores`` (auto scores from the
checks' ledger only). ``BNKIT_SANDBOX=0`` grades without the sandbox (``coursekit grade
--no-sandbox`` sets it); the checks still run outside the kernel.
"""

import os
import sys
from pathlib import Path

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    GetGrades,
    IgnorePattern,
    LimitOutput,
)

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

KIT_ROOT = Path(__file__).resolve().parent
GRADER_PATH = KIT_ROOT / "autograder"
SOURCE_PATH = KIT_ROOT / "solutions" / "batchnorm"
RUNTIME = Path(os.environ.get("BNKIT_RUNTIME", GRADER_PATH / "runtime")).resolve()
COURSE_KERNEL = "bn-course"

# The grading side (this process only, never a kernel): the checks, and the kit's own copy of
# the message format (bnkit.wire) from the source folder, never a student's copy.
for _path in (str(SOURCE_PATH), str(GRADER_PATH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
from bn_grader.executor import SandboxedExecute  # noqa: E402
from bn_grader.ledger import LedgerScores  # noqa: E402

c.CourseDirectory.root = str(KIT_ROOT)
c.CourseDirectory.course_id = "bn-course"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
# nbgrader joins these with the root; absolute paths keep them under the runtime folder.
c.CourseDirectory.submitted_directory = str(RUNTIME / "submitted")
c.CourseDirectory.autograded_directory = str(RUNTIME / "autograded")
c.CourseDirectory.feedback_directory = str(RUNTIME / "feedback")
# The default name "release" of the solution step would be fine, but it must not be
# "solutions", which is our source folder.
c.CourseDirectory.solution_directory = str(RUNTIME / "solution_release")
c.CourseDirectory.db_assignments = [{"name": "batchnorm"}]
c.CourseDirectory.db_url = os.environ.get("BNKIT_DB_URL", f"sqlite:///{RUNTIME / 'gradebook.db'}")
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    ".pytest_cache",
]

# Grading kernels: always the course kernel, whatever name the student's notebook carries.
c.Execute.kernel_name = COURSE_KERNEL
# Per-cell limit. TensorFlow start-up alone takes about 6-10 s and the longest training cell
# well under a minute on 2 CPUs; BNKIT_CELL_TIMEOUT lowers it for the hostile-corpus tests.
c.Execute.timeout = int(os.environ.get("BNKIT_CELL_TIMEOUT", "300"))
c.Execute.startup_timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:"]
c.Autograde.autograde_preprocessors = [
    SandboxedExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    LedgerScores,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.SandboxedExecute.sandbox = os.environ.get("BNKIT_SANDBOX", "1") != "0"
# Hidden from grading kernels: the kit (grader, model answers, venv unless mounted back
# read-only), the runtime folder (submissions, gradebook, secret) wherever it is.
# nbgrader's default exchange holds every student's submission: hidden too (a hub's own exchange
# root is added by deploy/jupyterhub/instructor/nbgrader_config.py).
c.SandboxedExecute.hidden_paths = [
    str(KIT_ROOT),
    str(RUNTIME),
    "/usr/local/share/nbgrader/exchange",
]
c.SandboxedExecute.source_notebooks = str(SOURCE_PATH)
c.SandboxedExecute.secret_file = str(RUNTIME / "grading.secret")
# Solution cells end with their own `raise NotImplementedError("<function name>")` after
# END SOLUTION, so the stub needs no second raise.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
# A student who deletes a locked test cell still gets it run.
c.OverwriteCells.add_missing_cells = True
# Feedback must not show the hidden tests; StudentFeedback (last) adds the summaries, drops the
# grader's internal lines, says "not graded yet" for written answers and wraps long lines.
from coursekit.feedback import StudentFeedback, StudentFeedbackExporter  # noqa: E402

c.GenerateFeedback.preprocessors = [
    GetGrades,
    CSSHTMLHeaderPreprocessor,
    ClearHiddenTests,
    StudentFeedback,
]
# nbgrader's template heads each grade cell "Grade cell: <grade_id>"; the kit's exporter renders
# its own template without the id (the formgrader's button forces the template name, not this).
c.GenerateFeedback.exporter_class = StudentFeedbackExporter

# Grading kernels get an environment built from nothing (bn_grader.sandbox.default_rights),
# with TensorFlow and Python warnings silenced: any stderr in a grade cell scores it 0.

# The kit's own settings (coursekit.config.CourseKit; nbgrader ignores this section).
# Dask scheduler for `coursekit grade` (docs/cluster.md), used when neither --scheduler nor
# BNKIT_SCHEDULER is given, e.g. "tcp://grading-head:8786"; "" grades in the local pool.
c.CourseKit.scheduler = ""
