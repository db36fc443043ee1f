"""End to end through nbgrader: release, sample submissions, parallel grading, feedback, export.

One grading run (module fixture) in a private runtime folder. Expected scores come from the
notebooks' own metadata (the points of each grade cell), not from a previous run: the reference
must earn every auto-graded point, the untouched release none, and each mistake sample must lose
points exactly on the cells its catalogue entry names.
"""

import csv

import pytest

from bn_grader.samples import all_samples
from conftest import auto_points, auto_scores, runtime_env
from coursekit import status as st
from coursekit.export import export_csv
from coursekit.feedback import generate_feedback
from coursekit.grade import grade
from coursekit.gradebook import cell_scores, open_gradebook
from coursekit.paths import db_url, feedback_dir
from coursekit.release import release
from coursekit.submissions import (
    REFERENCE,
    UNTOUCHED,
    apply_edits,
    build_samples,
    reference_notebook,
    write_submission,
)

NOTEBOOKS = ("bn_numpy", "bn_keras")


def chosen_samples():
    """Two NumPy mistakes and one Keras mistake: enough to prove the pipeline end to end."""
    samples = all_samples()
    numpy_samples = [s for s in samples if s.notebook == "bn_numpy.ipynb"][:2]
    keras_samples = [s for s in samples if s.notebook == "bn_keras.ipynb"][:1]
    return numpy_samples + keras_samples


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("pipeline") / "runtime"
    with pytest.MonkeyPatch.context() as monkeypatch:
        runtime_env(monkeypatch, runtime)
        release(release_root=runtime.parent / "release")
        build_samples(include_mistakes=False)
        samples = chosen_samples()
        for sample in samples:
            notebook = apply_edits(reference_notebook(sample.notebook), sample.edits, sample.name)
            write_submission(sample.name, {sample.notebook: notebook})
        statuses = grade(workers=2, show_progress=False)
        feedback_files = generate_feedback()
        csv_path, rows = export_csv()
        yield {
            "runtime": runtime,
            "statuses": statuses,
            "scores": cell_scores(db_url()),
            "feedback": feedback_files,
            "rows": {row["student_id"]: row for row in rows},
            "csv": csv_path,
            "samples": samples,
        }


def test_every_notebook_has_a_status(graded):
    statuses = {(s.student, s.notebook): s.status for s in graded["statuses"]}
    assert statuses[(REFERENCE, "bn_numpy.ipynb")] == st.GRADED
    assert statuses[(REFERENCE, "bn_keras.ipynb")] == st.GRADED
    assert statuses[(UNTOUCHED, "bn_numpy.ipynb")] == st.GRADED
    assert statuses[(UNTOUCHED, "bn_keras.ipynb")] == st.GRADED
    for sample in graded["samples"]:
        assert statuses[(sample.name, sample.notebook)] == st.GRADED
        other = ({"bn_numpy.ipynb", "bn_keras.ipynb"} - {sample.notebook}).pop()
        assert statuses[(sample.name, other)] == st.MISSING


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_reference_earns_every_auto_graded_point(graded, notebook):
    expected = auto_points(notebook)
    got = auto_scores(graded["scores"], REFERENCE, notebook)
    assert got == expected
    assert sum(expected.values()) > 0


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_untouched_release_earns_nothing(graded, notebook):
    got = auto_scores(graded["scores"], UNTOUCHED, notebook)
    assert got == {cell: 0.0 for cell in auto_points(notebook)}


def test_mistake_samples_lose_points_only_where_expected(graded):
    assert graded["samples"], "no mistake samples registered"
    for sample in graded["samples"]:
        notebook = sample.notebook.removesuffix(".ipynb")
        maximum = auto_points(notebook)
        got = auto_scores(graded["scores"], sample.name, notebook)
        for cell, points in maximum.items():
            if cell in sample.affected_cells:
                assert got[cell] < points, f"{sample.name}: {cell} should lose points"
            else:
                assert got[cell] == points, f"{sample.name}: {cell} should keep full marks"


def test_feedback_names_the_mistake(graded):
    for sample in graded["samples"]:
        html = (
            feedback_dir() / sample.name / "batchnorm" / sample.notebook.replace(".ipynb", ".html")
        ).read_text()
        assert (
            f"[mistake: {sample.mistake_id}]" in html
            or f"Likely mistake [{sample.mistake_id}]" in html
        ), sample.name


