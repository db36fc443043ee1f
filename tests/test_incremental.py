"""Incremental grading, nothing skipped silently, statuses and flags that survive partial runs.

One module fixture grades NumPy-only submissions in a private runtime folder a few times:
a first run, a run with nothing changed, a run after one submission changed, and a run after
the grader version changed. The grader version is pinned with monkeypatch for the end-to-end
runs (so that somebody editing the checkout meanwhile cannot change it); the unit tests below
show that the real version hash covers the release, the source notebooks, the grader's code and
nbgrader_config.py.
"""

import csv
import io
import shutil

import nbformat
import pytest
from rich.console import Console

from conftest import KIT_ROOT, auto_points, auto_scores, runtime_env
from coursekit import grade as grade_module
from coursekit import incremental
from coursekit import status as st
from coursekit.errors import KitError
from coursekit.export import export_csv
from coursekit.gradebook import cell_scores
from coursekit.intake import scan
from coursekit.paths import db_url, submitted_dir
from coursekit.release import release
from coursekit.submissions import reference_notebook, write_submission
from coursekit.table import print_score_table

NUMPY = "bn_numpy.ipynb"
KERAS = "bn_keras.ipynb"
FLAG_CODE = "\n\ndef _never_called():\n    import tensorflow  # noqa: F401\n"


def flagged_reference():
    """The reference answers, plus a TensorFlow import in a NumPy solution cell (a flag)."""
    notebook = reference_notebook(NUMPY)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_forward":
            cell.source += FLAG_CODE
    return notebook


