"""The bn_numpy checks: full marks for the solution and for other correct implementations, zero
for the untouched release, grade cells that match the registry, nothing on stderr."""

import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest

import bn_grader.checks_groupnorm  # noqa: F401  registers the checks
import bn_grader.checks_numpy  # noqa: F401
from bn_grader import check
from bn_grader.registry import CHECKS
from bn_grader.runner import check_result
from nbcode import namespace_from_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "batchnorm" / "bn_numpy.ipynb"
RELEASE = ROOT / "assignments" / "batchnorm" / "bn_numpy.ipynb"
NUMPY_CHECKS = sorted(cid for cid, spec in CHECKS.items() if spec.notebook == "bn_numpy.ipynb")


def run_check(check_id, namespace):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        score = check(check_id, namespace)
    return score, out.getvalue(), err.getvalue()


def grade_cells(path):
    notebook = nbformat.read(str(path), as_version=4)
    return [
        cell
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code"
    ]


def test_grade_cells_call_registered_checks_with_matching_points():
    cells = grade_cells(SOLUTION)
    called = []
    for cell in cells:
        source = cell.source
        assert source.startswith('"""'), cell.metadata.nbgrader.grade_id
        match = re.search(r'check\("([^"]+)"\)\n### END HIDDEN TESTS$', source)
        assert match, source
        check_id = match.group(1)
        assert CHECKS[check_id].points == cell.metadata.nbgrader.points
        called.append(check_id)
    assert sorted(called) == NUMPY_CHECKS
    auto = sum(cell.metadata.nbgrader.points for cell in cells)
    notebook = nbformat.read(str(SOLUTION), as_version=4)
    manual = sum(
        cell.metadata.nbgrader.points
        for cell in notebook.cells
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("grade")
    )
    assert (auto, manual) == (31, 7)  # the totals stated in the notebook's introduction
    assert "**38**" in notebook.cells[0].source
    assert "(31 graded automatically)" in notebook.cells[0].source


@pytest.fixture(scope="module")
def solution_namespace():
    return namespace_from_notebook(SOLUTION)


@pytest.mark.parametrize("check_id", NUMPY_CHECKS)
def test_solution_gets_full_marks_quietly(solution_namespace, check_id):
    score, out, err = run_check(check_id, solution_namespace)
    assert score == CHECKS[check_id].points, out
    assert "[FAIL]" not in out
    assert err == ""


@pytest.mark.parametrize("check_id", NUMPY_CHECKS)
def test_untouched_release_gets_zero_without_breaking(check_id):
    namespace = namespace_from_notebook(RELEASE)
    score, out, err = run_check(check_id, namespace)
    assert score == 0.0
    assert "[FAIL]" in out and "not implemented yet" in out
    assert "could not finish" not in out and "Traceback" not in out
    assert err == ""


def test_missing_functions_and_junk_returns_fail_cleanly():
    namespace = {"batchnorm_forward": lambda *args: "junk", "batchnorm_backward": 3}
    for check_id in NUMPY_CHECKS:
        score, out, err = run_check(check_id, namespace)
        assert score == 0.0, check_id
        assert "could not finish" not in out, (check_id, out)
        assert err == ""


# ------------------------------------------------------------------ other correct solutions
FLOAT64_INSIDE = '''
def batchnorm_forward(x, gamma, beta, bn_param):
    """float64 inside, cast back at the end; Keras-style variance E[x^2] - E[x]^2."""
    mode = bn_param["mode"]
    if mode not in ("train", "test"):
        raise ValueError("bad mode")
    x64 = x.astype(np.float64)
    g64, b64 = gamma.astype(np.float64), beta.astype(np.float64)
    if mode == "train":
        mu = x64.mean(axis=0)
        var = (x64**2).mean(axis=0) - mu**2
        var = np.maximum(var, 0.0)
        rm, rv = bn_param["running_mean"], bn_param["running_var"]
        bn_param["running_mean"] = (bn_param["momentum"] * rm + (1 - bn_param["momentum"]) * mu).astype(rm.dtype)
        bn_param["running_var"] = (bn_param["momentum"] * rv + (1 - bn_param["momentum"]) * var).astype(rv.dtype)
    else:
        mu = bn_param["running_mean"].astype(np.float64)
        var = bn_param["running_var"].astype(np.float64)
    inv = 1.0 / np.sqrt(var + bn_param["eps"])
    xhat = (x64 - mu) * inv
    return (g64 * xhat + b64).astype(x.dtype), {"xhat": xhat, "inv": inv, "gamma": g64, "dtype": x.dtype}
'''

