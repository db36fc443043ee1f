"""The committed release is exactly what nbgrader makes from solutions/, and holds no answers."""

import json
import re

import nbformat
import pytest

from conftest import ASSIGNMENT_SOURCE, GRADER_DIR, KIT_ROOT
from coursekit.release import release_differences

RELEASE = KIT_ROOT / "assignments" / "batchnorm"
# Text that only the nbgrader source contains: solution and hidden-test markers.
SOURCE_ONLY_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def release_text():
    return {path: path.read_text(errors="replace") for path in RELEASE.rglob("*") if path.is_file()}


def test_release_is_in_sync_with_solutions(isolated_runtime):
    assert release_differences() == []


def test_release_has_both_notebooks_and_the_helpers():
    assert (RELEASE / "bn_numpy.ipynb").is_file()
    assert (RELEASE / "bn_keras.ipynb").is_file()
    assert (RELEASE / "bnkit" / "__init__.py").is_file()


@pytest.mark.parametrize("marker", SOURCE_ONLY_MARKERS)
def test_release_has_no_solution_or_hidden_test_markers(marker):
    leaks = [str(path) for path, text in release_text().items() if marker in text]
    assert leaks == []


def _grading_modules():
    """Every module of the grading side, found on disk (a new module is covered at once)."""
    return {
        path.stem: path
        for package in ("bn_grader", "corpus", "coursekit")
        for path in (GRADER_DIR / package).glob("*.py")
        if path.stem != "__init__"
    }


def test_the_grading_module_list_is_derived_from_the_package():
    modules = _grading_modules()
    # Spot checks that the derivation found the package, including the modules a hand-written
    # list once missed.
    assert {"cases", "reference", "checks_numpy", "mistakes", "executor", "ledger"} <= set(modules)


def _public_notebook_text(path):
    """A source notebook's text outside its solution and hidden-test regions (signatures...)."""
    text = "".join(cell.source + "\n" for cell in nbformat.read(path, as_version=4).cells)
    return re.sub(r"### BEGIN (SOLUTION|HIDDEN TESTS).*?### END \1", "", text, flags=re.S)


def test_release_never_calls_or_ships_the_grader():
    grader_modules = _grading_modules()
    for path, text in release_text().items():
        assert "bn_grader" not in text, path
        assert "coursekit" not in text, path
    shipped = {path.stem for path in RELEASE.rglob("*.py")} - {"__init__"}
    assert shipped & set(grader_modules) == set()


def test_release_holds_no_line_of_grader_code():
    # Under another file name too: distinctive lines of the grading side that the student-side
    # package does not share.
    student_side = "".join(
        path.read_text() for path in (ASSIGNMENT_SOURCE / "bnkit").glob("*.py")
    ) + "".join(_public_notebook_text(path) for path in ASSIGNMENT_SOURCE.glob("*.ipynb"))
    released = "".join(release_text().values())
    for name, path in _grading_modules().items():
        lines = {
            line.strip()
            for line in path.read_text().splitlines()
            if len(line.strip()) > 40 and line.strip() not in student_side
        }
        assert [line for line in lines if line in released] == [], name


def test_release_notebooks_have_no_outputs_or_execution_counts():
    for name in ("bn_numpy.ipynb", "bn_keras.ipynb"):
        for source in (RELEASE / name, ASSIGNMENT_SOURCE / name):
            notebook = json.loads(source.read_text())
            for cell in notebook["cells"]:
                if cell["cell_type"] == "code":
                    assert cell["outputs"] == [], f"{source}: outputs committed"
                    assert cell["execution_count"] is None, f"{source}: execution count committed"


def test_solution_reference_functions_are_not_in_the_release():
    # The reference code of a solution cell (a line only the solution has) is not released.
    notebook = json.loads((ASSIGNMENT_SOURCE / "bn_numpy.ipynb").read_text())
    solution_lines = set()
    for cell in notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            source = "".join(cell["source"])
            inside = source.split("### BEGIN SOLUTION", 1)[-1].split("### END SOLUTION", 1)[0]
            solution_lines |= {
                line.strip() for line in inside.splitlines() if len(line.strip()) > 25
            }
    released = "".join(release_text()[RELEASE / "bn_numpy.ipynb"])
    assert solution_lines
    assert [line for line in solution_lines if line in released] == []
