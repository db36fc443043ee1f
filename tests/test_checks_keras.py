"""Hidden checks of bn_keras.ipynb: full marks for the solution, 0 for the untouched release.

Expected values come from Keras itself, NumPy formulas written here, or hand-made curves; never
from the code under test.
"""

import contextlib
import io
import os
import re
import sys
import warnings
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
import tensorflow as tf

import bn_grader.checks_groupnorm  # noqa: F401  registers the group-norm check
from bn_grader import checks_keras
from bn_grader import mistakes_keras as mk
from bn_grader.registry import CHECKS
from bn_grader.runner import check_result
from nbcode import KERAS_FUNCTION_CELLS, namespace_from_notebook

KIT = Path(__file__).resolve().parents[1]
SOLUTION = KIT / "solutions" / "batchnorm" / "bn_keras.ipynb"
RELEASE = KIT / "assignments" / "batchnorm" / "bn_keras.ipynb"

FUNCTION_CELLS = list(KERAS_FUNCTION_CELLS)
# grade cell -> check id, as written in the notebook (test_grade_cells_call_registered_checks).
CELLS = {
    "test_choose_device": "keras_device",
    "test_make_keras_bn": "keras_make_layer",
    "test_keras_forward_train": "keras_forward_train",
    "test_keras_forward_test": "keras_forward_test",
    "test_keras_moving_stats": "keras_moving_stats",
    "test_keras_gradients": "keras_gradients",
    "test_keras_nhwc": "keras_nhwc",
    "test_used_batch_statistics": "keras_mode_detector",
    "test_mode_answers": "keras_mode_answers",
    "test_build_mlp": "keras_mlp_structure",
    "test_build_cnn": "keras_cnn_structure",
    "test_experiments": "keras_experiments",
    "test_keras_groupnorm": "keras_groupnorm",
    "test_keras_groupnorm_gradients": "keras_gn_gradients",
}


def good_histories(epochs=15):
    """Hand-made curves with the shape the experiments show (BN learns, plain sigmoid does not)."""
    rising = list(np.linspace(0.3, 0.95, epochs))
    lagging = [0.12] + list(np.linspace(0.2, 0.95, epochs - 1))
    flat = [0.1] * epochs
    loss = list(np.linspace(2.3, 0.2, epochs))
    runs = {
        "sigmoid": flat,
        "sigmoid+BN": lagging,
        "relu lr 0.1": rising,
        "relu+BN lr 0.1": rising,
        "relu lr 1": flat,
        "relu+BN lr 1": rising,
        "cnn+BN": rising,
        "sigmoid+BN momentum 0.9": [0.55] + rising[1:],
    }
    return {name: {"loss": loss, "val_accuracy": curve} for name, curve in runs.items()}


def solution_namespace(edits=()):
    namespace = namespace_from_notebook(SOLUTION, cell_ids=FUNCTION_CELLS, edits=edits)
    namespace["DEVICE"] = namespace["choose_device"](tf.config.list_physical_devices("GPU"))
    namespace["HISTORIES"] = good_histories()
    return namespace


def grade_with_ids(namespace, cells=CELLS):
    """{grade cell: (score, maximum, printed text, mistake ids its result names)}."""
    results = {}
    for cell, check_id in cells.items():
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            result = check_result(check_id, namespace)
        results[cell] = (
            result.score,
            CHECKS[check_id].points,
            buffer.getvalue(),
            set(result.mistakes),
        )
    return results


def grade(namespace, cells=CELLS):
    """{grade cell: (score, maximum, printed text)}."""
    return {cell: found[:3] for cell, found in grade_with_ids(namespace, cells).items()}


@pytest.fixture(scope="module")
def solution():
    return solution_namespace()


