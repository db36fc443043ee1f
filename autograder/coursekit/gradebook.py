"""Read and write the gradebook through nbgrader's own API (``nbgrader.api.Gradebook``).

Parallel grading gives every worker a private SQLite copy of the gradebook; when a worker is
done, :func:`merge_notebook_grades` copies that notebook's automatic scores into the course
gradebook. Only the parent process calls it, one notebook at a time, so writes are serialised.
Manual scores are never touched, and as in nbgrader's own SaveAutoGrades a cell that already
has a manual score is flagged for review again.
"""

import sqlite3
import warnings
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from .errors import KitError
from .paths import ASSIGNMENT

COURSE_ID = "bn-course"

# nbgrader's update_or_create_submission triggers harmless SQLAlchemy autoflush warnings;
# they would clutter the instructor's terminal on every merge.
warnings.filterwarnings("ignore", message=".*not in session.*")


def open_gradebook(url):
    return Gradebook(url, COURSE_ID)


def require_assignment(url, assignment=ASSIGNMENT):
    """Raise a clear error unless the gradebook knows the assignment (made by ``release``)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise KitError(
            f"no gradebook at {url.removeprefix('sqlite:///')}: run `make release` first"
        )
    try:
        with open_gradebook(url) as gradebook:
            gradebook.find_assignment(assignment)
    except MissingEntry:
        raise KitError(
            f"the gradebook has no assignment {assignment!r}: run `make release` first"
        ) from None
    except Exception as error:  # noqa: BLE001  (database URL, driver or file problems)
        raise KitError(
            f"cannot open the gradebook at {url}: {type(error).__name__}: {error}"
        ) from None


def copy_sqlite(url, destination):
    """Snapshot a SQLite gradebook so a worker can grade against a private copy.

    SQLite's backup API gives a consistent copy even while the parent writes to the source.
    """
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(destination)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return f"sqlite:///{destination}"


def merge_notebook_grades(worker_url, course_url, student, notebook, timestamp=None):
    """Copy one submitted notebook's automatic grades from a worker gradebook to the course one."""
    with open_gradebook(worker_url) as worker:
        source = worker.find_submission_notebook(notebook, ASSIGNMENT, student)
        scores = {
            grade.name: (grade.auto_score, grade.needs_manual_grade) for grade in source.grades
        }
        comments = {comment.name: comment.auto_comment for comment in source.comments}
    with open_gradebook(course_url) as course:
        course.update_or_create_student(student)
        extra = {"timestamp": timestamp} if timestamp else {}
        course.update_or_create_submission(ASSIGNMENT, student, **extra)
        target = course.find_submission_notebook(notebook, ASSIGNMENT, student)
        for grade in target.grades:
            auto_score, needs_manual = scores.get(grade.name, (None, True))
            grade.auto_score = auto_score
            grade.needs_manual_grade = bool(needs_manual or grade.manual_score is not None)
        for comment in target.comments:
            if comment.name in comments:
                comment.auto_comment = comments[comment.name]
        course.db.commit()


def zero_notebook(course_url, student, notebook, reason):
    """Record 0 automatic points for a notebook that could not be graded (status says why)."""
    with open_gradebook(course_url) as course:
        course.update_or_create_student(student)
        course.update_or_create_submission(ASSIGNMENT, student)
        target = course.find_submission_notebook(notebook, ASSIGNMENT, student)
        for grade in target.grades:
            if grade.cell.cell_type == "code" or grade.auto_score is not None:
                grade.auto_score = 0.0
                grade.needs_manual_grade = grade.manual_score is not None
        for comment in target.comments:
            comment.auto_comment = reason
        course.db.commit()


def ensure_submissions(course_url, students):
    """Create the submission rows of these students (no-op for those that exist)."""
    with open_gradebook(course_url) as course:
        for student in students:
            course.update_or_create_student(student)
            course.update_or_create_submission(ASSIGNMENT, student)


def cell_scores(url, students=None):
    """Scores per student and notebook cell.

    Returns:
        dict student -> dict notebook -> dict grade_id -> (score or None, max_score, is_auto),
        where ``is_auto`` is True for auto-graded (code) cells and False for written answers.
    """
    result = {}
    with open_gradebook(url) as gradebook:
        assignment = gradebook.find_assignment(ASSIGNMENT)
        for submission in assignment.submissions:
            student = submission.student.id
            if students is not None and student not in students:
                continue
            per_notebook = result.setdefault(student, {})
            for notebook in submission.notebooks:
                per_notebook[notebook.name] = {
                    grade.name: (
                        None
                        if grade.auto_score is None and grade.manual_score is None
                        else grade.score,
                        grade.max_score,
                        grade.cell.cell_type == "code",
                    )
                    for grade in notebook.grades
                }
    return result
