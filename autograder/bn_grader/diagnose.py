"""Structural diagnosis: infer from a student's result and its inputs what was computed.

Instead of comparing a wrong result with a fixed list of variants, each result is explained as a
combination of choices the student could have made:

- forward passes (BN 2-D and NHWC, layer norm): which mean was subtracted (batch, running, over
  all elements, per example, none), which variance divided (biased, unbiased, running, over all
  elements, per example) and how (``sqrt(v + eps)``, ``sqrt(v) + eps``, ``sqrt(v)``, ``v + eps``),
  which of gamma and beta scaled and shifted, and whether the shift sat inside the division;
- running statistics: which batch statistic was blended in, with which weight;
- backward passes: a least-squares fit of dx on the three terms of the staged derivation (the
  direct path, the path through the mean, the path through the variance), with the standard
  deviation with or without eps and gamma in or out; dgamma and dbeta against their candidates.

Every combination that reproduces the result (same NaN pattern, finite values within the
tolerance) is a candidate; the candidates with the fewest mistakes win. A mistake is named only
when every winner contains it, so two explanations that fit equally well never produce a guess.
When nothing fits, :func:`properties` says which property of the result differs instead.
"""

from dataclasses import dataclass
from itertools import product

import numpy as np

from .compare import TOLERANCES

# Mistake ids used here are defined (with the sentence a student reads) in mistakes.py.
MAX_MISTAKES = 3


@dataclass(frozen=True)
class Finding:
    """What a diagnosis found: catalogue ids (most important first) and what was computed."""

    ids: tuple
    computed: str = ""


# ------------------------------------------------------------------------------- comparisons
def _tolerance(dtype):
    return TOLERANCES.get(np.dtype(dtype), TOLERANCES[np.dtype(np.float64)])


