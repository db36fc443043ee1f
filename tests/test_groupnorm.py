"""Group normalization (bn_numpy Part G, bn_keras Parts H and I): the float64 reference against
Keras (outputs and tape gradients) and the numerical gradient, its special cases, the hidden
checks on the solution, the release, other correct implementations, the catalogued mistakes
(NumPy and tape) and the batch-size sweep's helper."""

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import pytest

import bn_grader.checks_groupnorm  # noqa: F401  registers the checks
from bn_grader import check, mistakes, reference
from bn_grader import mistakes_keras as mk
from bn_grader.registry import CHECKS
from bn_grader.samples_keras import SAMPLES as KERAS_SAMPLES
from bn_grader.samples_numpy import SAMPLES
from nbcode import namespace_from_notebook

ROOT = Path(__file__).resolve().parents[1]
NUMPY_SOLUTION = ROOT / "solutions" / "batchnorm" / "bn_numpy.ipynb"
NUMPY_RELEASE = ROOT / "assignments" / "batchnorm" / "bn_numpy.ipynb"
KERAS_SOLUTION = ROOT / "solutions" / "batchnorm" / "bn_keras.ipynb"
KERAS_RELEASE = ROOT / "assignments" / "batchnorm" / "bn_keras.ipynb"
GN_CHECKS = ("gn_forward", "gn_backward")
GN_CELLS = {"test_groupnorm_forward": "gn_forward", "test_groupnorm_backward": "gn_backward"}
GN_MISTAKES = [
    "gn-stats-over-batch",
    "gn-wrong-grouping",
    "gn-channels-first-reshape",
    "gn-gamma-per-group",
    "gn-groups-unchecked",
]


def run_check(check_id, namespace):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        score = check(check_id, namespace)
    return score, out.getvalue(), err.getvalue()


def numerical_dx(x, gamma, beta, groups, dout, h=1e-6):
    def loss(values):
        return (
            reference.groupnorm_forward(values, gamma, beta, groups, {"eps": 1e-5})[0] * dout
        ).sum()

    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = h
        grad[index] = (loss(x + step) - loss(x - step)) / (2 * h)
    return grad


# ------------------------------------------------------------------ the reference
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_reference_backward_matches_the_numerical_gradient(groups):
    rng = np.random.default_rng(groups)
    x = rng.normal(1.0, 2.0, size=(2, 2, 3, 4)) + np.arange(4.0)
    gamma, beta, dout = rng.normal(size=4), rng.normal(size=4), rng.normal(size=x.shape)
    _, cache = reference.groupnorm_forward(x, gamma, beta, groups, {"eps": 1e-5})
    dx, dgamma, dbeta = reference.groupnorm_backward(dout, cache)
    assert np.abs(dx - numerical_dx(x, gamma, beta, groups, dout)).max() < 1e-7
    x_hat = reference.groupnorm_forward(x, np.ones(4), np.zeros(4), groups, {"eps": 1e-5})[0]
    assert np.allclose(dgamma, (dout * x_hat).sum(axis=(0, 1, 2)))
    assert np.allclose(dbeta, dout.sum(axis=(0, 1, 2)))


def test_special_cases_are_layer_norm_and_instance_norm():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(3, 4, 2, 6))
    n, h, w, c = x.shape
    ones, zeros = np.ones(c), np.zeros(c)
    g1, _ = reference.groupnorm_forward(x, ones, zeros, 1, {"eps": 1e-5})
    flat = x.reshape(n, -1)
    ln, _ = reference.layernorm_forward(
        flat, np.ones(flat.shape[1]), np.zeros(flat.shape[1]), {"eps": 1e-5}
    )
    assert np.abs(g1 - ln.reshape(x.shape)).max() < 1e-12
    gc, _ = reference.groupnorm_forward(x, ones, zeros, c, {"eps": 1e-5})
    per_channel = x.transpose(0, 3, 1, 2).reshape(n * c, h * w)
    inst, _ = reference.layernorm_forward(
        per_channel, np.ones(h * w), np.zeros(h * w), {"eps": 1e-5}
    )
    assert np.abs(gc - inst.reshape(n, c, h, w).transpose(0, 2, 3, 1)).max() < 1e-12
    with pytest.raises(ValueError, match="C=6.*G=4"):
        reference.groupnorm_forward(x, ones, zeros, 4, {"eps": 1e-5})


