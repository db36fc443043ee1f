"""Hidden checks for bn_numpy.ipynb (NumPy Batch Normalization), one per grade cell.

Every check draws fresh inputs from cases.py, hands the student copies (so a student who
mutates them cannot change what the grader compares against), compares with the float64
reference (reference.py) through compare.mismatch (exact shapes, dtype, NaN, tolerance by
dtype) and, on a miss, names the mistakes the structural diagnosis finds (mistakes.py,
diagnose.py), or says which property differs. One item per compared quantity; the cell's score
is its points times the share of items passed.

Points (26 auto-graded; the notebook adds 4 manually graded points for written answers):
forward train 3, running statistics 3, test mode 3, properties 2, backward dx 3,
dgamma/dbeta 2, alt 2, spatial forward 2, spatial backward 2, layer norm forward 2, backward 2.
"""

import numpy as np

from . import cases, reference
from .compare import mismatch
from .diagnose import Finding, properties
from .mistakes import diagnosis, explain, explain_finding, pieces_diagnosis
from .registry import register
from .runner import StudentError

NOTEBOOK = "bn_numpy.ipynb"


# ---------------------------------------------------------------- helpers
def _pair(result, name):
    if not isinstance(result, tuple) or len(result) != 2:
        raise StudentError(f"{name} must return a tuple (out, cache), got {_kind(result)}")
    return result


def _triple(result, name):
    if not isinstance(result, tuple) or len(result) != 3:
        raise StudentError(f"{name} must return a tuple (dx, dgamma, dbeta), got {_kind(result)}")
    return result


def _kind(value):
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return type(value).__name__


def _shape(array):
    return str(tuple(array.shape))


def _item(
    ctx, label, got, ref, kind, quantity, case, dtype=np.float64, expect_dtype=None, forward=None
):
    """Compare one quantity, record a PASS or a FAIL that names the mistake.

    ``forward``: for a gradient, what is wrong with the student's own forward pass on the same
    input (a :class:`~bn_grader.diagnose.Finding`, with no ids when it is wrong without a name),
    or None when it is right. The gradients go through that forward's cache, so its mistake is
    the one to name; it is never attached to a result that is not even an array of the right
    shape (a backward that returns None has its own problem).
    """
    reason = mismatch(got, ref, dtype, expect_dtype)
    if reason is None:
        return ctx.report.add(label, True)
    finding = diagnosis(kind, quantity, got, ref, case, dtype, expect_dtype)
    right_shape = isinstance(got, np.ndarray) and got.shape == np.shape(ref)
    own = finding is not None and finding.ids[0] in ("wrong-shape", "float32-promoted")
    if forward is not None and right_shape and not own:
        reason += f". {forward.computed}"
        finding = forward if forward.ids else None
        if finding is not None:
            finding = type(finding)(finding.ids)
    fallback = "" if forward is not None else properties(kind, quantity, got, ref, case)
    detail = explain_finding(reason, finding, fallback)
    # Every mistake the finding names goes with the item (two at once give two ids).
    return ctx.report.add(label, False, detail, mistake_ids=finding.ids if finding else ())


def _fail_all(ctx, labels, error, case=None):
    """Fail ``labels`` with the student's error; name a mistake the error itself shows."""
    message = str(error)
    mistake_id = None
    if message.endswith("got NoneType"):
        mistake_id = "returns-none"
    elif case is not None and "could not be broadcast together with shapes" in message:
        # A (D,) statistic met an (N,) one: something was reduced over the features.
        n, d = case["x"].shape[0], case["x"].shape[-1]
        if n != d and f"({n},)" in message and f"({d},)" in message:
            mistake_id = "wrong-axis"
    if mistake_id:
        message = explain(message, mistake_id)
    for label in labels:
        ctx.report.add(label, False, message, mistake_id=mistake_id)


def _student_inputs(case):
    """Copies of a case's arrays for the student, and its bn_param copy."""
    return (
        case["x"].copy(),
        case["gamma"].copy(),
        case["beta"].copy(),
        cases.copy_param(case["bn_param"]),
    )


