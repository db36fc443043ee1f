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
    Assignment,
    BaseCell,
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Notebook,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
    new_uuid,
)
from nbgrader.utils import parse_utc
from sqlalchemy import insert, update

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

    Writes go through nbgrader's ORM classes with SQLAlchemy's bulk statements (rows by
    primary key, no objects loaded): loading nbgrader's objects costs a query per related
    object and column subqueries per grade, several times the write itself.
    """

    def __init__(self, url):
        self.url = url
        self._gradebook = open_gradebook(url)
        self._db = self._gradebook.db
        # (student, notebook name) -> (submitted notebook id, submission id), for this run.
        self._ids = {}
        self._students = set()  # students whose submission rows are known to exist

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._gradebook.close()

    def commit(self):
        self._db.commit()

    def _write(self, change, commit):
        try:
            change()
            if commit:
                self.commit()
        except Exception:
            self._db.rollback()
            # Rows made in the rolled-back transaction are gone: look them up again.
            self._ids.clear()
            self._students.clear()
            raise

    def _load_ids(self, students):
        """Cache the submission ids of those of ``students`` that have one (one query per 500)."""
        students = sorted(students)
        for start in range(0, len(students), 500):
            rows = (
                self._db.query(
                    SubmittedAssignment.student_id,
                    Notebook.name,
                    SubmittedNotebook.id,
                    SubmittedAssignment.id,
                )
                .join(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
                .join(Notebook, Notebook.id == SubmittedNotebook.notebook_id)
                .join(Assignment, Assignment.id == SubmittedAssignment.assignment_id)
                .filter(
                    Assignment.name == ASSIGNMENT,
                    SubmittedAssignment.student_id.in_(students[start : start + 500]),
                )
            )
            for student, notebook, notebook_id, submission_id in rows:
                self._ids[(student, notebook)] = (notebook_id, submission_id)
                self._students.add(student)

    def _create_missing(self, students):
        """Create the student and submission rows ``students`` lack (no commit).

        The rows are the ones nbgrader's ``add_submission`` makes (a submitted notebook per
        notebook of the assignment, a grade per grade or task cell, a comment per solution or
        task cell); ``add_submission`` itself commits once per student, 50-90 ms each, which
        for a first run over a class was most of the parent's cost.
        """
        unknown = set(students) - self._students
        if not unknown:
            return
        self._load_ids(unknown)
        missing = sorted(unknown - self._students)
        if not missing:
            return
        db = self._db
        assignment = self._gradebook.find_assignment(ASSIGNMENT)
        known = {row for (row,) in db.query(Student.id).filter(Student.id.in_(missing))}
        layout = [
            (
                notebook.id,
                notebook.name,
                [cell.id for cell in notebook.grade_cells + notebook.task_cells],
                [cell.id for cell in notebook.solution_cells + notebook.task_cells],
            )
            for notebook in assignment.notebooks
        ]
        submissions, notebooks, grades, comments = [], [], [], []
        for student in missing:
            submission_id = new_uuid()
            submissions.append(
                {"id": submission_id, "assignment_id": assignment.id, "student_id": student}
            )
            for notebook_id, name, graded_cells, commented_cells in layout:
                submitted_id = new_uuid()
                notebooks.append(
                    {"id": submitted_id, "assignment_id": submission_id, "notebook_id": notebook_id}
                )
                grades += [
                    {"id": new_uuid(), "cell_id": cell, "notebook_id": submitted_id}
                    for cell in graded_cells
                ]
                comments += [
                    {"id": new_uuid(), "cell_id": cell, "notebook_id": submitted_id}
                    for cell in commented_cells
                ]
                self._ids[(student, name)] = (submitted_id, submission_id)
        # Parents before children: a server database checks the foreign keys.
        for model, rows in (
            (Student, [{"id": student} for student in missing if student not in known]),
            (SubmittedAssignment, submissions),
            (SubmittedNotebook, notebooks),
            (Grade, grades),
            (Comment, comments),
        ):
            if rows:
                db.execute(insert(model), rows)
        self._students.update(missing)

    def ensure_submissions(self, students):
        """Create the student and submission rows these students lack, in one transaction.

        Two queries when every student already has a submission.
        """
        self._write(lambda: self._create_missing(students), commit=True)

    def _notebook_ids(self, student, notebook):
        """(submitted notebook id, submission id), creating the submission when missing."""
        self._create_missing([student])
        try:
            return self._ids[(student, notebook)]
        except KeyError:
            raise MissingEntry(f"the assignment has no notebook {notebook!r}") from None

    def _cells(self, model, notebook_id, *columns):
        """[(row id, cell name, *columns)] of one submitted notebook's grades or comments."""
        return (
            self._db.query(model.id, BaseCell.name, *columns)
            .join(BaseCell, model.cell_id == BaseCell.id)
            .filter(model.notebook_id == notebook_id)
            .all()
        )

    def merge(self, student, notebook, scores, commit=True):
        """Record one notebook's automatic results (from :func:`read_notebook_scores`).

        A grade cell the scores do not mention gets no automatic score and needs manual
        grading; a cell with a manual score keeps it and is flagged for review again.
        """
        grades, comments = scores["grades"], scores["comments"]

        def change():
            notebook_id, submission_id = self._notebook_ids(student, notebook)
            grade_rows = []
            for grade_id, name, manual_score in self._cells(Grade, notebook_id, Grade.manual_score):
                auto_score, needs_manual = grades.get(name, (None, True))
                grade_rows.append(
                    {
                        "id": grade_id,
                        "auto_score": auto_score,
                        "needs_manual_grade": bool(needs_manual or manual_score is not None),
                    }
                )
            comment_rows = [
                {"id": comment_id, "auto_comment": comments[name]}
                for comment_id, name in self._cells(Comment, notebook_id)
                if name in comments
            ]
            notebook_row = {
                "id": notebook_id,
                "late_submission_penalty": scores.get("late_submission_penalty"),
            }
            self._update(Grade, grade_rows)
            self._update(Comment, comment_rows)
            self._update(SubmittedNotebook, [notebook_row])
            if scores.get("timestamp"):
                # The parser nbgrader applies to a submission's timestamp.
                timestamp = parse_utc(scores["timestamp"])
                self._update(SubmittedAssignment, [{"id": submission_id, "timestamp": timestamp}])

        self._write(change, commit)

    def _update(self, model, rows):
        """UPDATE rows of ``model`` by primary key (each dict holds ``id`` and new values)."""
        if rows:
            self._db.execute(update(model), rows)

    def zero(self, student, notebook, reason, commit=True):
        """Record 0 automatic points for a notebook that could not be graded (status says why).

        Code grade cells (and any cell that had an automatic score) get 0; written answers
        keep waiting for their manual grade; every comment says ``reason``.
        """

        def change():
            notebook_id, _ = self._notebook_ids(student, notebook)
            columns = (Grade.auto_score, Grade.manual_score, Grade.cell_type)
            self._update(
                Grade,
                [
                    {
                        "id": grade_id,
                        "auto_score": 0.0,
                        "needs_manual_grade": manual_score is not None,
                    }
                    for grade_id, _, auto_score, manual_score, cell_type in self._cells(
                        Grade, notebook_id, *columns
                    )
                    if cell_type == "code" or auto_score is not None
                ],
            )
            self._update(
                Comment,
                [
                    {"id": comment_id, "auto_comment": reason}
                    for comment_id, _ in self._cells(Comment, notebook_id)
                ],
            )

        self._write(change, commit)


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