def test_reference_equals_keras_group_normalization_in_float64():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    rng = np.random.default_rng(3)
    x = rng.normal(0.5, 0.2, size=(2, 3, 4, 6)) + np.arange(6.0)
    gamma, beta = rng.normal(1.0, 0.5, 6), rng.normal(0.0, 1.0, 6)
    for groups in (1, 2, 3, 6):
        layer = keras.layers.GroupNormalization(groups=groups, epsilon=1e-5, dtype="float64")
        layer.build(x.shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        ref, _ = reference.groupnorm_forward(x, gamma, beta, groups, {"eps": 1e-5})
        for training in (False, True):
            assert np.abs(np.asarray(layer(x, training=training)) - ref).max() < 1e-12
    assert keras.layers.GroupNormalization().epsilon == 1e-3  # the default the notebook states
    assert keras.layers.LayerNormalization().epsilon == 1e-3


# ------------------------------------------------------------------ bn_numpy Part G
@pytest.fixture(scope="module")
def solution_namespace():
    return namespace_from_notebook(NUMPY_SOLUTION)


@pytest.mark.parametrize("check_id", GN_CHECKS)
def test_solution_gets_full_marks_quietly(solution_namespace, check_id):
    score, out, err = run_check(check_id, solution_namespace)
    assert score == CHECKS[check_id].points == 2, out
    assert "[FAIL]" not in out and err == ""


@pytest.mark.parametrize("check_id", GN_CHECKS)
def test_untouched_release_gets_zero(check_id):
    score, out, err = run_check(check_id, namespace_from_notebook(NUMPY_RELEASE))
    assert score == 0.0
    assert "not implemented yet" in out and "could not finish" not in out and err == ""


CHANNELS_FIRST_RIGHT = '''
def groupnorm_forward(x, gamma, beta, G, gn_param):
    """The NCHW recipe done right: move channels first, then reshape (N, G, -1)."""
    n, h, w, c = x.shape
    if c % G:
        raise ValueError(f"{c} channels (C) are not divisible into {G} groups (G)")
    nchw = np.moveaxis(x, -1, 1)
    grouped = nchw.reshape(n, G, -1)
    mu = grouped.mean(axis=2, keepdims=True)
    inv = 1.0 / np.sqrt(((grouped - mu) ** 2).mean(axis=2, keepdims=True) + gn_param["eps"])
    xhat = np.moveaxis(((grouped - mu) * inv).reshape(n, c, h, w), 1, -1)
    return xhat * gamma + beta, {"xhat": xhat, "inv": inv, "gamma": gamma, "G": G}


def groupnorm_backward(dout, cache):
    xhat, inv, gamma, G = cache["xhat"], cache["inv"], cache["gamma"], cache["G"]
    n, h, w, c = dout.shape
    g = np.moveaxis(dout * gamma, -1, 1).reshape(n, G, -1)
    xh = np.moveaxis(xhat, -1, 1).reshape(n, G, -1)
    dx = inv * (g - g.mean(axis=2, keepdims=True) - xh * (g * xh).mean(axis=2, keepdims=True))
    dx = np.moveaxis(dx.reshape(n, c, h, w), 1, -1)
    return dx, np.einsum("nhwc,nhwc->c", dout, xhat), dout.sum(axis=(0, 1, 2))
'''


def test_another_correct_implementation_gets_full_marks():
    namespace = namespace_from_notebook(
        NUMPY_SOLUTION,
        replace={"groupnorm_forward": CHANNELS_FIRST_RIGHT, "groupnorm_backward": ""},
    )
    for check_id in GN_CHECKS:
        score, out, _ = run_check(check_id, namespace)
        assert score == CHECKS[check_id].points, out


def test_every_group_norm_mistake_is_catalogued_with_a_sample():
    assert set(GN_MISTAKES) <= set(mistakes.BY_ID)
    assert set(GN_MISTAKES) <= {sample.mistake_id for sample in SAMPLES}


@pytest.mark.parametrize(
    "sample", [s for s in SAMPLES if s.mistake_id in GN_MISTAKES], ids=lambda s: s.name
)
def test_group_norm_sample_loses_points_on_its_cells_and_is_named(sample):
    namespace = namespace_from_notebook(NUMPY_SOLUTION, edits=sample.edits)
    lost, named = set(), set()
    for cell, check_id in GN_CELLS.items():
        score, out, err = run_check(check_id, namespace)
        assert err == "" and "could not finish" not in out
        if score < CHECKS[check_id].points:
            lost.add(cell)
        if mistakes.cause(sample.mistake_id) in out:
            named.add(cell)
    assert lost == set(sample.affected_cells)
    assert named and named <= lost


def test_grouping_variants_differ_from_the_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 6)) + np.arange(6.0) + rng.normal(size=(2, 1, 1, 1))
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    ref, _ = reference.groupnorm_forward(x, gamma, beta, 3, {"eps": 1e-5})
    right = mistakes.gn_forward_variant(x, gamma, beta, 3, {"eps": 1e-5})["out"]
    assert np.abs(right - ref).max() < 1e-12
    for grouping in ("batch", "strided", "swapped", "channels-first"):
        wrong = mistakes.gn_forward_variant(x, gamma, beta, 3, {"eps": 1e-5}, grouping=grouping)
        assert np.abs(wrong["out"] - ref).max() > 1e-3, grouping
    grads = mistakes.gn_backward_variant(x, gamma, 3, 1e-5, np.ones_like(x))
    _, cache = reference.groupnorm_forward(x, gamma, beta, 3, {"eps": 1e-5})
    for got, expected in zip(
        (grads["dx"], grads["dgamma"], grads["dbeta"]),
        reference.groupnorm_backward(np.ones_like(x), cache),
        strict=True,
    ):
        assert np.abs(got - expected).max() < 1e-10