def same(got, candidate, dtype=np.float64):
    """True when ``got`` reproduces ``candidate``: same shape, same NaN/inf places, finite values
    within the tolerance for ``dtype`` (scaled with ``candidate``, as compare.mismatch does)."""
    if not isinstance(got, np.ndarray) or got.shape != np.shape(candidate):
        return False
    if not np.issubdtype(got.dtype, np.number) or np.iscomplexobj(got):
        return False
    got = got.astype(np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    finite = np.isfinite(candidate)
    if not np.array_equal(finite, np.isfinite(got)):
        return False
    if not finite.any():
        return True
    atol_rel, rtol = _tolerance(dtype)
    scale = max(float(np.abs(candidate[finite]).max()), 1.0)
    error = np.abs(got[finite] - candidate[finite])
    return bool((error <= atol_rel * scale + rtol * np.abs(candidate[finite])).all())


def _far(got, candidate, magnitude):
    """A cheap first look (two elements) that rejects most candidates before :func:`same`;
    ``magnitude`` is 1 + max|got|: 1e-3 of it is well above any tolerance :func:`same` allows."""
    for index in (0, -1):
        a, b = float(got.flat[index]), float(np.asarray(candidate).flat[index])
        if np.isfinite(a) and np.isfinite(b) and abs(a - b) > 1e-3 * magnitude:
            return True
    return False


def _choose(matches):
    """The ids every minimal candidate shares, and the description they share, else None.

    ``matches``: list of (ids tuple, description).
    """
    if not matches:
        return None
    fewest = min(len(ids) for ids, _ in matches)
    best = [(ids, text) for ids, text in matches if len(ids) == fewest]
    common = set(best[0][0])
    for ids, _ in best[1:]:
        common &= set(ids)
    if not common:
        return None
    ordered = tuple(i for i in best[0][0] if i in common)
    texts = {text for _, text in best}
    return Finding(ordered, texts.pop() if len(texts) == 1 else "")


# ------------------------------------------------------------------------------ forward passes
_FORMS = {
    "inside": ("sqrt({v} + eps)", None),
    "outside": ("(sqrt({v}) + eps)", "eps-outside-sqrt"),
    "missing": ("sqrt({v})", "eps-missing"),
    "no-sqrt": ("({v} + eps)", "sqrt-missing"),
}
_ROLES = {
    ("gamma", "beta"): None,
    ("beta", "gamma"): "gamma-beta-swapped",
    ("1", "0"): "gamma-beta-missing",
    ("gamma", "0"): "gamma-beta-missing",
    ("1", "beta"): "gamma-beta-missing",
}


def _spread(var, eps, form):
    with np.errstate(all="ignore"):
        if form == "inside":
            return np.sqrt(var + eps)
        if form == "outside":
            return np.sqrt(var) + eps
        if form == "missing":
            return np.sqrt(var)
        return var + eps


def _centres(x, param, expected):
    """(name, value, family) of the means a student might subtract from the (M, D) array x."""
    options = [("batch_mean", x.mean(axis=0), "batch")]
    if expected != "example":
        options.append(("running_mean", np.asarray(param["running_mean"], np.float64), "running"))
    if expected == "batch":
        # Train mode normalising with the running mean after updating it.
        momentum = float(param["momentum"])
        updated = momentum * np.asarray(param["running_mean"], np.float64) + (
            1.0 - momentum
        ) * x.mean(axis=0)
        options.append(("updated_running_mean", updated, "running"))
    if expected != "running":
        options += [
            ("mean_over_all_elements", np.full(x.shape[1], x.mean()), "all"),
            ("per_example_mean", x.mean(axis=1, keepdims=True), "example"),
        ]
    options.append(("0", np.zeros(x.shape[1]), "zero"))
    return options


def _variances(x, param, expected):
    """(name, value, family, unbiased) of the variances a student might divide by."""
    m = x.shape[0]
    with np.errstate(all="ignore"):
        unbiased = x.var(axis=0, ddof=1) if m > 1 else np.full(x.shape[1], np.nan)
        options = [("batch_var", x.var(axis=0), "batch", False)]
        options.append(("unbiased_batch_var", unbiased, "batch", True))
        # E[x^2] without subtracting the mean: the variance of uncentred data.
        options.append(("mean_of_x_squared", (x**2).mean(axis=0), "batch", "uncentred"))
        if expected != "example":
            options.append(
                ("running_var", np.asarray(param["running_var"], np.float64), "running", False)
            )
        if expected == "batch":
            momentum = float(param["momentum"])
            updated = momentum * np.asarray(param["running_var"], np.float64) + (
                1.0 - momentum
            ) * x.var(axis=0)
            options.append(("updated_running_var", updated, "running", False))
        if expected != "running":
            per_example_unbiased = (
                x.var(axis=1, ddof=1, keepdims=True) if x.shape[1] > 1 else np.full((m, 1), np.nan)
            )
            options += [
                ("var_over_all_elements", np.full(x.shape[1], x.var()), "all", False),
                ("per_example_var", x.var(axis=1, keepdims=True), "example", False),
                ("unbiased_per_example_var", per_example_unbiased, "example", True),
            ]
    return options


def _family_ids(family, expected):
    """Mistake ids for taking a statistic from ``family`` where ``expected`` was due."""
    if family == expected:
        return ()
    if family == "zero":
        return ("mean-not-subtracted",)
    if expected == "running":  # test mode: only batch statistics are offered besides
        return ("test-uses-batch-stats",)
    if family == "running":
        return ("train-uses-running",)
    if family == "all":
        return ("stats-over-all-elements",)
    return ("wrong-axis",)  # per example in BN, per feature (batch axis) in layer norm


def forward_finding(kind, got, case, dtype=np.float64):
    """Explain a wrong forward output ``got`` (shape of x) as a combination of choices.

    Args:
        kind: "bn_forward", "spatial_forward" or "ln_forward".
        case: the inputs as given to the student (x, gamma, beta, bn_param or ln_param).

    Returns:
        :class:`Finding` or None.
    """
    x = np.asarray(case["x"], np.float64)
    if not isinstance(got, np.ndarray) or got.shape != x.shape:
        return None
    d = x.shape[-1]
    x = x.reshape(-1, d)
    got = got.reshape(-1, d)
    gamma = np.asarray(case["gamma"], np.float64)
    beta = np.asarray(case["beta"], np.float64)
    if kind == "ln_forward":
        param, expected = case["ln_param"], "example"
    else:
        param = case["bn_param"]
        expected = "batch" if param["mode"] == "train" else "running"
    eps = float(param["eps"])
    values = {"gamma": gamma, "beta": beta, "1": 1.0, "0": 0.0}
    finite = np.isfinite(got)
    magnitude = 1.0 + (float(np.abs(got[finite]).max()) if finite.any() else 0.0)
    matches = []
    for (c_name, centre, c_family), (v_name, var, v_family, unbiased) in product(
        _centres(x, param, expected), _variances(x, param, expected)
    ):
        base = set(_family_ids(c_family, expected)) | set(_family_ids(v_family, expected))
        if unbiased == "uncentred":
            base.add("var-not-centred")
        elif unbiased:
            base.add("unbiased-variance")
        if len(base) > MAX_MISTAKES:
            continue
        with np.errstate(all="ignore"):
            centred = x - centre
        for form, (pattern, form_id) in _FORMS.items():
            ids_form = base | ({form_id} if form_id else set())
            if len(ids_form) > MAX_MISTAKES:
                continue
            spread = _spread(var, eps, form)
            spread_text = pattern.format(v=v_name)
            with np.errstate(all="ignore"):
                normalised = centred / spread
            for (scale, shift), role_id in _ROLES.items():
                ids_role = ids_form | ({role_id} if role_id else set())
                for divided in (False, True):
                    ids = ids_role | ({"shift-divided-by-std"} if divided else set())
                    if not ids or len(ids) > MAX_MISTAKES:
                        continue
                    with np.errstate(all="ignore"):
                        if divided:
                            pred = (values[scale] * centred + values[shift]) / spread
                        else:
                            pred = values[scale] * normalised + values[shift]
                    if _far(got, pred, magnitude) or not same(got, pred, dtype):
                        continue
                    centre_text = "x" if c_name == "0" else f"(x - {c_name})"
                    if divided:
                        text = f"({scale} * {centre_text} + {shift}) / {spread_text}"
                    else:
                        text = f"{scale} * {centre_text} / {spread_text} + {shift}"
                    text = text.replace("1 * ", "").replace(" + 0", "")
                    matches.append((_ordered(ids), f"out = {text}"))
    return _choose(matches)


# Most specific first: the order a student reads the causes in.
_ORDER = [
    "wrong-shape",
    "stats-over-all-elements",
    "wrong-axis",
    "test-uses-batch-stats",
    "train-uses-running",
    "mean-not-subtracted",
    "unbiased-variance",
    "var-not-centred",
    "pytorch-running-var",
    "running-var-is-std",
    "eps-outside-sqrt",
    "eps-missing",
    "sqrt-missing",
    "shift-divided-by-std",
    "gamma-beta-swapped",
    "gamma-beta-missing",
    "momentum-swapped",
    "running-replaced",
    "running-not-written-back",
    "eps-missing-backward",
    "backward-gamma-missing",
    "ln-gamma-outside-sums",
    "backward-missing-mean-path",
    "backward-missing-var-path",
    "backward-term-weight",
    "params-swapped",
    "dgamma-uses-x",
    "params-mean-not-sum",
]


def _ordered(ids):
    return tuple(sorted(ids, key=lambda i: _ORDER.index(i) if i in _ORDER else len(_ORDER)))


# ------------------------------------------------------------------------- running statistics
def running_finding(quantity, got, case, dtype=np.float64):
    """Explain a wrong running_mean / running_var written back in train mode.

    ``case`` holds the batch ``x`` and the ``bn_param`` the student started from;
    ``case["out_correct"]`` (if present) says whether the step's output was right, which tells
    the unbiased variance everywhere (out wrong too) from PyTorch's rule (only the running one).
    """
    x = np.asarray(case["x"], np.float64)
    x = x.reshape(-1, x.shape[-1])
    param = case["bn_param"]
    old = np.asarray(param[quantity], np.float64)
    momentum = float(param["momentum"])
    if not isinstance(got, np.ndarray) or got.shape != old.shape:
        return None
    m = x.shape[0]
    with np.errstate(all="ignore"):
        # With a batch of one, a per-example statistic broadcast to (D,) equals the one over
        # all elements: both are offered, so that such a tie names neither.
        per_example = m == 1
        if quantity == "running_mean":
            stats = [
                ("batch_mean", x.mean(axis=0), ()),
                (
                    "mean_over_all_elements",
                    np.full(x.shape[1], x.mean()),
                    ("stats-over-all-elements",),
                ),
            ]
            if per_example:
                stats.append(("per_example_mean", np.full(x.shape[1], x.mean()), ("wrong-axis",)))
        else:
            unbiased = x.var(axis=0, ddof=1) if m > 1 else np.full(x.shape[1], np.nan)
            unbiased_id = (
                "pytorch-running-var" if case.get("out_correct", False) else "unbiased-variance"
            )
            stats = [
                ("batch_var", x.var(axis=0), ()),
                ("unbiased_batch_var", unbiased, (unbiased_id,)),
                ("batch_std", x.std(axis=0), ("running-var-is-std",)),
                (
                    "var_over_all_elements",
                    np.full(x.shape[1], x.var()),
                    ("stats-over-all-elements",),
                ),
                ("mean_of_x_squared", (x**2).mean(axis=0), ("var-not-centred",)),
            ]
            if per_example:
                stats.append(("per_example_var", np.full(x.shape[1], x.var()), ("wrong-axis",)))
    weights = [
        (momentum, ()),
        (1.0 - momentum, ("momentum-swapped",)),
        (0.0, ("running-replaced",)),
    ]
    name = quantity
    matches = []
    if same(got, old, dtype):
        matches.append((("running-not-written-back",), f"{name} is the value before the step"))
    for (stat_name, stat, stat_ids), (keep, weight_ids) in product(stats, weights):
        ids = stat_ids + weight_ids
        if not ids:
            continue
        with np.errstate(all="ignore"):
            pred = keep * old + (1.0 - keep) * stat
        if same(got, pred, dtype):
            text = (
                f"{name} = {stat_name}"
                if keep == 0.0
                else f"{name} = {keep:g} * old {name} + {1.0 - keep:g} * {stat_name}"
            )
            matches.append((_ordered(ids), text))
    return _choose(matches)


# ------------------------------------------------------------------------------ backward passes
_NICE = (0.0, 1.0, -1.0, 2.0, 0.5, -0.5, -2.0)


def _terms(x, gamma, eps, dout, axis, eps_in, gamma_mode):
    """The three terms of the staged derivation of dx, flattened; ``axis`` is the normalised one.

    dx = dx_hat / std  - mean(dx_hat) / std  - (x - mean) * mean(dx_hat * (x - mean)) / std**3
    with dx_hat = dout * gamma (direct path, path through the mean, path through the variance).
    """
    mean = x.mean(axis=axis, keepdims=True)
    centred = x - mean
    var = (centred**2).mean(axis=axis, keepdims=True)
    std = np.sqrt(var + eps) if eps_in else np.sqrt(var)
    if gamma_mode == "outside":
        # gamma multiplied after the sums (layer norm's trap: gamma varies along the normalised
        # axis there, so it cannot be taken out of them).
        direct = gamma * dout / std
        through_mean = -gamma * dout.mean(axis=axis, keepdims=True) / std
        through_var = -gamma * centred * (dout * centred).mean(axis=axis, keepdims=True) / std**3
    else:
        dx_hat = dout * gamma if gamma_mode == "inside" else dout
        direct = dx_hat / std
        through_mean = -dx_hat.mean(axis=axis, keepdims=True) / std
        through_var = -centred * (dx_hat * centred).mean(axis=axis, keepdims=True) / std**3
    return [np.broadcast_to(t, x.shape).ravel() for t in (direct, through_mean, through_var)]


def _nice(value, n):
    for target in (*_NICE, float(n), 1.0 / n, (n - 1.0) / n, n / (n - 1.0)):
        if abs(value - target) <= 1e-3 * max(1.0, abs(target)):
            return target
    return None


def dx_finding(kind, got, case, dtype=np.float64):
    """Explain a wrong dx by fitting it on the terms of the staged derivation.

    Args:
        kind: "bn_backward", "spatial_backward" or "ln_backward".
        case: x, gamma, dout and bn_param/ln_param (eps).
    """
    x = np.asarray(case["x"], np.float64)
    if not isinstance(got, np.ndarray) or got.shape != x.shape:
        return None
    if not np.issubdtype(got.dtype, np.number) or not np.isfinite(got).all():
        return None
    d = x.shape[-1]
    x = x.reshape(-1, d)
    dout = np.asarray(case["dout"], np.float64).reshape(-1, d)
    gamma = np.asarray(case["gamma"], np.float64)
    target = got.astype(np.float64).ravel()
    if kind == "ln_backward":
        axis, eps, n = 1, float(case["ln_param"]["eps"]), x.shape[1]
        gamma_modes = ("inside", "missing", "outside")
    else:
        axis, eps, n = 0, float(case["bn_param"]["eps"]), x.shape[0]
        gamma_modes = ("inside", "missing")
    if n < 2 or x.size < 5:
        return None
    # Float64 results reproduce a formula to about 1e-12; float32 ones to about 1e-6.
    tolerance = 1e-9 if np.dtype(dtype) == np.float64 else 3e-5
    norm = max(float(np.linalg.norm(target)), 1e-300)
    fits = []
    for eps_in, gamma_mode in product((True, False), gamma_modes):
        with np.errstate(all="ignore"):
            columns = np.stack(_terms(x, gamma, eps, dout, axis, eps_in, gamma_mode), axis=1)
        if not np.isfinite(columns).all():
            continue
        weights, *_ = np.linalg.lstsq(columns, target, rcond=None)
        residual = float(np.linalg.norm(columns @ weights - target)) / norm
        fits.append((residual, eps_in, gamma_mode, weights))
    good = [fit for fit in fits if fit[0] <= tolerance]
    matches = []
    for _, eps_in, gamma_mode, weights in good:
        rounded = [_nice(float(w), n) for w in weights]
        if any(r is None for r in rounded):
            continue
        ids = set()
        if not eps_in:
            ids.add("eps-missing-backward")
        if gamma_mode == "missing":
            ids.add("backward-gamma-missing")
        if gamma_mode == "outside":
            ids.add("ln-gamma-outside-sums")
        direct, through_mean, through_var = rounded
        if direct != 1.0:
            ids.add("backward-term-weight")
        if through_mean == 0.0:
            ids.add("backward-missing-mean-path")
        elif through_mean != 1.0:
            ids.add("backward-term-weight")
        if through_var == 0.0:
            ids.add("backward-missing-var-path")
        elif through_var != 1.0:
            ids.add("backward-term-weight")
        if not ids:
            continue
        parts = []
        for name, weight in (
            ("direct path dx_hat / std", direct),
            ("path through the mean", through_mean),
            ("path through the variance", through_var),
        ):
            if weight == 0.0:
                parts.append(f"no {name}")
            elif weight != 1.0:
                parts.append(f"the {name} weighted {weight:g} instead of 1")
        if not eps_in:
            parts.append("std = sqrt(var) without eps")
        if gamma_mode == "missing":
            parts.append("no factor gamma (dx_hat = dout)")
        if gamma_mode == "outside":
            parts.append("gamma taken out of the sums over the features")
        text = "the staged derivation of dx with " + ", ".join(parts)
        matches.append((_ordered(ids), text))
    return _choose(matches)


def params_finding(kind, quantity, got, case, dtype=np.float64):
    """Explain a wrong dgamma or dbeta (shape (D,)) from its candidates."""
    x = np.asarray(case["x"], np.float64)
    d = x.shape[-1]
    if not isinstance(got, np.ndarray) or got.shape != (d,):
        return None
    x = x.reshape(-1, d)
    dout = np.asarray(case["dout"], np.float64).reshape(-1, d)
    if kind == "ln_backward":
        eps = float(case["ln_param"]["eps"])
        mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    else:
        eps = float(case["bn_param"]["eps"])
        mean, var = x.mean(axis=0), x.var(axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    dgamma, dbeta = (dout * x_hat).sum(axis=0), dout.sum(axis=0)
    m = x.shape[0]
    if quantity == "dgamma":
        candidates = [
            (dbeta, ("params-swapped",), "dgamma = sum of dout"),
            ((dout * x).sum(axis=0), ("dgamma-uses-x",), "dgamma = sum of dout * x"),
            (dgamma / m, ("params-mean-not-sum",), "dgamma = mean of dout * x_hat"),
        ]
    else:
        candidates = [
            (dgamma, ("params-swapped",), "dbeta = sum of dout * x_hat"),
            (dbeta / m, ("params-mean-not-sum",), "dbeta = mean of dout"),
        ]
    matches = [(ids, text) for value, ids, text in candidates if same(got, value, dtype)]
    return _choose(matches)


# ---------------------------------------------------------------------------------- fallback
def properties(kind, quantity, got, ref, case):
    """When nothing is named: which property of the result differs (a sentence, or "")."""
    if not isinstance(got, np.ndarray) or got.shape != np.shape(ref):
        return ""
    if not np.issubdtype(got.dtype, np.number) or not np.isfinite(got).all():
        return ""
    ref = np.asarray(ref, np.float64)
    got = got.astype(np.float64)
    if quantity == "out" and ref.ndim >= 2:
        axis = 1 if kind == "ln_forward" else 0
        got2, ref2 = (
            (got, ref)
            if kind == "ln_forward"
            else (
                got.reshape(-1, ref.shape[-1]),
                ref.reshape(-1, ref.shape[-1]),
            )
        )
        what = "per-example" if axis == 1 else "per-feature"
        where = "example" if axis == 1 else "feature"
        parts = []
        # Only where they differ, never the values: the per-feature mean and spread of a right
        # output are beta and |gamma|, hidden inputs.
        for name, fn in (("mean", np.mean), ("spread (std)", np.std)):
            a, b = fn(got2, axis=axis), fn(ref2, axis=axis)
            worst = int(np.argmax(np.abs(a - b)))
            if abs(a[worst] - b[worst]) > 1e-6 * max(1.0, float(np.abs(b).max())):
                parts.append(f"the {what} {name} differs (most at {where} {worst})")
            else:
                parts.append(f"the {what} {name} is right")
        return "; ".join(parts)
    if quantity == "dx" and kind != "ln_backward" and ref.ndim >= 2:
        d = ref.shape[-1]
        sums = got.reshape(-1, d).sum(axis=0)
        scale = max(1.0, float(np.abs(got).max()))
        if np.abs(sums).max() > 1e-6 * scale * got.reshape(-1, d).shape[0]:
            worst = int(np.argmax(np.abs(sums)))
            return (
                f"a correct dx sums to 0 over the batch in every feature; yours sums to "
                f"{sums[worst]:.4g} in feature {worst}"
            )
    return ""
