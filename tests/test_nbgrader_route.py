"""A bare `nbgrader autograde` (no coursekit) grades through the kit's executor and ledger.

The formgrader's Autograde button calls the same nbgrader code with the same configuration
(tests/hub covers the button itself). An attack that reads the model answers from the course
folder scores 0 through this route, and scores when the sandbox is switched off, which shows
that the sandbox is what stops it.
"""

import nbformat
import pytest

from conftest import auto_points, auto_scores, runtime_env
from corpus.hostile import build_corpus
from coursekit.gradebook import cell_scores
from coursekit.nbgrader_cli import run_nbgrader
from coursekit.paths import autograded_dir, db_url
from coursekit.release import release
from coursekit.submissions import REFERENCE, reference_notebook, write_submission

ATTACK = "attack-steal-answers"
NOISY = "noisy-stderr"

# A correct forward pass that also writes a debugging line straight to file descriptor 2 each
# time it is called, as C extensions (TensorFlow's C++ logging among them) do: the kernel
# forwards it as stderr output of the grade cell that called it. nbgrader's own
# SaveAutoGrades scores any cell with stderr output 0; the ledger scores what the checks found.
NOISY_WRAPPER = """

_forward_without_debugging = batchnorm_forward


def batchnorm_forward(x, gamma, beta, bn_param):
    import os

    os.write(2, b"debug: batchnorm_forward called\\n")
    return _forward_without_debugging(x, gamma, beta, bn_param)
"""


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("route") / "runtime"
    with pytest.MonkeyPatch.context() as monkeypatch:
        runtime_env(monkeypatch, runtime, BNKIT_CELL_TIMEOUT="60")
        release(release_root=runtime.parent / "release")
        write_submission(REFERENCE, {"bn_numpy.ipynb": reference_notebook("bn_numpy.ipynb")})
        build_corpus([ATTACK])
        noisy = reference_notebook("bn_numpy.ipynb")
        for cell in noisy.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_forward":
                cell.source += NOISY_WRAPPER
        write_submission(NOISY, {"bn_numpy.ipynb": noisy})
        yield runtime


def _autograde(student, **env):
    code, output = run_nbgrader(
        ["autograde", "batchnorm", "--student", student, "--force", "--notebook", "bn_numpy"],
        env_extra=env,
        check=False,
    )
    assert code == 0, output[-3000:]
    return auto_scores(cell_scores(db_url()), student, "bn_numpy"), output


def test_bare_nbgrader_autograde_uses_the_sandboxed_executor(released):
    scores, output = _autograde(REFERENCE)
    assert scores == auto_points("bn_numpy")
    # The sandboxed kernel's start-up banner ("Ctrl-C will not work", "--existing ...") must
    # not reach the instructor's terminal once per notebook.
    assert "--existing" not in output and "Ctrl-C" not in output, output[-3000:]
    notebook = nbformat.read(
        autograded_dir() / REFERENCE / "batchnorm" / "bn_numpy.ipynb", as_version=4
    )
    assert notebook.metadata["bnkit_grading"]["sandboxed"] is True
    stolen, _ = _autograde(ATTACK)
    assert stolen == {cell: 0.0 for cell in auto_points("bn_numpy")}


def test_the_same_attack_scores_without_the_sandbox(released):
    stolen, _ = _autograde(ATTACK, BNKIT_SANDBOX="0")
    assert sum(stolen.values()) > 0


def test_stderr_in_a_grade_cell_costs_no_points(released):
    scores, _ = _autograde(NOISY)
    assert scores == auto_points("bn_numpy")
    notebook = nbformat.read(
        autograded_dir() / NOISY / "batchnorm" / "bn_numpy.ipynb", as_version=4
    )
    graded = {
        cell.metadata["nbgrader"]["grade_id"]: cell
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    }
    # The debugging line really reached a grade cell as stderr output.
    streams = [
        output.text
        for cell in graded.values()
        for output in cell.get("outputs", [])
        if output.get("name") == "stderr"
    ]
    assert any("debug: batchnorm_forward called" in text for text in streams), streams
