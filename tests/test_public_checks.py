"""The students' public checks catch what they are meant to catch, not only stay quiet.

Every catalogued mistake sample is run through the public checks of the function it edits: the
suite must report a problem (a check loosened until it passes everything fails here). The
solutions pass every suite; the grade cells' ``confirm`` never raises and writes to stderr only
under nbgrader's Validate.
"""

import contextlib
import io
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from bn_grader.samples_keras import SAMPLES as KERAS_SAMPLES
from bn_grader.samples_numpy import SAMPLES as NUMPY_SAMPLES
from bnkit import public_checks
from conftest import ASSIGNMENT_SOURCE
from nbcode import KERAS_FUNCTION_CELLS, namespace_from_notebook, solution_sources

NUMPY = ASSIGNMENT_SOURCE / "bn_numpy.ipynb"
KERAS = ASSIGNMENT_SOURCE / "bn_keras.ipynb"
KERAS_CELLS = set(KERAS_FUNCTION_CELLS)
# The suite that guards each edited function.
SUITE_OF = {
    "batchnorm_forward": "batchnorm_forward",
    "batchnorm_backward": "batchnorm_backward",
    "batchnorm_backward_alt": "batchnorm_backward_alt",
    "spatial_batchnorm_forward": "spatial",
    "spatial_batchnorm_backward": "spatial",
    "layernorm_forward": "layernorm",
    "layernorm_backward": "layernorm",
    "choose_device": "choose_device",
    "make_keras_bn": "make_keras_bn",
    "keras_bn_forward": "keras_bn_forward",
    "keras_bn_backward": "keras_bn_backward",
    "used_batch_statistics": "used_batch_statistics",
    "mode_answers": "mode_answers",
    "build_mlp": "build_mlp",
    "build_cnn": "build_cnn",
    "backward_pieces": "backward_pieces",
    "groupnorm_forward": "groupnorm",
    "groupnorm_backward": "groupnorm",
    "keras_groupnorm_forward": "keras_norms",
    "keras_layernorm_forward": "keras_norms",
    "keras_groupnorm_backward": "keras_norm_gradients",
}
# Mistakes no public check may catch, and why.
NOT_PUBLIC = {
    # A wrong prediction: the public check only says every entry is filled in, or it would
    # give the answers away.
    "keras-mode-layer-call": "MODE_ANSWERS right or wrong is for the grader only",
}


# Mistakes the edited function's own suite cannot see; another suite of its cells does.
OTHER_SUITE = {
    "keras-axis-nhwc": "make_keras_bn's check builds a 2-D layer; the NHWC check catches it",
}


def _confirmed_suites(path):
    """{grade cell id: public-check suite its visible part runs} of a source notebook."""
    suites = {}
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            found = re.findall(r'public_checks\.confirm\("([a-z_]+)"\)', cell.source)
            suites[meta["grade_id"]] = found[0] if found else None
    return suites


CELL_SUITES = {**_confirmed_suites(NUMPY), **_confirmed_suites(KERAS)}


def _assert_caught(sample, namespace):
    flagged = {
        suite
        for suite in {CELL_SUITES[cell] for cell in sample.affected_cells}
        | set(_suites_for(sample))
        if suite and public_checks.run_suite(suite, namespace)
    }
    # A grade cell it costs points on says so under Validate ...
    assert flagged & {CELL_SUITES[cell] for cell in sample.affected_cells}, sample.name
    # ... and so does the public check of the function the mistake is in.
    if sample.name not in OTHER_SUITE:
        assert set(_suites_for(sample)) <= flagged, sample.name


def _suites_for(sample):
    return sorted({SUITE_OF[grade_id] for grade_id, _, _ in sample.edits})


def _require_guarded(sample, notebook):
    """Every sample edits cells the notebook has, each guarded by a public suite."""
    cells = set(solution_sources(notebook))
    missing = sorted({grade_id for grade_id, _, _ in sample.edits} - cells)
    assert not missing, f"{sample.name} edits cells {missing} that {notebook.name} does not have"
    unguarded = sorted({grade_id for grade_id, _, _ in sample.edits} - set(SUITE_OF))
    # A new solution cell with mistake samples needs its public suite named here: failing
    # (not skipping) keeps a cell from going unchecked without anyone noticing.
    assert not unguarded, f"{sample.name}: add the public suite of {unguarded} to SUITE_OF"


@pytest.fixture(scope="module")
def keras_solution():
    return namespace_from_notebook(KERAS, cell_ids=KERAS_CELLS)


@pytest.mark.parametrize("sample", NUMPY_SAMPLES, ids=lambda sample: sample.name)
def test_every_numpy_mistake_is_caught_by_the_public_checks_of_its_function(sample):
    _require_guarded(sample, NUMPY)
    _assert_caught(sample, namespace_from_notebook(NUMPY, edits=sample.edits))


@pytest.mark.parametrize("sample", KERAS_SAMPLES, ids=lambda sample: sample.name)
def test_every_keras_mistake_is_caught_by_the_public_checks_of_its_function(sample):
    _require_guarded(sample, KERAS)
    namespace = namespace_from_notebook(KERAS, cell_ids=KERAS_CELLS, edits=sample.edits)
    if sample.name in NOT_PUBLIC:
        assert all(grade_id == "mode_answers" for grade_id, _, _ in sample.edits)
        assert public_checks.run_suite("mode_answers", namespace) == []
    else:
        _assert_caught(sample, namespace)


NUMPY_SUITES = {
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "spatial",
    "layernorm",
    "backward_pieces",
    "groupnorm",
}