def test_feedback_leaks_nothing(graded):
    assert graded["feedback"], "no feedback written"
    # A student's own traceback (the untouched stubs raise) is theirs to see; anything that
    # names the grader (hidden test code, a grader traceback, reference code) is a leak.
    hidden_markers = (
        "BEGIN HIDDEN TESTS",
        "END HIDDEN TESTS",
        "bn_grader",
        "autograder/",
        "reference.py",
    )
    for path in graded["feedback"]:
        html = path.read_text()
        for marker in hidden_markers:
            assert marker not in html, f"{marker!r} in {path}"


def test_export_has_scores_and_statuses(graded):
    with open(graded["csv"], newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    total = sum(sum(auto_points(nb).values()) for nb in NOTEBOOKS)
    assert float(rows[REFERENCE]["auto_score"]) == total
    assert float(rows[REFERENCE]["auto_max"]) == total
    assert float(rows[UNTOUCHED]["auto_score"]) == 0.0
    assert rows[UNTOUCHED]["status"] == st.GRADED
    for sample in graded["samples"]:
        assert "notebook missing" in rows[sample.name]["status"]


def test_regrading_one_student_keeps_everyone_elses_grades_and_manual_scores(graded):
    before = cell_scores(db_url())
    written = [
        (cell, score)
        for cell, (score, _, is_auto) in before[REFERENCE]["bn_numpy"].items()
        if not is_auto
    ]
    with open_gradebook(db_url()) as gradebook:
        manual_cell = written[0][0] if written else None
        if manual_cell:
            grade_row = gradebook.find_grade(manual_cell, "bn_numpy", "batchnorm", REFERENCE)
            grade_row.manual_score = 1.0
            gradebook.db.commit()
    grade(students=[REFERENCE, UNTOUCHED], workers=2, show_progress=False)
    after = cell_scores(db_url())
    for student in before:
        if student not in (REFERENCE, UNTOUCHED):
            assert after[student] == before[student]
    for notebook in NOTEBOOKS:
        assert auto_scores(after, REFERENCE, notebook) == auto_scores(before, REFERENCE, notebook)
    if manual_cell:
        assert after[REFERENCE]["bn_numpy"][manual_cell][0] == 1.0
    statuses = {row["student_id"] for row in csv.DictReader(open(graded["runtime"] / "status.csv"))}
    assert {sample.name for sample in graded["samples"]} <= statuses


def test_keras_grading_reads_the_students_own_numpy_notebook(graded):
    """The reference submitted both notebooks: its Keras notebook found bn_numpy.ipynb."""
    path = graded["runtime"] / "autograded" / REFERENCE / "batchnorm" / "bn_keras.ipynb"
    text = path.read_text()
    assert "bn_numpy.ipynb was not submitted" not in text
    assert "could not read" not in text and "is not in this folder" not in text


def test_scores_come_from_the_sandboxed_checks_ledger(graded):
    """Every auto score in the gradebook is the one the trusted checks recorded."""
    import nbformat

    from bn_grader.ledger import METADATA_KEY

    scores = graded["scores"]
    for student in (REFERENCE, UNTOUCHED):
        for notebook in NOTEBOOKS:
            path = graded["runtime"] / "autograded" / student / "batchnorm" / f"{notebook}.ipynb"
            record = nbformat.read(path, as_version=4).metadata[METADATA_KEY]
            assert record["sandboxed"] is True
            ledger = {cell: entry["score"] for cell, entry in record["ledger"].items()}
            assert set(ledger) == set(auto_points(notebook)), (student, notebook)
            assert ledger == auto_scores(scores, student, notebook)


def test_class_report_counts_failures_and_names_mistakes(graded):
    import io

    from rich.console import Console

    from coursekit.class_report import summarise, write_report

    summaries, totals = summarise()
    by_cell = {(item.notebook, item.cell): item for item in summaries}
    for sample in graded["samples"]:
        notebook = sample.notebook.removesuffix(".ipynb")
        for cell in sample.affected_cells:
            assert by_cell[(notebook, cell)].failure_rate > 0
        named = set()
        for cell in sample.affected_cells:
            named |= set(by_cell[(notebook, cell)].mistakes)
        assert sample.mistake_id in named, sample.name
    assert totals[REFERENCE] == sum(sum(auto_points(nb).values()) for nb in NOTEBOOKS)
    output = io.StringIO()
    png = write_report(Console(file=output, width=200))
    assert png.exists() and png.stat().st_size > 10_000
    assert "students failing" in output.getvalue()