def run_cells_leniently(path):
    """Exec the setup and solution cells of a notebook, going on after a cell raises (as nbgrader
    does); returns the namespace."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    namespace = {"__name__": "__main__"}
    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade"):
            continue
        if meta.get("grade_id") == "setup" or meta.get("solution"):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                exec(compile(cell.source, str(path), "exec"), namespace)
    return namespace


# ------------------------------------------------------------------------ notebook structure
def test_grade_cells_call_registered_checks_with_matching_points():
    notebook = nbformat.read(str(SOLUTION), as_version=4)
    found = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            calls = re.findall(r'check\("([^"]+)"\)', cell.source)
            assert len(calls) == 1, cell.source
            spec = CHECKS[calls[0]]
            assert spec.notebook == "bn_keras.ipynb"
            assert meta["points"] == spec.points, (meta["grade_id"], meta["points"], spec.points)
            assert meta["locked"] and not meta["solution"]
            found[meta["grade_id"]] = calls[0]
    assert found == CELLS
    keras_checks = {cid for cid, spec in CHECKS.items() if spec.notebook == "bn_keras.ipynb"}
    assert keras_checks == set(CELLS.values())


def test_points_add_up_to_the_stated_totals():
    notebook = nbformat.read(str(SOLUTION), as_version=4)
    auto = manual = 0
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            if cell.cell_type == "code":
                auto += meta["points"]
            else:
                manual += meta["points"]
    assert (auto, manual) == (27, 7)
    assert "27 points are graded automatically" in notebook.cells[0].source
    assert "7 points for short written answers" in notebook.cells[0].source


def test_setup_cell_quiets_tensorflow_before_importing_it():
    notebook = nbformat.read(str(SOLUTION), as_version=4)
    setup = next(
        c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"
    )
    source = setup.source
    assert setup.metadata["nbgrader"]["locked"]
    assert source.index('"TF_CPP_MIN_LOG_LEVEL"] = "3"') < source.index("import tensorflow")
    assert source.index('"TF_ENABLE_ONEDNN_OPTS"] = "0"') < source.index("import tensorflow")
    assert "set_random_seed" in source and "enable_op_determinism" in source


# ------------------------------------------------------------------------------ whole marks
def test_solution_gets_full_marks(solution):
    for cell, (score, maximum, text) in grade(solution).items():
        assert score == maximum, (cell, text)
        assert "[FAIL]" not in text


def test_untouched_release_gets_zero():
    namespace = run_cells_leniently(RELEASE)
    namespace.setdefault("HISTORIES", {})
    for cell, (score, _, text) in grade(namespace).items():
        assert score == 0, (cell, text)
        assert "Traceback" not in text


def test_checks_never_write_to_stderr(solution, capfd):
    noisy = dict(solution)

    def choose_device(gpus):
        warnings.warn("a student warning", UserWarning, stacklevel=1)
        print("student text on stderr", file=sys.stderr)
        return solution["choose_device"](gpus)

    noisy["choose_device"] = choose_device
    capfd.readouterr()
    grade(solution)
    grade(noisy, {"test_choose_device": "keras_device"})
    captured = capfd.readouterr()
    assert captured.err == ""


# ----------------------------------------------------------------------------- individual
def test_device_check_grades_gpu_and_cpu_branches(solution):
    always_gpu = dict(solution, choose_device=lambda gpus: "/GPU:0")
    results = grade(always_gpu, {"test_choose_device": "keras_device"})
    score, maximum, text = results["test_choose_device"]
    assert 0 < score < maximum and "choose_device with no GPU: expected '/CPU:0'" in text
    no_device = dict(solution)
    no_device.pop("DEVICE")
    score, maximum, text = grade(no_device, {"test_choose_device": "keras_device"})[
        "test_choose_device"
    ]
    assert 0 < score < maximum and "DEVICE names the device of this machine" in text


def test_mode_truth_is_what_keras_does():
    """MODE_TRUTH against Keras, with the two modes told apart by NumPy formulas written here."""
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 1.0, size=(16, 3))
    train_out = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-3)
    infer_out = (x - 4.0) / np.sqrt(9.0 + 1e-3)

    def layer(frozen=False):
        bn = keras.layers.BatchNormalization(dtype="float64")
        bn.build((None, 3))
        bn.moving_mean.assign(np.full(3, 4.0))
        bn.moving_variance.assign(np.full(3, 9.0))
        bn.trainable = not frozen
        return bn

    def mode(y):
        y = np.asarray(y)
        if np.allclose(y, train_out, atol=1e-6):
            return "training"
        assert np.allclose(y, infer_out, atol=1e-6)
        return "inference"

    def model(bn):
        return keras.Sequential([keras.Input((3,), dtype="float64"), bn])

    def fit_moves(bn):
        net = model(bn)
        net.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        net.fit(x, np.zeros_like(x), batch_size=16, epochs=1, verbose=0)
        return not np.allclose(np.asarray(bn.moving_mean), 4.0)

    observed = {
        "layer(x)": mode(layer()(x)),
        "layer(x, training=True)": mode(layer()(x, training=True)),
        "model(x)": mode(model(layer())(x)),
        "model(x, training=True)": mode(model(layer())(x, training=True)),
        "model.predict(x)": mode(model(layer()).predict(x, verbose=0)),
        "model.fit(x, y)": "training" if fit_moves(layer()) else "inference",
        "frozen: layer(x, training=True)": mode(layer(frozen=True)(x, training=True)),
        "frozen: model.fit(x, y) moving statistics": "updated"
        if fit_moves(layer(frozen=True))
        else "unchanged",
    }
    assert observed == checks_keras.MODE_TRUTH


# MODE_TRUTH is Keras's own behaviour (test_mode_truth_is_what_keras_does); the other word of
# each entry's pair is the wrong answer.
OTHER_WORD = {"training": "inference", "inference": "training", "unchanged": "updated"}


def test_mode_answers_feedback_names_the_rule_but_never_the_answer(solution):
    """Every entry wrong: each line names its entry and the rule that decides it, the cause is
    named (in the result, not the text), and no line prints the expected word."""
    wrong = {scenario: OTHER_WORD[truth] for scenario, truth in checks_keras.MODE_TRUTH.items()}
    score, _, text, ids = grade_with_ids(
        dict(solution, MODE_ANSWERS=wrong), {"test_mode_answers": "keras_mode_answers"}
    )["test_mode_answers"]
    assert score == 0 and ids == {"keras-mode-semantics"}
    failing = [line for line in text.splitlines() if line.startswith("[FAIL]")]
    assert len(failing) == len(wrong)
    for scenario, truth in checks_keras.MODE_TRUTH.items():
        line = next(
            line for line in failing if line.startswith(f"[FAIL] MODE_ANSWERS[{scenario!r}]")
        )
        assert f"your answer {wrong[scenario]!r} is not what Keras does" in line
        assert "The rule that decides it:" in line
        assert mk.explain("keras-mode-semantics") in line
        # the expected word, quoted or after "expected", is not on the entry's line
        assert repr(truth) not in line and f'"{truth}"' not in line, line
        assert "expected" not in line, line
    # The rules differ per entry: the student learns which idea each wrong entry concerns.
    rules = {line.split("The rule that decides it:")[1] for line in failing}
    assert len(rules) == len(wrong)


def test_mode_answers_outside_the_vocabulary_are_told_the_words_not_the_answer(solution):
    answers = dict(checks_keras.MODE_TRUTH)
    answers["layer(x)"] = "infer"
    del answers["model(x)"]
    score, maximum, text, ids = grade_with_ids(
        dict(solution, MODE_ANSWERS=answers), {"test_mode_answers": "keras_mode_answers"}
    )["test_mode_answers"]
    assert 0 < score < maximum
    assert ids == set()  # a spelling slip or a lost key is not a misunderstanding of Keras
    failing = [line for line in text.splitlines() if line.startswith("[FAIL]")]
    assert len(failing) == 2
    layer_line = next(line for line in failing if "['layer(x)']" in line)
    assert "'infer'" in layer_line and "'training' or 'inference'" in layer_line
    model_line = next(line for line in failing if "['model(x)']" in line)
    assert "no entry for this call" in model_line


def test_observe_modes_helper_agrees_with_the_truth(solution):
    from bnkit.keras_helpers import MODE_SCENARIOS, observe_modes

    observed = observe_modes(solution["used_batch_statistics"])
    assert tuple(observed) == MODE_SCENARIOS
    assert observed == checks_keras.MODE_TRUTH


def test_float32_tolerance_scales_with_the_data():
    """Keras float32 on features with mean 1e4 and std 5 passes; a default-epsilon mistake on
    data with std 0.1 fails."""
    rng = np.random.default_rng(3)
    x = rng.normal(1e4, 5.0, size=(64, 8))
    gamma, beta = rng.normal(1.0, 0.5, 8), rng.normal(0.0, 0.5, 8)
    layer = keras.layers.BatchNormalization(epsilon=1e-5)
    layer.build((None, 8))
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    got = layer(x.astype(np.float32), training=True).numpy()
    expected = gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) + beta
    assert np.abs(got - expected).max() > 1e-5  # plain float32 rounding is visible here
    condition = checks_keras._condition(x, None, 1e-5) * np.abs(gamma).max()
    assert checks_keras._compare(got, expected, np.float32, condition) is None
    assert "dtype" in checks_keras._compare(got, expected, np.float64)

    small = rng.normal(0.0, 0.1, size=(32, 4))
    right = (small - small.mean(0)) / np.sqrt(small.var(0) + 1e-5)
    wrong = ((small - small.mean(0)) / np.sqrt(small.var(0) + 1e-3)).astype(np.float32)
    condition = checks_keras._condition(small, None, 1e-5)
    assert checks_keras._compare(wrong, right, np.float32, condition) is not None


def test_experiments_check_uses_generous_properties(solution):
    cells = {"test_experiments": "keras_experiments"}
    assert grade(solution, cells)["test_experiments"][0] == 2
    histories = good_histories()
    histories["sigmoid"]["val_accuracy"] = list(np.linspace(0.3, 0.9, 15))
    score, _, text = grade(dict(solution, HISTORIES=histories), cells)["test_experiments"]
    assert score < 2 and "plain sigmoid net at lr 0.1 stays near chance" in text
    del histories["cnn+BN"]
    score, _, text = grade(dict(solution, HISTORIES=histories), cells)["test_experiments"]
    assert "missing or too short: ['cnn+BN']" in text


@pytest.mark.skipif(
    not os.environ.get("BNKIT_RUN_NOTEBOOKS"),
    reason="runs all training of the notebook (about a minute); set BNKIT_RUN_NOTEBOOKS=1",
)
def test_solved_notebook_experiments_get_full_marks():
    import matplotlib

    matplotlib.use("Agg")
    notebook = nbformat.read(str(SOLUTION), as_version=4)
    folder = str(SOLUTION.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    namespace = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in notebook.cells:
                if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("grade"):
                    exec(compile(cell.source, str(SOLUTION), "exec"), namespace)
    finally:
        os.chdir(cwd)
    for cell, (score, maximum, text) in grade(namespace).items():
        assert score == maximum, (cell, text)


# ------------------------------------------------------------------- feedback that says why
def test_build_mlp_momentum_hint_names_build_mlps_own_argument(solution):
    namespace = solution_namespace(
        edits=[
            (
                "build_mlp",
                "keras.layers.BatchNormalization(momentum=momentum)",
                "keras.layers.BatchNormalization()",
            )
        ]
    )
    score, maximum, text, ids = grade_with_ids(
        namespace, {"test_build_mlp": "keras_mlp_structure"}
    )["test_build_mlp"]
    assert score < maximum
    assert ids == {"keras-mlp-momentum-ignored"}
    assert mk.explain("keras-mlp-momentum-ignored") in text
    assert "keras-mlp-momentum-ignored" not in text  # the id is for the instructor's side
    assert "momentum=momentum" in text and "bn_param['momentum']" not in text


def test_experiments_check_says_why_a_number_fails(solution):
    histories = good_histories()
    histories["sigmoid+BN"]["val_accuracy"] = [0.1] * 15
    score, _, text = grade(dict(solution, HISTORIES=histories), {"e": "keras_experiments"})["e"]
    assert score < 2
    line = next(line for line in text.splitlines() if "sigmoid+BN at lr 0.1 learns" in line)
    assert "got 0.10, chance level for 10 digit classes" in line
    assert "BatchNormalization between each Dense layer and its activation" in line


def test_mode_detector_with_the_unbiased_variance_is_named(solution):
    namespace = solution_namespace(
        edits=[
            ("used_batch_statistics", "x.var(axis=0) + epsilon", "x.var(axis=0, ddof=1) + epsilon")
        ]
    )
    cells = {"test_used_batch_statistics": "keras_mode_detector"}
    score, maximum, text, ids = grade_with_ids(namespace, cells)["test_used_batch_statistics"]
    assert score < maximum and ids == {"keras-detector-unbiased"}
    failing = [line for line in text.splitlines() if line.startswith("[FAIL]")]
    cause = mk.explain("keras-detector-unbiased")
    assert failing and all(cause in line for line in failing)
