"""bnkit.nbimport: load a student's NumPy functions from their notebook, robustly."""

import json

import numpy as np
import pytest
from test_checks_keras import KIT

from bn_grader import reference
from bnkit.keras_helpers import compare_with_numpy
from bnkit.nbimport import MissingFunction, load_functions

NUMPY_SOLUTION = KIT / "solutions" / "batchnorm" / "bn_numpy.ipynb"
NUMPY_RELEASE = KIT / "assignments" / "batchnorm" / "bn_numpy.ipynb"
NAMES = ["batchnorm_forward", "batchnorm_backward", "spatial_batchnorm_forward"]


def code_cell(source, grade_id=None, solution=False):
    metadata = {}
    if grade_id:
        metadata["nbgrader"] = {"grade_id": grade_id, "solution": solution, "grade": False}
    return {
        "cell_type": "code",
        "metadata": metadata,
        "source": source,
        "outputs": [],
        "execution_count": None,
    }


def write_notebook(path, cells):
    path.write_text(
        json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    return path


def test_loads_the_solution_functions_and_they_match_the_reference():
    functions = load_functions(NUMPY_SOLUTION, NAMES)
    assert all(functions.available(name) for name in NAMES), functions.summary()
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(6, 3))
    gamma, beta = rng.normal(1.0, 0.5, 3), rng.normal(0.0, 0.5, 3)
    bn_param = {
        "mode": "train",
        "eps": 1e-5,
        "momentum": 0.9,
        "running_mean": np.zeros(3),
        "running_var": np.ones(3),
    }
    out, _ = functions.batchnorm_forward(x, gamma, beta, dict(bn_param))
    expected = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) + beta
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    ref_out, _, _, _ = reference.batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-12)


def test_unfinished_release_functions_are_skipped_in_comparisons(capsys):
    functions = load_functions(NUMPY_RELEASE, NAMES)
    # Defined, but only the release's stub: not reported as "loaded".
    assert not functions.available("batchnorm_forward")
    assert "batchnorm_forward: not available (not implemented yet" in functions.summary()
    assert "loaded" not in functions.summary()
    with pytest.raises(MissingFunction, match="not implemented yet"):
        functions.batchnorm_forward(np.zeros((2, 2)), np.ones(2), np.zeros(2), {})
    result = compare_with_numpy(
        "forward",
        {"out": np.zeros((2, 2))},
        lambda: {
            "out": functions.batchnorm_forward(np.zeros((2, 2)), np.ones(2), np.zeros(2), {})[0]
        },
    )
    assert result is None
    assert "forward: skipped" in capsys.readouterr().out


def test_missing_notebook_gives_stand_ins(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BNKIT_CHECKER_SOCKET", raising=False)
    functions = load_functions(tmp_path / "nowhere.ipynb", ["batchnorm_forward"])
    assert not functions.available("batchnorm_forward")
    with pytest.raises(MissingFunction, match="nowhere.ipynb is not in this folder"):
        functions.batchnorm_forward()
    assert (
        compare_with_numpy(
            "x", {"out": np.zeros(1)}, lambda: {"out": functions.batchnorm_forward()}
        )
        is None
    )
    assert "skipped" in capsys.readouterr().out


def test_only_setup_and_definitions_run(tmp_path):
    marker = tmp_path / "ran.txt"
    path = write_notebook(
        tmp_path / "student.ipynb",
        [
            code_cell("import numpy as np\nSCALE = 2.0", grade_id="setup"),
            code_cell(
                "def double(x):\n    return SCALE * np.asarray(x)\n\n"
                f"open({str(marker)!r}, 'w').write('top-level code ran')\nraise RuntimeError('boom')",
                grade_id="double",
                solution=True,
            ),
            code_cell("def broken(:\n    pass", grade_id="broken", solution=True),
            code_cell("def hidden():\n    return 1", grade_id="not_a_solution"),
            code_cell("def triple(x):\n    return 3 * x", grade_id="triple", solution=True),
        ],
    )
    functions = load_functions(path, ["double", "triple", "broken", "hidden"])
    np.testing.assert_array_equal(functions.double([1.0, 2.0]), [2.0, 4.0])
    assert functions.triple(2) == 6
    assert not marker.exists()
    assert not functions.available("broken") and not functions.available("hidden")
    assert any("syntax error" in problem for problem in functions.problems)
    summary = functions.summary()
    assert "double: loaded" in summary and "hidden: not available" in summary


def test_compare_reports_the_largest_difference(capsys):
    differences = compare_with_numpy(
        "demo", {"out": np.array([1.0, 2.0])}, lambda: {"out": np.array([1.0, 2.5])}
    )
    assert differences == {"out": 0.5}
    assert "largest |Keras - NumPy| = 5.00e-01" in capsys.readouterr().out


def test_missing_notebook_while_graded_says_it_was_not_submitted(tmp_path, monkeypatch):
    monkeypatch.setenv("BNKIT_CHECKER_SOCKET", str(tmp_path / "checker.sock"))
    functions = load_functions(tmp_path / "bn_numpy.ipynb", ["batchnorm_forward"])
    assert "bn_numpy.ipynb was not submitted" in functions.summary()
    assert "could not read" not in functions.summary()


def test_a_function_that_only_raises_after_real_code_is_not_a_stub(tmp_path):
    path = write_notebook(
        tmp_path / "student.ipynb",
        [
            code_cell(
                'def half(x):\n    """Half."""\n    raise NotImplementedError("half")',
                grade_id="half",
                solution=True,
            ),
            code_cell(
                "def done(x):\n    return x\n    raise NotImplementedError('done')",
                grade_id="done",
                solution=True,
            ),
        ],
    )
    functions = load_functions(path, ["half", "done"])
    assert not functions.available("half") and functions.available("done")
