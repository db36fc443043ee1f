"""Read and write the gradebook through nbgrader's own API (``nbgrader.api.Gradebook``).

Grading never lets two writers share the course gradebook. Each task grades against a private
gradebook (a SQLite copy locally, a blank SQLite gradebook on a Dask worker); the task then
reads its notebook's automatic scores out of it as plain data (:func:`read_notebook_scores`)
and returns them. The parent merges them into the course gradebook through one
:class:`CourseGradebook` kept open for the whole run, one result (one commit) at a time, so
a Ctrl-C or a crash loses nothing already merged. Manual scores are never touched, and as in
nbgrader's own SaveAutoGrades a cell that already has a manual score is flagged for review
again.

Why one session for the run: opening ``nbgrader.api.Gradebook`` builds an engine and runs its
schema set-up (table inspection, ``create_all``, the course check), about 80 ms; doing that
twice per task, plus one commit per ``update_or_create_*`` call, was most of the parent's
cost per task (bench/bench_cluster.py).
"""

import sqlite3
import warnings
from pathlib import Path

from nbgrader.api import (
    BaseCell,
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
)

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


def _cell_rows(gradebook, model, submitted_notebook_id):
    """[(Grade or Comment, cell name)] of one submitted notebook, in one query.

    Going through ``grade.name`` instead would load each cell with a query of its own.
    """
    return (
        gradebook.db.query(model, BaseCell.name)
        .join(BaseCell, model.cell_id == BaseCell.id)
        .filter(model.notebook_id == submitted_notebook_id)
        .all()
    )


def read_notebook_scores(url, student, notebook):
    """One notebook's automatic results in a (task's private) gradebook, as plain data.

    Args:
        url: the gradebook the task wrote to. student: student id. notebook: e.g. "bn_numpy".

    Returns:
        None when the gradebook has no such submitted notebook (autograde recorded nothing),
        else a dict that pickles and travels back from a Dask worker as it is:
        ``grades``: {grade_id: [auto_score (float or None), needs_manual_grade (bool)]};
        ``comments``: {cell name: auto_comment (str or None)};
        ``late_submission_penalty``: float or None (nbgrader's AssignLatePenalties);
        ``timestamp``: the submission's time as an ISO 8601 string, or None.
    """
    with open_gradebook(url) as gradebook:
        try:
            source = gradebook.find_submission_notebook(notebook, ASSIGNMENT, student)
        except MissingEntry:
            return None
        timestamp = source.assignment.timestamp
        return {
            "grades": {
                name: [grade.auto_score, bool(grade.needs_manual_grade)]
                for grade, name in _cell_rows(gradebook, Grade, source.id)
            },
            "comments": {
                name: comment.auto_comment
                for comment, name in _cell_rows(gradebook, Comment, source.id)
            },
            "late_submission_penalty": source.late_submission_penalty,
            "timestamp": timestamp.isoformat() if timestamp else None,
        }


