"""Structural diagnosis, one mistake kind at a time, on inputs the grader's cases never use.

Inputs are drawn here with their own seeds and shapes (not cases.py's); every wrong result is
written out in NumPy in this file, the way a student would compute it, and the expected values
come from the float64 reference. Each test checks the name found and, where the result is
ambiguous, that nothing is named.
"""

import contextlib
import io
import warnings

import numpy as np
import pytest

from bn_grader import diagnose, mistakes, reference
from bn_grader.runner import check_result


def bn_case(seed, n=11, d=6, mode="train", eps=1e-3, momentum=0.85, scale=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=d) * 4 + scale * rng.uniform(0.5, 2, size=d) * rng.normal(
        size=(n, d)
    )
    return {
        "x": x,
        "gamma": rng.normal(1.0, 0.4, d),
        "beta": rng.normal(0.0, 1.0, d),
        "dout": rng.normal(size=(n, d)),
        "bn_param": {
            "mode": mode,
            "eps": eps,
            "momentum": momentum,
            "running_mean": rng.normal(3.0, 2.0, d),
            "running_var": rng.uniform(0.05, 9.0, d),
        },
    }


def ref_out(case):
    return reference.batchnorm_forward(case["x"], case["gamma"], case["beta"], case["bn_param"])[0]


def found(kind, quantity, got, case, ref=None):
    ref = ref_out(case) if ref is None else ref
    finding = mistakes.diagnosis(kind, quantity, got, ref, case)
    return set(finding.ids) if finding else set()


SEEDS = [101, 202, 303]


# ------------------------------------------------------------------------------ forward, train
@pytest.mark.parametrize("seed", SEEDS)
def test_statistics_over_all_elements(seed):
    case = bn_case(seed)
    x, g, b, eps = case["x"], case["gamma"], case["beta"], case["bn_param"]["eps"]
    got = g * (x - x.mean()) / np.sqrt(x.var() + eps) + b
    assert found("bn_forward", "out", got, case) == {"stats-over-all-elements"}


@pytest.mark.parametrize("seed", SEEDS)
def test_shift_divided_by_std(seed):
    case = bn_case(seed)
    x, g, b, eps = case["x"], case["gamma"], case["beta"], case["bn_param"]["eps"]
    got = (g * (x - x.mean(0)) + b) / np.sqrt(x.var(0) + eps)
    assert found("bn_forward", "out", got, case) == {"shift-divided-by-std"}


@pytest.mark.parametrize("seed", SEEDS)
def test_two_mistakes_at_once_unbiased_and_swapped(seed):
    case = bn_case(seed)
    x, g, b, eps = case["x"], case["gamma"], case["beta"], case["bn_param"]["eps"]
    got = b * (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + eps) + g
    assert found("bn_forward", "out", got, case) == {"unbiased-variance", "gamma-beta-swapped"}


def test_eps_missing_with_a_constant_feature_is_nan_not_a_guess():
    case = bn_case(7)
    case["x"][:, 2] = 1.25
    x, g, b = case["x"], case["gamma"], case["beta"]
    with np.errstate(all="ignore"):
        got = g * (x - x.mean(0)) / np.sqrt(x.var(0)) + b
    assert found("bn_forward", "out", got, case) == {"nan-or-inf"}


# ------------------------------------------------------------------------------- forward, test
@pytest.mark.parametrize("seed", SEEDS)
def test_test_mode_mixing_running_mean_and_batch_variance(seed):
    case = bn_case(seed, mode="test")
    x, g, b, p = case["x"], case["gamma"], case["beta"], case["bn_param"]
    got = g * (x - p["running_mean"]) / np.sqrt(x.var(0) + p["eps"]) + b
    finding = mistakes.diagnosis("bn_forward", "out", got, ref_out(case), case)
    assert finding.ids == ("test-uses-batch-stats",)
    assert "running_mean" in finding.computed and "batch_var" in finding.computed


@pytest.mark.parametrize("seed", SEEDS)
def test_test_mode_eps_outside(seed):
    case = bn_case(seed, mode="test", eps=1e-2)
    x, g, b, p = case["x"], case["gamma"], case["beta"], case["bn_param"]
    got = g * (x - p["running_mean"]) / (np.sqrt(p["running_var"]) + p["eps"]) + b
    assert found("bn_forward", "out", got, case) == {"eps-outside-sqrt"}


