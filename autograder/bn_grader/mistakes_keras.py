"""Classic mistakes when reproducing a NumPy BN state with keras.layers.BatchNormalization.

Each mistake is written once: an id, the explanation a student reads, and (where it changes
numbers) a variant of the float64 reference. When a result misses the reference, the checks
compute every combination of up to two settings mistakes on the same inputs
(:func:`forward_combinations`); the mistakes shared by every simplest combination the result
matches are named, so two mistakes at once get both names and a tie gets none. The sample
submissions in ``samples_keras`` inject the same mistakes into the solution.
"""

from dataclasses import dataclass
from itertools import product

import numpy as np

from . import reference
from .compare import matches

KERAS_DEFAULT_MOMENTUM = 0.99
KERAS_DEFAULT_EPSILON = 1e-3


@dataclass(frozen=True)
class Mistake:
    mistake_id: str
    explanation: str


MISTAKES = {
    m.mistake_id: m
    for m in [
        Mistake(
            "keras-default-momentum",
            "the layer kept Keras's default momentum 0.99: pass momentum=bn_param['momentum'] "
            "(Keras and the NumPy code share the direction: moving = momentum * moving + "
            "(1 - momentum) * batch statistic).",
        ),
        Mistake(
            "keras-momentum-reversed",
            "momentum is reversed (the PyTorch convention): Keras's momentum weights the old "
            "moving statistics, so pass bn_param['momentum'] itself, not 1 - momentum.",
        ),
        Mistake(
            "keras-default-epsilon",
            "the layer kept Keras's default epsilon 1e-3: pass epsilon=bn_param['eps'].",
        ),
        Mistake(
            "keras-gamma-beta-not-set",
            "gamma and beta still have their initial values 1 and 0: assign the given gamma "
            "and beta to layer.gamma and layer.beta.",
        ),
        Mistake(
            "keras-moving-stats-not-set",
            "the moving statistics still have their initial values 0 and 1: assign "
            "bn_param['running_mean'] and bn_param['running_var'] to layer.moving_mean and "
            "layer.moving_variance.",
        ),
        Mistake(
            "keras-training-missing",
            "the layer ran in inference mode (it used the moving statistics): call it with "
            "training=True in train mode; layer(x) without training runs in inference mode.",
        ),
        Mistake(
            "keras-frozen-layer",
            "the layer is frozen (trainable=False): a frozen BatchNormalization runs in "
            "inference mode and keeps its moving statistics even when called with training=True.",
        ),
        Mistake(
            "keras-float32-cast",
            "the float64 data went through float32: Keras casts inputs to the layer's dtype "
            "(float32 unless you say otherwise); build the layer with the dtype you were given.",
        ),
        Mistake(
            "keras-axis-nhwc",
            "the statistics were taken over the wrong axis: NHWC data needs axis=-1 (channels "
            "last), so mean and variance are per channel over N, H and W.",
        ),
        Mistake(
            "keras-stats-not-returned",
            "the running statistics in bn_param are the old ones: after a train-mode call write "
            "layer.moving_mean and layer.moving_variance back into bn_param.",
        ),
        Mistake(
            "keras-bn-after-activation",
            "this task asks for the usual convention Dense/Conv2D without activation -> "
            "BatchNormalization -> Activation (as in the BN paper and Keras's examples); BN "
            "after the activation also trains, as experiment (d) may show, so it is a "
            "convention, not a law, but build_mlp and build_cnn must follow it.",
        ),
        Mistake(
            "keras-gamma-beta-swapped",
            "gamma and beta are swapped: the given gamma goes to layer.gamma (the scale) and beta "
            "to layer.beta (the shift); set_weights takes [gamma, beta, moving_mean, "
            "moving_variance] in that order.",
        ),
        Mistake(
            "keras-moving-variance-written-wrong",
            "bn_param['running_var'] must get the layer's moving variance after the step, "
            "layer.moving_variance.numpy(): not the moving mean, not its square root.",
        ),
        Mistake(
            "keras-test-ran-training",
            "in test mode the layer ran in training mode (batch statistics): pass the bool "
            "training=(bn_param['mode'] == 'train'); passing the string bn_param['mode'] means "
            "training for 'test' too, because any non-empty string counts as True.",
        ),
        Mistake(
            "keras-tape-not-watching-x",
            "tape.gradient returned None for x: a GradientTape records only trainable variables "
            "and the tensors it watches; convert x with tf.convert_to_tensor before the tape, "
            "call tape.watch(x) inside the with block and pass that tensor to the layer.",
        ),
        Mistake(
            "keras-detector-unbiased",
            "used_batch_statistics builds its training-mode output with the unbiased variance "
            "(ddof=1); Keras normalises with the biased batch variance x.var(axis=0), so a real "
            "training-mode output matched neither of your two modes.",
        ),
        Mistake(
            "keras-detector-too-strict",
            "used_batch_statistics compares too strictly: float32 rounding must still match, so "
            "compare with a tolerance (np.allclose(y, expected, rtol=1e-3, atol=1e-3)), not ==.",
        ),
        Mistake(
            "keras-mlp-momentum-ignored",
            "build_mlp must pass its own momentum argument to every BatchNormalization: "
            "keras.layers.BatchNormalization(momentum=momentum); 0.99 is Keras's default (build_mlp "
            "has no bn_param).",
        ),
        Mistake(
            "keras-bn-missing",
            "the model with use_bn=True needs one BatchNormalization after every hidden "
            "Dense/Conv2D layer, and the model with use_bn=False none.",
        ),
        Mistake(
            "keras-norm-default-epsilon",
            "the layer kept Keras's default epsilon 1e-3 (GroupNormalization and "
            "LayerNormalization have the same default as BatchNormalization): pass "
            "epsilon=gn_param['eps'] (ln_param['eps']).",
        ),
        Mistake(
            "keras-gn-training-differs",
            "group norm has no moving statistics: the same input must give the same output "
            "with training=True and training=False; pass training to the layer call and "
            "compute nothing from the batch outside the layer.",
        ),
        Mistake(
            "keras-grad-wrt-output",
            "the returned dx equals dout: that is the gradient with respect to the layer's "
            "output, not its input; ask the tape for tape.gradient(loss, [x, layer.gamma, "
            "layer.beta]) with the watched input tensor x.",
        ),
        Mistake(
            "keras-grad-dout-missing",
            "these are the gradients of sum(out), as if dout were all ones: the loss whose "
            "gradients equal the backward pass of dout is tf.reduce_sum(out * dout) (or pass "
            "output_gradients=dout to tape.gradient(out, ...)).",
        ),
        Mistake(
            "keras-grad-loss-mean",
            "the gradients are those of a mean, 1 / x.size of the right ones: use "
            "tf.reduce_sum(out * dout), not tf.reduce_mean, so that they equal the backward "
            "pass of dout.",
        ),
        Mistake(
            "keras-gradients-swapped",
            "dgamma and dbeta are swapped: return the gradients in the order asked for, "
            "tape.gradient(loss, [x, layer.gamma, layer.beta]) gives (dx, dgamma, dbeta).",
        ),
        Mistake(
            "keras-mode-semantics",
            "Run the verification cell and correct your table where Keras did something else.",
        ),
    ]
}


