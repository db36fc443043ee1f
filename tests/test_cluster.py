"""Grading on a real Dask cluster on 127.0.0.1: same results as local grading, failures as statuses.

The test starts a ``dask scheduler`` and two ``dask worker`` processes (free ports, a private
folder each, no shared runtime folder: workers get the submission, the secret and a blank
gradebook as bytes). A mixed NumPy-notebook set (flagged reference, untouched release, a
classic mistake, a hostile syntax error, an unreadable file) is graded locally and through
the cluster; statuses, flags and every cell's score must be identical. A submission that
sleeps in a cell has its worker killed twice: retried once elsewhere, then ``worker lost``.
Then the scheduler is killed during a run: grading stops with a clear message, merged grades
stay, and a re-run on a new cluster grades only the rest. The Keras notebook is left out:
each one costs a TensorFlow start (40-80 s here) and runs through exactly the same path.

Everything (release, submissions, local and cluster grading, the workers' imports) runs from a
copy of the kit taken at the start: the workers refuse tasks from a parent whose grader
version differs from theirs, and a checkout edited during the test must not make it flaky.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import nbformat
import pytest

from conftest import KIT_ROOT, auto_scores, runtime_env
from coursekit import status as st
from coursekit.gradebook import cell_scores
from coursekit.loopback import LoopbackCluster
from coursekit.paths import db_url, submitted_dir

NUMPY = "bn_numpy.ipynb"
SLEEPER = "zed-sleeps"
HOSTILE = ["hostile-syntax-error", "hostile-invalid-json"]


KIT_PARTS = ("assignments", "solutions", "autograder", "nbgrader_config.py", "pyproject.toml")
SKIP = shutil.ignore_patterns("runtime", "__pycache__", ".ipynb_checkpoints", "*.pyc")

BUILD_SET = """
import sys
import nbformat
from bn_grader.samples import all_samples
from corpus.hostile import build_corpus
from coursekit.paths import RELEASE_DIR
from coursekit.release import release
from coursekit.submissions import apply_edits, reference_notebook, write_submission

NUMPY = "bn_numpy.ipynb"


def edited(prefix="", suffix=""):
    notebook = reference_notebook(NUMPY)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "batchnorm_forward":
            cell.source = prefix + cell.source + suffix
    return notebook


if sys.argv[1] == "release":
    release(release_root=RELEASE_DIR.parents[1] / "release-check")
mistake = next(s for s in all_samples() if s.notebook == NUMPY)
write_submission("flagged-reference", {NUMPY: edited(suffix=FLAG)})
write_submission("untouched", {NUMPY: nbformat.read(RELEASE_DIR / NUMPY, as_version=4)})
write_submission(mistake.name, {NUMPY: apply_edits(reference_notebook(NUMPY), mistake.edits, mistake.name)})
build_corpus(HOSTILE)
if "sleeper" in sys.argv:
    write_submission(SLEEPER, {NUMPY: edited(prefix="import time\\ntime.sleep(600)\\n")})
"""


def copy_kit(destination):
    """Copy this checkout's kit (no runtime folder, no venv) to ``destination``; return it.

    The cluster tests grade from such a frozen copy, so another engineer's edits in the
    working tree cannot change the code the scheduler and workers run mid-test.
    """
    destination.mkdir(parents=True)
    for part in KIT_PARTS:
        source = KIT_ROOT / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=SKIP)
        else:
            shutil.copy2(source, destination / part)
    return destination


def snapshot_kit(destination):
    """A copy of this checkout's kit with the build script of this test's submission set."""
    copy_kit(destination)
    script = BUILD_SET.replace("FLAG", repr(FLAG)).replace("HOSTILE", repr(HOSTILE))
    (destination / "build_set.py").write_text(script.replace("SLEEPER", repr(SLEEPER)))
    return destination


def kit_env(kit, runtime):
    env = {key: value for key, value in os.environ.items() if not key.startswith("BNKIT_")}
    env.update(
        PYTHONPATH=str(kit / "autograder"),
        BNKIT_RUNTIME=str(runtime),
        PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]),
    )
    return env


def run_in_kit(kit, runtime, *args):
    """Run ``python <args>`` with the snapshot's code; return (exit code, output)."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=kit,
        env=kit_env(kit, runtime),
        capture_output=True,
        text=True,
    )
    return result.returncode, result.stdout + result.stderr


