"""What is under ``submitted/``: the notebooks to grade, and every other notebook with its fix.

nbgrader only looks at ``submitted/<student>/<assignment>/<notebook>.ipynb``. A notebook one
folder too high, one folder too deep, in a misspelt assignment folder or under a name grading
does not know (``bn_numpy (1).ipynb``) would be skipped without a word; here each one is
reported with the move or rename that makes it gradable.
"""

import difflib
from dataclasses import dataclass
from pathlib import Path

from .paths import ASSIGNMENT, NOTEBOOKS


@dataclass
class Misplaced:
    """A notebook under ``submitted/`` that grading will not pick up as it is.

    Attributes:
        path: where it is, relative to ``submitted/`` (str).
        student: the student folder it is in, or None when it lies at the top.
        notebook: the expected notebook name it most likely stands for, or None.
        fix: one sentence saying what to do.
    """

    path: str
    student: str | None
    notebook: str | None
    fix: str


def closest_notebook(name):
    """The expected notebook name closest to ``name`` (exact, case or close spelling), or None."""
    if name in NOTEBOOKS:
        return name
    for expected in NOTEBOOKS:
        if name.lower() == expected.lower() or name.lower().startswith(expected[:-6].lower()):
            return expected
    found = difflib.get_close_matches(name, NOTEBOOKS, n=1, cutoff=0.6)
    return found[0] if found else None


def _hidden(parts):
    return any(part.startswith(".") for part in parts)


def scan(folder):
    """Sort the notebooks under ``folder`` (the submitted/ folder) into gradable and misplaced.

    Returns:
        (students, misplaced): the sorted ids that have a ``<id>/<assignment>/`` folder, and a
        list of :class:`Misplaced`, one per notebook grading would not see.
    """
    folder = Path(folder)
    students = sorted(
        p.name for p in folder.iterdir() if not p.name.startswith(".") and (p / ASSIGNMENT).is_dir()
    )
    misplaced = []
    for path in sorted(folder.rglob("*.ipynb")):
        parts = path.relative_to(folder).parts
        if _hidden(parts) or not path.is_file():
            continue  # .ipynb_checkpoints and other hidden copies are Jupyter's, not submissions
        name = parts[-1]
        expected = closest_notebook(name)
        target_name = expected or "<one of " + ", ".join(NOTEBOOKS) + ">"
        if len(parts) == 3 and parts[1] == ASSIGNMENT and name in NOTEBOOKS:
            continue  # where it belongs
        relative = "/".join(parts)
        if len(parts) == 1:
            fix = f"it is not in a student's folder: move it to submitted/<student>/{ASSIGNMENT}/{target_name}"
            misplaced.append(Misplaced(relative, None, expected, fix))
            continue
        student = parts[0]
        target = f"submitted/{student}/{ASSIGNMENT}/{target_name}"
        if len(parts) == 3 and parts[1] == ASSIGNMENT:
            if expected:
                fix = f"unknown notebook name: rename it to {target} (grading knows only {', '.join(NOTEBOOKS)})"
            else:
                fix = f"unknown notebook name: grading knows only {', '.join(NOTEBOOKS)}; rename it if it is one of them"
        else:
            fix = f"not where nbgrader looks: move it to {target}"
        misplaced.append(Misplaced(relative, student, expected, fix))
    return students, misplaced


def note_for(misplaced, student, notebook):
    """Text to add to a missing notebook's status when a misplaced copy may be it ("" if none)."""
    hits = [m for m in misplaced if m.student == student and m.notebook == notebook]
    return "; ".join(f"found submitted/{m.path}: {m.fix}" for m in hits)
