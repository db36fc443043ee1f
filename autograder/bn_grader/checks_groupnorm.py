"""Hidden checks for group normalization: bn_numpy.ipynb Part G (NHWC) and bn_keras.ipynb Part H.

Same pattern as checks_numpy.py: fresh inputs from cases.groupnorm_cases, copies handed to the
student, comparison with the float64 reference (reference.groupnorm_forward/backward) through
compare.mismatch, and on a miss the catalogued group-norm mistake that reproduces the result
(mistakes.gn_diagnosis: statistics over the batch axis, wrong grouping of the channels, the
channels-first reshape on NHWC data, gamma per group).

Points (4 auto-graded): forward 2 (output for G in {1, 2, 3, 4, C}, float32 kept, C not
divisible by G raises ValueError naming C and G), backward 2 (dx, dgamma, dbeta).

bn_keras.ipynb (4 auto-graded): keras_groupnorm 2 (GroupNormalization and LayerNormalization
outputs, training == inference), keras_gn_gradients 2 (dx, dgamma, dbeta from tf.GradientTape
against the float64 reference; a tape mistake that reproduces the result is named from its
float64 variant: input not watched, gradient of the output, dout left out, a mean loss, dgamma
and dbeta swapped, Keras's default epsilon, gamma not assigned, float32 cast).
"""

import re

import numpy as np

from . import cases, reference
from . import mistakes_keras as mk
from .compare import mismatch
from .mistakes import explain, gn_diagnosis
from .registry import register
from .runner import StudentError

NOTEBOOK = "bn_numpy.ipynb"


def _kind(value):
    return f"a tuple of {len(value)}" if isinstance(value, tuple) else type(value).__name__


def _returned(result, size, name, what):
    if not isinstance(result, tuple) or len(result) != size:
        raise StudentError(f"{name} must return a tuple {what}, got {_kind(result)}")
    return result


def _label(function, what, case):
    groups, channels = case["G"], case["x"].shape[-1]
    special = {1: " (layer norm)", channels: " (instance norm)"}.get(groups, "")
    dtype = np.dtype(case["x"].dtype).name
    return f"{function} {what}, x {tuple(case['x'].shape)} {dtype}, G={groups}{special}"


def _call_forward(ctx, forward, case):
    result = ctx.call(
        forward,
        case["x"].copy(),
        case["gamma"].copy(),
        case["beta"].copy(),
        case["G"],
        dict(case["gn_param"]),
    )
    return _returned(result, 2, "groupnorm_forward", "(out, cache)")


def _item(ctx, label, quantity, got, ref, case):
    """Compare one quantity; on a miss name the mistake that reproduces it, if any."""
    dtype = case["x"].dtype
    expect = dtype if (quantity in ("out", "dx") and dtype == np.float32) else None
    reason = mismatch(got, ref, dtype, expect)
    if reason is None:
        return ctx.report.add(label, True)
    mistake_id = gn_diagnosis(quantity, got, ref, case, dtype, expect)
    return ctx.report.add(label, False, explain(reason, mistake_id), mistake_id=mistake_id)


@register("gn_forward", NOTEBOOK, points=2)
def groupnorm_forward(ctx):
    """groupnorm_forward: NHWC output per example and group, G = 1 and G = C, bad G raises"""
    forward = ctx.function("groupnorm_forward")
    for case in cases.groupnorm_cases(ctx.rng):
        label = _label("groupnorm_forward", "out", case)
        try:
            out, _ = _call_forward(ctx, forward, case)
        except StudentError as error:
            ctx.report.add(label, False, str(error))
            continue
        ref, _ = reference.groupnorm_forward(
            case["x"], case["gamma"], case["beta"], case["G"], case["gn_param"]
        )
        _item(ctx, label, "out", out, ref, case)
    _bad_groups(ctx, forward, cases.groupnorm_bad_groups_case(ctx.rng))


