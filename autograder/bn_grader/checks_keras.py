"""Hidden checks for bn_keras.ipynb (keras.layers.BatchNormalization against the reference).

Every expected value comes from the float64 reference (``reference``), never from the
student's NumPy notebook. The checks run in the grader's process, which never imports
TensorFlow: student code runs in the kernel, reached only through ``ctx`` (calls, and
descriptions of the layers and models it returns, built by the kernel's stub).
"""

import numpy as np

from bnkit import wire
from bnkit.public_checks import EXPERIMENT_RUNS  # the runs the notebook records: one list

from . import diagnose as structure
from . import mistakes_keras as mk
from . import reference
from .compare import describe_shape, mismatch
from .registry import register
from .runner import StudentError

NOTEBOOK = "bn_keras.ipynb"
FLOAT32_EPS = float(np.finfo(np.float32).eps)
# float32 rounding of the inputs is amplified by max|x| / std in the normalisation (FACTS: inputs
# with mean 1e4 and std 5 give errors of about 2e-3). Measured: the error of Keras float32
# against the float64 reference stayed below 1 x FLOAT32_EPS x that condition number x max|ref|;
# 8x leaves room for other correct orders of summation. The smallest catalogued mistake tested
# in float32 (default epsilon on data with std 0.1) changes outputs by several percent.
FLOAT32_CONDITION_FACTOR = 8.0

MODE_TRUTH = {
    "layer(x)": "inference",
    "layer(x, training=True)": "training",
    "model(x)": "inference",
    "model(x, training=True)": "training",
    "model.predict(x)": "inference",
    "model.fit(x, y)": "training",
    "frozen: layer(x, training=True)": "inference",
    "frozen: model.fit(x, y) moving statistics": "unchanged",
}
# What a wrong MODE_ANSWERS entry is told: the rule of Keras's training flag that decides that
# call, as a question, never the answer. Feedback is read by more eyes than the student's, and
# these answers are worth points: the verification cell in the notebook lets the student find
# out for themselves.
MODE_RULE = {
    "layer(x)": "which mode a layer uses when the call passes no training argument",
    "layer(x, training=True)": "what an explicit training argument does to the layer's call",
    "model(x)": "what a model called without training passes to its layers",
    "model(x, training=True)": "where a training argument given to a model goes",
    "model.predict(x)": "which training value predict calls the model with",
    "model.fit(x, y)": "which training value fit calls the model with",
    "frozen: layer(x, training=True)": (
        "how a BatchNormalization with trainable=False treats training=True"
    ),
    "frozen: model.fit(x, y) moving statistics": (
        "whether fit may move the moving statistics of a BatchNormalization with trainable=False"
    ),
}
# The words the notebook asks for, per entry: anything else is a spelling problem, not a
# misunderstanding of Keras.
MODE_CHOICES = {
    scenario: ("updated", "unchanged") if truth == "unchanged" else ("training", "inference")
    for scenario, truth in MODE_TRUTH.items()
}


def keras_check(check_id, points):
    """register() for a check of the Keras notebook."""
    return register(check_id, NOTEBOOK, points)


# ----------------------------------------------------------------------------------- helpers
def _bn_param(mode, eps, momentum, running_mean, running_var):
    return {
        "mode": mode,
        "eps": float(eps),
        "momentum": float(momentum),
        "running_mean": np.array(running_mean),
        "running_var": np.array(running_var),
    }


def _condition(x, running_var=None, eps=0.0):
    """max|x| / std over features: how much float32 rounding of x is amplified."""
    x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    var = x.var(axis=0) if running_var is None else np.asarray(running_var, np.float64)
    return float(np.max(np.abs(x).max(axis=0) / np.sqrt(var + eps)))


def _compare(got, ref, dtype, condition=1.0):
    """None when ``got`` matches ``ref`` (float64 reference) for data of ``dtype``, else why."""
    got = _as_numpy(got)
    if np.dtype(dtype) == np.float64:
        return mismatch(got, ref, np.float64, expect_dtype=np.float64)
    reason = mismatch(got, ref, np.float32, expect_dtype=np.float32)
    if reason is None or not reason.startswith("largest error"):
        return reason
    scale = max(float(np.abs(ref).max()), 1.0)
    error = np.abs(got.astype(np.float64) - ref)
    allowed = (
        1e-4 * scale
        + 1e-4 * np.abs(ref)
        + FLOAT32_CONDITION_FACTOR * FLOAT32_EPS * condition * scale
    )
    if (error <= allowed).all():
        return None
    worst = np.unravel_index(int(np.argmax(error - allowed)), ref.shape)
    return (
        f"largest error {float(error[worst]):.3g} (tolerance {float(allowed[worst]):.2g}, scaled "
        f"with the data) at index {tuple(int(i) for i in worst)}: expected {float(ref[worst]):.6g}, "
        f"got {float(got[worst]):.6g}"
    )


def _as_numpy(value):
    """Tensors and variables become NumPy arrays; anything else is left for mismatch to name."""
    if isinstance(value, np.ndarray) or value is None:
        return value
    to_numpy = getattr(value, "numpy", None)
    if callable(to_numpy):
        try:
            return np.asarray(to_numpy())
        except Exception:  # noqa: BLE001
            return value
    return value