def test_backward_mistakes_are_named():
    """A dx without the variance path is named with the catalogue's id."""
    edit = (
        "groupnorm_backward",
        "        - x_hat_groups * (g * x_hat_groups).sum(axis=(1, 2, 4), keepdims=True)\n",
        "",
    )
    namespace = namespace_from_notebook(NUMPY_SOLUTION, edits=[edit])
    score, out, _ = run_check("gn_backward", namespace)
    assert score < 2 and mistakes.cause("backward-missing-var-path") in out


def test_public_check_passes_on_the_solution_and_catches_a_mistake(solution_namespace, capsys):
    from bnkit import public_checks

    ns = solution_namespace
    assert public_checks.check_groupnorm(ns["groupnorm_forward"], ns["groupnorm_backward"])
    sample = next(s for s in SAMPLES if s.name == "np-gn-stats-over-batch")
    wrong = namespace_from_notebook(NUMPY_SOLUTION, edits=sample.edits)
    capsys.readouterr()
    assert not public_checks.check_groupnorm(
        wrong["groupnorm_forward"], wrong["groupnorm_backward"]
    )
    assert "batch axis" in capsys.readouterr().out


# ------------------------------------------------------------------ bn_keras Part H
@pytest.fixture(scope="module")
def keras_namespace():
    pytest.importorskip("keras")
    return namespace_from_notebook(
        KERAS_SOLUTION, cell_ids={"keras_groupnorm_forward", "keras_layernorm_forward"}
    )


def test_keras_solution_gets_full_marks(keras_namespace):
    score, out, err = run_check("keras_groupnorm", keras_namespace)
    assert score == CHECKS["keras_groupnorm"].points == 2, out
    assert err == ""


def test_keras_release_gets_zero():
    pytest.importorskip("keras")
    namespace = namespace_from_notebook(
        KERAS_RELEASE, cell_ids={"keras_groupnorm_forward", "keras_layernorm_forward"}
    )
    score, out, _ = run_check("keras_groupnorm", namespace)
    assert score == 0.0 and "not implemented yet" in out


@pytest.mark.parametrize(
    "edit, mistake_id",
    [
        (
            ("keras_groupnorm_forward", 'epsilon=gn_param["eps"], ', ""),
            "keras-norm-default-epsilon",
        ),
        (
            ("keras_layernorm_forward", 'epsilon=ln_param["eps"], ', ""),
            "keras-norm-default-epsilon",
        ),
        (("keras_groupnorm_forward", "    layer.gamma.assign(gamma)\n", ""), None),
        (("keras_groupnorm_forward", ", dtype=x.dtype.name", ""), "keras-float32-cast"),
        (
            (
                "keras_groupnorm_forward",
                "layer(x, training=training)",
                "layer(x, training=True) + 0.1 * training",
            ),
            "keras-gn-training-differs",
        ),
    ],
)
def test_keras_mistakes_cost_points_and_are_named(edit, mistake_id):
    pytest.importorskip("keras")
    namespace = namespace_from_notebook(
        KERAS_SOLUTION,
        cell_ids={"keras_groupnorm_forward", "keras_layernorm_forward"},
        edits=[edit],
    )
    score, out, err = run_check("keras_groupnorm", namespace)
    assert score < CHECKS["keras_groupnorm"].points and err == ""
    if mistake_id:
        assert mk.explain(mistake_id) in out, out