def explain(mistake_id):
    """The explanation of a mistake, as a sentence to append to a [FAIL] line."""
    text = MISTAKES[mistake_id].explanation
    return text[0].upper() + text[1:]


def mistake_in_error(message):
    """The mistake an exception message from Keras or TensorFlow points to, or None."""
    if "double tensor" in message or ("float tensor" in message and "double" in message):
        return "keras-float32-cast"
    if "keras_bn_backward raised AttributeError" in message and "'NoneType'" in message:
        # tape.gradient gave None; a frozen layer (no trainable gamma) is told apart by a probe.
        return "keras-tape-not-watching-x"
    if message.startswith("keras_groupnorm_backward raised") and (
        ("AttributeError" in message and "'NoneType'" in message)
        or "raised ValueError: Passed in object" in message
    ):
        # tape.gradient gave None for x (nothing watched), or tape.watch got a NumPy array
        # ("Passed in object <its values> of type ndarray, not tf.Tensor", cut short).
        return "keras-tape-not-watching-x"
    return None


def _param(bn_param, **changes):
    param = dict(bn_param)
    param.update(changes)
    return param


def forward_variants(x, gamma, beta, bn_param):
    """What each mistake makes the forward pass return, on these inputs.

    Args:
        x: (N, D) or (N, H, W, C). gamma, beta: (D,) or (C,). bn_param: the requested state
            and mode (not modified).

    Returns:
        dict mistake_id -> (out, running_mean, running_var), float64.
    """
    spatial = np.ndim(x) == 4
    forward = reference.spatial_batchnorm_forward if spatial else reference.batchnorm_forward
    d = np.shape(gamma)[0]
    train = bn_param["mode"] == "train"
    variants = {
        "keras-default-epsilon": forward(
            x, gamma, beta, _param(bn_param, eps=KERAS_DEFAULT_EPSILON)
        ),
        "keras-gamma-beta-not-set": forward(x, np.ones(d), np.zeros(d), bn_param),
        "keras-moving-stats-not-set": forward(
            x, gamma, beta, _param(bn_param, running_mean=np.zeros(d), running_var=np.ones(d))
        ),
        "keras-float32-cast": forward(np.asarray(x, np.float32), gamma, beta, bn_param),
    }
    if train:
        variants["keras-default-momentum"] = forward(
            x, gamma, beta, _param(bn_param, momentum=KERAS_DEFAULT_MOMENTUM)
        )
        variants["keras-momentum-reversed"] = forward(
            x, gamma, beta, _param(bn_param, momentum=1.0 - float(bn_param["momentum"]))
        )
        variants["keras-training-missing"] = forward(x, gamma, beta, _param(bn_param, mode="test"))
        out, _, _, _ = forward(x, gamma, beta, bn_param)
        variants["keras-stats-not-returned"] = (
            out,
            np.asarray(bn_param["running_mean"], np.float64),
            np.asarray(bn_param["running_var"], np.float64),
            None,
        )
    if spatial and x.shape[1] == d:
        # axis=1 (the channels-first habit): statistics per row of the image.
        moved = np.moveaxis(np.asarray(x, np.float64), 1, -1)
        out, mean, var, _ = reference.spatial_batchnorm_forward(moved, gamma, beta, bn_param)
        variants["keras-axis-nhwc"] = (np.moveaxis(out, -1, 1), mean, var, None)
    return {key: value[:3] for key, value in variants.items()}


