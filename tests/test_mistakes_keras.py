"""Every catalogued Keras mistake costs points on exactly its cells, and the feedback names it.

The variants of the catalogue are checked against Keras itself configured with each mistake.
"""

import keras
import numpy as np
import pytest
from test_checks_keras import CELLS, SOLUTION, grade, solution_namespace

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
    results = grade(solution_namespace(edits=sample.edits))
    for cell, (score, maximum, text) in results.items():
        if cell in sample.affected_cells:
            assert score < maximum, (cell, text)
        else:
            assert score == maximum, (cell, text)
    explanation = mk.explain(sample.mistake_id)
    assert all(explanation in results[cell][2] for cell in sample.affected_cells), [
        results[cell][2] for cell in sample.affected_cells
    ]


# ------------------------------------------- variants against Keras configured with the mistake
RNG = np.random.default_rng(11)
X = RNG.normal(1.0, 0.2, size=(12, 4))
GAMMA, BETA = RNG.normal(1.0, 0.5, 4), RNG.normal(0.0, 0.5, 4)


def param(mode):
    return {
        "mode": mode,
        "eps": 0.05,
        "momentum": 0.8,
        "running_mean": RNG.normal(0.0, 1.0, 4),
        "running_var": RNG.uniform(0.5, 2.0, 4),
    }


def keras_layer(bn_param, gamma=GAMMA, beta=BETA, set_moving=True, shape=(None, 4), **kwargs):
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


def test_default_epsilon_variant_is_keras_with_default_epsilon():
    bn_param = param("train")
    layer = keras_layer(bn_param, epsilon=1e-3)
    out = layer(X, training=True)
    assert named(out, mk.forward_variants(X, GAMMA, BETA, bn_param)) == "keras-default-epsilon"


def test_default_momentum_variant_is_keras_with_default_momentum():
    bn_param = param("train")
    layer = keras_layer(bn_param, momentum=0.99)
    layer(X, training=True)
    variants = mk.forward_variants(X, GAMMA, BETA, bn_param)
    assert named(layer.moving_mean, variants, 1) == "keras-default-momentum"


def test_unset_weights_and_statistics_variants():
    bn_param = param("test")
    plain = keras_layer(bn_param, gamma=np.ones(4), beta=np.zeros(4))
    variants = mk.forward_variants(X, GAMMA, BETA, bn_param)
    assert named(plain(X, training=False), variants) == "keras-gamma-beta-not-set"
    unset = keras_layer(bn_param, set_moving=False)
    assert named(unset(X, training=False), variants) == "keras-moving-stats-not-set"


def test_training_missing_and_frozen_variants_are_inference():
    bn_param = param("train")
    variants = mk.forward_variants(X, GAMMA, BETA, bn_param)
    assert named(keras_layer(bn_param)(X), variants) == "keras-training-missing"
    frozen = keras_layer(bn_param)
    frozen.trainable = False
    assert named(frozen(X, training=True), variants) == "keras-training-missing"


def test_axis_variant_is_keras_with_axis_1_on_square_nhwc():
    x = RNG.normal(0.5, 1.5, size=(2, 3, 4, 3))
    gamma, beta = RNG.normal(1.0, 0.5, 3), RNG.normal(0.0, 0.5, 3)
    bn_param = param("train") | {"running_mean": np.zeros(3), "running_var": np.ones(3)}
    layer = keras_layer(bn_param, gamma, beta, shape=(None, 3, 4, 3), axis=1)
    variants = mk.forward_variants(x, gamma, beta, bn_param)
    assert named(layer(x, training=True), variants) == "keras-axis-nhwc"


def test_float32_cast_variant_is_float32_input_into_float64_layer():
    x = RNG.normal(3e3, 1.0, size=(10, 4))  # float32 rounding of x is visible after normalising
    bn_param = param("train")
    got = keras_layer(bn_param)(x.astype(np.float32).astype(np.float64), training=True)
    assert named(got, mk.forward_variants(x, GAMMA, BETA, bn_param)) == "keras-float32-cast"


def test_inference_gradients_variant_is_tape_without_training():
    import tensorflow as tf

    bn_param = param("train")
    dout = RNG.normal(0.0, 1.0, size=X.shape)
    layer = keras_layer(bn_param)
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x) * dout)
    dx, dgamma, _ = (g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta]))
    variants = mk.backward_variants(X, GAMMA, BETA, bn_param, dout)
    assert named(dx, variants, 0) == "keras-training-missing"
    assert named(dgamma, variants, 1) == "keras-training-missing"
