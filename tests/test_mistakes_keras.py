"""Every catalogued Keras mistake costs points on exactly its cells, and the feedback names it.

The variants of the catalogue are checked against Keras itself configured with each mistake.
"""

import zlib
from dataclasses import dataclass

import keras
import numpy as np
import pytest
from test_checks_keras import CELLS, SOLUTION, grade_with_ids, solution_namespace

from bn_grader import mistakes_keras as mk
from bn_grader.samples_keras import SAMPLES
from nbcode import solution_sources

# The mistakes the issue lists, by catalogue id: each needs a sample submission.
ISSUE_MISTAKES = [
    "keras-default-momentum",
    "keras-default-epsilon",
    "keras-gamma-beta-not-set",
    "keras-moving-stats-not-set",
    "keras-training-missing",
    "keras-frozen-layer",
    "keras-float32-cast",
    "keras-axis-nhwc",
]


def test_every_listed_mistake_has_a_sample():
    assert set(ISSUE_MISTAKES) <= set(mk.MISTAKES)
    assert set(ISSUE_MISTAKES) <= {sample.mistake_id for sample in SAMPLES}


def test_samples_are_well_formed():
    names = [sample.name for sample in SAMPLES]
    assert len(names) == len(set(names))
    sources = solution_sources(SOLUTION)
    for sample in SAMPLES:
        assert sample.notebook == "bn_keras.ipynb"
        assert sample.mistake_id in mk.MISTAKES
        assert sample.affected_cells and set(sample.affected_cells) <= set(CELLS)
        for grade_id, old, new in sample.edits:
            assert sources[grade_id].count(old) == 1, (sample.name, old)
            assert old != new


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.name)
def test_sample_loses_points_on_its_cells_only_and_is_named(sample):
    results = grade_with_ids(solution_namespace(edits=sample.edits))
    for cell, (score, maximum, text, _) in results.items():
        if cell in sample.affected_cells:
            assert score < maximum, (cell, text)
        else:
            assert score == maximum, (cell, text)
    # The student reads the explanation; the id goes to the result (the ledger), not the text.
    explanation = mk.explain(sample.mistake_id)
    assert all(explanation in results[cell][2] for cell in sample.affected_cells), [
        results[cell][2] for cell in sample.affected_cells
    ]
    named = {cell for cell, (*_, ids) in results.items() if sample.mistake_id in ids}
    assert named and named <= set(sample.affected_cells), (named, sample.affected_cells)
    assert not any(sample.mistake_id in text for _, _, text, _ in results.values())


# ------------------------------------------- variants against Keras configured with the mistake
# Each test draws its own inputs from a generator seeded by the test's name, so its inputs do not
# depend on which other tests ran before it (no shared module-level generator).
@dataclass
class Inputs:
    rng: np.random.Generator
    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray

    def param(self, mode):
        return {
            "mode": mode,
            "eps": 0.05,
            "momentum": 0.8,
            "running_mean": self.rng.normal(0.0, 1.0, 4),
            "running_var": self.rng.uniform(0.5, 2.0, 4),
        }


@pytest.fixture
def inputs(request):
    rng = np.random.default_rng(zlib.crc32(request.node.name.encode()))
    x = rng.normal(1.0, 0.2, size=(12, 4))
    return Inputs(rng, x, rng.normal(1.0, 0.5, 4), rng.normal(0.0, 0.5, 4))