def build(kit, runtime, *what):
    code, output = run_in_kit(kit, runtime, "build_set.py", *what)
    assert code == 0, output


def kit_grade(kit, runtime, *args):
    code, output = run_in_kit(kit, runtime, "-m", "coursekit", "grade", *args)
    assert code == 0, output
    return output


FLAG = "\n\ndef _never_called():\n    import keras  # noqa: F401\n"


class WorkerKiller(threading.Thread):
    """Kills the worker running the sleeper's task, ``times`` times (each time a new worker)."""

    def __init__(self, cluster, times=2):
        super().__init__(daemon=True)
        self.cluster, self.times, self.killed, self.error = cluster, times, [], None

    def run(self):
        try:
            deadline = time.monotonic() + 600
            while len(self.killed) < self.times and time.monotonic() < deadline:
                holder = self._holder()
                if holder and holder not in self.killed:
                    time.sleep(3)  # let the kernel start and reach the sleeping cell
                    if self._holder() == holder:
                        os.kill(self.cluster.worker_pids()[holder], signal.SIGKILL)
                        self.killed.append(holder)
                time.sleep(0.5)
        except Exception as error:  # noqa: BLE001  reported by the test
            self.error = error

    def _holder(self):
        for address, keys in self.cluster.client.processing().items():
            if any(f"bnkit-{SLEEPER}__bn_numpy" in str(key) for key in keys):
                return address
        return None