def _dtype(case):
    return case["x"].dtype


_FORWARDS = {
    "bn_forward": ("batchnorm_forward", reference.batchnorm_forward),
    "spatial_forward": ("spatial_batchnorm_forward", reference.spatial_batchnorm_forward),
    "ln_forward": ("layernorm_forward", reference.layernorm_forward),
}


def _forward_state(ctx, forward, case, kind):
    """For a backward miss: what is wrong with the student's forward on the same input.

    Backward passes are checked through the student's own cache, so a wrong forward pass
    usually makes the gradients wrong too; naming the forward's mistake sends the student
    to the right cell.

    Returns:
        None when the forward's output is right (or cannot be had), else a Finding whose
        ``computed`` says so (its ids name the forward's mistake, if one is found).
    """
    name, reference_forward = _FORWARDS[kind]
    x, gamma, beta, param = _student_inputs_for(case, kind)
    try:
        out = ctx.call(forward, x, gamma, beta, param)
        out, _ = _pair(out, name)
    except StudentError:
        return None
    ref = reference_forward(case["x"], case["gamma"], case["beta"], _param_of(case, kind))[0]
    if mismatch(out, ref, _dtype(case)) is not None:
        found = diagnosis(kind, "out", out, ref, case, _dtype(case))
        computed = f"Your {name} gives a wrong output on this input too (the gradients go through its cache)"
        return Finding(found.ids if found else (), computed)
    return None


def _param_of(case, kind):
    return case["ln_param"] if kind == "ln_forward" else case["bn_param"]


def _student_inputs_for(case, kind):
    if kind == "ln_forward":
        return case["x"].copy(), case["gamma"].copy(), case["beta"].copy(), dict(case["ln_param"])
    return _student_inputs(case)


# ---------------------------------------------------------------- forward
@register("bn_forward_train", NOTEBOOK, points=3)
def forward_train(ctx):
    """batchnorm_forward, train mode: output on hidden inputs"""
    forward = ctx.function("batchnorm_forward")
    for case in cases.train_cases(ctx.rng):
        eps = case["bn_param"]["eps"]
        label = f"batchnorm_forward train out, x {_shape(case['x'])}, eps={eps:g}"
        try:
            out, _ = _pair(ctx.call(forward, *_student_inputs(case)), "batchnorm_forward")
        except StudentError as error:
            _fail_all(ctx, [label], error, case)
            continue
        ref_out = reference.batchnorm_forward(
            case["x"], case["gamma"], case["beta"], case["bn_param"]
        )[0]
        _item(ctx, label, out, ref_out, "bn_forward", "out", case)


@register("bn_forward_running", NOTEBOOK, points=3)
def forward_running(ctx):
    """batchnorm_forward, train mode: running statistics written back to bn_param"""
    forward = ctx.function("batchnorm_forward")
    for case in cases.running_cases(ctx.rng):
        param = cases.copy_param(case["bn_param"])
        ref_param = cases.copy_param(case["bn_param"])
        momentum = param["momentum"]
        for step, x in enumerate(case["batches"], start=1):
            labels = [
                f"batchnorm_forward train {what} after step {step}, x {_shape(x)}, momentum={momentum:g}"
                for what in ("running_mean", "running_var")
            ]
            # The variant state used to name mistakes must start from what the student had.
            step_case = {
                "x": x,
                "gamma": case["gamma"],
                "beta": case["beta"],
                "bn_param": cases.copy_param(param),
            }
            try:
                out, _ = _pair(
                    ctx.call(forward, x.copy(), case["gamma"].copy(), case["beta"].copy(), param),
                    "batchnorm_forward",
                )
            except StudentError as error:
                _fail_all(ctx, labels, error, step_case)
                break
            ref_out, ref_mean, ref_var, _ = reference.batchnorm_forward(
                x, case["gamma"], case["beta"], ref_param
            )
            step_case["out_correct"] = mismatch(out, ref_out) is None
            ref_param["running_mean"], ref_param["running_var"] = ref_mean, ref_var
            ok_mean = _item(
                ctx,
                labels[0],
                param.get("running_mean"),
                ref_mean,
                "bn_forward",
                "running_mean",
                step_case,
            )
            ok_var = _item(
                ctx,
                labels[1],
                param.get("running_var"),
                ref_var,
                "bn_forward",
                "running_var",
                step_case,
            )
            if not (ok_mean and ok_var):
                # Later steps would only repeat the miss; continue from the correct state.
                param["running_mean"], param["running_var"] = ref_mean.copy(), ref_var.copy()


