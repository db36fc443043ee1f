"""Every catalogued mistake costs points on exactly its cells, and the feedback names it."""

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from bn_grader import check, mistakes
from bn_grader.registry import CHECKS
from bn_grader.runner import check_result
from bn_grader.samples_numpy import SAMPLES
from nbcode import namespace_from_notebook, solution_sources

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions" / "batchnorm" / "bn_numpy.ipynb"

# grade cell -> check id, as written in the notebook's grade cells (test_checks_numpy verifies it).
CELLS = {
    "test_forward_train": "bn_forward_train",
    "test_forward_running": "bn_forward_running",
    "test_forward_test": "bn_forward_test",
    "test_forward_properties": "bn_forward_properties",
    "test_backward_dx": "bn_backward_dx",
    "test_backward_dgamma_dbeta": "bn_backward_params",
    "test_backward_alt": "bn_backward_alt",
    "test_backward_pieces": "bn_backward_pieces",
    "test_spatial_forward": "spatial_forward",
    "test_spatial_backward": "spatial_backward",
    "test_layernorm_forward": "ln_forward",
    "test_layernorm_backward": "ln_backward",
    "test_groupnorm_forward": "gn_forward",
    "test_groupnorm_backward": "gn_backward",
}

# The mistakes the issue lists, by catalogue id: each must be in the catalogue with a sample.
ISSUE_MISTAKES = [
    "unbiased-variance",
    "pytorch-running-var",
    "momentum-swapped",
    "running-not-written-back",
    "test-uses-batch-stats",
    "test-updates-running",
    "eps-outside-sqrt",
    "gamma-beta-missing",
    "wrong-axis",
    "mutates-input",
    "backward-missing-mean-path",
    "backward-missing-var-path",
    "params-swapped",
    "params-wrong-axis",
    "wrong-shape",
    "nan-or-inf",
    "float32-promoted",
]


def grade(namespace):
    """{grade cell: (score, printed text, mistake ids its result names)} for every check.

    The ids come from the check's result (what the ledger records); the printed text is what
    the student reads, which names the cause in words only.
    """
    results = {}
    for cell, check_id in CELLS.items():
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            result = check_result(check_id, namespace)
        results[cell] = (result.score, buffer.getvalue(), set(result.mistakes))
    return results


def test_every_listed_mistake_has_a_sample():
    sampled = {sample.mistake_id for sample in SAMPLES}
    assert set(ISSUE_MISTAKES) <= set(mistakes.BY_ID)
    assert set(ISSUE_MISTAKES) <= sampled


def test_sample_names_are_unique_and_edits_apply_once():
    names = [sample.name for sample in SAMPLES]
    assert len(names) == len(set(names))
    sources = solution_sources(NOTEBOOK)
    for sample in SAMPLES:
        for grade_id, old, new in sample.edits:
            assert sources[grade_id].count(old) == 1, (sample.name, old)
            assert old != new
        assert set(sample.affected_cells) <= set(CELLS), sample.name


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.name)
def test_sample_loses_points_on_its_cells_only_and_is_named(sample):
    results = grade(namespace_from_notebook(NOTEBOOK, edits=sample.edits))
    lost = {cell for cell, (score, *_) in results.items() if score < CHECKS[CELLS[cell]].points}
    assert lost == set(sample.affected_cells)
    named = [cell for cell, (_, _, ids) in results.items() if sample.mistake_id in ids]
    assert named, f"no cell named {sample.mistake_id}"
    assert set(named) <= lost
    cause = mistakes.cause(sample.mistake_id)
    assert all(cause in results[cell][1] for cell in named), sample.name
    assert not any(sample.mistake_id in text for _, text, _ in results.values()), sample.name


@pytest.mark.parametrize(
    "mistake_id", ["unbiased-variance", "eps-outside-sqrt", "momentum-swapped"]
)
def test_feedback_names_the_mistake_in_every_affected_cell(mistake_id):
    sample = next(sample for sample in SAMPLES if sample.mistake_id == mistake_id)
    results = grade(namespace_from_notebook(NOTEBOOK, edits=sample.edits))
    for cell in sample.affected_cells:
        assert mistake_id in results[cell][2], cell
        assert f"Likely mistake: {mistakes.cause(mistake_id)}" in results[cell][1], cell


def test_variants_differ_from_the_reference():
    """Each value-changing variant really changes the result on a typical input."""
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 0.1, size=(6, 4))
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    param = {
        "mode": "train",
        "eps": 1e-3,
        "momentum": 0.9,
        "running_mean": np.full(4, 3.0),
        "running_var": np.full(4, 0.02),
    }
    for mistake in mistakes.MISTAKES:
        if mistake.bn is None:
            continue
        differs = []
        for mode in ("train", "test"):
            right = mistakes.bn_forward_variant(x, gamma, beta, param | {"mode": mode})
            wrong = mistakes.bn_forward_variant(
                x, gamma, beta, param | {"mode": mode}, **mistake.bn
            )
            differs += [
                (mode, key)
                for key in ("out", "running_mean", "running_var")
                if wrong[key] is None
                or not np.allclose(wrong[key], right[key], rtol=1e-6, atol=1e-9)
            ]
        assert differs, mistake.mistake_id