# ------------------------------------------------------------------ bn_keras Part H: tape gradients
GRADIENT_CELLS = {"keras_groupnorm_forward", "keras_layernorm_forward", "keras_groupnorm_backward"}
KERAS_NORM_CHECKS = ("keras_groupnorm", "keras_gn_gradients")


def keras_gradient_namespace(path=KERAS_SOLUTION, edits=(), replace=None):
    pytest.importorskip("keras")
    return namespace_from_notebook(path, cell_ids=GRADIENT_CELLS, edits=edits, replace=replace)


def test_reference_gradients_equal_keras_tape_gradients_in_float64():
    """The float64 reference the check compares with is what Keras's own tape computes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    import tensorflow as tf

    rng = np.random.default_rng(4)
    x = rng.normal(0.5, 0.2, size=(2, 3, 4, 6)) + np.arange(6.0)
    gamma, beta = rng.normal(1.0, 0.5, 6), rng.normal(0.0, 1.0, 6)
    dout = rng.normal(size=x.shape)
    for groups in (1, 2, 3, 6):
        layer = keras.layers.GroupNormalization(groups=groups, epsilon=1e-5, dtype="float64")
        layer.build(x.shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        tensor = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            loss = tf.reduce_sum(layer(tensor, training=True) * dout)
        tape_gradients = tape.gradient(loss, [tensor, layer.gamma, layer.beta])
        _, cache = reference.groupnorm_forward(x, gamma, beta, groups, {"eps": 1e-5})
        for got, expected in zip(
            tape_gradients, reference.groupnorm_backward(dout, cache), strict=True
        ):
            got = np.asarray(got)
            assert np.abs(got - expected).max() < 1e-12 * max(1.0, np.abs(expected).max())


def test_keras_gradient_solution_gets_full_marks():
    namespace = keras_gradient_namespace()
    for check_id in KERAS_NORM_CHECKS:
        score, out, err = run_check(check_id, namespace)
        assert score == CHECKS[check_id].points == 2, out
        assert "[FAIL]" not in out and err == ""


def test_keras_gradient_release_gets_zero():
    score, out, err = run_check("keras_gn_gradients", keras_gradient_namespace(KERAS_RELEASE))
    assert score == 0.0 and err == ""
    assert "keras_groupnorm_backward is not implemented yet" in out
    assert "could not finish" not in out


OUTPUT_GRADIENTS_RIGHT = '''
def keras_groupnorm_backward(x, gamma, beta, G, gn_param, dout):
    """Another correct route: the tape's output_gradients instead of a summed loss."""
    layer = keras.layers.GroupNormalization(G, epsilon=gn_param["eps"], dtype=x.dtype)
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    images = tf.Variable(x)
    with tf.GradientTape() as tape:
        out = layer(images)
    grads = tape.gradient(out, [images] + layer.trainable_weights, output_gradients=dout)
    return tuple(np.asarray(g) for g in grads)