@register("bn_forward_test", NOTEBOOK, points=3)
def forward_test(ctx):
    """batchnorm_forward, test mode: output from the running statistics, state unchanged"""
    forward = ctx.function("batchnorm_forward")
    for case in cases.inference_cases(ctx.rng):
        eps = case["bn_param"]["eps"]
        label = f"batchnorm_forward test out, x {_shape(case['x'])}, eps={eps:g}"
        state_label = (
            f"batchnorm_forward test leaves running statistics unchanged, x {_shape(case['x'])}"
        )
        x, gamma, beta, param = _student_inputs(case)
        try:
            out, _ = _pair(ctx.call(forward, x, gamma, beta, param), "batchnorm_forward")
        except StudentError as error:
            _fail_all(ctx, [label, state_label], error, case)
            continue
        ref_out = reference.batchnorm_forward(
            case["x"], case["gamma"], case["beta"], case["bn_param"]
        )[0]
        _item(ctx, label, out, ref_out, "bn_forward", "out", case)
        unchanged = all(
            isinstance(param.get(key), np.ndarray)
            and param[key].shape == case["bn_param"][key].shape
            and np.array_equal(param[key], case["bn_param"][key])
            for key in ("running_mean", "running_var")
        )
        detail = (
            ""
            if unchanged
            else explain("bn_param's running statistics changed", "test-updates-running")
        )
        ctx.report.add(
            state_label, unchanged, detail, mistake_id=None if unchanged else "test-updates-running"
        )


@register("bn_forward_properties", NOTEBOOK, points=2)
def forward_properties(ctx):
    """batchnorm_forward: inputs left unmodified, float32 stays float32, bad mode raises ValueError"""
    forward = ctx.function("batchnorm_forward")
    for mode in ("train", "test"):
        case = cases.float32_case(ctx.rng, mode)
        x, gamma, beta, param = _student_inputs(case)
        labels = [
            f"batchnorm_forward {mode} leaves x, gamma and beta unmodified",
            f"batchnorm_forward {mode} with float32 inputs returns float32 out of shape {_shape(case['x'])}",
        ]
        if mode == "train":
            labels.append(
                "batchnorm_forward train with float32 inputs keeps float32 running statistics"
            )
        try:
            out, _ = _pair(ctx.call(forward, x, gamma, beta, param), "batchnorm_forward")
        except StudentError as error:
            _fail_all(ctx, labels, error)
            continue
        unmodified = all(
            np.array_equal(mine, theirs)
            for mine, theirs in [(x, case["x"]), (gamma, case["gamma"]), (beta, case["beta"])]
        )
        detail = (
            "" if unmodified else explain("an input array changed during the call", "mutates-input")
        )
        ctx.report.add(
            labels[0], unmodified, detail, mistake_id=None if unmodified else "mutates-input"
        )
        _dtype_item(ctx, labels[1], out, case["x"].shape)
        if mode == "train":
            stats = [param.get("running_mean"), param.get("running_var")]
            good = all(
                isinstance(value, np.ndarray) and value.dtype == np.float32 for value in stats
            )
            got = ", ".join(str(getattr(value, "dtype", type(value).__name__)) for value in stats)
            promoted = any(getattr(value, "dtype", None) == np.float64 for value in stats)
            mistake_id = "float32-promoted" if (promoted and not good) else None
            detail = (
                "" if good else explain(f"expected dtype float32 for both, got {got}", mistake_id)
            )
            ctx.report.add(labels[2], good, detail, mistake_id=mistake_id)
    case = cases.float32_case(ctx.rng, "train")
    x, gamma, beta, param = _student_inputs(case)
    param["mode"] = "eval"
    error = ctx.raised(forward, x, gamma, beta, param)
    good = error is not None and error.is_a("ValueError") and not error.is_a("NotImplementedError")
    got = "no exception" if error is None else error.type_name
    ctx.report.add(
        'batchnorm_forward with mode "eval" raises ValueError',
        good,
        f'expected ValueError, got {got}: raise ValueError for any mode other than "train" and "test"',
    )


