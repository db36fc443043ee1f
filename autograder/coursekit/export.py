"""Export grades with their status: one CSV row per student, nothing silent about a zero."""

import csv
from collections import defaultdict

from . import status as st
from .errors import KitError
from .gradebook import cell_scores, require_assignment
from .paths import ASSIGNMENT, NOTEBOOKS, db_url, runtime_dir, submitted_dir

GRADES_CSV = "grades.csv"


def student_rows(url=None):
    """Per-student totals and statuses.

    Returns:
        list of dicts with student_id, one auto-graded score column per notebook, auto_score and
        auto_max (auto-graded cells), manual_score (written answers graded so far),
        needs_manual_grade (cells without a score yet, in notebooks that exist: a missing or
        unreadable notebook has nothing to grade by hand), status ("graded" or the problems)
        and flags (what grading noticed, per notebook; never a score change).
    """
    scores = cell_scores(url or db_url())
    statuses = defaultdict(dict)
    flags = defaultdict(dict)
    for item in st.read_status_csv(runtime_dir() / "status.csv"):
        statuses[item.student][item.notebook] = item.status
        if item.flags:
            flags[item.student][item.notebook] = item.flags
    rows = []
    for student in sorted(scores):
        row = {"student_id": student}
        total = maximum = manual = 0.0
        ungraded = 0
        for notebook in NOTEBOOKS:
            cells = scores[student].get(notebook.removesuffix(".ipynb"), {}).values()
            got = sum(score or 0.0 for score, _, is_auto in cells if is_auto)
            row[notebook.removesuffix(".ipynb")] = round(got, 2)
            total += got
            maximum += sum(max_score for _, max_score, is_auto in cells if is_auto)
            manual += sum(score or 0.0 for score, _, is_auto in cells if not is_auto)
            state = statuses[student].get(notebook)
            exists = (
                state not in st.ABSENT
                if state
                else (submitted_dir() / student / ASSIGNMENT / notebook).exists()
            )
            if exists:
                ungraded += sum(score is None for score, _, _ in cells)
        problems = [
            f"{nb}: {state}"
            for nb, state in sorted(statuses[student].items())
            if state != st.GRADED
        ]
        row.update(
            auto_score=round(total, 2),
            auto_max=round(maximum, 2),
            manual_score=round(manual, 2),
            needs_manual_grade=ungraded,
            status="; ".join(problems)
            if problems
            else (st.GRADED if statuses[student] else "not graded by coursekit"),
            flags="; ".join(
                f"{nb.removesuffix('.ipynb')}: {text}"
                for nb, text in sorted(flags[student].items())
            ),
        )
        rows.append(row)
    return rows


def export_csv(path=None):
    """Write the grades CSV (default ``<runtime>/grades.csv``) and return its path and rows.

    Raises:
        KitError: nothing has been graded yet (an empty CSV would look like a class of nobody).
    """
    path = path or runtime_dir() / GRADES_CSV
    require_assignment(db_url())
    rows = student_rows()
    if not rows:
        raise KitError(
            "nothing to export: the gradebook has no graded submissions yet: run `make grade` "
            f"first (no {GRADES_CSV} written)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [
        "student_id",
        *[nb.removesuffix(".ipynb") for nb in NOTEBOOKS],
        "auto_score",
        "auto_max",
        "manual_score",
        "needs_manual_grade",
        "status",
        "flags",
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path, rows
