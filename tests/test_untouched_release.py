"""The untouched release, run top to bottom as a new student would, fails cleanly.

Every cell either runs, or raises NotImplementedError naming the function still to write, or
prints "(not run: ...)"; no other error, nothing on stderr (TensorFlow's start-up lines
included), and no stray ``Out[n]`` value (a grade cell's docstring, a check's True/False).
The solved NumPy notebook is run the same way for the outputs it must not show.
"""

import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from coursekit.paths import RELEASE_DIR
from coursekit.submissions import reference_notebook

KERNEL = "bn-course"


def _solution_functions(notebook):
    names = set()
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            names |= set(re.findall(r"^def (\w+)\(", cell.source, flags=re.M))
    return names


def _run(notebook, tmp_path, monkeypatch):
    """Execute ``notebook`` in a copy of the release folder, errors allowed, like Run All."""
    folder = tmp_path / "student"
    shutil.copytree(RELEASE_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    # A student's kernel has none of the variables the test run sets to keep TensorFlow quiet.
    for variable in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS", "PYTHONWARNINGS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("BNKIT_CHECKER_SOCKET", raising=False)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL,
        allow_errors=True,
        timeout=600,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    return notebook


def _outputs(cell, kind):
    return [output for output in cell.get("outputs", []) if output.get("output_type") == kind]


def _stderr(cell):
    return "".join(
        output.get("text", "")
        for output in _outputs(cell, "stream")
        if output.get("name") == "stderr"
    )


def _stray_values(notebook):
    """Code cells that show an ``Out[n]`` value nobody asked for."""
    stray = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        for output in _outputs(cell, "execute_result"):
            text = output.get("data", {}).get("text/plain", "")
            is_grade = cell.metadata.get("nbgrader", {}).get("grade")
            if is_grade or text in ("True", "False", "None") or text.startswith(("'", '"', "{")):
                stray.append((index, text[:80]))
    return stray


@pytest.mark.parametrize("name", ["bn_numpy.ipynb", "bn_keras.ipynb"])
def test_untouched_release_fails_cleanly(name, tmp_path, monkeypatch):
    release = nbformat.read(RELEASE_DIR / name, as_version=4)
    functions = _solution_functions(release)
    executed = _run(release, tmp_path, monkeypatch)
    unclean = []
    for index, cell in enumerate(executed.cells):
        if cell.cell_type != "code":
            continue
        for error in _outputs(cell, "error"):
            named = error["ename"] == "NotImplementedError" and error["evalue"] in functions
            if not named:
                unclean.append((index, error["ename"], error["evalue"][:120]))
        if _stderr(cell):
            unclean.append((index, "stderr", _stderr(cell)[:120]))
    assert unclean == []
    assert _stray_values(executed) == []
    text = "".join(
        output.get("text", "") for cell in executed.cells for output in _outputs(cell, "stream")
    )
    if name == "bn_numpy.ipynb":
        assert text.count("(not run:") >= 2  # the percentile plot and experiment (d)
    else:
        assert "(not run: fill in MODE_ANSWERS first" in text
        assert "Device:" in text  # the start-up messages, summed up in one line
        assert "loaded" not in text  # stubs of bn_numpy.ipynb are not "loaded"
        assert "not implemented yet" in text


def test_solved_numpy_notebook_shows_no_stray_values(tmp_path, monkeypatch):
    executed = _run(reference_notebook("bn_numpy.ipynb"), tmp_path, monkeypatch)
    errors = [
        (index, error["ename"])
        for index, cell in enumerate(executed.cells)
        for error in _outputs(cell, "error")
    ]
    assert errors == []
    assert _stray_values(executed) == []
    assert not any(_stderr(cell) for cell in executed.cells)