def _bad_groups(ctx, forward, case):
    channels, groups = case["x"].shape[-1], case["G"]
    label = f"groupnorm_forward with C={channels}, G={groups} raises ValueError naming C and G"
    error = ctx.raised(
        forward,
        case["x"].copy(),
        case["gamma"].copy(),
        case["beta"].copy(),
        groups,
        dict(case["gn_param"]),
    )
    if error is not None and error.is_a("NotImplementedError"):
        return ctx.report.add(label, False, "groupnorm_forward is not implemented yet")
    if error is None or not error.is_a("ValueError"):
        got = "no exception" if error is None else f"{error.type_name}"
        detail = explain(f"expected ValueError, got {got}", "gn-groups-unchecked")
        return ctx.report.add(label, False, detail, mistake_id="gn-groups-unchecked")
    message = error.message or ""
    names_both = all(re.search(rf"(?<![\d.]){n}(?![\d.])", message) for n in (channels, groups))
    if message.startswith("cannot reshape") or not names_both:
        detail = explain(
            f"a ValueError was raised, but its message does not name C={channels} and "
            f"G={groups} (it was NumPy's or another one)",
            "gn-groups-unchecked",
        )
        return ctx.report.add(label, False, detail, mistake_id="gn-groups-unchecked")
    return ctx.report.add(label, True)


@register("gn_backward", NOTEBOOK, points=2)
def groupnorm_backward(ctx):
    """groupnorm_backward: dx, dgamma and dbeta (C,) through your forward's cache"""
    forward = ctx.function("groupnorm_forward")
    backward = ctx.function("groupnorm_backward")
    for case in cases.groupnorm_cases(ctx.rng):
        dtype = case["x"].dtype
        labels = [_label("groupnorm_backward", what, case) for what in ("dx", "dgamma", "dbeta")]
        ref_out, ref_cache = reference.groupnorm_forward(
            case["x"], case["gamma"], case["beta"], case["G"], case["gn_param"]
        )
        ref = reference.groupnorm_backward(case["dout"], ref_cache)
        try:
            out, cache = _call_forward(ctx, forward, case)
        except StudentError as error:
            for label in labels:
                ctx.report.add(label, False, str(error))
            continue
        # The gradients go through the student's own cache: a wrong forward is the thing to fix.
        forward_id, note = None, ""
        if mismatch(out, ref_out, dtype) is not None:
            forward_id = gn_diagnosis("out", out, ref_out, case, dtype)
            note = (
                "Your groupnorm_forward gives a wrong output on this input too (the gradients "
                "go through its cache)"
            )
        try:
            grads = _returned(
                ctx.call(backward, case["dout"].copy(), cache),
                3,
                "groupnorm_backward",
                "(dx, dgamma, dbeta)",
            )
        except StudentError as error:
            reason = f"{error}. {note}" if note else str(error)
            for label in labels:
                ctx.report.add(label, False, explain(reason, forward_id), mistake_id=forward_id)
            continue
        for label, quantity, got, expected in zip(
            labels, ("dx", "dgamma", "dbeta"), grads, ref, strict=True
        ):
            expect = dtype if (quantity == "dx" and dtype == np.float32) else None
            reason = mismatch(got, expected, dtype, expect)
            if reason is None:
                ctx.report.add(label, True)
                continue
            mistake_id = gn_diagnosis(quantity, got, expected, case, dtype, expect)
            if mistake_id is None and note:
                mistake_id, reason = forward_id, f"{reason}. {note}"
            ctx.report.add(label, False, explain(reason, mistake_id), mistake_id=mistake_id)


# ------------------------------------------------------------------------ bn_keras.ipynb
KERAS_NOTEBOOK = "bn_keras.ipynb"


def _keras_variants(case, layer_norm):
    """{mistake id: float64 output} for the Keras settings mistakes that change numbers."""
    x, gamma, beta = case["x"], case["gamma"], case["beta"]
    ones, zeros = np.ones_like(gamma, np.float64), np.zeros_like(beta, np.float64)
    if layer_norm:
        run = lambda g, b, eps: reference.layernorm_forward(x, g, b, {"eps": eps})[0]  # noqa: E731
    else:
        run = lambda g, b, eps: reference.groupnorm_forward(x, g, b, case["G"], {"eps": eps})[0]  # noqa: E731
    eps = case["param"]["eps"]
    return {
        "keras-norm-default-epsilon": run(gamma, beta, mk.KERAS_DEFAULT_EPSILON),
        "keras-gamma-beta-not-set": run(ones, zeros, eps),
        "keras-gamma-beta-swapped": run(beta, gamma, eps),
    }