def _report_array(
    ctx, label, got, ref, dtype, variants=None, index=0, condition=1.0, probe=None, none_id=None
):
    """Compare one array and add a PASS/FAIL item, naming the mistakes when a combination of
    them reproduces the result (``variants``: {id: results} or [(ids, results)]).

    ``none_id``: the mistake a ``None`` result means here (e.g. an unwatched tape's dx).
    """
    reason = _compare(got, ref, dtype, condition)
    if reason is None:
        return ctx.report.passed(label)
    ids = ()
    got_array = _as_numpy(got)
    if got_array is None and none_id:
        ids = (none_id,)
    elif np.dtype(dtype) == np.float64 and getattr(got_array, "dtype", None) == np.float32:
        ids = ("keras-float32-cast",)
    elif variants and isinstance(got_array, np.ndarray):
        ids = mk.name_combination(got_array, mk.as_combinations(variants), index, dtype)
        if "keras-training-missing" in ids and probe is not None and probe():
            ids = tuple("keras-frozen-layer" if i == "keras-training-missing" else i for i in ids)
    if not ids and variants and isinstance(got_array, np.ndarray) and index == 0:
        # Nothing reproduces it: say which property of the output differs instead.
        shape = np.shape(ref)
        kind = (
            "bn_forward"
            if len(shape) >= 2 and label.startswith(("keras_bn_forward", "make"))
            else ""
        )
        extra = structure.properties(kind, "out", got_array, ref, {}) if kind else ""
        reason = f"{reason}; {extra}" if extra else reason
    return ctx.report.failed(label, _with_causes(reason, ids), mistake_ids=ids)


def _with_causes(reason, ids):
    """``reason`` followed by each mistake's explanation, in words only: the ids go to the
    report item (``mistake_ids``), never into the printed line."""
    for mistake_id in ids:
        reason = f"{reason}. {mk.explain(mistake_id)}"
    return reason


def _failed_call(ctx, label, error, probe=None):
    """Report a student function that raised; name the mistake its message points to."""
    message = str(error)
    mistake_id = mk.mistake_in_error(message)
    if mistake_id == "keras-tape-not-watching-x" and probe is not None and probe():
        mistake_id = "keras-frozen-layer"
    if mistake_id:
        message = f"{message}. {mk.explain(mistake_id)}"
    return ctx.report.failed(label, message, mistake_id=mistake_id)


def _probe_frozen(ctx):
    """A probe: does the student's make_keras_bn return a frozen layer?"""

    def probe():
        try:
            make = ctx.function("make_keras_bn")
            param = _bn_param("train", 1e-3, 0.9, np.zeros(2), np.ones(2))
            layer = ctx.call(make, param, np.ones(2), np.zeros(2), (None, 2), "float64")
            if not isinstance(layer, wire.Handle):
                return False
            return ctx.describe(layer, "bn_layer").get("trainable") is False
        except StudentError:
            return False

    return probe


def _forward(ctx, x, gamma, beta, bn_param):
    """Call keras_bn_forward on copies; return (out, bn_param after the call)."""
    forward = ctx.function("keras_bn_forward")
    param = {
        key: (np.array(value) if isinstance(value, np.ndarray) else value)
        for key, value in bn_param.items()
    }
    out = ctx.call(forward, x.copy(), gamma.copy(), beta.copy(), param)
    return out, param