def graded_pairs(run):
    """(student, notebook) pairs this run actually sent to grading."""
    return sorted(
        (s.student, s.notebook) for s in run if s.status not in (st.MISSING, st.UNREADABLE)
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("incremental") / "runtime"
    with pytest.MonkeyPatch.context() as monkeypatch:
        runtime_env(monkeypatch, runtime)
        monkeypatch.setattr(grade_module, "grader_version", lambda: "version-1")
        release(release_root=runtime.parent / "release")
        with pytest.raises(KitError, match="nothing to export"):
            export_csv()
        write_submission("alice", {NUMPY: reference_notebook(NUMPY)})
        write_submission("bob", {NUMPY: flagged_reference()})
        # Notebooks grading cannot pick up as they are:
        (submitted_dir() / "carol").mkdir()
        nbformat.write(reference_notebook(NUMPY), submitted_dir() / "carol" / NUMPY)
        write_submission("dave", {"bn_numpy (1).ipynb": reference_notebook(NUMPY)})
        nbformat.write(reference_notebook(NUMPY), submitted_dir() / "stray.ipynb")

        first = grade_module.grade(workers=2, show_progress=False)
        status_after_first = st.read_status_csv(runtime / "status.csv")
        second = grade_module.grade(workers=2, show_progress=False)

        changed = reference_notebook(NUMPY)
        changed.cells.append(nbformat.v4.new_markdown_cell("I added a note after finishing."))
        nbformat.write(changed, submitted_dir() / "alice" / "batchnorm" / NUMPY)
        third = grade_module.grade(workers=2, show_progress=False)
        status_after_third = st.read_status_csv(runtime / "status.csv")
        csv_path, rows = export_csv()
        table = io.StringIO()
        print_score_table(rows, Console(file=table, width=250))

        monkeypatch.setattr(grade_module, "grader_version", lambda: "version-2")
        fourth = grade_module.grade(workers=2, show_progress=False)
        yield {
            "runtime": runtime,
            "first": first,
            "status_after_first": status_after_first,
            "second": second,
            "third": third,
            "status_after_third": status_after_third,
            "rows": {row["student_id"]: row for row in rows},
            "csv": csv_path,
            "table": table.getvalue(),
            "fourth": fourth,
            "scores": cell_scores(db_url()),
        }


def test_first_run_grades_every_notebook_it_can_see(runs):
    assert graded_pairs(runs["first"]) == [("alice", NUMPY), ("bob", NUMPY)]
    assert runs["first"].unchanged == []
    statuses = {(s.student, s.notebook): s for s in runs["first"]}
    assert statuses[("alice", NUMPY)].status == st.GRADED
    assert statuses[("bob", NUMPY)].status == st.GRADED
    full = auto_points("bn_numpy")
    assert auto_scores(runs["scores"], "alice", "bn_numpy") == full
    assert auto_scores(runs["scores"], "bob", "bn_numpy") == full  # a flag never costs points


def test_misplaced_notebooks_are_reported_with_the_fix(runs):
    by_path = {m.path: m for m in runs["first"].misplaced}
    assert set(by_path) == {
        "carol/bn_numpy.ipynb",
        "dave/batchnorm/bn_numpy (1).ipynb",
        "stray.ipynb",
    }
    assert (
        "move it to submitted/carol/batchnorm/bn_numpy.ipynb" in by_path["carol/bn_numpy.ipynb"].fix
    )
    assert "rename it to submitted/dave/batchnorm/bn_numpy.ipynb" in (
        by_path["dave/batchnorm/bn_numpy (1).ipynb"].fix
    )
    assert "not in a student's folder" in by_path["stray.ipynb"].fix
    statuses = {(s.student, s.notebook): s for s in runs["first"]}
    # carol has no batchnorm/ folder at all: she still gets statuses, pointing at her file.
    carol = statuses[("carol", NUMPY)]
    assert carol.status == st.MISSING and "found submitted/carol/bn_numpy.ipynb" in carol.detail
    assert statuses[("carol", KERAS)].status == st.MISSING
    assert "bn_numpy (1).ipynb" in statuses[("dave", NUMPY)].detail


def test_flags_reach_the_status_file(runs):
    bob = {s.notebook: s for s in runs["status_after_first"] if s.student == "bob"}
    assert "batchnorm_forward imports tensorflow" in bob[NUMPY].flags


def test_nothing_changed_nothing_graded(runs):
    assert graded_pairs(runs["second"]) == []
    assert sorted(runs["second"].unchanged) == [("alice", NUMPY), ("bob", NUMPY)]


def test_one_changed_submission_is_the_only_one_graded(runs):
    assert graded_pairs(runs["third"]) == [("alice", NUMPY)]
    assert runs["third"].unchanged == [("bob", NUMPY)]


def test_a_partial_run_keeps_everyone_elses_status_and_flags(runs):
    before = {(s.student, s.notebook): s for s in runs["status_after_first"]}
    after = {(s.student, s.notebook): s for s in runs["status_after_third"]}
    assert after[("bob", NUMPY)] == before[("bob", NUMPY)]
    assert "imports tensorflow" in after[("bob", NUMPY)].flags


def test_flags_reach_grades_csv_and_the_score_table(runs):
    with open(runs["csv"], newline="") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert "bn_numpy: batchnorm_forward imports tensorflow" in rows["bob"]["flags"]
    assert rows["alice"]["flags"] == ""
    assert "imports tensorflow" in runs["table"] and "flags" in runs["table"]


def test_to_grade_by_hand_counts_only_notebooks_that_exist(runs):
    rows = runs["rows"]
    # carol submitted nothing gradable: no written answer of hers can be graded by hand.
    assert rows["carol"]["needs_manual_grade"] == 0
    # alice's NumPy notebook has written answers; her Keras notebook is missing.
    written_numpy = sum(
        1
        for _, (score, _, is_auto) in runs["scores"]["alice"]["bn_numpy"].items()
        if not is_auto and score is None
    )
    assert written_numpy > 0 and rows["alice"]["needs_manual_grade"] == written_numpy


def test_a_new_grader_version_grades_everything_again(runs):
    assert graded_pairs(runs["fourth"]) == [("alice", NUMPY), ("bob", NUMPY)]
    assert runs["fourth"].unchanged == []


# ----------------------------------------------------------------- unit tests, no grading
def test_status_csv_reads_flags_back(tmp_path):
    path = tmp_path / "status.csv"
    rows = [
        st.NotebookStatus("a", NUMPY, st.GRADED, "", "cell x imports torch; unsandboxed"),
        st.NotebookStatus("b", KERAS, st.MISSING, "not in the submission", ""),
    ]
    st.write_status_csv(path, rows)
    assert st.read_status_csv(path) == rows


def test_status_csv_without_a_flags_column_still_reads(tmp_path):
    path = tmp_path / "status.csv"
    path.write_text("student_id,notebook,status,detail\na,bn_numpy.ipynb,graded,\n")
    assert st.read_status_csv(path) == [st.NotebookStatus("a", NUMPY, st.GRADED, "", "")]


def copy_kit(destination):
    """The files the grader version covers, copied under ``destination``."""
    for relative in ("assignments/batchnorm", "solutions/batchnorm", "autograder/bn_grader"):
        shutil.copytree(
            KIT_ROOT / relative,
            destination / relative,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copy2(KIT_ROOT / "nbgrader_config.py", destination / "nbgrader_config.py")
    return destination


@pytest.mark.parametrize(
    "changed",
    [
        "assignments/batchnorm/bn_numpy.ipynb",
        "assignments/batchnorm/bnkit/wire.py",
        "solutions/batchnorm/bn_keras.ipynb",
        "autograder/bn_grader/checks_numpy.py",
        "nbgrader_config.py",
    ],
)
def test_grader_version_covers_release_sources_grader_and_config(tmp_path, changed):
    kit = copy_kit(tmp_path / "kit")
    before = incremental.grader_version(kit)
    assert incremental.grader_version(kit) == before
    with open(kit / changed, "a") as handle:
        handle.write("\n")
    assert incremental.grader_version(kit) != before


def test_digest_follows_the_submission_its_timestamp_and_the_settings(tmp_path):
    notebook = tmp_path / "bn_numpy.ipynb"
    notebook.write_text("{}")
    base = incremental.submission_digest(notebook, "v", "s")
    assert incremental.submission_digest(notebook, "v2", "s") != base
    assert incremental.submission_digest(notebook, "v", "s2") != base
    (tmp_path / "timestamp.txt").write_text("2026-12-01 10:00:00")
    with_time = incremental.submission_digest(notebook, "v", "s")
    assert with_time != base
    notebook.write_text('{"changed": 1}')
    assert incremental.submission_digest(notebook, "v", "s") != with_time


def test_scan_ignores_jupyter_checkpoints_and_accepts_the_right_place(tmp_path):
    (tmp_path / "erin" / "batchnorm" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "erin" / "batchnorm" / NUMPY).write_text("{}")
    (
        tmp_path / "erin" / "batchnorm" / ".ipynb_checkpoints" / "bn_numpy-checkpoint.ipynb"
    ).write_text("{}")
    (tmp_path / "erin" / "batchnorm" / "deeper").mkdir()
    (tmp_path / "erin" / "batchnorm" / "deeper" / KERAS).write_text("{}")
    students, misplaced = scan(tmp_path)
    assert students == ["erin"]
    assert [(m.path, m.notebook) for m in misplaced] == [
        ("erin/batchnorm/deeper/bn_keras.ipynb", KERAS)
    ]
    assert "move it to submitted/erin/batchnorm/bn_keras.ipynb" in misplaced[0].fix