def numpy_results(statuses, scores, students):
    return {
        student: (
            (statuses[(student, NUMPY)].status, statuses[(student, NUMPY)].detail),
            statuses[(student, NUMPY)].flags,
            auto_scores(scores, student, "bn_numpy"),
        )
        for student in students
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    kit = snapshot_kit(base / "kit")
    with pytest.MonkeyPatch.context() as monkeypatch:
        local_runtime = base / "local" / "runtime"
        build(kit, local_runtime, "release")
        kit_grade(kit, local_runtime, "--workers", "2")
        runtime_env(monkeypatch, local_runtime)
        local = st.read_status_csv(local_runtime / "status.csv")
        local_scores = cell_scores(db_url())
        students = sorted({s.student for s in local})

        cluster_runtime = base / "dask" / "runtime"
        build(kit, cluster_runtime, "release", "sleeper")
        # Same course secret, so the hidden check inputs are the same as in the local run.
        shutil.copy2(local_runtime / "grading.secret", cluster_runtime / "grading.secret")
        runtime_env(monkeypatch, cluster_runtime)
        cluster = LoopbackCluster(base / "dask", kit=kit)
        try:
            killer = WorkerKiller(cluster)
            killer.start()
            kit_grade(kit, cluster_runtime, "--scheduler", cluster.address)
            killer.join(timeout=5)
            remote = st.read_status_csv(cluster_runtime / "status.csv")
            remote_scores = cell_scores(db_url())

            # The scheduler dies during a run over three changed submissions.
            changed = ["flagged-reference", "untouched", "hostile-syntax-error"]
            for student in changed:
                path = submitted_dir() / student / "batchnorm" / NUMPY
                notebook = nbformat.read(path, as_version=4)
                notebook.cells.append(nbformat.v4.new_markdown_cell("Resubmitted."))
                nbformat.write(notebook, path)
            (submitted_dir() / SLEEPER).rename(base / "sleeper-out")
            stopper = threading.Thread(
                target=kill_scheduler_after_first_merge,
                args=(cluster, cluster_runtime, changed),
                daemon=True,
            )
            stopper.start()
            started = time.monotonic()
            stop_code, stopped = run_in_kit(
                kit, cluster_runtime, "-m", "coursekit", "grade", "--scheduler", cluster.address
            )
            stop_seconds = time.monotonic() - started
            stopper.join(timeout=5)
            after_stop = st.read_status_csv(cluster_runtime / "status.csv")
            scores_after_stop = cell_scores(db_url())
        finally:
            cluster.stop()
        cluster = LoopbackCluster(base / "dask-again", kit=kit)
        try:
            rerun_output = kit_grade(kit, cluster_runtime, "--scheduler", cluster.address)
        finally:
            cluster.stop()
        final = st.read_status_csv(cluster_runtime / "status.csv")
        yield {
            "students": students,
            "local": {(s.student, s.notebook): s for s in local},
            "local_scores": local_scores,
            "remote": {(s.student, s.notebook): s for s in remote},
            "remote_scores": remote_scores,
            "killed": killer.killed,
            "killer_error": killer.error,
            "changed": changed,
            "stop_code": stop_code,
            "stopped": stopped,
            "stop_seconds": stop_seconds,
            "after_stop": {(s.student, s.notebook): s for s in after_stop},
            "scores_after_stop": scores_after_stop,
            "rerun_output": rerun_output,
            "final_scores": cell_scores(db_url()),
            "final_status": {(s.student, s.notebook): s for s in final},
        }


def kill_scheduler_after_first_merge(cluster, runtime, changed):
    """Kill the scheduler once one of ``changed`` has been graded and merged again."""
    state = runtime / "graded_versions.json"
    keys = {f"{student}/{NUMPY}" for student in changed}
    seen_missing = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            recorded = set(json.loads(state.read_text()))
        except (OSError, ValueError):
            recorded = set()
        if not keys & recorded:
            seen_missing = True  # the run has planned: it forgot all the changed ones
        if seen_missing and recorded & keys:
            cluster.kill_scheduler()
            return
        time.sleep(0.2)


def test_cluster_results_equal_local_results(runs):
    local = numpy_results(runs["local"], runs["local_scores"], runs["students"])
    remote = numpy_results(runs["remote"], runs["remote_scores"], runs["students"])
    assert remote == local
    statuses = {student: result[0][0] for student, result in local.items()}
    assert statuses["hostile-invalid-json"] == st.UNREADABLE
    assert st.GRADED in statuses.values()
    assert "imports keras" in local["flagged-reference"][1]  # flags travel back too


def test_a_worker_killed_twice_is_worker_lost(runs):
    assert runs["killer_error"] is None
    assert len(runs["killed"]) == 2 and runs["killed"][0] != runs["killed"][1]
    lost = runs["remote"][(SLEEPER, NUMPY)]
    assert lost.status == st.WORKER_LOST, lost
    assert "retry" in lost.detail


def test_a_lost_scheduler_stops_the_run_and_keeps_merged_grades(runs):
    said = " ".join(runs["stopped"].split())  # the terminal wraps long lines
    assert runs["stop_code"] == 2, said
    assert "Dask scheduler" in said and "went away" in said and "run grade again" in said
    assert "Traceback" not in said, said
    after = runs["after_stop"]
    states = [after[(student, NUMPY)].status for student in runs["changed"]]
    assert st.INTERRUPTED in states, "the scheduler died with tasks unfinished"
    done = [s for s in runs["changed"] if after[(s, NUMPY)].status != st.INTERRUPTED]
    assert done, "at least one changed submission was merged before the scheduler died"
    for student in done:
        assert auto_scores(runs["scores_after_stop"], student, "bn_numpy") == auto_scores(
            runs["local_scores"], student, "bn_numpy"
        )
    # The others were not lost either: they are reported, and the next run grades them.
    for student in runs["changed"]:
        if student not in done:
            assert "scheduler" in after[(student, NUMPY)].detail


def test_the_rerun_finishes_the_rest_only(runs):
    after = runs["after_stop"]
    unfinished = [s for s in runs["changed"] if after[(s, NUMPY)].status == st.INTERRUPTED]
    assert unfinished
    # Readable NumPy notebooks (all students but the unreadable one), minus those unfinished.
    skipped = len(runs["students"]) - 1 - len(unfinished)
    assert f"{skipped} skipped as unchanged" in runs["rerun_output"], runs["rerun_output"]
    for student in runs["changed"]:
        assert runs["final_status"][(student, NUMPY)].status == (
            runs["local"][(student, NUMPY)].status
        )
        assert auto_scores(runs["final_scores"], student, "bn_numpy") == auto_scores(
            runs["local_scores"], student, "bn_numpy"
        )