'''


def test_another_correct_keras_gradient_implementation_gets_full_marks():
    namespace = keras_gradient_namespace(
        replace={"keras_groupnorm_backward": OUTPUT_GRADIENTS_RIGHT}
    )
    score, out, _ = run_check("keras_gn_gradients", namespace)
    assert score == 2, out


def named_causes(text):
    """The Keras catalogue's mistakes whose explanation a grade cell's text prints."""
    return {mistake_id for mistake_id in mk.MISTAKES if mk.explain(mistake_id) in text}


GRADIENT_SAMPLES = [
    sample
    for sample in KERAS_SAMPLES
    if any(grade_id == "keras_groupnorm_backward" for grade_id, _, _ in sample.edits)
]


def test_the_tape_mistakes_have_samples():
    assert {sample.mistake_id for sample in GRADIENT_SAMPLES} >= {
        "keras-tape-not-watching-x",
        "keras-grad-wrt-output",
        "keras-grad-dout-missing",
    }
    for sample in GRADIENT_SAMPLES:
        assert sample.affected_cells == {"test_keras_groupnorm_gradients"}, sample.name


@pytest.mark.parametrize("sample", GRADIENT_SAMPLES, ids=lambda sample: sample.name)
def test_tape_sample_loses_points_on_the_gradient_cell_only_and_is_named(sample):
    namespace = keras_gradient_namespace(edits=sample.edits)
    forward_score, forward_out, _ = run_check("keras_groupnorm", namespace)
    assert forward_score == CHECKS["keras_groupnorm"].points, forward_out
    score, out, err = run_check("keras_gn_gradients", namespace)
    assert score < CHECKS["keras_gn_gradients"].points and err == ""
    assert "could not finish" not in out
    assert named_causes(out) == {sample.mistake_id}, out  # its cause, and no wrong one


# Tape mistakes without a sample submission, made by editing the solution.
OTHER_TAPE_MISTAKES = [
    (("tf.reduce_sum(out * dout)", "tf.reduce_mean(out * dout)"), "keras-grad-loss-mean"),
    (("[x, layer.gamma, layer.beta]", "[x, layer.beta, layer.gamma]"), "keras-gradients-swapped"),
]


@pytest.mark.parametrize(
    "edit, mistake_id",
    [
        *OTHER_TAPE_MISTAKES,
        (('epsilon=gn_param["eps"], ', ""), "keras-norm-default-epsilon"),
        ((", dtype=x.dtype.name", ""), "keras-float32-cast"),
        (("    layer.gamma.assign(gamma)\n", ""), "keras-gamma-beta-not-set"),
        (("    x = tf.convert_to_tensor(x)\n", ""), "keras-tape-not-watching-x"),
    ],
)
def test_other_tape_mistakes_are_named(edit, mistake_id):
    namespace = keras_gradient_namespace(edits=[("keras_groupnorm_backward", *edit)])
    score, out, err = run_check("keras_gn_gradients", namespace)
    assert score < 2 and err == ""
    assert named_causes(out) == {mistake_id}, out
    assert "Passed in object" not in out  # TensorFlow's message would print the hidden x


def test_keras_gradient_public_check_passes_the_solution_and_catches_every_sample(capsys):
    from bnkit import public_checks

    namespace = keras_gradient_namespace()
    assert public_checks.check_keras_groupnorm_backward(namespace["keras_groupnorm_backward"])
    assert public_checks.run_suite("keras_norm_gradients", namespace) == []
    hints = {
        "keras-tape-not-watching-x": "AttributeError",
        "keras-grad-wrt-output": "gradient with respect to the output",
        "keras-grad-dout-missing": "tf.reduce_sum(out * dout)",
        "keras-grad-loss-mean": "not tf.reduce_mean",
        "keras-gradients-swapped": "swapped",
    }
    cases = [(sample.edits, sample.mistake_id) for sample in GRADIENT_SAMPLES] + [
        ([("keras_groupnorm_backward", *edit)], mistake_id)
        for edit, mistake_id in OTHER_TAPE_MISTAKES
    ]
    for edits, mistake_id in cases:
        wrong = keras_gradient_namespace(edits=edits)
        problems = public_checks.run_suite("keras_norm_gradients", wrong)
        assert problems, mistake_id
        assert any(hints[mistake_id] in line for line in problems), (mistake_id, problems)


# ------------------------------------------------------------------ bn_keras Part I: the sweep
def test_batch_size_sweep_runs_every_batch_size_in_one_traced_graph(monkeypatch):
    """The Part I helper traces its training steps once for all batch sizes, gives the same
    results for the same seed, and measures GN's training and inference outputs as equal, BN's
    as different."""
    pytest.importorskip("keras")
    import nbformat
    import tensorflow as tf

    notebook = nbformat.read(str(KERAS_SOLUTION), as_version=4)
    helper = next(
        cell.source
        for cell in notebook.cells
        if cell.cell_type == "code" and "def batch_size_sweep" in cell.source
    )
    namespace = namespace_from_notebook(KERAS_SOLUTION, cell_ids=set())  # the setup cell only
    namespace["DIGITS"] = namespace["load_digits_data"]()
    traces = []
    real_function = tf.function

    def counting_function(python_function=None, **kwargs):
        def decorate(python_function):
            def traced(*inputs):
                traces.append(python_function.__name__)  # runs once per trace
                return python_function(*inputs)

            return real_function(traced, **kwargs)

        return decorate if python_function is None else decorate(python_function)

    monkeypatch.setattr(tf, "function", counting_function)
    exec(compile(helper, "<bn_keras.ipynb: Part I helpers>", "exec"), namespace)
    with contextlib.redirect_stdout(io.StringIO()):
        group = namespace["batch_size_sweep"]("group", [3, 5, 3], updates=4)
        batch = namespace["batch_size_sweep"]("batch", [2], updates=4)
        again = namespace["batch_size_sweep"]("batch", [2], updates=4)
    assert traces == ["train_steps"] * 3  # one trace per sweep, whatever the batch sizes
    assert group["batch_sizes"] == [3, 5, 3] and len(group["val_accuracy"]) == 3
    assert again == batch
    assert max(group["train_vs_inference"]) == 0.0
    assert batch["train_vs_inference"][0] > 1e-3