DICT_CACHE_BACKWARD = '''
def batchnorm_backward(dout, cache):
    """Staged on a dict cache, in float64, cast back."""
    d = dout.astype(np.float64)
    n = d.shape[0]
    dbeta = d.sum(0)
    dgamma = np.einsum("nd,nd->d", d, cache["xhat"])
    dxhat = d * cache["gamma"]
    dvar = np.einsum("nd,nd->d", dxhat, cache["xhat"]) * -0.5 * cache["inv"] ** 2
    dmu = -dxhat.sum(0) * cache["inv"]
    dx = dxhat * cache["inv"] + dvar * 2 * cache["xhat"] / (n * cache["inv"]) + dmu / n
    t = cache["dtype"]
    return dx.astype(t), dgamma.astype(t), dbeta.astype(t)
'''

INCREMENTAL = '''
def batchnorm_forward(x, gamma, beta, bn_param):
    """Incremental moving average, updated in place; tuple cache in another order."""
    mode = bn_param.get("mode")
    if mode == "train":
        mu = np.mean(x, axis=0)
        xc = x - mu
        var = np.mean(xc * xc, axis=0)
        inv = 1 / np.sqrt(var + bn_param["eps"])
        bn_param["running_mean"] += (1 - bn_param["momentum"]) * (mu - bn_param["running_mean"])
        bn_param["running_var"] += (1 - bn_param["momentum"]) * (var - bn_param["running_var"])
        xhat = xc * inv
        return xhat * gamma + beta, (gamma, inv, xhat)
    if mode == "test":
        return gamma * (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + bn_param["eps"]) + beta, None
    raise ValueError(f"unknown mode {mode}")
'''

COMPACT = '''
def batchnorm_backward(dout, cache):
    """The compact form, also used as alt."""
    gamma, inv, xhat = cache
    n = dout.shape[0]
    dbeta = np.sum(dout, axis=0)
    dgamma = np.einsum("ij,ij->j", dout, xhat)
    dx = (gamma * inv / n) * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
'''

COMPACT_ALT = COMPACT.replace("def batchnorm_backward(", "def batchnorm_backward_alt(")

SPATIAL_MOVEAXIS = """
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    c = x.shape[-1]
    flat = np.moveaxis(x, -1, 0).reshape(c, -1).T
    out, cache = batchnorm_forward(flat, gamma, beta, bn_param)
    return np.moveaxis(out.T.reshape((c,) + x.shape[:-1]), 0, -1), (cache, x.shape)
"""

SPATIAL_MOVEAXIS_BACKWARD = """
def spatial_batchnorm_backward(dout, cache):
    inner, shape = cache
    c = shape[-1]
    dx, dgamma, dbeta = batchnorm_backward(np.moveaxis(dout, -1, 0).reshape(c, -1).T, inner)
    return np.moveaxis(dx.T.reshape((c,) + shape[:-1]), 0, -1), dgamma, dbeta
"""

LAYERNORM_VIA_TRANSPOSE = """
def layernorm_forward(x, gamma, beta, ln_param):
    mu = x.mean(axis=1, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + ln_param["eps"])
    xhat = (x - mu) * inv
    return xhat * gamma + beta, {"xhat": xhat, "inv": inv, "gamma": gamma}


def layernorm_backward(dout, cache):
    xhat, inv, gamma = cache["xhat"], cache["inv"], cache["gamma"]
    g = dout * gamma
    d = g.shape[1]
    dx = inv * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return dx, np.sum(dout * xhat, axis=0), dout.sum(axis=0)
"""