def test_the_solutions_pass_every_suite(keras_solution):
    numpy_solution = namespace_from_notebook(NUMPY)
    keras_solution = dict(keras_solution)
    keras_solution["HISTORIES"] = {
        run: {"val_accuracy": [0.5]} for run in public_checks.EXPERIMENT_RUNS
    }
    for suite in public_checks.SUITES:
        namespace = numpy_solution if suite in NUMPY_SUITES else keras_solution
        assert public_checks.run_suite(suite, namespace) == [], suite


def test_every_suite_is_used_by_a_grade_cell():
    assert set(CELL_SUITES.values()) == set(public_checks.SUITES)


# ------------------------------------------------------------- the gradient threshold
def test_a_gradient_off_by_one_part_in_a_million_fails(capsys):
    namespace = namespace_from_notebook(NUMPY)

    def slightly_off(dout, cache):
        dx, dgamma, dbeta = namespace["batchnorm_backward"](dout, cache)
        return dx * (1 + 1e-6), dgamma, dbeta

    assert not public_checks.check_batchnorm_backward(namespace["batchnorm_forward"], slightly_off)
    out = capsys.readouterr().out
    assert "[problem] slightly_off: dx does not match the numerical gradient" in out
    assert "expected below 1e-07" in out


def test_the_text_states_the_threshold_the_check_uses():
    assert public_checks.GRADIENT_TOLERANCE == 1e-7
    text = NUMPY.read_text()
    assert "below $10^{-7}$" in text and "1e-6" not in text


def test_passing_gradients_do_not_read_as_failures(capsys):
    namespace = namespace_from_notebook(NUMPY)
    public_checks.check_batchnorm_backward(
        namespace["batchnorm_forward"], namespace["batchnorm_backward"]
    )
    for line in capsys.readouterr().out.splitlines():
        assert line.startswith("[ok]"), line


def test_layernorm_backward_with_part_c_form_is_named():
    namespace = namespace_from_notebook(NUMPY)

    def part_c_swapped(dout, cache):
        x_hat, std, gamma = cache
        d = x_hat.shape[1]
        dx = (
            gamma
            * (
                d * dout
                - dout.sum(axis=1, keepdims=True)
                - x_hat * (dout * x_hat).sum(axis=1, keepdims=True)
            )
            / (d * std)
        )
        return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)

    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert not public_checks.check_layernorm(namespace["layernorm_forward"], part_c_swapped)
    assert "gamma varies along the normalised axis" in output.getvalue()


# ------------------------------------------------------------------------- confirm()
def _confirm_in(namespace_globals, suite):
    exec("result = public_checks.confirm(suite)", namespace_globals, namespace_globals)
    return namespace_globals["result"]


def _stub(*args, **kwargs):
    raise NotImplementedError("batchnorm_forward")


@pytest.mark.parametrize(
    "validating, graded, stderr_expected",
    [("", "", False), ("1", "", True), ("1", "/tmp/checker.sock", False), ("", "/x", False)],
)
def test_confirm_writes_stderr_only_under_validate(
    monkeypatch, capsys, validating, graded, stderr_expected
):
    monkeypatch.setenv("NBGRADER_VALIDATING", validating)
    monkeypatch.setenv("BNKIT_CHECKER_SOCKET", graded)
    namespace = {"public_checks": public_checks, "batchnorm_forward": _stub, "suite": None}
    assert _confirm_in(dict(namespace, suite="batchnorm_forward"), "batchnorm_forward") is None
    captured = capsys.readouterr()
    assert "Public checks of batchnorm_forward: 1 problem(s)" in captured.out
    # When graded, the hidden tests' lines follow: the public problems are only counted.
    assert ("still raises NotImplementedError" in captured.out) is (not graded)
    assert bool(captured.err) is stderr_expected


def test_confirm_passes_quietly_on_the_solution(monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_VALIDATING", "1")
    monkeypatch.delenv("BNKIT_CHECKER_SOCKET", raising=False)
    namespace = namespace_from_notebook(NUMPY)
    namespace.update(public_checks=public_checks, suite="layernorm")
    assert _confirm_in(namespace, "layernorm") is None
    captured = capsys.readouterr()
    assert captured.out.startswith(
        "Public checks of layernorm_forward and layernorm_backward: all passed."
    )
    assert captured.err == ""


def test_confirm_survives_an_undefined_function(capsys):
    namespace = {"public_checks": public_checks, "suite": "batchnorm_backward"}
    assert _confirm_in(namespace, "batchnorm_backward") is None
    assert "batchnorm_forward is not defined" in capsys.readouterr().out


def test_confirm_survives_a_function_that_exits(capsys):
    def exits(*args):
        raise SystemExit(3)

    namespace = {"public_checks": public_checks, "suite": "layernorm"}
    namespace.update(layernorm_forward=exits, layernorm_backward=exits)
    assert _confirm_in(namespace, "layernorm") is None
    assert "problem" in capsys.readouterr().out


def test_untouched_release_functions_fail_every_numpy_suite():
    release = Path(ASSIGNMENT_SOURCE).parents[1] / "assignments" / "batchnorm" / "bn_numpy.ipynb"
    namespace = {"np": np}
    for cell in nbformat.read(release, as_version=4).cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            exec(cell.source, namespace)
    for suite in ("batchnorm_forward", "batchnorm_backward", "spatial", "layernorm"):
        problems = public_checks.run_suite(suite, namespace)
        assert any("NotImplementedError" in line for line in problems), suite