def _dtype_item(ctx, label, out, shape):
    if not isinstance(out, np.ndarray):
        ctx.report.add(label, False, f"expected a NumPy array, got {type(out).__name__}")
    elif out.shape != shape:
        detail = f"expected shape {tuple(shape)}, got {_shape(out)}"
        ctx.report.add(label, False, detail)
    elif out.dtype != np.float32:
        mistake_id = "float32-promoted" if out.dtype == np.float64 else None
        ctx.report.add(
            label,
            False,
            explain(f"expected dtype float32, got {out.dtype}", mistake_id),
            mistake_id=mistake_id,
        )
    else:
        ctx.report.add(label, True)


# ---------------------------------------------------------------- backward
def _backward_items(ctx, backward_name, quantities, kind="bn_forward", case_list=None):
    """Check ``quantities`` of a backward function on the backward cases."""
    forward_name = "batchnorm_forward" if kind == "bn_forward" else "spatial_batchnorm_forward"
    backward_kind = "bn_backward" if kind == "bn_forward" else "spatial_backward"
    reference_forward = (
        reference.batchnorm_forward if kind == "bn_forward" else reference.spatial_batchnorm_forward
    )
    reference_backward = (
        reference.batchnorm_backward
        if kind == "bn_forward"
        else reference.spatial_batchnorm_backward
    )
    forward = ctx.function(forward_name)
    backward = ctx.function(backward_name)
    for case in case_list if case_list is not None else cases.backward_cases(ctx.rng):
        dtype = _dtype(case)
        suffix = f", x {_shape(case['x'])} {np.dtype(dtype).name}"
        labels = [f"{backward_name} {what}{suffix}" for what in quantities]
        try:
            _, cache = _pair(ctx.call(forward, *_student_inputs(case)), forward_name)
            grads = _triple(ctx.call(backward, case["dout"].copy(), cache), backward_name)
        except StudentError as error:
            _fail_all(ctx, labels, error)
            continue
        _, _, _, ref_cache = reference_forward(
            case["x"], case["gamma"], case["beta"], case["bn_param"]
        )
        ref = dict(
            zip(("dx", "dgamma", "dbeta"), reference_backward(case["dout"], ref_cache), strict=True)
        )
        got = dict(zip(("dx", "dgamma", "dbeta"), grads, strict=True))
        state = "unknown"
        for label, quantity in zip(labels, quantities, strict=True):
            # dx must keep the input dtype (float32 stays float32); dgamma/dbeta are checked for
            # values only, so that one promotion costs points once per backward cell.
            expect = dtype if (quantity == "dx" and dtype == np.float32) else None
            if (
                mismatch(got[quantity], ref[quantity], dtype, expect) is not None
                and state == "unknown"
            ):
                state = _forward_state(ctx, forward, case, kind)
            _item(
                ctx,
                label,
                got[quantity],
                ref[quantity],
                backward_kind,
                quantity,
                case,
                dtype,
                expect,
                None if state == "unknown" else state,
            )


@register("bn_backward_dx", NOTEBOOK, points=3)
def backward_dx(ctx):
    """batchnorm_backward: dx through your forward's cache, float32 stays float32"""
    _backward_items(ctx, "batchnorm_backward", ("dx",))