def keras_layer(bn_param, gamma, beta, set_moving=True, shape=(None, 4), **kwargs):
    options = {"momentum": bn_param["momentum"], "epsilon": bn_param["eps"], "dtype": "float64"}
    options.update(kwargs)
    layer = keras.layers.BatchNormalization(**options)
    layer.build(shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    if set_moving:
        layer.moving_mean.assign(bn_param["running_mean"])
        layer.moving_variance.assign(bn_param["running_var"])
    return layer


def named(got, variants, index=0):
    return mk.name_mistake(np.asarray(got), variants, index)


def combined(got, combinations, index=0):
    return set(mk.name_combination(np.asarray(got), combinations, index))


def test_default_epsilon_variant_is_keras_with_default_epsilon(inputs):
    bn_param = inputs.param("train")
    layer = keras_layer(bn_param, inputs.gamma, inputs.beta, epsilon=1e-3)
    out = layer(inputs.x, training=True)
    variants = mk.forward_variants(inputs.x, inputs.gamma, inputs.beta, bn_param)
    assert named(out, variants) == "keras-default-epsilon"


def test_default_momentum_variant_is_keras_with_default_momentum(inputs):
    bn_param = inputs.param("train")
    layer = keras_layer(bn_param, inputs.gamma, inputs.beta, momentum=0.99)
    layer(inputs.x, training=True)
    variants = mk.forward_variants(inputs.x, inputs.gamma, inputs.beta, bn_param)
    assert named(layer.moving_mean, variants, 1) == "keras-default-momentum"


def test_unset_weights_and_statistics_variants(inputs):
    bn_param = inputs.param("test")
    plain = keras_layer(bn_param, np.ones(4), np.zeros(4))
    variants = mk.forward_variants(inputs.x, inputs.gamma, inputs.beta, bn_param)
    assert named(plain(inputs.x, training=False), variants) == "keras-gamma-beta-not-set"
    unset = keras_layer(bn_param, inputs.gamma, inputs.beta, set_moving=False)
    assert named(unset(inputs.x, training=False), variants) == "keras-moving-stats-not-set"


def test_training_missing_and_frozen_variants_are_inference(inputs):
    bn_param = inputs.param("train")
    variants = mk.forward_variants(inputs.x, inputs.gamma, inputs.beta, bn_param)
    layer = keras_layer(bn_param, inputs.gamma, inputs.beta)
    assert named(layer(inputs.x), variants) == "keras-training-missing"
    frozen = keras_layer(bn_param, inputs.gamma, inputs.beta)
    frozen.trainable = False
    assert named(frozen(inputs.x, training=True), variants) == "keras-training-missing"


def test_axis_variant_is_keras_with_axis_1_on_square_nhwc(inputs):
    rng = inputs.rng
    x = rng.normal(0.5, 1.5, size=(2, 3, 4, 3))
    gamma, beta = rng.normal(1.0, 0.5, 3), rng.normal(0.0, 0.5, 3)
    bn_param = inputs.param("train") | {"running_mean": np.zeros(3), "running_var": np.ones(3)}
    layer = keras_layer(bn_param, gamma, beta, shape=(None, 3, 4, 3), axis=1)
    variants = mk.forward_variants(x, gamma, beta, bn_param)
    assert named(layer(x, training=True), variants) == "keras-axis-nhwc"


def test_float32_cast_variant_is_float32_input_into_float64_layer(inputs):
    x = inputs.rng.normal(3e3, 1.0, size=(10, 4))  # float32 rounding of x shows after normalising
    bn_param = inputs.param("train")
    got = keras_layer(bn_param, inputs.gamma, inputs.beta)(
        x.astype(np.float32).astype(np.float64), training=True
    )
    variants = mk.forward_variants(x, inputs.gamma, inputs.beta, bn_param)
    assert named(got, variants) == "keras-float32-cast"


def test_inference_gradients_variant_is_tape_without_training(inputs):
    import tensorflow as tf

    bn_param = inputs.param("train")
    dout = inputs.rng.normal(0.0, 1.0, size=inputs.x.shape)
    layer = keras_layer(bn_param, inputs.gamma, inputs.beta)
    x = tf.constant(inputs.x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) * dout)
    dx, dgamma, _ = (g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta]))
    variants = mk.backward_variants(inputs.x, inputs.gamma, inputs.beta, bn_param, dout)
    assert named(dx, variants, 0) == "keras-training-missing"
    assert named(dgamma, variants, 1) == "keras-training-missing"


# ------------------------------------------------ combinations against Keras with the mistakes
def test_swapped_gamma_beta_is_named_from_keras_itself(inputs):
    bn_param = inputs.param("train")
    layer = keras_layer(bn_param, inputs.beta, inputs.gamma)
    combos = mk.forward_combinations(inputs.x, inputs.gamma, inputs.beta, bn_param)
    assert combined(layer(inputs.x, training=True), combos) == {"keras-gamma-beta-swapped"}


def test_two_settings_mistakes_at_once_are_both_named(inputs):
    bn_param = inputs.param("test")
    layer = keras_layer(bn_param, inputs.beta, inputs.gamma, epsilon=1e-3)
    combos = mk.forward_combinations(inputs.x, inputs.gamma, inputs.beta, bn_param)
    assert combined(layer(inputs.x, training=False), combos) == {
        "keras-gamma-beta-swapped",
        "keras-default-epsilon",
    }


def test_training_passed_as_the_mode_string_runs_training_in_test_mode(inputs):
    bn_param = inputs.param("test")
    layer = keras_layer(bn_param, inputs.gamma, inputs.beta)
    out = layer(inputs.x, training=bn_param["mode"])  # the string "test" is truthy
    combos = mk.forward_combinations(inputs.x, inputs.gamma, inputs.beta, bn_param)
    assert combined(out, combos) == {"keras-test-ran-training"}


def test_moving_variance_written_as_the_moving_mean_is_named(inputs):
    bn_param = inputs.param("train")
    layer = keras_layer(bn_param, inputs.gamma, inputs.beta)
    layer(inputs.x, training=True)
    combos = mk.forward_combinations(inputs.x, inputs.gamma, inputs.beta, bn_param)
    assert combined(layer.moving_mean.numpy(), combos, 2) == {"keras-moving-variance-written-wrong"}
    assert combined(np.sqrt(layer.moving_variance.numpy()), combos, 2) == {
        "keras-moving-variance-written-wrong"
    }
    assert combined(layer.moving_variance.numpy(), combos, 2) == set()  # right: nothing to name


def test_unwatched_tape_error_names_the_tape():
    message = "keras_bn_backward raised AttributeError: 'NoneType' object has no attribute 'numpy'"
    assert mk.mistake_in_error(message) == "keras-tape-not-watching-x"
    assert mk.mistake_in_error("keras_bn_forward raised KeyError: 'eps'") is None