def _keras_item(ctx, label, got, ref, case, layer_norm):
    dtype = case["x"].dtype
    reason = mismatch(got, ref, dtype, expect_dtype=dtype)
    if reason is None:
        return ctx.report.add(label, True)
    mistake_id = None
    if isinstance(got, np.ndarray) and got.shape == ref.shape:
        if dtype == np.float64 and got.dtype == np.float32:
            mistake_id = "keras-float32-cast"
        else:
            for candidate, variant in _keras_variants(case, layer_norm).items():
                if (
                    mismatch(variant, ref, dtype) is not None
                    and mismatch(got, variant, dtype) is None
                ):
                    mistake_id = candidate
                    break
    detail = f"{reason}. {mk.explain(mistake_id)}" if mistake_id else reason
    return ctx.report.add(label, False, detail, mistake_id=mistake_id)


def _keras_gn_cases(rng):
    """NHWC cases for Keras group norm; std about 0.1 so that the default epsilon shows."""
    found = []
    for shape, groups, dtype in [
        ((2, 3, 4, 6), 3, np.float64),
        ((3, 2, 3, 4), 1, np.float64),
        ((1, 3, 3, 5), 5, np.float64),
        ((2, 4, 4, 8), 4, np.float32),
    ]:
        c = shape[-1]
        x = rng.uniform(-2.0, 2.0, size=c) + 0.1 * rng.uniform(0.5, 2.0, size=c) * (
            rng.standard_normal(shape)
        )
        gamma = rng.normal(1.0, 0.5, size=c)
        beta = rng.normal(0.0, 1.0, size=c)
        found.append(
            {
                "x": x.astype(dtype),
                "gamma": gamma.astype(dtype),
                "beta": beta.astype(dtype),
                "G": groups,
                "param": {"eps": 1e-5},
            }
        )
    return found


@register("keras_groupnorm", KERAS_NOTEBOOK, points=2)
def keras_groupnorm(ctx):
    """keras_groupnorm_forward and keras_layernorm_forward agree with the NumPy reference"""
    gn = ctx.function("keras_groupnorm_forward")
    for case in _keras_gn_cases(ctx.rng):
        label = _label("keras_groupnorm_forward", "out", case)
        ref, _ = reference.groupnorm_forward(
            case["x"], case["gamma"], case["beta"], case["G"], case["param"]
        )
        outputs = {}
        for training in (False, True):
            try:
                outputs[training] = _as_array(
                    ctx.call(
                        gn,
                        case["x"].copy(),
                        case["gamma"].copy(),
                        case["beta"].copy(),
                        case["G"],
                        dict(case["param"]),
                        training=training,
                    )
                )
            except StudentError as error:
                outputs[training] = error
        if isinstance(outputs[False], StudentError):
            ctx.report.add(label, False, str(outputs[False]))
            continue
        _keras_item(ctx, label, outputs[False], ref, case, layer_norm=False)
        if case["G"] == 3:
            same_label = (
                "keras_groupnorm_forward gives the same output with training=True and False"
            )
            same = not isinstance(outputs[True], StudentError) and (
                mismatch(outputs[True], outputs[False].astype(np.float64), case["x"].dtype) is None
            )
            detail = "" if same else mk.explain("keras-gn-training-differs")
            ctx.report.add(
                same_label, same, detail, mistake_id=None if same else "keras-gn-training-differs"
            )
    ln = ctx.function("keras_layernorm_forward")
    for n, d in [(5, 7), (1, 4)]:
        x = ctx.rng.normal(0.0, 3.0, size=(n, 1)) + 0.1 * ctx.rng.standard_normal((n, d))
        case = {
            "x": x,
            "gamma": ctx.rng.normal(1.0, 0.5, size=d),
            "beta": ctx.rng.normal(0.0, 1.0, size=d),
            "param": {"eps": 1e-5},
        }
        label = f"keras_layernorm_forward out, x {(n, d)} float64"
        try:
            out = _as_array(
                ctx.call(ln, x.copy(), case["gamma"].copy(), case["beta"].copy(), {"eps": 1e-5})
            )
        except StudentError as error:
            ctx.report.add(label, False, str(error))
            continue
        ref, _ = reference.layernorm_forward(x, case["gamma"], case["beta"], case["param"])
        _keras_item(ctx, label, out, ref, case, layer_norm=True)


def _as_array(value):
    """A tensor the stub sent back becomes its NumPy values."""
    to_numpy = getattr(value, "numpy", None)
    if not isinstance(value, np.ndarray) and callable(to_numpy):
        try:
            return np.asarray(to_numpy())
        except Exception:  # noqa: BLE001  left for mismatch to describe
            return value
    return value


# ------------------------------------------------ bn_keras.ipynb: group-norm gradients (tape)
_GRADIENT_NAMES = ("dx", "dgamma", "dbeta")