@register("bn_backward_params", NOTEBOOK, points=2)
def backward_params(ctx):
    """batchnorm_backward: dgamma and dbeta, shape (D,)"""
    _backward_items(ctx, "batchnorm_backward", ("dgamma", "dbeta"))


@register("bn_backward_alt", NOTEBOOK, points=2)
def backward_alt(ctx):
    """batchnorm_backward_alt: dx, dgamma and dbeta agree with the reference"""
    _backward_items(ctx, "batchnorm_backward_alt", ("dx", "dgamma", "dbeta"))


# ---------------------------------------------------------------- spatial (NHWC)
@register("spatial_forward", NOTEBOOK, points=2)
def spatial_forward(ctx):
    """spatial_batchnorm_forward: NHWC output and running statistics per channel"""
    forward = ctx.function("spatial_batchnorm_forward")
    for case in cases.spatial_cases(ctx.rng):
        mode = case["bn_param"]["mode"]
        dtype = _dtype(case)
        suffix = f", x {_shape(case['x'])} {np.dtype(dtype).name}"
        quantities = ("out", "running_mean", "running_var") if mode == "train" else ("out",)
        labels = [f"spatial_batchnorm_forward {mode} {what}{suffix}" for what in quantities]
        x, gamma, beta, param = _student_inputs(case)
        try:
            out, _ = _pair(ctx.call(forward, x, gamma, beta, param), "spatial_batchnorm_forward")
        except StudentError as error:
            _fail_all(ctx, labels, error)
            continue
        ref_out, ref_mean, ref_var, _ = reference.spatial_batchnorm_forward(
            case["x"], case["gamma"], case["beta"], case["bn_param"]
        )
        got = {
            "out": out,
            "running_mean": param.get("running_mean"),
            "running_var": param.get("running_var"),
        }
        ref = {"out": ref_out, "running_mean": ref_mean, "running_var": ref_var}
        # The unbiased variance everywhere or only in the running variance: the output tells.
        case = dict(case, out_correct=mismatch(out, ref_out, dtype) is None)
        for label, quantity in zip(labels, quantities, strict=True):
            _item(
                ctx, label, got[quantity], ref[quantity], "spatial_forward", quantity, case, dtype
            )
        if mode == "test":
            unchanged = all(
                np.array_equal(param.get(key), case["bn_param"][key])
                for key in ("running_mean", "running_var")
            )
            detail = (
                ""
                if unchanged
                else explain("bn_param's running statistics changed", "test-updates-running")
            )
            ctx.report.add(
                f"spatial_batchnorm_forward test leaves running statistics unchanged{suffix}",
                unchanged,
                detail,
                mistake_id=None if unchanged else "test-updates-running",
            )


@register("spatial_backward", NOTEBOOK, points=2)
def spatial_backward(ctx):
    """spatial_batchnorm_backward: NHWC dx, dgamma and dbeta (C,)"""
    train_cases = [
        case for case in cases.spatial_cases(ctx.rng) if case["bn_param"]["mode"] == "train"
    ]
    for case in train_cases:
        case["bn_param"] = cases.copy_param(case["bn_param"])
    _backward_items(
        ctx,
        "spatial_batchnorm_backward",
        ("dx", "dgamma", "dbeta"),
        kind="spatial_forward",
        case_list=train_cases,
    )


# ---------------------------------------------------------------- layer norm
@register("ln_forward", NOTEBOOK, points=2)
def layernorm_forward(ctx):
    """layernorm_forward: statistics per example, batch size 1 works"""
    forward = ctx.function("layernorm_forward")
    for case in cases.layernorm_cases(ctx.rng):
        label = f"layernorm_forward out, x {_shape(case['x'])}, eps={case['ln_param']['eps']:g}"
        try:
            out, _ = _pair(
                ctx.call(
                    forward,
                    case["x"].copy(),
                    case["gamma"].copy(),
                    case["beta"].copy(),
                    dict(case["ln_param"]),
                ),
                "layernorm_forward",
            )
        except StudentError as error:
            _fail_all(ctx, [label], error)
            continue
        ref_out, _ = reference.layernorm_forward(
            case["x"], case["gamma"], case["beta"], case["ln_param"]
        )
        _item(ctx, label, out, ref_out, "ln_forward", "out", case)