def backward_variants(x, gamma, beta, bn_param, dout):
    """What each mistake makes (dx, dgamma, dbeta) of the training-mode forward pass be.

    Returns:
        dict mistake_id -> (dx, dgamma, dbeta), float64.
    """
    spatial = np.ndim(x) == 4
    d = np.shape(gamma)[0]
    variants = {
        "keras-default-epsilon": gradients(
            x, gamma, beta, _param(bn_param, eps=KERAS_DEFAULT_EPSILON), dout
        ),
        "keras-gamma-beta-not-set": gradients(x, np.ones(d), np.zeros(d), bn_param, dout),
        "keras-gamma-beta-swapped": gradients(x, beta, gamma, bn_param, dout),
        "keras-training-missing": inference_gradients(x, gamma, bn_param, dout),
        "keras-float32-cast": gradients(np.asarray(x, np.float32), gamma, beta, bn_param, dout),
    }
    if spatial and x.shape[1] == d:
        dx, dgamma, dbeta = gradients(
            np.moveaxis(x, 1, -1), gamma, beta, bn_param, np.moveaxis(dout, 1, -1)
        )
        variants["keras-axis-nhwc"] = (np.moveaxis(dx, -1, 1), dgamma, dbeta)
    return variants


def gradients(x, gamma, beta, bn_param, dout):
    """Reference (dx, dgamma, dbeta) of sum(out * dout) for the training-mode forward pass."""
    spatial = np.ndim(x) == 4
    param = _param(bn_param, mode="train")
    if spatial:
        _, _, _, cache = reference.spatial_batchnorm_forward(x, gamma, beta, param)
        return reference.spatial_batchnorm_backward(dout, cache)
    _, _, _, cache = reference.batchnorm_forward(x, gamma, beta, param)
    return reference.batchnorm_backward(dout, cache)


def inference_gradients(x, gamma, bn_param, dout):
    """(dx, dgamma, dbeta) when the layer ran in inference mode (moving statistics)."""
    x = np.asarray(x, np.float64)
    dout = np.asarray(dout, np.float64)
    gamma = np.asarray(gamma, np.float64)
    inv_std = 1.0 / np.sqrt(
        np.asarray(bn_param["running_var"], np.float64) + float(bn_param["eps"])
    )
    x_hat = (x - np.asarray(bn_param["running_mean"], np.float64)) * inv_std
    axes = tuple(range(x.ndim - 1))
    return dout * gamma * inv_std, (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)


def name_mistake(got, variants, index, dtype=np.float64):
    """The id of the first variant whose ``index``-th result ``got`` matches, else None."""
    for mistake_id, results in variants.items():
        candidate = results[index]
        if candidate is not None and matches(got, np.asarray(candidate, np.float64), dtype):
            return mistake_id
    return None