def test_diagnose_structural_mistakes():
    ref = np.arange(4.0)
    assert mistakes.structural(ref.reshape(1, 4), ref, "running_mean") == "wrong-shape"
    assert mistakes.structural(np.zeros(6), ref, "dgamma") == "params-wrong-axis"
    assert mistakes.structural(np.array([0.0, np.nan, 1.0, 2.0]), ref, "out") == "nan-or-inf"
    assert (
        mistakes.structural(ref, ref.astype(np.float32), "out", expect_dtype=np.float32)
        == "float32-promoted"
    )
    assert mistakes.structural(ref, ref, "out") is None


# ---------------------------------------------------------------- Part C: the derivation's pieces
PIECES_MISTAKES = [
    "pieces-gamma-missing",
    "pieces-dvar-mean-not-sum",
    "pieces-dvar-exponent",
    "pieces-dmean-sign",
    "pieces-dmean-var-path",
]


def _numerical_pieces(x, gamma, dout, eps, h=1e-6):
    """dL/dvar and dL/dmean by central differences of L = sum(dout * gamma * x_hat), where
    x_hat depends on the variance through sqrt(var + eps) and on the mean through x - mean and
    through the variance (var = mean((x - mean) ** 2))."""
    mean, var = x.mean(axis=0), x.var(axis=0)

    def loss_of_var(v):
        return (dout * gamma * (x - mean) / np.sqrt(v + eps)).sum()

    def loss_of_mean(m):
        return (dout * gamma * (x - m) / np.sqrt(((x - m) ** 2).mean(axis=0) + eps)).sum()

    def derivative(f, at):
        grad = np.zeros_like(at)
        for j in range(at.size):
            step = np.zeros_like(at)
            step[j] = h
            grad[j] = (f(at + step) - f(at - step)) / (2 * h)
        return grad

    return derivative(loss_of_var, var), derivative(loss_of_mean, mean)


def test_pieces_variant_is_right_without_switches_and_each_switch_changes_a_piece():
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 1.5, size=(7, 3))
    gamma, dout, eps = rng.normal(1.0, 0.5, 3), rng.normal(size=(7, 3)), 1e-3
    right = mistakes.pieces_variant(x, gamma, dout, eps)
    dvar, dmean = _numerical_pieces(x, gamma, dout, eps)
    assert np.allclose(right["dx_hat"], dout * gamma)
    assert np.allclose(right["dvar"], dvar, rtol=1e-6, atol=1e-8)
    assert np.allclose(right["dmean"], dmean, rtol=1e-6, atol=1e-8)
    catalogued = [mistake for mistake in mistakes.MISTAKES if mistake.pieces is not None]
    assert {mistake.mistake_id for mistake in catalogued} == set(PIECES_MISTAKES)
    for mistake in catalogued:
        wrong = mistakes.pieces_variant(x, gamma, dout, eps, **mistake.pieces)
        changed = [k for k in right if not np.allclose(wrong[k], right[k], rtol=1e-6, atol=1e-9)]
        assert changed, mistake.mistake_id


_DVAR = "dvar = -0.5 * (dx_hat * x_centered).sum(axis=0) / std**3"
_DMEAN = "dmean = -dx_hat.sum(axis=0) / std + dvar * (-2.0 * x_centered.mean(axis=0))"
# The two pieces mistakes without a sample submission (each sample costs a graded submission in
# `make demo`), made here by the same kind of edit of the solution.
PIECES_EDITS = {
    "pieces-dvar-mean-not-sum": [
        ("backward_pieces", _DVAR, _DVAR.replace(".sum(axis=0)", ".mean(axis=0)"))
    ],
    "pieces-dmean-var-path": [
        ("backward_pieces", _DMEAN, _DMEAN.replace("x_centered.mean", "x.mean"))
    ],
}


def _pieces_edits(mistake_id):
    sample = next((sample for sample in SAMPLES if sample.mistake_id == mistake_id), None)
    return sample.edits if sample else PIECES_EDITS[mistake_id]


def test_pieces_samples_cost_points_on_the_pieces_cell_only():
    sampled = {
        sample.mistake_id: sample for sample in SAMPLES if sample.mistake_id in PIECES_MISTAKES
    }
    assert set(sampled) == set(PIECES_MISTAKES) - set(PIECES_EDITS)
    for mistake_id, sample in sampled.items():
        assert sample.affected_cells == {"test_backward_pieces"}, mistake_id


@pytest.mark.parametrize("mistake_id", PIECES_MISTAKES)
def test_pieces_mistake_names_its_cause_and_no_other(mistake_id):
    namespace = namespace_from_notebook(NOTEBOOK, edits=_pieces_edits(mistake_id))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        score = check("bn_backward_pieces", namespace)
    text = buffer.getvalue()
    assert score < 1
    named = {other for other in mistakes.BY_ID if mistakes.cause(other) in text}
    assert named == {mistake_id}, text


def test_pieces_with_an_unknown_mistake_name_nothing():
    """A wrong piece no variant reproduces gets the plain comparison and the formula."""
    edit = ("backward_pieces", "dx_hat = dout * gamma", "dx_hat = dout * gamma * 1.5")
    namespace = namespace_from_notebook(NOTEBOOK, edits=[edit])
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        score = check("bn_backward_pieces", namespace)
    text = buffer.getvalue()
    assert score == 0
    assert not {other for other in mistakes.BY_ID if mistakes.cause(other) in text}, text
    assert "Expected dL/dx_hat is g = gamma * dout" in text