@register("ln_backward", NOTEBOOK, points=2)
def layernorm_backward(ctx):
    """layernorm_backward: dx, dgamma and dbeta through your forward's cache"""
    forward = ctx.function("layernorm_forward")
    backward = ctx.function("layernorm_backward")
    for case in cases.layernorm_cases(ctx.rng):
        labels = [
            f"layernorm_backward {what}, x {_shape(case['x'])}"
            for what in ("dx", "dgamma", "dbeta")
        ]
        try:
            _, cache = _pair(
                ctx.call(
                    forward,
                    case["x"].copy(),
                    case["gamma"].copy(),
                    case["beta"].copy(),
                    dict(case["ln_param"]),
                ),
                "layernorm_forward",
            )
            grads = _triple(ctx.call(backward, case["dout"].copy(), cache), "layernorm_backward")
        except StudentError as error:
            _fail_all(ctx, labels, error)
            continue
        _, ref_cache = reference.layernorm_forward(
            case["x"], case["gamma"], case["beta"], case["ln_param"]
        )
        ref = reference.layernorm_backward(case["dout"], ref_cache)
        state = "unknown"
        for label, quantity, got, expected in zip(
            labels, ("dx", "dgamma", "dbeta"), grads, ref, strict=True
        ):
            if mismatch(got, expected) is not None and state == "unknown":
                state = _forward_state(ctx, forward, case, "ln_forward")
            forward_state = None if state == "unknown" else state
            _item(ctx, label, got, expected, "ln_backward", quantity, case, forward=forward_state)


# ---------------------------------------------------------------- Part C: the derivation's pieces
_PIECE_CAUSES = {
    "dx_hat": "dL/dx_hat is g = gamma * dout (x_hat = (x - mean) / s feeds y = gamma * x_hat + beta)",
    "dvar": "dL/dvar = sum over the batch of g * (x - mean) * (-1/2) * (var + eps) ** (-3/2): "
    "differentiate 1 / sqrt(var + eps), keep the sum over the batch (axis 0)",
    "dmean": "dL/dmean = -sum(g) / s over the batch, plus dL/dvar * dvar/dmean, and "
    "dvar/dmean = -2 * mean(x - mean) = 0",
}


@register("bn_backward_pieces", NOTEBOOK, points=1)
def backward_pieces(ctx):
    """backward_pieces: dL/dx_hat, dL/dvar and dL/dmean of your derivation"""
    pieces = ctx.function("backward_pieces")
    for case in cases.backward_cases(ctx.rng)[:3]:
        x, gamma, dout = case["x"], case["gamma"], case["dout"]
        eps = case["bn_param"]["eps"]
        labels = {
            name: f"backward_pieces {name}, x {_shape(x)}" for name in ("dx_hat", "dvar", "dmean")
        }
        try:
            got = ctx.call(pieces, x.copy(), gamma.copy(), dout.copy(), eps)
        except StudentError as error:
            _fail_all(ctx, list(labels.values()), error)
            continue
        if not isinstance(got, dict):
            for label in labels.values():
                ctx.report.add(
                    label, False, f"backward_pieces must return a dict, got {_kind(got)}"
                )
            continue
        ref = reference.batchnorm_gradient_pieces(x, gamma, dout, eps)
        for name, label in labels.items():
            reason = mismatch(got.get(name), ref[name])
            if reason is None:
                ctx.report.add(label, True)
                continue
            mistake_id = pieces_diagnosis(name, got.get(name), ref[name], case)
            detail = (
                explain(reason, mistake_id)
                if mistake_id
                else f"{reason}. Expected {_PIECE_CAUSES[name]}"
            )
            ctx.report.add(label, False, detail, mistake_id=mistake_id)
