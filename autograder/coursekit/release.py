"""Regenerate the student release (``assignments/``) from the nbgrader source (``solutions/``)."""

import filecmp
import json
import shutil
import tempfile
from pathlib import Path

from .errors import KitError
from .nbgrader_cli import run_nbgrader
from .paths import ASSIGNMENT, RELEASE_DIR, SOURCE_DIR
from .preflight import require_writable_runtime


def release(assignment=ASSIGNMENT, release_root=None):
    """Run ``nbgrader generate_assignment`` and install the result as ``assignments/<assignment>``.

    Also records the assignment's cells in the gradebook (which grading needs). nbgrader deletes
    its output folder when generation fails, so it writes into a temporary folder first and the
    committed release is replaced only after a success.

    Args:
        release_root: leave the release under this folder instead of ``assignments/``
            (tests use it so they never touch the committed release).

    Returns:
        Path of the released assignment folder.
    """
    check_assignment_name(assignment)
    require_writable_runtime()  # nbgrader won't create the gradebook's folder itself
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "release"
        run_nbgrader(
            [
                "generate_assignment",
                assignment,
                "--force",
                f"--CourseDirectory.release_directory={staging}",
            ]
        )
        target = (release_root or RELEASE_DIR.parent) / assignment
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(staging / assignment, target)
    return target


def check_assignment_name(assignment):
    if assignment != ASSIGNMENT or not SOURCE_DIR.is_dir():
        raise KitError(
            f"unknown assignment {assignment!r}: this kit has one assignment, {ASSIGNMENT!r} "
            f"(source folder solutions/{ASSIGNMENT}/)"
        )


def release_differences(committed=RELEASE_DIR):
    """Regenerate the release into a temporary folder and compare it with ``committed``.

    Returns:
        list of str, one per file that is missing, extra or different (empty when in sync).
    """
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fresh_root = tmp / "release"
        run_nbgrader(
            [
                "generate_assignment",
                ASSIGNMENT,
                "--force",
                f"--CourseDirectory.release_directory={fresh_root}",
            ],
            env_extra={
                "BNKIT_RUNTIME": str(tmp / "runtime"),
                "BNKIT_DB_URL": f"sqlite:///{tmp / 'gb.db'}",
            },
        )
        return compare_trees(fresh_root / ASSIGNMENT, committed)


def _files(root):
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and ".ipynb_checkpoints" not in path.parts
    }


def compare_trees(fresh, committed):
    """Differences between two release folders; notebooks compared as JSON."""
    fresh_files, committed_files = _files(fresh), _files(committed)
    problems = [
        f"missing from assignments/: {name}" for name in sorted(fresh_files - committed_files)
    ]
    problems += [
        f"not produced by the source: {name}" for name in sorted(committed_files - fresh_files)
    ]
    for name in sorted(fresh_files & committed_files):
        a, b = fresh / name, committed / name
        if name.endswith(".ipynb"):
            same = json.loads(a.read_text()) == json.loads(b.read_text())
        else:
            same = filecmp.cmp(a, b, shallow=False)
        if not same:
            problems.append(f"out of date: {name} (run `make release`)")
    return problems