# -------------------------------------------------------------------------------- the checks
@keras_check("keras_device", points=1)
def device(ctx):
    """choose_device: GPU when one is listed, CPU otherwise; DEVICE matches this machine"""
    choose = ctx.function("choose_device")

    def normalised(name):
        if not isinstance(name, str):
            return f"a {type(name).__name__}"
        text = name.strip().upper().replace("/DEVICE:", "/")
        return text.lstrip("/")

    fake_gpu = [wire.Device(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    cpu_choice = ctx.call(choose, [])
    ctx.report.add(
        "choose_device with no GPU",
        normalised(cpu_choice) == "CPU:0",
        f"expected '/CPU:0', got {cpu_choice!r}",
    )
    for gpus in (fake_gpu[:1], fake_gpu):
        choice = ctx.call(choose, list(gpus))
        ctx.report.add(
            f"choose_device with {len(gpus)} GPU(s) listed",
            normalised(choice) == "GPU:0",
            f"expected '/GPU:0', got {choice!r}",
        )
    try:
        ran_on = str(ctx.device(cpu_choice)) if isinstance(cpu_choice, str) else "nowhere"
        ctx.report.add(
            "tf.device accepts the CPU choice", ran_on.endswith("CPU:0"), f"it ran on {ran_on}"
        )
    except StudentError as error:
        ctx.report.failed("tf.device accepts the CPU choice", str(error))
    # With soft placement TensorFlow runs work asked for "/GPU:0" on the CPU when the kernel
    # sees no GPU (a sandboxed grading kernel never does).
    try:
        has_gpu = str(ctx.device("/GPU:0")).endswith("GPU:0")
    except StudentError:
        has_gpu = False
    expected = "GPU:0" if has_gpu else "CPU:0"
    device_name = ctx.value("DEVICE")
    ctx.report.add(
        "DEVICE names the device of this machine",
        normalised(device_name) == expected,
        f"expected '/{expected}' ({'a GPU is' if has_gpu else 'no GPU is'} present), got {device_name!r}; "
        "set DEVICE = choose_device(tf.config.list_physical_devices('GPU'))",
    )


@keras_check("keras_make_layer", points=3)
def make_layer(ctx):
    """make_keras_bn: settings, dtype and state of the layer match a NumPy BN state"""
    make = ctx.function("make_keras_bn")
    d = 6
    param = _bn_param("test", 0.05, 0.8, ctx.rng.normal(2.0, 1.0, d), ctx.rng.uniform(0.01, 0.2, d))
    gamma = ctx.rng.normal(1.0, 0.5, d)
    beta = ctx.rng.normal(0.0, 0.5, d)
    x = ctx.rng.normal(2.0, 0.3, size=(9, d))
    layer = ctx.call(make, dict(param), gamma.copy(), beta.copy(), (None, d), "float64")
    described = ctx.describe(layer, "bn_layer") if isinstance(layer, wire.Handle) else {}
    if "BatchNormalization" not in described.get("classes", []):
        kind = layer.type_name if isinstance(layer, wire.Handle) else type(layer).__name__
        raise StudentError(
            f"make_keras_bn must return a keras.layers.BatchNormalization, got {kind}"
        )

    momentum = described.get("momentum")
    momentum_id = {0.99: "keras-default-momentum", 0.2: "keras-momentum-reversed"}.get(
        round(float(momentum), 6) if isinstance(momentum, float) else None
    )
    ctx.report.add(
        "make_keras_bn: momentum",
        momentum is not None and abs(momentum - 0.8) < 1e-12,
        f"expected 0.8 (bn_param['momentum']), got {momentum}"
        + (f". {mk.explain(momentum_id)}" if momentum_id else ""),
        mistake_id=momentum_id,
    )
    epsilon = described.get("epsilon")
    eps_id = "keras-default-epsilon" if epsilon == mk.KERAS_DEFAULT_EPSILON else None
    ctx.report.add(
        "make_keras_bn: epsilon",
        epsilon is not None and abs(epsilon - 0.05) < 1e-12,
        f"expected 0.05 (bn_param['eps']), got {epsilon}"
        + (f". {mk.explain(eps_id)}" if eps_id else ""),
        mistake_id=eps_id,
    )
    dtype = described.get("dtype")
    ctx.report.add(
        "make_keras_bn: dtype float64 when asked",
        dtype == "float64",
        f"expected float64, got {dtype}. {mk.explain('keras-float32-cast')}",
        mistake_id=None if dtype == "float64" else "keras-float32-cast",
    )
    trainable = described.get("trainable")
    ctx.report.add(
        "make_keras_bn: layer is trainable",
        trainable is True,
        f"expected trainable=True, got {trainable!r}. {mk.explain('keras-frozen-layer')}",
        mistake_id=None if trainable is True else "keras-frozen-layer",
    )
    state = [
        ("gamma", "gamma", gamma, np.ones(d), "keras-gamma-beta-not-set"),
        ("beta", "beta", beta, np.zeros(d), "keras-gamma-beta-not-set"),
        (
            "moving_mean",
            "moving_mean",
            param["running_mean"],
            np.zeros(d),
            "keras-moving-stats-not-set",
        ),
        (
            "moving_variance",
            "moving_variance",
            param["running_var"],
            np.ones(d),
            "keras-moving-stats-not-set",
        ),
    ]
    weights = described.get("weights") if isinstance(described.get("weights"), dict) else {}
    for label, attribute, expected, initial, mistake_id in state:
        got = weights.get(attribute)
        if not isinstance(got, np.ndarray):
            ctx.report.failed(f"make_keras_bn: {label}", f"the layer has no {attribute} weight")
            continue
        reason = mismatch(got.astype(np.float64) if got.dtype.kind == "f" else got, expected)
        if reason is None:
            ctx.report.passed(f"make_keras_bn: {label}")
        else:
            named = mistake_id if got.shape == initial.shape and np.allclose(got, initial) else None
            other = {"gamma": beta, "beta": gamma}.get(label)
            if (
                named is None
                and other is not None
                and mismatch(got.astype(np.float64), other) is None
            ):
                named = "keras-gamma-beta-swapped"
            ctx.report.failed(
                f"make_keras_bn: {label}",
                reason + (f". {mk.explain(named)}" if named else ""),
                mistake_id=named,
            )

    ref, _, _, _ = reference.batchnorm_forward(x, gamma, beta, param)
    got = ctx.call(layer, x, training=False)
    _report_array(
        ctx,
        f"make_keras_bn float64: inference output, x {describe_shape(x)}",
        got,
        ref,
        np.float64,
        mk.forward_combinations(x, gamma, beta, param),
    )

    # float32 with large per-feature offsets: tolerance scaled with the data.
    d = 5
    param = _bn_param("test", 1e-3, 0.9, ctx.rng.normal(50.0, 1.0, d), ctx.rng.uniform(0.2, 1.0, d))
    gamma = ctx.rng.normal(1.0, 0.5, d).astype(np.float32)
    beta = ctx.rng.normal(0.0, 0.5, d).astype(np.float32)
    x = ctx.rng.normal(50.0, 0.7, size=(12, d)).astype(np.float32)
    layer = ctx.call(make, dict(param), gamma.copy(), beta.copy(), (None, d), "float32")
    ref, _, _, _ = reference.batchnorm_forward(x, gamma, beta, param)
    got = ctx.call(layer, x, training=False)
    _report_array(
        ctx,
        f"make_keras_bn float32: inference output, x {describe_shape(x)}",
        got,
        ref,
        np.float32,
        mk.forward_combinations(x, gamma, beta, param),
        condition=_condition(x, param["running_var"], param["eps"]) * float(np.abs(gamma).max()),
    )


def _forward_cases(ctx, mode):
    """(label, x, gamma, beta, bn_param) for the forward checks."""
    rng = ctx.rng
    cases = []
    if mode == "train":
        shapes = [
            ((7, 5), 1e-5, 0.9, 3.0, 2.0, np.float64),
            ((16, 3), 0.05, 0.8, -1.0, 0.1, np.float64),
            ((32, 4), 1e-3, 0.9, 1000.0, 5.0, np.float32),
        ]
    else:
        shapes = [
            ((6, 4), 0.05, 0.8, 1.0, 0.5, np.float64),
            ((1, 5), 1e-2, 0.9, 0.0, 1.0, np.float64),
            ((20, 3), 1e-3, 0.9, 100.0, 2.0, np.float32),
        ]
    for shape, eps, momentum, offset, scale, dtype in shapes:
        d = shape[-1]
        x = rng.normal(offset, scale, size=shape).astype(dtype)
        gamma = rng.normal(1.0, 0.5, d).astype(dtype)
        beta = rng.normal(0.0, 0.5, d).astype(dtype)
        if mode == "train":
            running_mean, running_var = rng.normal(0.0, 1.0, d), rng.uniform(0.5, 2.0, d)
        else:
            # far from the batch statistics and from the initial 0 / 1
            running_mean, running_var = (
                offset + rng.normal(1.0, 1.0, d),
                (scale**2) * rng.uniform(0.2, 3.0, d),
            )
        param = _bn_param(mode, eps, momentum, running_mean, running_var)
        label = f"keras_bn_forward {mode}, x {shape} {np.dtype(dtype).name}, eps={eps:g}"
        cases.append((label, x, gamma, beta, param))
    return cases


@keras_check("keras_forward_train", points=2)
def forward_train(ctx):
    """keras_bn_forward in train mode: output against the reference (float64 and float32)"""
    for label, x, gamma, beta, param in _forward_cases(ctx, "train"):
        ref, _, _, _ = reference.batchnorm_forward(x, gamma, beta, param)
        try:
            out, _ = _forward(ctx, x, gamma, beta, param)
        except StudentError as error:
            _failed_call(ctx, f"{label}: out", error)
            continue
        condition = _condition(x, None, param["eps"]) * float(np.abs(gamma).max())
        _report_array(
            ctx,
            f"{label}: out",
            out,
            ref,
            x.dtype,
            mk.forward_combinations(x, gamma, beta, param),
            condition=condition,
            probe=_probe_frozen(ctx),
        )


@keras_check("keras_forward_test", points=2)
def forward_test(ctx):
    """keras_bn_forward in test mode: output with the moving statistics; bn_param unchanged"""
    for index, (label, x, gamma, beta, param) in enumerate(_forward_cases(ctx, "test")):
        ref, _, _, _ = reference.batchnorm_forward(x, gamma, beta, param)
        try:
            out, after = _forward(ctx, x, gamma, beta, param)
        except StudentError as error:
            _failed_call(ctx, f"{label}: out", error)
            continue
        condition = _condition(x, param["running_var"], param["eps"]) * float(np.abs(gamma).max())
        _report_array(
            ctx,
            f"{label}: out",
            out,
            ref,
            x.dtype,
            mk.forward_combinations(x, gamma, beta, param),
            condition=condition,
        )
        if index == 0:
            unchanged = all(
                mismatch(_as_numpy(after.get(key)), np.asarray(param[key], np.float64)) is None
                for key in ("running_mean", "running_var")
            )
            # Statistics moved in test mode: the layer trained if they are the training step's.
            _, train_mean, _, _ = reference.batchnorm_forward(
                x, gamma, beta, param | {"mode": "train"}
            )
            trained = mismatch(_as_numpy(after.get("running_mean")), train_mean) is None
            moved_id = "keras-test-ran-training" if (not unchanged and trained) else None
            ctx.report.add(
                f"{label}: bn_param running statistics unchanged",
                unchanged,
                _with_causes(
                    "test mode must leave bn_param['running_mean'] and ['running_var'] as they were",
                    (moved_id,) if moved_id else (),
                ),
                mistake_id=moved_id,
            )


@keras_check("keras_moving_stats", points=2)
def moving_stats(ctx):
    """keras_bn_forward: moving statistics after several training steps match the reference"""
    for dtype, steps, d in ((np.float64, 5, 4), (np.float32, 3, 3)):
        momentum, eps = 0.8, 1e-3
        start_mean, start_var = ctx.rng.normal(0.0, 1.0, d), ctx.rng.uniform(0.5, 2.0, d)
        batches = [
            ctx.rng.normal(ctx.rng.uniform(-3, 3), ctx.rng.uniform(0.5, 2.0), size=(10, d)).astype(
                dtype
            )
            for _ in range(steps)
        ]
        gamma, beta = np.ones(d, dtype), np.zeros(d, dtype)
        label = f"keras_bn_forward, {steps} train steps on x (10, {d}) {np.dtype(dtype).name}, momentum=0.8"
        param = _bn_param("train", eps, momentum, start_mean, start_var)
        try:
            for x in batches:
                out, param = _forward(ctx, x, gamma, beta, param)
                param["mode"] = "train"
        except StudentError as error:
            ctx.report.failed(f"{label}: moving statistics", str(error))
            continue
        expected = _simulate(batches, momentum, start_mean, start_var)
        # Unchanged statistics: either inference ran, or training ran and nothing was written
        # back; the last output tells which.
        last_train_out, _, _, _ = reference.batchnorm_forward(
            batches[-1], gamma, beta, param | {"mode": "train"}
        )
        trained = _compare(out, last_train_out, dtype, _condition(batches[-1], None, eps)) is None
        unchanged_id = "keras-stats-not-returned" if trained else "keras-training-missing"
        variants = {
            "keras-default-momentum": _simulate(
                batches, mk.KERAS_DEFAULT_MOMENTUM, start_mean, start_var
            ),
            "keras-momentum-reversed": _simulate(batches, 1 - momentum, start_mean, start_var),
            "keras-moving-stats-not-set": _simulate(
                batches[-1:], momentum, np.zeros(d), np.ones(d)
            ),
            unchanged_id: (start_mean, start_var),
        }
        # running_var written back wrong; the wrong value is what the next step starts from.
        copied = _simulate(batches, momentum, start_mean, start_var, write_var=lambda m, v: m)
        rooted = _simulate(
            batches, momentum, start_mean, start_var, write_var=lambda m, v: np.sqrt(v)
        )
        variants = mk.as_combinations(variants) + [
            (("keras-moving-variance-written-wrong",), (None, copied[1])),
            (("keras-moving-variance-written-wrong",), (None, rooted[1])),
        ]
        for index, key in enumerate(("running_mean", "running_var")):
            got = _as_numpy(param.get(key))
            if dtype == np.float64 and getattr(got, "dtype", None) == np.float32:
                got_for_compare = got  # _report_array names the float32 cast
            else:
                got_for_compare = (
                    got.astype(dtype)
                    if isinstance(got, np.ndarray) and got.dtype.kind == "f"
                    else got
                )
            _report_array(
                ctx,
                f"{label}: {key}",
                got_for_compare,
                expected[index],
                dtype,
                [(ids, results + (None,)) for ids, results in variants],
                index,
                probe=_probe_frozen(ctx),
            )


def _simulate(batches, momentum, running_mean, running_var, write_var=None):
    """Moving statistics after ``batches``; ``write_var(mean, var)`` is what a student wrote
    back as the running variance after each step (the next step starts from it)."""
    mean, var = np.array(running_mean, np.float64), np.array(running_var, np.float64)
    for x in batches:
        x = np.asarray(x, np.float64)
        mean = momentum * mean + (1 - momentum) * x.mean(axis=0)
        var = momentum * var + (1 - momentum) * x.var(axis=0)
        if write_var is not None:
            var = write_var(mean, var)
    return mean, var


def _backward(ctx, x, gamma, beta, param, dout):
    backward = ctx.function("keras_bn_backward")
    result = ctx.call(backward, x.copy(), gamma.copy(), beta.copy(), dict(param), dout.copy())
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise StudentError(
            f"keras_bn_backward must return (dx, dgamma, dbeta), got {type(result).__name__}"
        )
    return result


def _report_gradients(ctx, label, x, gamma, beta, param, dout, result):
    refs = mk.gradients(x, gamma, beta, param, dout)
    variants = mk.backward_variants(x, gamma, beta, param, dout)
    x64 = np.asarray(x, np.float64)
    condition = _condition(x64, None, param["eps"]) * float(np.abs(gamma).max())
    for index, name in enumerate(("dx", "dgamma", "dbeta")):
        _report_array(
            ctx,
            f"{label}: {name}",
            result[index],
            refs[index],
            x.dtype,
            variants,
            index,
            condition=condition,
            probe=_probe_frozen(ctx),
            none_id="keras-tape-not-watching-x" if name == "dx" else None,
        )


@keras_check("keras_gradients", points=3)
def gradients(ctx):
    """keras_bn_backward: dx, dgamma, dbeta from tf.GradientTape match the reference"""
    for shape, offset, scale, eps, dtype in (
        ((8, 5), 2.0, 0.5, 1e-2, np.float64),
        ((16, 4), 0.0, 1.0, 1e-3, np.float32),
    ):
        d = shape[-1]
        x = ctx.rng.normal(offset, scale, size=shape).astype(dtype)
        gamma = ctx.rng.normal(1.0, 0.5, d).astype(dtype)
        beta = ctx.rng.normal(0.0, 0.5, d).astype(dtype)
        dout = ctx.rng.normal(0.0, 1.0, size=shape).astype(dtype)
        param = _bn_param(
            "train", eps, 0.9, ctx.rng.normal(0.0, 1.0, d), ctx.rng.uniform(0.5, 2.0, d)
        )
        label = f"keras_bn_backward, x {shape} {np.dtype(dtype).name}"
        try:
            result = _backward(ctx, x, gamma, beta, param, dout)
        except StudentError as error:
            _failed_call(ctx, f"{label}: dx, dgamma, dbeta", error, probe=_probe_frozen(ctx))
            continue
        _report_gradients(ctx, label, x, gamma, beta, param, dout, result)


@keras_check("keras_nhwc", points=2)
def nhwc(ctx):
    """keras_bn_forward and keras_bn_backward on NHWC inputs: statistics per channel (axis=-1)"""
    rng = ctx.rng
    # (4, 3, 5, 3) has H == C, so a layer built with axis=1 runs and gives wrong numbers that
    # name the mistake; the other shapes have H != C.
    for shape, mode, dtype in (
        ((4, 3, 5, 3), "train", np.float64),
        ((2, 4, 4, 3), "test", np.float64),
        ((8, 5, 5, 4), "train", np.float32),
    ):
        c = shape[-1]
        x = rng.normal(1.0, 2.0, size=shape).astype(dtype)
        gamma = rng.normal(1.0, 0.5, c).astype(dtype)
        beta = rng.normal(0.0, 0.5, c).astype(dtype)
        param = _bn_param(mode, 1e-2, 0.8, rng.normal(1.0, 1.0, c), rng.uniform(0.5, 3.0, c))
        label = f"keras_bn_forward {mode}, NHWC x {shape} {np.dtype(dtype).name}"
        ref, ref_mean, ref_var, _ = reference.spatial_batchnorm_forward(x, gamma, beta, param)
        try:
            out, after = _forward(ctx, x, gamma, beta, param)
        except StudentError as error:
            _failed_call(ctx, f"{label}: out", error)
            continue
        variants = mk.forward_combinations(x, gamma, beta, param)
        running_var = param["running_var"] if mode == "test" else None
        condition = _condition(x, running_var, param["eps"]) * float(np.abs(gamma).max())
        out_ok = _report_array(
            ctx,
            f"{label}: out",
            out,
            ref,
            dtype,
            variants,
            condition=condition,
            probe=_probe_frozen(ctx),
        )
        if mode == "train" and dtype == np.float64:
            # Unchanged statistics with a correct training-mode output: nothing was written back.
            if out_ok:
                variants = [v for v in variants if "keras-training-missing" not in v[0]]
            for index, key, expected in (
                (1, "running_mean", ref_mean),
                (2, "running_var", ref_var),
            ):
                _report_array(
                    ctx,
                    f"{label}: {key}",
                    _as_numpy(after.get(key)),
                    expected,
                    dtype,
                    variants,
                    index,
                    probe=_probe_frozen(ctx),
                )

    shape = (3, 3, 2, 3)
    x = rng.normal(-1.0, 1.5, size=shape)
    gamma, beta = rng.normal(1.0, 0.5, 3), rng.normal(0.0, 0.5, 3)
    dout = rng.normal(0.0, 1.0, size=shape)
    param = _bn_param("train", 1e-2, 0.9, np.zeros(3), np.ones(3))
    label = f"keras_bn_backward, NHWC x {shape} float64"
    try:
        result = _backward(ctx, x, gamma, beta, param, dout)
    except StudentError as error:
        _failed_call(ctx, f"{label}: dx, dgamma, dbeta", error, probe=_probe_frozen(ctx))
        return
    _report_gradients(ctx, label, x, gamma, beta, param, dout, result)


@keras_check("keras_mode_detector", points=1)
def mode_detector(ctx):
    """used_batch_statistics: tells training-mode outputs from inference-mode outputs"""
    detector = ctx.function("used_batch_statistics")
    d = 4
    x = ctx.rng.normal(1.0, 2.0, size=(24, d))
    gamma, beta = ctx.rng.uniform(0.5, 2.0, d), ctx.rng.normal(0.0, 1.0, d)
    moving_mean, moving_var, eps = ctx.rng.normal(4.0, 1.0, d), ctx.rng.uniform(3.0, 6.0, d), 1e-3
    param = _bn_param("train", eps, 0.9, moving_mean, moving_var)
    y_train, _, _, _ = reference.batchnorm_forward(x, gamma, beta, param)
    y_test, _, _, _ = reference.batchnorm_forward(x, gamma, beta, param | {"mode": "test"})
    cases = [
        ("training-mode output (float64)", y_train, True),
        ("inference-mode output (float64)", y_test, False),
        ("training-mode output computed in float32", y_train.astype(np.float32), True),
        ("inference-mode output computed in float32", y_test.astype(np.float32), False),
    ]

    def ask(y):
        """The detector's answer for y, or the StudentError it raised."""
        try:
            return ctx.call(
                detector,
                x.copy(),
                y.copy(),
                gamma.copy(),
                beta.copy(),
                moving_mean.copy(),
                moving_var.copy(),
                eps,
            )
        except StudentError as error:
            return error

    answers = [(label, ask(y), expected) for label, y, expected in cases]
    wrong = {label for label, answer, expected in answers if not _answer_is(answer, expected)}
    mistake_id = None
    if wrong and wrong <= {label for label, _, expected in cases if expected}:
        # Only training-mode outputs go wrong: probe the two usual reasons.
        unbiased = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps) + beta
        if _answer_is(ask(unbiased), True):
            mistake_id = "keras-detector-unbiased"
    if wrong and mistake_id is None:
        # A detector that accepts an output but not the same output changed by 1e-7 (relative)
        # compares too strictly for float32 results.
        for label, y, expected in cases[:2]:
            if label not in wrong and not _answer_is(ask(y * (1.0 + 1e-7)), expected):
                mistake_id = "keras-detector-too-strict"
    for label, answer, expected in answers:
        ok = label not in wrong
        shown = str(answer) if isinstance(answer, StudentError) else f"got {answer!r}"
        ctx.report.add(
            f"used_batch_statistics, {label}",
            ok,
            _with_causes(f"expected {expected}, {shown}", (mistake_id,) if mistake_id else ()),
            mistake_id=None if ok else mistake_id,
        )
    try:
        ctx.call(
            detector,
            x.copy(),
            x.copy() * 3.0,
            gamma.copy(),
            beta.copy(),
            moving_mean.copy(),
            moving_var.copy(),
            eps,
        )
        ctx.report.failed(
            "used_batch_statistics, output of neither mode",
            "expected a ValueError (the output matches neither mode), got an answer",
        )
    except StudentError as error:
        ctx.report.add(
            "used_batch_statistics, output of neither mode",
            "ValueError" in str(error),
            f"expected a ValueError, got: {error}",
        )


def _answer_is(answer, expected):
    return isinstance(answer, (bool, np.bool_)) and bool(answer) is expected


@keras_check("keras_mode_answers", points=2)
def mode_answers(ctx):
    """MODE_ANSWERS: which mode each Keras call runs in, as verified in the notebook

    A wrong entry is named with the rule of Keras's training flag that decides it; the expected
    word is never printed (feedback would hand every answer to whoever reads it).
    """
    answers = ctx.value("MODE_ANSWERS")
    if not isinstance(answers, dict):
        raise StudentError(
            f"MODE_ANSWERS must be a dict, got {type(answers).__name__}: run its cell"
        )
    for scenario, truth in MODE_TRUTH.items():
        answer = answers.get(scenario)
        normalised = answer.strip().lower() if isinstance(answer, str) else answer
        choices = " or ".join(repr(word) for word in MODE_CHOICES[scenario])
        mistake_ids = ()
        if normalised == truth:
            detail = ""
        elif normalised in MODE_CHOICES[scenario]:
            detail = (
                f"your answer {answer!r} is not what Keras does here. The rule that decides it: "
                f"{MODE_RULE[scenario]}. {mk.explain('keras-mode-semantics')}"
            )
            mistake_ids = ("keras-mode-semantics",)
        elif scenario not in answers:
            detail = f"no entry for this call: keep every key of the table and answer {choices}"
        else:
            detail = f"got {_short(answer)}; expected one of the words {choices}"
        ctx.report.add(
            f"MODE_ANSWERS[{scenario!r}]", normalised == truth, detail, mistake_ids=mistake_ids
        )


def _short(value, limit=40):
    """repr(value), cut to ``limit`` characters (a student's value, shown back to them)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------- model structure
def _tokens(ctx, model):
    """The model's layers as tuples, from the kernel's description: ("dense", units,
    activation), ("conv", filters, activation), ("bn", momentum, axis), ("act", name)."""
    tokens = ctx.describe(model, "model_layers")
    if not isinstance(tokens, list) or not all(isinstance(t, list) and t for t in tokens):
        raise StudentError("the model's layers could not be read")
    return [tuple(token) for token in tokens]


def _hidden_blocks(tokens, kind):
    """Split tokens into blocks that start at each `kind` ("dense"/"conv") layer."""
    blocks = []
    for token in tokens:
        if token[0] == kind or not blocks:
            blocks.append([token])
        else:
            blocks[-1].append(token)
    return blocks


def _block_ok(block, activation, use_bn, momentum=None):
    """(ok, mistake_id, why) for one hidden block [linear, (bn), act] or [dense(act)]."""
    head = block[0]
    rest = block[1:]
    if use_bn:
        bns = [i for i, token in enumerate(rest) if token[0] == "bn"]
        if not bns:
            return False, "keras-bn-missing", "no BatchNormalization after it"
        if head[2] != "linear":
            return (
                False,
                "keras-bn-after-activation",
                f"its own activation is {head[2]!r} before the BatchNormalization",
            )
        if rest[0][0] != "bn" or len(rest) < 2 or rest[1] != ("act", activation):
            order = " -> ".join(token[0] if token[0] != "act" else token[1] for token in block)
            return (
                False,
                "keras-bn-after-activation",
                f"order {order}, expected linear -> bn -> {activation}",
            )
        if momentum is not None and abs(rest[0][1] - momentum) > 1e-9:
            return (
                False,
                "keras-mlp-momentum-ignored",
                f"BatchNormalization momentum {rest[0][1]:g}, expected {momentum:g}",
            )
        return True, None, ""
    if any(token[0] == "bn" for token in rest):
        return (
            False,
            "keras-bn-missing",
            "a BatchNormalization in the model built with use_bn=False",
        )
    applied = (
        head[2]
        if head[2] != "linear"
        else (rest[0][1] if rest and rest[0][0] == "act" else "linear")
    )
    if applied != activation:
        return False, None, f"activation {applied!r}, expected {activation!r}"
    return True, None, ""


@keras_check("keras_mlp_structure", points=2)
def mlp_structure(ctx):
    """build_mlp: 3 x 100 units, BatchNormalization between the linear part and the activation"""
    build = ctx.function("build_mlp")
    for use_bn, activation, momentum in (
        (True, "sigmoid", 0.9),
        (False, "relu", 0.99),
        (True, "relu", 0.99),
    ):
        label = f"build_mlp(use_bn={use_bn}, activation={activation!r}, momentum={momentum})"
        try:
            model = ctx.call(build, use_bn, activation, momentum)
            probs = np.asarray(ctx.call(model, np.zeros((2, 64), np.float32), training=False))
            tokens = _tokens(ctx, model)
        except StudentError as error:
            ctx.report.failed(label, str(error))
            continue
        shape_ok = probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        ctx.report.add(
            f"{label}: (N, 64) in, softmax over 10 classes out",
            shape_ok,
            f"expected output shape (2, 10) with rows summing to 1, got {probs.shape}",
        )
        blocks = _hidden_blocks(tokens, "dense")
        hidden = blocks[:-1]
        widths = [block[0][1] for block in hidden]
        problems = (
            []
            if widths == [100, 100, 100]
            else [f"hidden widths {widths}, expected [100, 100, 100]"]
        )
        ids = []
        for number, block in enumerate(hidden, start=1):
            ok, block_mistake, why = _block_ok(
                block, activation, use_bn, momentum if use_bn else None
            )
            if not ok:
                problems.append(f"hidden layer {number}: {why}")
                ids.append(block_mistake)
        ids = _distinct(ids)
        detail = _with_causes("; ".join(problems), ids)
        ctx.report.add(f"{label}: hidden layers", not problems, detail, mistake_ids=ids)


@keras_check("keras_cnn_structure", points=1)
def cnn_structure(ctx):
    """build_cnn: Conv2D -> BatchNormalization(axis=-1) -> ReLU blocks on (8, 8, 1) images"""
    build = ctx.function("build_cnn")
    label = "build_cnn()"
    model = ctx.call(build)
    probs = np.asarray(ctx.call(model, np.zeros((2, 8, 8, 1), np.float32), training=False))
    ctx.report.add(
        f"{label}: (N, 8, 8, 1) in, softmax over 10 classes out",
        probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4),
        f"expected output shape (2, 10) with rows summing to 1, got {probs.shape}",
    )
    tokens = _tokens(ctx, model)
    convs = [i for i, token in enumerate(tokens) if token[0] == "conv"]
    problems, ids = [], []
    if not convs:
        problems.append("no Conv2D layer")
    for number, start in enumerate(convs, start=1):
        block = _hidden_blocks(tokens[start:], "conv")[0]
        block = [token for token in block if token[0] != "dense"]
        ok, block_mistake, why = _block_ok(block, "relu", True)
        if ok and block[1][2] not in (-1, 3, [-1], [3]):
            ok, block_mistake, why = (
                False,
                "keras-axis-nhwc",
                f"BatchNormalization axis {block[1][2]}",
            )
        if not ok:
            problems.append(f"Conv2D layer {number}: {why}")
            ids.append(block_mistake)
    ids = _distinct(ids)
    ctx.report.add(
        f"{label}: Conv2D -> BatchNormalization -> ReLU",
        not problems,
        _with_causes("; ".join(problems), ids),
        mistake_ids=ids,
    )


def _distinct(ids):
    """The mistake ids named, each once, in the order found (None: a problem without a name)."""
    return tuple(dict.fromkeys(mistake for mistake in ids if mistake))


@keras_check("keras_experiments", points=2)
def experiments(ctx):
    """HISTORIES: curves recorded; BN nets clearly beat chance and the plain nets (generous margins)"""
    histories = ctx.value("HISTORIES")
    if not isinstance(histories, dict):
        raise StudentError(
            f"HISTORIES must be a dict of training curves, got {type(histories).__name__}"
        )

    def curve(name, metric="val_accuracy"):
        values = (
            histories.get(name, {}).get(metric) if isinstance(histories.get(name), dict) else None
        )
        try:
            return [float(v) for v in values] if values is not None else None
        except (TypeError, ValueError):
            return None

    missing = [
        name
        for name in EXPERIMENT_RUNS
        if not curve(name)
        or not curve(name, "loss")
        or len(curve(name)) < 5
        or len(curve(name)) != len(curve(name, "loss"))
    ]
    ctx.report.add(
        "HISTORIES: every run recorded (loss and val_accuracy, at least 5 epochs)",
        not missing,
        f"missing or too short: {missing}",
    )

    def final(name):
        values = curve(name)
        return values[-1] if values else float("nan")

    def first(name):
        values = curve(name)
        return values[0] if values else float("nan")

    def level(value):
        """What a final validation accuracy means, for a student reading a bare number."""
        if value != value:  # NaN: no curve
            return "no curve recorded"
        if value <= 0.15:
            return f"{value:.2f}, chance level for 10 digit classes: that net learned nothing"
        return f"{value:.2f}"

    bn_hint = (
        "; check that build_mlp(True, ...) puts BatchNormalization between each Dense layer and "
        "its activation, and that the run used lr 0.1 and the notebook's number of epochs"
    )
    claims = [
        (
            "sigmoid+BN at lr 0.1 learns (final validation accuracy >= 0.5)",
            final("sigmoid+BN") >= 0.5,
            f"got {level(final('sigmoid+BN'))}{bn_hint}",
        ),
        (
            "plain sigmoid net at lr 0.1 stays near chance (<= 0.3) and BN beats it by >= 0.3",
            final("sigmoid") <= 0.3 and final("sigmoid+BN") >= final("sigmoid") + 0.3,
            f"got {level(final('sigmoid'))} without BN, {level(final('sigmoid+BN'))} with BN"
            + (
                "; three sigmoid layers without BN at lr 0.1 barely move in these epochs: check "
                "that HISTORIES['sigmoid'] comes from build_mlp(False, 'sigmoid')"
                if final("sigmoid") > 0.3
                else bn_hint
            ),
        ),
        (
            "at lr 1 only the BN net survives (BN >= 0.5 and >= plain + 0.2)",
            final("relu+BN lr 1") >= 0.5 and final("relu+BN lr 1") >= final("relu lr 1") + 0.2,
            f"got {level(final('relu lr 1'))} without BN, {level(final('relu+BN lr 1'))} with BN"
            + (
                "; the plain ReLU net at lr 1 usually diverges: check that this run used "
                "build_mlp(False, 'relu') and lr 1"
                if final("relu lr 1") > final("relu+BN lr 1") - 0.2 and final("relu lr 1") > 0.3
                else "; check that the BN run used build_mlp(True, 'relu') and lr 1"
            ),
        ),
        (
            "CNN with BN learns (final validation accuracy >= 0.5)",
            final("cnn+BN") >= 0.5,
            f"got {level(final('cnn+BN'))}; check build_cnn and that the run trained on images "
            "(images=True)",
        ),
        (
            "momentum 0.9 leads 0.99 after the first epoch (by >= 0.1 in validation accuracy)",
            first("sigmoid+BN momentum 0.9") >= first("sigmoid+BN") + 0.1,
            f"got {first('sigmoid+BN momentum 0.9'):.2f} with 0.9, {first('sigmoid+BN'):.2f} with "
            "0.99 after one epoch; with momentum 0.99 the moving statistics that validation uses "
            "lag far behind the weights, so the 0.99 run starts much lower: check that the "
            "momentum run passed momentum=0.9 to build_mlp and that build_mlp passes it on",
        ),
    ]
    for label, ok, detail in claims:
        ctx.report.add(f"HISTORIES: {label}", ok, detail)
