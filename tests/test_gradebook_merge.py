"""The parent's merge into the course gradebook (coursekit.gradebook.CourseGradebook).

One released gradebook (nbgrader generate_assignment) per module; scores are made up from the
release's own grade cells, so nothing here is copied from the code under test. Grading merges
through one CourseGradebook session for the whole run: every write must be committed when the
call returns (a Ctrl-C or crash after it loses nothing), manual scores must survive, and a
failed write must leave the session usable.
"""

import shutil
import sqlite3

import pytest
from nbgrader.api import MissingEntry

from conftest import auto_points, runtime_env
from coursekit.gradebook import CourseGradebook, cell_scores, open_gradebook, read_notebook_scores
from coursekit.paths import db_url
from coursekit.release import release

NOTEBOOK = "bn_numpy"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A SQLite gradebook that knows the assignment and no student (copied per test)."""
    base = tmp_path_factory.mktemp("merge")
    with pytest.MonkeyPatch.context() as monkeypatch:
        runtime_env(monkeypatch, base / "runtime")
        release(release_root=base / "release")
        return base / "runtime" / "gradebook.db"


@pytest.fixture
def course_url(released, tmp_path, monkeypatch):
    runtime_env(monkeypatch, tmp_path / "runtime")
    (tmp_path / "runtime").mkdir()
    shutil.copy2(released, tmp_path / "runtime" / "gradebook.db")
    return db_url()


def made_up_scores():
    """Half marks on every code grade cell, a comment on none; a late penalty and a time."""
    return {
        "grades": {cell: [points / 2, False] for cell, points in auto_points(NOTEBOOK).items()},
        "comments": {},
        "late_submission_penalty": 0.5,
        "timestamp": "2026-01-15T09:30:00",
    }


def auto(url, student):
    cells = cell_scores(url)[student][NOTEBOOK]
    return {cell: score for cell, (score, _, is_auto) in cells.items() if is_auto}


def test_a_merge_is_committed_when_it_returns(course_url):
    scores = made_up_scores()
    course = CourseGradebook(course_url)
    course.merge("ann", NOTEBOOK, scores)
    # Another connection sees it before the session is closed: nothing waits for the run's end.
    expected = {cell: score for cell, (score, _) in scores["grades"].items()}
    assert auto(course_url, "ann") == expected
    course.close()


def test_scores_read_back_are_the_scores_merged(course_url):
    scores = made_up_scores()
    with CourseGradebook(course_url) as course:
        course.merge("ann", NOTEBOOK, scores)
    read = read_notebook_scores(course_url, "ann", NOTEBOOK)
    code_cells = {cell: read["grades"][cell] for cell in scores["grades"]}
    assert code_cells == scores["grades"]
    assert read["late_submission_penalty"] == scores["late_submission_penalty"]
    assert read["timestamp"].startswith(scores["timestamp"])
    # Cells the scores do not mention (written answers) wait for a manual grade.
    assert all(needs for cell, (_, needs) in read["grades"].items() if cell not in scores["grades"])


def test_an_unknown_notebook_reads_as_nothing(course_url):
    assert read_notebook_scores(course_url, "nobody", NOTEBOOK) is None


def test_a_manual_score_is_kept_and_flagged_for_review(course_url):
    scores = made_up_scores()
    cell = next(iter(scores["grades"]))
    with CourseGradebook(course_url) as course:
        course.merge("ann", NOTEBOOK, scores)
    with open_gradebook(course_url) as gradebook:
        grade = gradebook.find_grade(cell, NOTEBOOK, "batchnorm", "ann")
        grade.manual_score = 0.25
        gradebook.db.commit()
    with CourseGradebook(course_url) as course:
        course.merge("ann", NOTEBOOK, scores)
    with open_gradebook(course_url) as gradebook:
        grade = gradebook.find_grade(cell, NOTEBOOK, "batchnorm", "ann")
        assert grade.manual_score == 0.25 and grade.score == 0.25
        assert grade.auto_score == scores["grades"][cell][0]
        assert grade.needs_manual_grade


def test_zero_scores_code_cells_and_says_why(course_url):
    with CourseGradebook(course_url) as course:
        course.merge("ann", NOTEBOOK, made_up_scores())
        course.zero("ann", NOTEBOOK, "Not graded: timed out.")
    assert set(auto(course_url, "ann").values()) == {0.0}
    read = read_notebook_scores(course_url, "ann", NOTEBOOK)
    assert read["comments"] and set(read["comments"].values()) == {"Not graded: timed out."}


def test_a_failed_write_is_rolled_back_and_the_session_goes_on(course_url):
    with CourseGradebook(course_url) as course:
        with pytest.raises(MissingEntry):
            course.merge("ann", "no_such_notebook", made_up_scores())
        course.merge("bob", NOTEBOOK, made_up_scores())
    assert "bob" in cell_scores(course_url)


def test_many_merges_in_one_session_each_land_once(course_url):
    students = [f"s{index:02d}" for index in range(12)]
    with CourseGradebook(course_url) as course:
        for student in students:
            course.merge(student, NOTEBOOK, made_up_scores())
        course.merge(students[0], NOTEBOOK, made_up_scores())  # graded again
    database = sqlite3.connect(course_url.removeprefix("sqlite:///"))
    try:
        rows = database.execute("SELECT student_id FROM submitted_assignment").fetchall()
    finally:
        database.close()
    assert sorted(row[0] for row in rows) == students


def rows_of(url, student):
    """{notebook: (sorted grade cell names, sorted comment cell names)} of a submission."""
    with open_gradebook(url) as gradebook:
        submission = gradebook.find_submission("batchnorm", student)
        return {
            notebook.name: (
                sorted(grade.name for grade in notebook.grades),
                sorted(comment.name for comment in notebook.comments),
            )
            for notebook in submission.notebooks
        }


def test_bulk_created_submissions_have_nbgraders_rows(course_url):
    with open_gradebook(course_url) as gradebook:
        gradebook.add_student("by-nbgrader")
        gradebook.add_submission("batchnorm", "by-nbgrader")
        gradebook.add_student("known-student")  # a student without a submission yet
    with CourseGradebook(course_url) as course:
        course.ensure_submissions(["new-student", "known-student", "by-nbgrader"])
    expected = rows_of(course_url, "by-nbgrader")
    assert set(expected) == {"bn_numpy", "bn_keras"} and all(expected.values())
    assert rows_of(course_url, "new-student") == expected
    assert rows_of(course_url, "known-student") == expected