ALTERNATIVES = {
    "float64-inside-dict-cache": {
        "batchnorm_forward": FLOAT64_INSIDE,
        "batchnorm_backward": DICT_CACHE_BACKWARD,
        "batchnorm_backward_alt": DICT_CACHE_BACKWARD.replace(
            "def batchnorm_backward(", "def batchnorm_backward_alt("
        ),
        "spatial_batchnorm_backward": SPATIAL_MOVEAXIS_BACKWARD,
        "spatial_batchnorm_forward": SPATIAL_MOVEAXIS,
    },
    "incremental-einsum-alt-is-staged": {
        "batchnorm_forward": INCREMENTAL,
        "batchnorm_backward": COMPACT,
        "batchnorm_backward_alt": COMPACT_ALT,
        "layernorm_forward": LAYERNORM_VIA_TRANSPOSE,
        "layernorm_backward": "",
    },
}


@pytest.mark.parametrize("name", sorted(ALTERNATIVES))
def test_other_correct_implementations_get_full_marks(name):
    namespace = namespace_from_notebook(SOLUTION, replace=ALTERNATIVES[name])
    for check_id in NUMPY_CHECKS:
        score, out, err = run_check(check_id, namespace)
        assert score == CHECKS[check_id].points, (check_id, out)
        assert err == ""


def test_check_does_not_trust_inputs_mutated_by_the_student(solution_namespace):
    """A student who mutates x after computing the right answer still loses the property item
    only; the grader compares against its own copies."""
    namespace = dict(solution_namespace)
    original = namespace["batchnorm_forward"]

    def forward(x, gamma, beta, bn_param):
        result = original(x, gamma, beta, bn_param)
        x[...] = 0.0
        return result

    namespace["batchnorm_forward"] = forward
    assert run_check("bn_forward_train", namespace)[0] == CHECKS["bn_forward_train"].points
    with contextlib.redirect_stdout(io.StringIO()):
        result = check_result("bn_forward_properties", namespace)
    assert result.score < CHECKS["bn_forward_properties"].points
    assert "mutates-input" in result.mistakes  # recorded for the ledger, never printed
    assert "an input array changed during the call" in "\n".join(result.lines)
    assert "[mutates-input]" not in "\n".join(result.lines)


def test_public_checks_pass_on_the_solution_and_catch_a_mistake(solution_namespace, capsys):
    from bnkit import public_checks

    ns = solution_namespace
    assert public_checks.check_batchnorm_forward(ns["batchnorm_forward"])
    assert public_checks.check_batchnorm_backward(ns["batchnorm_forward"], ns["batchnorm_backward"])
    assert public_checks.check_batchnorm_backward(
        ns["batchnorm_forward"], ns["batchnorm_backward_alt"]
    )
    assert public_checks.check_spatial(
        ns["spatial_batchnorm_forward"], ns["spatial_batchnorm_backward"]
    )
    assert public_checks.check_layernorm(ns["layernorm_forward"], ns["layernorm_backward"])
    wrong = namespace_from_notebook(
        SOLUTION,
        edits=[
            ("batchnorm_forward", "mean = x.mean(axis=0)", "mean = x.mean(axis=0, keepdims=True)")
        ],
    )
    capsys.readouterr()
    assert not public_checks.check_batchnorm_forward(wrong["batchnorm_forward"])
    assert "not (1, D)" in capsys.readouterr().out
    release = namespace_from_notebook(RELEASE)
    assert not public_checks.check_batchnorm_forward(release["batchnorm_forward"])
    assert "NotImplementedError" in capsys.readouterr().out


def test_hidden_inputs_do_not_appear_in_feedback():
    """A failing check prints shapes, settings and one compared value, never an input array."""
    namespace = namespace_from_notebook(
        SOLUTION,
        edits=[("batchnorm_forward", "var = x.var(axis=0)", "var = x.var(axis=0, ddof=1)")],
    )
    _, out, _ = run_check("bn_forward_train", namespace)
    assert "[[" not in out and "array(" not in out
    assert len(out.splitlines()) <= 8
