"""Validation means something: the instructor's and the students' Validate both fail what is wrong.

- ``coursekit validate`` (``make validate``) runs the solutions as grading does and fails every
  grade cell below full marks: a copy of the solutions with one catalogued mistake must fail
  exactly where the catalogue says, so a validator that always says success fails this file.
- nbgrader's ``Validator`` (the students' Validate button and ``nbgrader validate``) runs the
  released notebook: the grade cells' visible part runs the public checks, so an untouched
  release fails every auto-graded cell and a correct notebook fails none.
"""

import shutil

import nbformat
import pytest
from nbgrader.validator import Validator

from bn_grader.samples_numpy import SAMPLES
from conftest import ASSIGNMENT_SOURCE, auto_points
from coursekit import cli
from coursekit.config import load_nbgrader_config
from coursekit.errors import KitError
from coursekit.paths import RELEASE_DIR
from coursekit.submissions import apply_edits, reference_notebook
from coursekit.validate import execute_like_grading, validate_solutions
from nbcode import namespace_from_notebook

UNBIASED = next(sample for sample in SAMPLES if sample.mistake_id == "unbiased-variance")


def _failed_cells(failures):
    return {text.split(":", 1)[0] for text in failures}


def _source_copy_with(tmp_path, sample):
    """A copy of solutions/batchnorm whose bn_numpy solution cells carry the sample's edits."""
    folder = tmp_path / "solutions"
    shutil.copytree(ASSIGNMENT_SOURCE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    notebook = nbformat.read(folder / sample.notebook, as_version=4)
    cells = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell for cell in notebook.cells}
    for grade_id, old, new in sample.edits:
        assert cells[grade_id].source.count(old) == 1
        cells[grade_id].source = cells[grade_id].source.replace(old, new)
    nbformat.write(notebook, folder / sample.notebook)
    return folder


def test_the_solutions_validate(isolated_runtime):
    assert validate_solutions(["bn_numpy.ipynb"]) == {"bn_numpy.ipynb": []}


def test_a_mistake_in_the_solutions_fails_validation_where_it_costs_points(
    isolated_runtime, tmp_path
):
    source = _source_copy_with(tmp_path, UNBIASED)
    failures = validate_solutions(["bn_numpy.ipynb"], source_dir=source)["bn_numpy.ipynb"]
    assert _failed_cells(failures) == set(UNBIASED.affected_cells), failures
    # Each failure says how many points and quotes a failing line.
    assert all(" points" in text for text in failures)
    assert any("[FAIL]" in text for text in failures)


def test_the_visible_part_leaves_scores_and_partial_credit_to_the_hidden_checks(
    isolated_runtime, tmp_path
):
    # Graded as autograde grades (SandboxedExecute, ledger), each cell scores exactly what its
    # check gives the same functions with the same seed run directly: confirm() before the
    # hidden part changes nothing, and partial credit survives.
    from bn_grader.executor import expected_checks, load_secret
    from bn_grader.runner import check, check_seed

    source = _source_copy_with(tmp_path, UNBIASED)
    _, grading = execute_like_grading(source / "bn_numpy.ipynb", source)
    config = load_nbgrader_config()
    secret = load_secret(config.SandboxedExecute.secret_file)
    namespace = namespace_from_notebook(source / "bn_numpy.ipynb")
    direct = {
        grade_id: check(check_id, namespace, seed=check_seed(secret, "validate/bn_numpy", check_id))
        for grade_id, check_id in expected_checks(ASSIGNMENT_SOURCE / "bn_numpy.ipynb").items()
    }
    graded = {grade_id: entry["score"] for grade_id, entry in grading["ledger"].items()}
    assert graded == direct
    points = auto_points("bn_numpy")
    assert any(0 < graded[cell] < points[cell] for cell in graded)  # partial credit is there


def test_make_validate_exits_with_an_error_when_a_cell_fails(monkeypatch):
    monkeypatch.setattr(
        "coursekit.validate.validate_solutions",
        lambda progress=None: {"bn_numpy.ipynb": ["test_forward_train: 1.5 / 3 points"]},
    )
    with pytest.raises(KitError, match="do not earn full marks"):
        cli.cmd_validate(None)


# ------------------------------------------------------- nbgrader's Validator on the release
def _student_folder(tmp_path, notebooks):
    """The release folder with the given {name: notebook} written over its notebooks."""
    folder = tmp_path / "student"
    shutil.copytree(RELEASE_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name, notebook in notebooks.items():
        nbformat.write(notebook, folder / name)
    return folder


def _validate(path):
    validator = Validator(config=load_nbgrader_config())
    return validator.validate(str(path))


def _grade_id_of(failed, notebook):
    """grade_ids of the failed cells of a Validator result (matched by source)."""
    sources = {
        cell.source.strip(): cell.metadata["nbgrader"]["grade_id"]
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    }
    return {sources[item["source"]] for item in failed}


@pytest.mark.parametrize("name", ["bn_numpy.ipynb", "bn_keras.ipynb"])
def test_validate_fails_every_auto_graded_cell_of_the_untouched_release(tmp_path, name):
    folder = _student_folder(tmp_path, {})
    result = _validate(folder / name)
    release = nbformat.read(folder / name, as_version=4)
    failed = _grade_id_of(result.get("failed", []), release)
    assert set(auto_points(name[:-6])) <= failed  # (unanswered written answers fail too)
    # What Validate shows a student: the public check's own words, not a traceback.
    errors = " ".join(item["error"] for item in result["failed"])
    assert "public checks of" in errors and "Traceback" not in errors


@pytest.mark.parametrize("name", ["bn_numpy.ipynb", "bn_keras.ipynb"])
def test_validate_passes_a_correct_notebook(tmp_path, name):
    folder = _student_folder(tmp_path, {name: reference_notebook(name)})
    result = _validate(folder / name)
    assert "failed" not in result, [item["error"][:300] for item in result.get("failed", [])]


def test_validate_fails_a_notebook_that_fails_a_public_check(tmp_path):
    notebook = apply_edits(reference_notebook("bn_numpy.ipynb"), UNBIASED.edits, UNBIASED.name)
    folder = _student_folder(tmp_path, {"bn_numpy.ipynb": notebook})
    result = _validate(folder / "bn_numpy.ipynb")
    failed = _grade_id_of(result.get("failed", []), notebook)
    # Validate works per function: every grade cell of batchnorm_forward (and of the backward
    # passes checked through it) fails; the layer-norm cells, which do not use it, pass.
    assert {"test_forward_train", "test_forward_running"} <= failed, failed
    assert not failed & {"test_layernorm_forward", "test_layernorm_backward"}, failed