def test_batch_of_one_in_test_mode_with_batch_statistics_is_named():
    case = bn_case(5, n=1, mode="test")
    got = np.broadcast_to(case["beta"], case["x"].shape).copy()  # x - x.mean(0) is 0
    assert found("bn_forward", "out", got, case) == {"test-uses-batch-stats"}


# ------------------------------------------------------------------------- running statistics
def test_unbiased_variance_at_batch_size_one_is_not_blamed_on_eps():
    case = bn_case(9, n=1)
    p = case["bn_param"]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # degrees of freedom <= 0: the mistake
        got = p["momentum"] * p["running_var"] + (1 - p["momentum"]) * case["x"].var(0, ddof=1)
    ref = reference.batchnorm_forward(case["x"], case["gamma"], case["beta"], p)[2]
    ids = found("bn_forward", "running_var", got, case, ref)
    assert ids == {"unbiased-variance"}
    assert "unbiased-variance" in ids and "nan-or-inf" not in ids and "eps-missing" not in ids
    assert "N - 1 = 0" in mistakes.cause("unbiased-variance")


def test_per_example_and_all_element_statistics_tie_at_batch_size_one():
    case = bn_case(10, n=1)
    p = case["bn_param"]
    got = p["momentum"] * p["running_mean"] + (1 - p["momentum"]) * case["x"].mean()
    ref = reference.batchnorm_forward(case["x"], case["gamma"], case["beta"], p)[1]
    assert found("bn_forward", "running_mean", got, case, ref) == set()


@pytest.mark.parametrize("seed", SEEDS)
def test_momentum_swapped_and_pytorch_variance_together(seed):
    case = bn_case(seed) | {"out_correct": True}
    p, x = case["bn_param"], case["x"]
    m = p["momentum"]
    got = m * x.var(0, ddof=1) + (1 - m) * p["running_var"]
    ref = reference.batchnorm_forward(x, case["gamma"], case["beta"], p)[2]
    assert found("bn_forward", "running_var", got, case, ref) == {
        "momentum-swapped",
        "pytorch-running-var",
    }


# ---------------------------------------------------------------------------------- backward
def staged_dx(case, eps_in_backward=True, mean_path=True, var_factor=1.0, use_gamma=True):
    """A student's staged backward, written out with switches."""
    x, gamma, dout, eps = case["x"], case["gamma"], case["dout"], case["bn_param"]["eps"]
    n = x.shape[0]
    mu = x.mean(0)
    var = x.var(0)
    std = np.sqrt(var + eps) if eps_in_backward else np.sqrt(var)
    dxhat = dout * gamma if use_gamma else dout
    dvar = np.sum(dxhat * (x - mu), axis=0) * -0.5 * std**-3
    dxc = dxhat / std + var_factor * dvar * 2 * (x - mu) / n
    return dxc - dxc.mean(0) if mean_path else dxc


def ref_dx(case):
    _, _, _, cache = reference.batchnorm_forward(
        case["x"], case["gamma"], case["beta"], case["bn_param"]
    )
    return reference.batchnorm_backward(case["dout"], cache)[0]


@pytest.mark.parametrize(
    ("switches", "expected"),
    [
        ({"eps_in_backward": False}, {"eps-missing-backward"}),
        ({"mean_path": False}, {"backward-missing-mean-path"}),
        ({"var_factor": 0.0}, {"backward-missing-var-path"}),
        ({"var_factor": 0.5}, {"backward-term-weight"}),
        ({"use_gamma": False}, {"backward-gamma-missing"}),
        (
            {"eps_in_backward": False, "mean_path": False},
            {"eps-missing-backward", "backward-missing-mean-path"},
        ),
    ],
)
@pytest.mark.parametrize("seed", SEEDS[:2])
def test_dx_terms_of_the_staged_derivation(switches, expected, seed):
    case = bn_case(seed, eps=5e-2)  # eps visible next to the variance
    got = staged_dx(case, **switches)
    assert found("bn_backward", "dx", got, case, ref_dx(case)) == expected


def test_dx_fit_reports_the_weights_it_found():
    case = bn_case(4, eps=5e-2)
    finding = mistakes.diagnosis(
        "bn_backward", "dx", staged_dx(case, var_factor=0.5), ref_dx(case), case
    )
    assert "the path through the variance weighted 0.5 instead of 1" in finding.computed


