"""The committed release is exactly what nbgrader makes from solutions/, and holds no answers."""

import json

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


def test_release_never_calls_or_ships_the_grader():
    grader_modules = {path.stem for path in (GRADER_DIR / "bn_grader").glob("*.py")}
    for path, text in release_text().items():
        assert "bn_grader" not in text, path
        assert "coursekit" not in text, path
    shipped = {path.stem for path in RELEASE.rglob("*.py")}
    assert not shipped & {"reference", "checks_numpy", "checks_keras", "mistakes", "guard"}
    assert grader_modules  # the comparison above compared against something


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
