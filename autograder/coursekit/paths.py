"""Where things are: the kit root, the runtime folder, the assignment, the tools to run.

The runtime folder (submissions, autograded copies, feedback, gradebook) defaults to
``autograder/runtime`` and follows ``BNKIT_RUNTIME``, exactly as nbgrader_config.py does, so that
nbgrader and this package always agree.
"""

import os
import sys
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "batchnorm"
NOTEBOOKS = ("bn_numpy.ipynb", "bn_keras.ipynb")
SOURCE_DIR = KIT_ROOT / "solutions" / ASSIGNMENT
RELEASE_DIR = KIT_ROOT / "assignments" / ASSIGNMENT
GRADER_DIR = KIT_ROOT / "autograder"


def runtime_dir():
    """The git-ignored folder nbgrader writes to while grading (may not exist yet)."""
    return Path(os.environ.get("BNKIT_RUNTIME", GRADER_DIR / "runtime")).resolve()


def submitted_dir():
    return runtime_dir() / "submitted"


def autograded_dir():
    return runtime_dir() / "autograded"


def feedback_dir():
    return runtime_dir() / "feedback"


def db_url():
    """The gradebook's SQLAlchemy URL (SQLite in the runtime folder unless BNKIT_DB_URL)."""
    return os.environ.get("BNKIT_DB_URL", f"sqlite:///{runtime_dir() / 'gradebook.db'}")


def tool_env(extra=None):
    """Environment for nbgrader subprocesses.

    nbgrader runs ``alembic`` by name, so this interpreter's ``bin`` folder must be on PATH
    even when the venv is not activated; grader code must be importable by the kernels.
    """
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    pythonpath = [str(GRADER_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(pythonpath))
    env.update(extra or {})
    return env