def test_layernorm_gamma_outside_the_sums_is_named():
    rng = np.random.default_rng(55)
    n, d = 5, 9
    x = rng.normal(0, 3, size=(n, 1)) + rng.normal(size=(n, d))
    gamma, beta, dout = rng.normal(1, 0.5, d), rng.normal(size=d), rng.normal(size=(n, d))
    case = {"x": x, "gamma": gamma, "beta": beta, "dout": dout, "ln_param": {"eps": 1e-5}}
    _, cache = reference.layernorm_forward(x, gamma, beta, case["ln_param"])
    ref = reference.layernorm_backward(dout, cache)[0]
    x_hat, _, inv_std = cache
    got = (gamma * inv_std / d) * (
        d * dout - dout.sum(1, keepdims=True) - x_hat * (dout * x_hat).sum(1, keepdims=True)
    )
    assert found("ln_backward", "dx", got, case, ref) == {"ln-gamma-outside-sums"}


# -------------------------------------------------------------------------- never a wrong name
@pytest.mark.parametrize("seed", SEEDS)
def test_results_no_model_explains_name_nothing_and_say_which_property_differs(seed):
    case = bn_case(seed)
    ref = ref_out(case)
    rng = np.random.default_rng(seed + 1)
    for got in (ref + rng.normal(0, 0.1, ref.shape), np.tanh(ref), ref[::-1].copy()):
        assert found("bn_forward", "out", got, case, ref) == set()
    text = diagnose.properties("bn_forward", "out", ref + 0.5, ref, case)
    assert "per-feature mean differs" in text and "per-feature spread (std) is right" in text
    assert not any(
        f"{value:.4g}" in text for value in np.concatenate([case["beta"], case["gamma"]])
    )
    dx = ref_dx(case)
    assert found("bn_backward", "dx", dx + rng.normal(0, 0.1, dx.shape), case, dx) == set()


def grade_lines(check_id, namespace):
    """[(printed line, mistake ids its item records)] of the check's failed items."""
    with contextlib.redirect_stdout(io.StringIO()):
        result = check_result(check_id, namespace)
    return [
        (line, set(item["mistakes"]))
        for item, line in zip(result.items, result.lines, strict=False)
        if not item["passed"]
    ]


UNBIASED_FORWARD = """
def batchnorm_forward(x, gamma, beta, bn_param):
    mean, var = x.mean(axis=0), x.var(axis=0, ddof=1)
    x_hat = (x - mean) / np.sqrt(var + bn_param["eps"])
    return gamma * x_hat + beta, (x_hat, gamma, np.sqrt(var + bn_param["eps"]))
"""


def test_a_none_result_does_not_get_the_forward_mistake_appended():
    namespace = {"np": np}
    exec(
        UNBIASED_FORWARD
        + """
def batchnorm_backward(dout, cache):
    x_hat, gamma, std = cache
    n = dout.shape[0]
    dx = gamma / (n * std) * (n * dout - dout.sum(0) - x_hat * (dout * x_hat).sum(0))
    return dx, None, dout.sum(axis=0)
""",
        namespace,
    )
    forward_cause = mistakes.cause("unbiased-variance")
    lines = grade_lines("bn_backward_params", namespace)
    dgamma = [(line, ids) for line, ids in lines if "dgamma" in line]
    assert dgamma and all(
        ids == {"returns-none"} and forward_cause not in line for line, ids in dgamma
    )
    whole_none = {"np": np}
    exec(UNBIASED_FORWARD + "\ndef batchnorm_backward(dout, cache):\n    pass\n", whole_none)
    for line, ids in grade_lines("bn_backward_dx", whole_none):
        assert ids == {"returns-none"} and forward_cause not in line, line