# ------------------------------------------------------------------ combinations of mistakes
MAX_COMBINED = 2


def forward_combinations(x, gamma, beta, bn_param):
    """(ids, (out, running_mean, running_var)) for each combination of up to two settings
    mistakes (epsilon, gamma/beta, moving statistics, training flag, dtype, momentum, write-back).

    Args: as :func:`forward_variants`. Results are float64.
    """
    spatial = np.ndim(x) == 4
    forward = reference.spatial_batchnorm_forward if spatial else reference.batchnorm_forward
    d = np.shape(gamma)[0]
    train = bn_param["mode"] == "train"
    momentum = float(bn_param["momentum"])
    eps_options = [(float(bn_param["eps"]), ())]
    if float(bn_param["eps"]) != KERAS_DEFAULT_EPSILON:
        eps_options.append((KERAS_DEFAULT_EPSILON, ("keras-default-epsilon",)))
    affine = [
        ((gamma, beta), ()),
        ((beta, gamma), ("keras-gamma-beta-swapped",)),
        ((np.ones(d), np.zeros(d)), ("keras-gamma-beta-not-set",)),
    ]
    moving = [
        ((bn_param["running_mean"], bn_param["running_var"]), ()),
        ((np.zeros(d), np.ones(d)), ("keras-moving-stats-not-set",)),
    ]
    modes = [(bn_param["mode"], ())]
    modes.append(
        ("test", ("keras-training-missing",)) if train else ("train", ("keras-test-ran-training",))
    )
    casts = [(np.asarray(x, np.float64), ())]
    if np.asarray(x).dtype == np.float64:
        casts.append((np.asarray(x, np.float32), ("keras-float32-cast",)))
    momenta = [(momentum, ())]
    if train:
        if momentum != KERAS_DEFAULT_MOMENTUM:
            momenta.append((KERAS_DEFAULT_MOMENTUM, ("keras-default-momentum",)))
        momenta.append((1.0 - momentum, ("keras-momentum-reversed",)))
    combos = []
    for (eps, i1), ((g, b), i2), ((rm, rv), i3), (mode, i4), (data, i5), (mom, i6) in product(
        eps_options, affine, moving, modes, casts, momenta
    ):
        ids = i1 + i2 + i3 + i4 + i5 + i6
        if not ids or len(ids) > MAX_COMBINED:
            continue
        param = _param(bn_param, eps=eps, mode=mode, momentum=mom, running_mean=rm, running_var=rv)
        out, mean, var, _ = forward(data, g, b, param)
        if mode != "train":
            # Inference leaves the statistics the layer started from.
            mean, var = np.asarray(rm, np.float64), np.asarray(rv, np.float64)
        combos.append((ids, (out, mean, var)))
    if train:
        out, mean, var, _ = forward(x, gamma, beta, bn_param)
        old = (
            np.asarray(bn_param["running_mean"], np.float64),
            np.asarray(bn_param["running_var"], np.float64),
        )
        combos.append((("keras-stats-not-returned",), (out, *old)))
        combos.append((("keras-moving-variance-written-wrong",), (out, mean, mean)))
        combos.append((("keras-moving-variance-written-wrong",), (out, mean, np.sqrt(var))))
    if spatial and x.shape[1] == d:
        moved = np.moveaxis(np.asarray(x, np.float64), 1, -1)
        out, mean, var, _ = reference.spatial_batchnorm_forward(moved, gamma, beta, bn_param)
        combos.append((("keras-axis-nhwc",), (np.moveaxis(out, -1, 1), mean, var)))
    return combos


def as_combinations(variants):
    """Turn {mistake_id: results} into [(ids, results)]; lists are returned unchanged."""
    if isinstance(variants, dict):
        return [((key,), value) for key, value in variants.items()]
    return list(variants or [])


def name_combination(got, combinations, index, dtype=np.float64):
    """The ids every fewest-mistake combination that ``got`` matches shares (tuple, maybe empty)."""
    found = []
    for ids, results in combinations:
        candidate = results[index]
        if candidate is not None and matches(got, np.asarray(candidate, np.float64), dtype):
            found.append(ids)
    if not found:
        return ()
    fewest = min(len(ids) for ids in found)
    best = [ids for ids in found if len(ids) == fewest]
    common = [i for i in best[0] if all(i in ids for ids in best)]
    return tuple(common)