def _keras_gradient_cases(rng):
    """The group-norm cases of keras_groupnorm with an upstream gradient ``dout`` each."""
    found = []
    for case in _keras_gn_cases(rng):
        dout = rng.standard_normal(case["x"].shape).astype(case["x"].dtype)
        found.append(dict(case, dout=dout))
    return found


def _gn_gradients(case, gamma=None, eps=None, dout=None):
    """Reference (dx, dgamma, dbeta) of sum(out * dout) for group norm on ``case``, float64."""
    gamma = case["gamma"] if gamma is None else gamma
    eps = case["param"]["eps"] if eps is None else eps
    dout = case["dout"] if dout is None else dout
    _, cache = reference.groupnorm_forward(case["x"], gamma, case["beta"], case["G"], {"eps": eps})
    return reference.groupnorm_backward(dout, cache)


def _keras_gradient_variants(case):
    """{mistake id: (dx, dgamma, dbeta)}: what each catalogued tape mistake returns, float64
    (None where that mistake does not change that gradient)."""
    right = _gn_gradients(case)
    dout = np.asarray(case["dout"], np.float64)
    return {
        "keras-grad-wrt-output": (dout, None, None),
        "keras-grad-dout-missing": _gn_gradients(case, dout=np.ones_like(dout)),
        "keras-grad-loss-mean": tuple(gradient / dout.size for gradient in right),
        "keras-gradients-swapped": (None, right[2], right[1]),
        "keras-norm-default-epsilon": _gn_gradients(case, eps=mk.KERAS_DEFAULT_EPSILON),
        "keras-gamma-beta-not-set": (
            _gn_gradients(case, gamma=np.ones_like(np.asarray(case["gamma"], np.float64)))[0],
            None,
            None,
        ),
    }


def _name_gradient(got, ref, index, case):
    """The one catalogued mistake that reproduces gradient ``index`` of ``got``, else None."""
    dtype = case["x"].dtype
    if got is None:
        return "keras-tape-not-watching-x" if index == 0 else None
    if not isinstance(got, np.ndarray) or got.shape != ref.shape:
        return None
    if dtype == np.float64 and got.dtype == np.float32:
        return "keras-float32-cast"
    found = [
        mistake_id
        for mistake_id, variant in _keras_gradient_variants(case).items()
        if variant[index] is not None
        and mismatch(variant[index], ref, dtype) is not None
        and mismatch(got, variant[index], dtype) is None
    ]
    return found[0] if len(found) == 1 else None  # a tie names nothing rather than a wrong cause


@register("keras_gn_gradients", KERAS_NOTEBOOK, points=2)
def keras_groupnorm_gradients(ctx):
    """keras_groupnorm_backward: dx, dgamma and dbeta from tf.GradientTape match the reference"""
    backward = ctx.function("keras_groupnorm_backward")
    for case in _keras_gradient_cases(ctx.rng):
        labels = [_label("keras_groupnorm_backward", name, case) for name in _GRADIENT_NAMES]
        try:
            result = ctx.call(
                backward,
                case["x"].copy(),
                case["gamma"].copy(),
                case["beta"].copy(),
                case["G"],
                dict(case["param"]),
                case["dout"].copy(),
            )
            if not isinstance(result, (tuple, list)) or len(result) != 3:
                raise StudentError(
                    f"keras_groupnorm_backward must return (dx, dgamma, dbeta), got {_kind(result)}"
                )
        except StudentError as error:
            detail = str(error)
            mistake_id = mk.mistake_in_error(detail)
            if "raised ValueError: Passed in object" in detail:
                # TensorFlow's message prints the whole array it was given: say what it was.
                detail = (
                    "keras_groupnorm_backward raised ValueError: tape.watch was given a NumPy "
                    "array, not a tensor"
                )
            if mistake_id:
                detail = f"{detail}. {mk.explain(mistake_id)}"
            for label in labels:
                ctx.report.add(label, False, detail, mistake_id=mistake_id)
            continue
        dtype = case["x"].dtype
        for index, (label, ref) in enumerate(zip(labels, _gn_gradients(case), strict=True)):
            got = _as_array(result[index])
            reason = mismatch(got, ref, dtype, expect_dtype=dtype)
            if reason is None:
                ctx.report.add(label, True)
                continue
            mistake_id = _name_gradient(got, ref, index, case)
            detail = f"{reason}. {mk.explain(mistake_id)}" if mistake_id else reason
            ctx.report.add(label, False, detail, mistake_id=mistake_id)
