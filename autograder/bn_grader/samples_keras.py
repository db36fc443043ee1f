"""Sample submissions of bn_keras.ipynb with one classic Keras mistake each (see mistakes_keras).

Each edit is applied to the reference code of one solution cell; ``affected_cells`` are the grade
cells that must lose points (every other auto-graded cell keeps full marks). A mistake in
``make_keras_bn`` reaches every check that builds its layer through it, so those cells are
listed too.
"""

from .samples import Sample

NOTEBOOK = "bn_keras.ipynb"

_LAYER = (
    'axis=-1, momentum=bn_param["momentum"], epsilon=bn_param["eps"], dtype=dtype'  # make_keras_bn
)
_WEIGHTS = "    layer.gamma.assign(gamma)\n    layer.beta.assign(beta)\n"
_MOVING = (
    '    layer.moving_mean.assign(bn_param["running_mean"])\n'
    '    layer.moving_variance.assign(bn_param["running_var"])\n'
)
_WRITE_BACK = (
    '        bn_param["running_mean"] = layer.moving_mean.numpy()\n'
    '        bn_param["running_var"] = layer.moving_variance.numpy()\n'
)
_BN_BLOCK = (
    "                keras.layers.Dense(100, use_bias=False),\n"
    "                keras.layers.BatchNormalization(momentum=momentum),\n"
    "                keras.layers.Activation(activation),\n"
)

_GN_TARGETS = "[x, layer.gamma, layer.beta]"  # what keras_groupnorm_backward differentiates for


def _sample(name, edits, affected, mistake_id):
    return Sample(
        name=name,
        notebook=NOTEBOOK,
        edits=tuple(edits),
        affected_cells=frozenset(affected),
        mistake_id=mistake_id,
    )


SAMPLES = [
    _sample(
        "keras-default-momentum",
        [("make_keras_bn", _LAYER, 'axis=-1, epsilon=bn_param["eps"], dtype=dtype')],
        {"test_make_keras_bn", "test_keras_moving_stats", "test_keras_nhwc"},
        "keras-default-momentum",
    ),
    _sample(
        "keras-default-epsilon",
        [("make_keras_bn", _LAYER, 'axis=-1, momentum=bn_param["momentum"], dtype=dtype')],
        {
            "test_make_keras_bn",
            "test_keras_forward_train",
            "test_keras_forward_test",
            "test_keras_gradients",
            "test_keras_nhwc",
        },
        "keras-default-epsilon",
    ),
    _sample(
        "keras-gamma-beta-not-set",
        [("make_keras_bn", _WEIGHTS, "")],
        {
            "test_make_keras_bn",
            "test_keras_forward_train",
            "test_keras_forward_test",
            "test_keras_gradients",
            "test_keras_nhwc",
        },
        "keras-gamma-beta-not-set",
    ),
    _sample(
        "keras-moving-stats-not-set",
        [("make_keras_bn", _MOVING, "")],
        {
            "test_make_keras_bn",
            "test_keras_forward_test",
            "test_keras_moving_stats",
            "test_keras_nhwc",
        },
        "keras-moving-stats-not-set",
    ),
    _sample(
        "keras-training-missing",
        [("keras_bn_forward", "out = layer(x, training=training)", "out = layer(x)")],
        {"test_keras_forward_train", "test_keras_moving_stats", "test_keras_nhwc"},
        "keras-training-missing",
    ),
    _sample(
        "keras-grad-training-missing",
        [("keras_bn_backward", "out = layer(x, training=True)", "out = layer(x)")],
        {"test_keras_gradients", "test_keras_nhwc"},
        "keras-training-missing",
    ),
    _sample(
        "keras-frozen-layer",
        [
            (
                "make_keras_bn",
                "    return layer\n",
                "    layer.trainable = False\n    return layer\n",
            )
        ],
        {
            "test_make_keras_bn",
            "test_keras_forward_train",
            "test_keras_moving_stats",
            "test_keras_gradients",
            "test_keras_nhwc",
        },
        "keras-frozen-layer",
    ),
    _sample(
        "keras-float32-cast",
        [
            (
                "make_keras_bn",
                _LAYER,
                'axis=-1, momentum=bn_param["momentum"], epsilon=bn_param["eps"]',
            )
        ],
        {
            "test_make_keras_bn",
            "test_keras_forward_train",
            "test_keras_forward_test",
            "test_keras_moving_stats",
            "test_keras_gradients",
            "test_keras_nhwc",
        },
        "keras-float32-cast",
    ),
    _sample(
        "keras-axis-nhwc",
        [("make_keras_bn", "axis=-1,", "axis=1,")],
        {"test_keras_nhwc"},
        "keras-axis-nhwc",
    ),
    _sample(
        "keras-stats-not-returned",
        [("keras_bn_forward", _WRITE_BACK, "        pass\n")],
        {"test_keras_moving_stats", "test_keras_nhwc"},
        "keras-stats-not-returned",
    ),
    _sample(
        "keras-bn-after-activation",
        [
            (
                "build_mlp",
                _BN_BLOCK,
                "                keras.layers.Dense(100, activation=activation),\n"
                "                keras.layers.BatchNormalization(momentum=momentum),\n",
            )
        ],
        {"test_build_mlp"},
        "keras-bn-after-activation",
    ),
    _sample(
        "keras-gn-default-epsilon",
        [("keras_groupnorm_forward", 'epsilon=gn_param["eps"], ', "")],
        {"test_keras_groupnorm"},
        "keras-norm-default-epsilon",
    ),
    _sample(
        "keras-gn-is-batchnorm",
        [
            (
                "keras_groupnorm_forward",
                "keras.layers.GroupNormalization(\n        groups=G, axis=-1,",
                "keras.layers.BatchNormalization(\n        axis=-1,",
            )
        ],
        {"test_keras_groupnorm"},
        "keras-gn-training-differs",
    ),
    # Tape gradients of group norm (Part H): each mistake costs points only on its grade cell.
    # (A mean loss and swapped dgamma/dbeta are named too; tests/test_groupnorm.py makes them by
    # editing the solution, without a sample: each sample costs a graded submission in the demo.)
    _sample(
        "keras-gn-tape-not-watching-x",
        [("keras_groupnorm_backward", "        tape.watch(x)\n", "")],
        {"test_keras_groupnorm_gradients"},
        "keras-tape-not-watching-x",
    ),
    _sample(
        "keras-gn-grad-wrt-output",
        [("keras_groupnorm_backward", _GN_TARGETS, "[out, layer.gamma, layer.beta]")],
        {"test_keras_groupnorm_gradients"},
        "keras-grad-wrt-output",
    ),
    _sample(
        "keras-gn-grad-dout-missing",
        [("keras_groupnorm_backward", "tape.gradient(loss, [x", "tape.gradient(out, [x")],
        {"test_keras_groupnorm_gradients"},
        "keras-grad-dout-missing",
    ),
    _sample(
        "keras-mode-layer-call",
        [("mode_answers", '    "layer(x)": "inference",', '    "layer(x)": "training",')],
        {"test_mode_answers"},
        "keras-mode-semantics",
    ),
]
