"""nbgrader configuration for the BatchNorm course kit (instructor and grading side).

Folders: notebooks are authored in ``solutions/`` (nbgrader's source step) and released into
``assignments/`` (committed). Everything nbgrader writes while grading lives under one
git-ignored runtime folder, ``autograder/runtime/`` unless ``BNKIT_RUNTIME`` says otherwise.
The gradebook is SQLite there unless ``BNKIT_DB_URL`` gives another SQLAlchemy URL
(for example ``postgresql://user@host/gradebook``).
"""

import os
from pathlib import Path

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

KIT_ROOT = Path(__file__).resolve().parent
GRADER_PATH = KIT_ROOT / "autograder"
RUNTIME = Path(os.environ.get("BNKIT_RUNTIME", GRADER_PATH / "runtime")).resolve()
COURSE_KERNEL = "bn-course"

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
# Before any student cell runs, the grading kernel loads the grader's guard (NumPy snapshot,
# signing key); see autograder/bn_grader/guard.py.
c.Execute.extra_arguments = [
    "--HistoryManager.hist_file=:memory:",
    "--IPKernelApp.exec_lines=import bn_grader.guard",
]
# Solution cells end with their own `raise NotImplementedError("<function name>")` after
# END SOLUTION, so the stub needs no second raise.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE"}
# A student who deletes a locked test cell still gets it run.
c.OverwriteCells.add_missing_cells = True
# Feedback must not show the hidden tests.
c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests]

# Grader-only code (autograder/bn_grader) must be importable by grading kernels, which
# inherit this process's environment; it is never copied into the release.
_pythonpath = [str(GRADER_PATH)] + [
    p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
]
os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(_pythonpath))
# Any stderr output in a grade cell scores it 0: silence TensorFlow's start-up lines and
# Python warnings in grading kernels.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
os.environ.setdefault("MPLBACKEND", "Agg")
