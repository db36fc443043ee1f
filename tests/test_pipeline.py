"""End to end through nbgrader: release, sample submissions, parallel grading, feedback, export.

One grading run (module fixture) in a private runtime folder. Expected scores come from the
notebooks' own metadata (the points of each grade cell), not from a previous run: the reference
must earn every auto-graded point, the untouched release none, and each mistake sample must lose
points exactly on the cells its catalogue entry names.
"""

import csv
import html
import io

import nbformat
import pytest
from rich.console import Console

from bn_grader import mistakes
from bn_grader import mistakes_keras as mk
from bn_grader.ledger import METADATA_KEY
from bn_grader.samples import all_samples
from conftest import auto_points, auto_scores, runtime_env
from corpus.realistic import SUBMISSIONS
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
from coursekit.table import TABLE_WIDTH, print_score_table

NOTEBOOKS = ("bn_numpy", "bn_keras")
# A realistic submission with two mistakes in one function (PyTorch's momentum convention and
# its unbiased running variance): both must reach the ledger and the class report.
TWO_MISTAKES = next(s for s in SUBMISSIONS if s.name == "momentum-pytorch-style")
TWO_MISTAKES_STUDENT = "two-mistakes"


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
        write_submission(TWO_MISTAKES_STUDENT, {"bn_numpy.ipynb": _two_mistakes_notebook()})
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


def _two_mistakes_notebook():
    """The reference bn_numpy with its batchnorm_forward cell written as TWO_MISTAKES wrote it."""
    notebook = reference_notebook("bn_numpy.ipynb")
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_forward":
            cell.source = TWO_MISTAKES.code
    return notebook


def _ledger(student, notebook):
    path = autograded(student, notebook)
    return nbformat.read(path, as_version=4).metadata[METADATA_KEY]["ledger"]


def autograded(student, notebook):
    return feedback_dir().parent / "autograded" / student / "batchnorm" / f"{notebook}.ipynb"


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


def _cause(mistake_id):
    """The sentence a student reads for a mistake, from the catalogue that names it."""
    return mistakes.cause(mistake_id) if mistake_id in mistakes.BY_ID else mk.explain(mistake_id)


def test_feedback_gives_the_cause_and_the_ledger_the_id(graded):
    """The student reads the mistake's sentence, never its id; the id is in the ledger."""
    for sample in graded["samples"]:
        page = html.unescape(
            (
                feedback_dir()
                / sample.name
                / "batchnorm"
                / sample.notebook.replace(".ipynb", ".html")
            ).read_text()
        )
        assert _cause(sample.mistake_id) in page, sample.name
        assert sample.mistake_id not in page, sample.name
        assert "[mistake:" not in page and "Likely mistake [" not in page, sample.name
        ledger = _ledger(sample.name, sample.notebook.removesuffix(".ipynb"))
        named = {cell for cell, entry in ledger.items() if sample.mistake_id in entry["mistakes"]}
        assert named and named <= set(sample.affected_cells), sample.name
        # the grade cell printed no id either: the autograded notebook has none in its outputs
        outputs = "".join(
            str(cell.get("outputs", ""))
            for cell in nbformat.read(
                autograded(sample.name, sample.notebook.removesuffix(".ipynb")), as_version=4
            ).cells
        )
        assert sample.mistake_id not in outputs, sample.name


def test_two_mistakes_in_one_item_are_both_in_the_ledger(graded):
    ledger = _ledger(TWO_MISTAKES_STUDENT, "bn_numpy")
    running = ledger["test_forward_running"]
    both = [item for item in running["items"] if set(item["mistakes"]) == TWO_MISTAKES.causes]
    assert both, running["items"]
    assert set(running["mistakes"]) == TWO_MISTAKES.causes


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


def test_score_table_fits_120_columns(graded):
    """The table `make export` (and `make demo`) prints, on the kit's 160-column console."""
    output = io.StringIO()
    print_score_table(list(graded["rows"].values()), Console(file=output, width=160))
    lines = output.getvalue().splitlines()
    assert max(len(line) for line in lines) <= TABLE_WIDTH == 120
    for student in graded["rows"]:
        assert any(student in line for line in lines), student  # never cut in two


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
    # Both mistakes of the two-mistake submission are counted on the cell that found them.
    counted = by_cell[("bn_numpy", "test_forward_running")].mistakes
    assert all(counted[mistake] >= 1 for mistake in TWO_MISTAKES.causes), counted
    assert totals[REFERENCE] == sum(sum(auto_points(nb).values()) for nb in NOTEBOOKS)
    output = io.StringIO()
    png = write_report(Console(file=output, width=200))
    assert png.exists() and png.stat().st_size > 10_000
    assert "students failing" in output.getvalue()


# ------------------------------------------------------------- the demo's samples and table
def test_every_mistake_sample_is_a_complete_submission(isolated_runtime):
    """`make demo` grades whole submissions: the mistake's notebook, and the other one right."""
    from coursekit.paths import submitted_dir

    students = build_samples(include_mistakes=True, every_sample=True)
    samples = all_samples()
    assert students == [REFERENCE, UNTOUCHED, *[sample.name for sample in samples]]
    for sample in samples:
        folder = submitted_dir() / sample.name / "batchnorm"
        assert sorted(p.name for p in folder.glob("*.ipynb")) == [
            "bn_keras.ipynb",
            "bn_numpy.ipynb",
        ]
        other = ({"bn_numpy.ipynb", "bn_keras.ipynb"} - {sample.notebook}).pop()
        written = nbformat.read(folder / other, as_version=4)
        assert [c.source for c in written.cells] == [
            c.source for c in reference_notebook(other).cells
        ], sample.name
        edited = nbformat.read(folder / sample.notebook, as_version=4)
        assert [c.source for c in edited.cells] != [
            c.source for c in reference_notebook(sample.notebook).cells
        ], sample.name


def test_the_demo_shows_one_sample_per_solution_cell():
    """Every solution cell that has mistake samples is in the demo, once, with its first one."""
    from coursekit.submissions import demo_samples

    def cells(sample):
        return {grade_id for grade_id, _, _ in sample.edits}

    samples = all_samples()
    chosen = demo_samples(samples)
    every_cell = set().union(*(cells(sample) for sample in samples))
    assert set().union(*(cells(sample) for sample in chosen)) == every_cell
    assert len(chosen) == len({frozenset(cells(sample)) for sample in samples}) < len(samples)
    for sample in chosen:
        first = next(other for other in samples if cells(other) == cells(sample))
        assert first is sample


def test_demo_table_has_one_line_per_sample_within_120_columns():
    """The demo's rows (every sample graded, nothing flagged) print one line each."""
    names = [REFERENCE, UNTOUCHED, *[sample.name for sample in all_samples()]]
    rows = [
        {
            "student_id": name,
            "bn_numpy": 47.5,
            "bn_keras": 18.25,
            "auto_score": 65.75,
            "auto_max": 70,
            "needs_manual_grade": 6,
            "status": st.GRADED,
            "flags": "",
        }
        for name in names
    ]
    output = io.StringIO()
    print_score_table(rows, Console(file=output, width=160))
    lines = output.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 120
    for name in names:
        assert sum(f" {name} " in line for line in lines) == 1, name
    # a long flag wraps inside its column instead of widening the table
    rows[0]["flags"] = "bn_numpy: batchnorm_forward imports tensorflow; " * 4
    output = io.StringIO()
    print_score_table(rows, Console(file=output, width=160))
    assert max(len(line) for line in output.getvalue().splitlines()) <= 120