# ------------------------------------------------------------- random combinations, no guesses
# Written here independently of diagnose.py: how a student's choice changes the formula, and
# which catalogue id that choice is.
TRAIN_MEANS = {
    "batch": (lambda x, p: x.mean(0), set()),
    "all": (lambda x, p: x.mean(), {"stats-over-all-elements"}),
    "example": (lambda x, p: x.mean(1, keepdims=True), {"wrong-axis"}),
    "running": (lambda x, p: p["running_mean"], {"train-uses-running"}),
}
TRAIN_VARS = {
    "batch": (lambda x, p: x.var(0), set()),
    "unbiased": (lambda x, p: x.var(0, ddof=1), {"unbiased-variance"}),
    "all": (lambda x, p: x.var(), {"stats-over-all-elements"}),
    "running": (lambda x, p: p["running_var"], {"train-uses-running"}),
    "uncentred": (lambda x, p: (x**2).mean(0), {"var-not-centred"}),
}
TEST_MEANS = {
    "running": (lambda x, p: p["running_mean"], set()),
    "batch": (lambda x, p: x.mean(0), {"test-uses-batch-stats"}),
}
TEST_VARS = {
    "running": (lambda x, p: p["running_var"], set()),
    "batch": (lambda x, p: x.var(0), {"test-uses-batch-stats"}),
}
EPS = {
    "inside": (lambda v, e: np.sqrt(v + e), set()),
    "outside": (lambda v, e: np.sqrt(v) + e, {"eps-outside-sqrt"}),
}
AFFINE = {
    "right": (lambda g, b: (g, b), set()),
    "swapped": (lambda g, b: (b, g), {"gamma-beta-swapped"}),
    "missing": (lambda g, b: (1.0, 0.0), {"gamma-beta-missing"}),
}


def random_student(rng, case):
    """A forward output built from random choices, and the set of mistakes it contains."""
    x, p = case["x"], case["bn_param"]
    means, variances = (
        (TRAIN_MEANS, TRAIN_VARS) if p["mode"] == "train" else (TEST_MEANS, TEST_VARS)
    )
    picks = [
        means[rng.choice(list(means))],
        variances[rng.choice(list(variances))],
        EPS[rng.choice(list(EPS))],
        AFFINE[rng.choice(list(AFFINE))],
    ]
    # Without a shift, dividing it too changes nothing: not a mistake one could see.
    divided = rng.random() < 0.25 and picks[3] is not AFFINE["missing"]
    (mean_of, m_ids), (var_of, v_ids), (spread_of, e_ids), (affine_of, a_ids) = picks
    g, b = affine_of(case["gamma"], case["beta"])
    centred = x - mean_of(x, p)
    spread = spread_of(var_of(x, p), p["eps"])
    out = (g * centred + b) / spread if divided else g * centred / spread + b
    truth = m_ids | v_ids | e_ids | a_ids | ({"shift-divided-by-std"} if divided else set())
    return out, truth


def test_random_combinations_are_named_exactly_or_not_at_all():
    rng = np.random.default_rng(2024)
    exact = total = 0
    for trial in range(150):
        mode = "train" if trial % 3 else "test"
        case = bn_case(
            1000 + trial, n=int(rng.integers(4, 15)), d=int(rng.integers(3, 8)), mode=mode, eps=0.02
        )
        got, truth = random_student(rng, case)
        if not truth:
            continue
        ids = found("bn_forward", "out", got, case)
        assert ids <= truth, (trial, sorted(truth), sorted(ids))
        if len(truth) <= 2:
            total += 1
            exact += ids == truth
    assert exact / total >= 0.95, (exact, total)


def test_random_backward_variants_are_named_exactly_or_not_at_all():
    rng = np.random.default_rng(77)
    exact = total = 0
    for trial in range(80):
        case = bn_case(
            5000 + trial, n=int(rng.integers(5, 16)), d=int(rng.integers(3, 7)), eps=0.05
        )
        switches = {
            "eps_in_backward": bool(rng.random() < 0.7),
            "mean_path": bool(rng.random() < 0.7),
            "var_factor": float(rng.choice([1.0, 1.0, 0.0, 0.5, 2.0])),
            "use_gamma": bool(rng.random() < 0.8),
        }
        truth = set()
        truth |= set() if switches["eps_in_backward"] else {"eps-missing-backward"}
        truth |= set() if switches["mean_path"] else {"backward-missing-mean-path"}
        truth |= {0.0: {"backward-missing-var-path"}, 1.0: set()}.get(
            switches["var_factor"], {"backward-term-weight"}
        )
        truth |= set() if switches["use_gamma"] else {"backward-gamma-missing"}
        if not truth:
            continue
        ids = found("bn_backward", "dx", staged_dx(case, **switches), case, ref_dx(case))
        assert ids <= truth, (trial, sorted(truth), sorted(ids))
        total += 1
        exact += ids == truth
    assert exact / total >= 0.9, (exact, total)