class CourseGradebook:
    """The course gradebook, open for a whole grading run in the parent process (SQLite or a
    server database: anything nbgrader's SQLAlchemy URL takes).

    Every write method commits before it returns (unless told not to), so whatever was merged
    survives a Ctrl-C or a crash. A failed write is rolled back so the session stays usable.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, url):
        self.url = url
        self._gradebook = open_gradebook(url)
        self._submitted = set()  # students whose submission rows exist (checked or created)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._gradebook.close()

    def commit(self):
        self._gradebook.db.commit()

    def _ensure_submission(self, student, timestamp=None):
        """Create the student's student and submission rows when they are missing.

        nbgrader's ``update_or_create_*`` commit on every call, also when nothing changes:
        look first (once per student and run), create only what is missing.
        """
        if student in self._submitted:
            return
        gradebook = self._gradebook
        try:
            gradebook.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            try:
                gradebook.find_student(student)
            except MissingEntry:
                gradebook.add_student(student)
            extra = {"timestamp": timestamp} if timestamp else {}
            gradebook.add_submission(ASSIGNMENT, student, **extra)  # every notebook's rows
        self._submitted.add(student)

    def _submitted_notebook(self, student, notebook, timestamp=None):
        self._ensure_submission(student, timestamp)
        return self._gradebook.find_submission_notebook(notebook, ASSIGNMENT, student)

    def _write(self, change, commit):
        try:
            change()
            if commit:
                self.commit()
        except Exception:
            self._gradebook.db.rollback()
            self._submitted.clear()  # look again rather than trust the cache after a failure
            raise

    def merge(self, student, notebook, scores, commit=True):
        """Record one notebook's automatic results (from :func:`read_notebook_scores`).

        A grade cell the scores do not mention gets no automatic score and needs manual
        grading; a cell with a manual score keeps it and is flagged for review again.
        """
        grades, comments = scores["grades"], scores["comments"]

        def change():
            target = self._submitted_notebook(student, notebook, scores.get("timestamp"))
            for grade, name in _cell_rows(self._gradebook, Grade, target.id):
                auto_score, needs_manual = grades.get(name, (None, True))
                grade.auto_score = auto_score
                grade.needs_manual_grade = bool(needs_manual or grade.manual_score is not None)
            for comment, name in _cell_rows(self._gradebook, Comment, target.id):
                if name in comments:
                    comment.auto_comment = comments[name]
            target.late_submission_penalty = scores.get("late_submission_penalty")
            if scores.get("timestamp"):
                # The same parser nbgrader applies to a submission's timestamp.
                from nbgrader.utils import parse_utc

                target.assignment.timestamp = parse_utc(scores["timestamp"])

        self._write(change, commit)

    def zero(self, student, notebook, reason, commit=True):
        """Record 0 automatic points for a notebook that could not be graded (status says why).

        Code grade cells (and any cell that had an automatic score) get 0; written answers
        keep waiting for their manual grade; every comment says ``reason``.
        """

        def change():
            target = self._submitted_notebook(student, notebook)
            for grade, _ in _cell_rows(self._gradebook, Grade, target.id):
                if grade.cell_type == "code" or grade.auto_score is not None:
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = grade.manual_score is not None
            for comment, _ in _cell_rows(self._gradebook, Comment, target.id):
                comment.auto_comment = reason

        self._write(change, commit)

    def ensure_submissions(self, students):
        """Create the student and submission rows these students lack, in one transaction.

        The rows are the ones nbgrader's ``add_submission`` makes (a submitted notebook per
        notebook of the assignment, a grade per grade or task cell, a comment per solution or
        task cell), through nbgrader's ORM classes; but ``add_submission`` commits once per
        student, 50-90 ms each, which for a first run over a class was most of the parent's
        cost. Two queries when every student already has a submission.
        """
        wanted = set(students) - self._submitted
        if not wanted:
            return
        db = self._gradebook.db

        def change():
            assignment = self._gradebook.find_assignment(ASSIGNMENT)
            have = {
                student_id
                for (student_id,) in db.query(SubmittedAssignment.student_id).filter(
                    SubmittedAssignment.assignment_id == assignment.id
                )
            }
            missing = sorted(wanted - have)
            if not missing:
                return
            known = {row.id: row for row in db.query(Student).filter(Student.id.in_(missing))}
            layout = [
                (
                    notebook,
                    notebook.grade_cells + notebook.task_cells,
                    notebook.solution_cells + notebook.task_cells,
                )
                for notebook in assignment.notebooks
            ]
            for student_id in missing:
                student = known.get(student_id) or Student(id=student_id)
                submission = SubmittedAssignment(assignment=assignment, student=student)
                for notebook, graded_cells, commented_cells in layout:
                    submitted = SubmittedNotebook(notebook=notebook, assignment=submission)
                    for cell in graded_cells:
                        Grade(cell_id=cell.id, notebook=submitted)
                    for cell in commented_cells:
                        Comment(cell_id=cell.id, notebook=submitted)
                db.add(submission)

        self._write(change, commit=True)
        self._submitted |= wanted


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
