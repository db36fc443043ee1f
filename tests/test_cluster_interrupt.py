"""Ctrl-C while grading on a real Dask cluster (127.0.0.1): quick stop, nothing merged is lost.

A ``dask scheduler`` and two one-thread ``dask worker`` processes run on free ports, each in
its own folder. ``coursekit grade --scheduler`` runs as its own process (its own session, as
from a terminal) over three NumPy submissions: ``alice`` (graded and merged first),
``bob-sleeps`` (sleeps in a cell, so it is still running when Ctrl-C comes) and ``carol``
(started when alice's worker frees up). Ctrl-C is sent to the process group, as a terminal
sends it. Then: the run exits within 5 s with code 130; the running tasks are ``interrupted``
in status.csv; alice's merged grades are in the gradebook; the worker that ran the sleeping
task has killed its grading processes and kernel (its future was cancelled); and a re-run on
the same cluster grades the rest (carol unchanged, bob resubmitted) and skips alice.

As in tests/test_cluster.py everything runs from a frozen copy of the kit: workers refuse tasks
from a parent whose grader version differs, and the checkout may be edited meanwhile.
"""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from test_cluster import copy_kit, kit_env, run_in_kit  # the same frozen-kit helpers

from conftest import auto_points, auto_scores
from coursekit import status as st
from coursekit.gradebook import cell_scores
from coursekit.loopback import LoopbackCluster

NUMPY = "bn_numpy.ipynb"
SLEEPER = "bob-sleeps"
STOP_WITHIN_S = 5
# A cancelled task's processes must go soon; the worker checks every CANCEL_POLL_S (0.5 s).
KILLED_WITHIN_S = 15

BUILD = """
import sys
from coursekit.paths import RELEASE_DIR
from coursekit.release import release
from coursekit.submissions import reference_notebook, write_submission

NUMPY = "bn_numpy.ipynb"


def sleeping(seconds):
    notebook = reference_notebook(NUMPY)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_forward":
            cell.source = f"import time\\ntime.sleep({seconds})\\n" + cell.source
    return notebook


if sys.argv[1] == "first":
    release(release_root=RELEASE_DIR.parents[1] / "release-check")
    write_submission("alice", {NUMPY: reference_notebook(NUMPY)})
    write_submission(SLEEPER, {NUMPY: sleeping(600)})
    write_submission("carol", {NUMPY: reference_notebook(NUMPY)})
else:  # bob resubmits a notebook that finishes
    write_submission(SLEEPER, {NUMPY: sleeping(1)})
"""


def frozen_kit(destination):
    """A copy of this checkout's kit with the build script for this test's submissions."""
    copy_kit(destination)
    (destination / "build.py").write_text(BUILD.replace("SLEEPER", repr(SLEEPER)))
    return destination


def recorded(runtime):
    """The student/notebook keys grading has recorded as done (graded_versions.json)."""
    try:
        return set(json.loads((runtime / "graded_versions.json").read_text()))
    except (OSError, ValueError):
        return set()


def still_running(processes):
    """``processes`` that run on (a killed one not yet reaped by its parent does not)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            continue
    return alive


def described(process):
    try:
        return " ".join(process.cmdline())[:80]
    except psutil.Error:
        return f"pid {process.pid}"


def holder_of(cluster, student):
    """Address of the worker processing ``student``'s task, or None."""
    for address, keys in cluster.client.processing().items():
        if any(f"bnkit-{student}__bn_numpy" in str(key) for key in keys):
            return address
    return None


def kernel_under(pid):
    """True when a process below ``pid`` runs an IPython kernel."""
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if any("ipykernel" in part for part in child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster-interrupt")
    kit = frozen_kit(base / "kit")
    runtime = base / "runtime"
    code, output = run_in_kit(kit, runtime, "build.py", "first")
    assert code == 0, output
    cluster = LoopbackCluster(base / "dask", kit=kit)
    process = None
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "coursekit", "grade", "--scheduler", cluster.address],
            cwd=kit,
            env=kit_env(kit, runtime),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        # Ctrl-C once alice is merged and bob's kernel sleeps in its cell.
        deadline = time.monotonic() + 900
        holder = None
        while process.poll() is None and time.monotonic() < deadline:
            holder = holder_of(cluster, SLEEPER)
            pid = cluster.worker_pids().get(holder) if holder else None
            if f"alice/{NUMPY}" in recorded(runtime) and pid and kernel_under(pid):
                break
            time.sleep(0.5)
        if process.poll() is not None or time.monotonic() >= deadline:
            pytest.fail(f"grading never reached the Ctrl-C point: {process.communicate()[0]}")
        time.sleep(2)  # let the sleeping cell start
        sleeper_processes = psutil.Process(pid).children(recursive=True)
        started = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=120)
        elapsed = time.monotonic() - started
        psutil.wait_procs(sleeper_processes, timeout=KILLED_WITHIN_S)
        alive = still_running(sleeper_processes)
        after = {s.student: s for s in st.read_status_csv(runtime / "status.csv")}
        scores = cell_scores(f"sqlite:///{runtime / 'gradebook.db'}")

        code, build_output = run_in_kit(kit, runtime, "build.py", "again")
        assert code == 0, build_output
        rerun_code, rerun_output = run_in_kit(
            kit, runtime, "-m", "coursekit", "grade", "--scheduler", cluster.address
        )
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        cluster.stop()
    yield {
        "code": process.returncode,
        "output": output,
        "elapsed": elapsed,
        "alive": alive,
        "after": after,
        "scores": scores,
        "rerun_code": rerun_code,
        "rerun_output": rerun_output,
        "final": {s.student: s for s in st.read_status_csv(runtime / "status.csv")},
        "final_scores": cell_scores(f"sqlite:///{runtime / 'gradebook.db'}"),
    }


def test_ctrl_c_stops_within_seconds(interrupted):
    said = " ".join(interrupted["output"].split())
    assert interrupted["elapsed"] < STOP_WITHIN_S, said
    assert interrupted["code"] == 130, said
    assert "interrupted" in said and "Traceback" not in said, said


def test_running_tasks_are_reported_interrupted(interrupted):
    after = interrupted["after"]
    assert after["alice"].status == st.GRADED, after["alice"]
    assert after[SLEEPER].status == st.INTERRUPTED, after[SLEEPER]
    assert "Ctrl-C" in after[SLEEPER].detail
    assert "while this notebook was graded" in after[SLEEPER].detail
    assert after["carol"].status == st.INTERRUPTED, after["carol"]


def test_grades_merged_before_ctrl_c_stay(interrupted):
    assert auto_scores(interrupted["scores"], "alice", "bn_numpy") == auto_points("bn_numpy")


def test_the_abandoned_task_is_killed_on_its_worker(interrupted):
    assert not interrupted["alive"], (
        "the cancelled task's grading processes still run on the worker: "
        + ", ".join(described(p) for p in interrupted["alive"])
    )


def test_a_rerun_grades_the_rest(interrupted):
    output = " ".join(interrupted["rerun_output"].split())
    assert interrupted["rerun_code"] == 0, output
    assert "1 skipped as unchanged" in output, output  # alice
    points = auto_points("bn_numpy")
    for student in (SLEEPER, "carol"):
        assert interrupted["final"][student].status == st.GRADED, interrupted["final"][student]
        assert auto_scores(interrupted["final_scores"], student, "bn_numpy") == points
    assert auto_scores(interrupted["final_scores"], "alice", "bn_numpy") == points
