"""Ctrl-C during grading: stops within 5 s, keeps merged grades, reports running tasks.

``coursekit grade`` runs as its own process (in its own session, as from a terminal); Ctrl-C is
sent to its process group the way a terminal sends it. One submission is graded and merged
first; the other sleeps in a cell, so it is still running when Ctrl-C comes.
"""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from conftest import GRADER_DIR, KIT_ROOT, auto_points, auto_scores, runtime_env
from coursekit import status as st
from coursekit.gradebook import cell_scores
from coursekit.paths import db_url
from coursekit.release import release
from coursekit.submissions import reference_notebook, write_submission

NUMPY = "bn_numpy.ipynb"
STOP_WITHIN_S = 5


def sleeping_reference():
    notebook = reference_notebook(NUMPY)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_forward":
            cell.source = "import time\ntime.sleep(600)\n" + cell.source
    return notebook


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    runtime_env(monkeypatch, runtime)
    release(release_root=tmp_path / "release")
    write_submission("alice", {NUMPY: reference_notebook(NUMPY)})
    write_submission("zed-sleeps", {NUMPY: sleeping_reference()})
    env = dict(os.environ, PYTHONPATH=str(GRADER_DIR), BNKIT_RUNTIME=str(runtime))
    process = subprocess.Popen(
        [sys.executable, "-m", "coursekit", "grade", "--workers", "2"],
        cwd=KIT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    merged = runtime / "autograded" / "alice" / "batchnorm" / NUMPY
    deadline = time.monotonic() + 600
    while not merged.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert merged.exists(), process.communicate()[0] if process.poll() is not None else "timeout"
    time.sleep(1)  # the parent records the merge right after copying the notebook
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "the grading workers should be running"
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    elapsed = time.monotonic() - started
    _, alive = psutil.wait_procs(children, timeout=3)
    return {
        "runtime": runtime,
        "code": process.returncode,
        "output": output,
        "elapsed": elapsed,
        "alive": alive,
    }


def test_ctrl_c_stops_quickly_and_keeps_what_was_merged(interrupted_run):
    run = interrupted_run
    assert run["elapsed"] < STOP_WITHIN_S, run["output"]
    assert run["code"] == 130, run["output"]
    assert "interrupted" in run["output"] and "Traceback" not in run["output"]
    assert not [p for p in run["alive"] if p.is_running()], "workers or kernels outlived Ctrl-C"
    rows = st.read_status_csv(run["runtime"] / "status.csv")
    statuses = {s.student: s for s in rows if s.notebook == NUMPY}
    assert statuses["alice"].status == st.GRADED
    assert statuses["zed-sleeps"].status == st.INTERRUPTED
    assert "while this notebook was graded" in statuses["zed-sleeps"].detail
    scores = cell_scores(db_url())
    assert auto_scores(scores, "alice", "bn_numpy") == auto_points("bn_numpy")
