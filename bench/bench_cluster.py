"""Grading on a loopback Dask cluster against the local pool, and the parent's own cost per task.

1. Throughput: the same ``--count`` submissions of bn_numpy.ipynb (the reference and the NumPy
   mistake samples, repeated) graded by ``grade(workers=2)`` (local pool) and by
   ``grade(scheduler=...)`` on a loopback cluster of two one-thread Dask workers, each in its
   own runtime folder. Target: the cluster within 10% of the local pool.
2. The parent's cost per task: ``--noop`` tasks that do no notebook work. Each returns a
   canned result (a real autograded notebook and its scores, made once by grading one
   submission), so the parent does all its real per-task work: plan (digest, validate), send
   the task, receive the bytes, write them, merge the scores into the course gradebook, copy
   the autograded folder, zero the student's missing bn_keras, record the digest and the
   status. Extrapolated linearly to 1,000 students. Target: under 60 s for 1,000 tasks.
   ``--profile FILE`` runs that part under cProfile, saves the profile to FILE and prints the
   functions with the most cumulative time.

Prints a table; not a test. The machine's load average is printed too: on a shared 2-core
machine the throughput figures move with it.

Usage: PYTHONPATH=autograder .venv/bin/python bench/bench_cluster.py [--count 8] [--noop 200]
       [--profile noop.prof]
"""

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "autograder"))

from bn_grader.samples import all_samples  # noqa: E402
from coursekit import cluster  # noqa: E402
from coursekit.grade import grade  # noqa: E402
from coursekit.incremental import grader_version  # noqa: E402
from coursekit.loopback import LoopbackCluster  # noqa: E402
from coursekit.paths import tool_env  # noqa: E402
from coursekit.release import release  # noqa: E402
from coursekit.submissions import apply_edits, reference_notebook, write_submission  # noqa: E402

NUMPY = "bn_numpy.ipynb"


def write_submissions(count, mistakes=True):
    makers = [("reference", lambda: reference_notebook(NUMPY))]
    for sample in all_samples() if mistakes else ():
        if sample.notebook == NUMPY:
            makers.append(
                (
                    sample.name,
                    lambda s=sample: apply_edits(reference_notebook(NUMPY), s.edits, s.name),
                )
            )
    students = []
    for index in range(count):
        name, make = makers[index % len(makers)]
        student = f"{index:04d}-{name}"
        write_submission(student, {NUMPY: make()})
        students.append(student)
    return students


def fresh_runtime(base, label, secret=None):
    runtime = base / label / "runtime"
    os.environ["BNKIT_RUNTIME"] = str(runtime)
    release(release_root=base / label / "release")
    if secret:
        shutil.copy2(secret, runtime / "grading.secret")
    return runtime


def time_grade(**kwargs):
    started = time.perf_counter()
    run = grade(show_progress=False, regrade_all=True, **kwargs)
    return time.perf_counter() - started, run


def canned_results(template_runtime, template_student, students):
    """{task key: grade_task-like result} for ``students``, from one graded template.

    The scores are the template's, as a worker reads them from its private gradebook.
    """
    from coursekit.gradebook import read_notebook_scores

    folder = template_runtime / "autograded" / template_student / "batchnorm"
    files = cluster._folder_bytes(folder)
    scores = read_notebook_scores(
        f"sqlite:///{template_runtime / 'gradebook.db'}", template_student, "bn_numpy"
    )
    results = {}
    for student in students:
        results[f"{student}__bn_numpy"] = {
            "status": "graded",
            "detail": "",
            "flags": "",
            "files": files,
            "scores": scores,
            "log": "no-op task",
            "kernel_stderr": "",
            "worker": "no-op",
            "seconds": 0.0,
        }
    return results


def time_noop_tasks(base, address, template_runtime, template_student, count, secret, profile):
    """Seconds the parent spends on ``count`` tasks that do no notebook work on the workers.

    ``profile``: a file to save a cProfile of the run to (None: no profiling).
    """
    runtime = fresh_runtime(base, "noop", secret)
    # The workers' blank gradebook is a one-off per release version (timed apart): reuse the
    # one the real cluster run built instead of timing nbgrader's generate_assignment again.
    shutil.copytree(base / "dask" / "runtime" / "cluster", runtime / "cluster")
    students = write_submissions(count, mistakes=False)
    canned = canned_results(template_runtime, template_student, students)
    original_spec = cluster.DaskExecutor._spec
    original_entry = cluster.remote_entry

    def spec_with_result(self, task):
        spec = original_spec(self, task)
        spec["canned"] = canned[task.key]
        return spec

    def noop_entry():
        def return_canned(spec):
            return spec["canned"]

        return return_canned

    cluster.DaskExecutor._spec = spec_with_result
    cluster.remote_entry = noop_entry
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler:
            profiler.enable()
        seconds, run = time_grade(scheduler=address)
    finally:
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
        cluster.DaskExecutor._spec = original_spec
        cluster.remote_entry = original_entry
    graded = sum(1 for item in run if item.status == "graded")
    return seconds, graded, canned


def merge_seconds(canned, count=20):
    """Seconds per merge and per zero in the run's course gradebook session (nbgrader's ORM).

    Measured on the no-op run's gradebook (its students exist), one commit each, as grading
    does them.
    """
    from coursekit.gradebook import CourseGradebook
    from coursekit.paths import db_url

    items = list(canned.items())[:count]
    with CourseGradebook(db_url()) as course:
        started = time.perf_counter()
        for key, result in items:
            course.merge(key.split("__")[0], "bn_numpy", result["scores"])
        merge = (time.perf_counter() - started) / len(items)
        started = time.perf_counter()
        for key, _ in items:
            course.zero(key.split("__")[0], "bn_keras", "Not graded: bench.")
        zero = (time.perf_counter() - started) / len(items)
    return merge, zero


def print_profile(path, limit=25):
    """The functions with the most cumulative time in a saved profile."""
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(limit)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="submissions graded for real")
    parser.add_argument("--noop", type=int, default=200, help="no-op tasks for the parent cost")
    parser.add_argument(
        "--profile", type=Path, default=None, help="save a cProfile of the no-op run to this file"
    )
    args = parser.parse_args()
    os.environ.update(tool_env())
    base = Path(tempfile.mkdtemp(prefix="bnkit-bench-cluster-"))
    lines = []

    def report(line):
        lines.append(line)
        print(f"[bench] {line}", flush=True)

    try:
        local_runtime = fresh_runtime(base, "local")
        write_submissions(args.count)
        load = os.getloadavg()[0]
        local_seconds, local_run = time_grade(workers=2)
        report(
            f"local pool, 2 worker processes: {args.count} notebooks in {local_seconds:.1f} s "
            f"({60 * args.count / local_seconds:.1f}/min; load {load:.1f})"
        )
        secret = local_runtime / "grading.secret"
        with LoopbackCluster(base / "cluster", workers=2) as loopback:
            fresh_runtime(base, "dask", secret)
            write_submissions(args.count)
            started = time.perf_counter()
            cluster.cached_blank_gradebook(grader_version())
            report(
                f"one-off per release version: blank gradebook for the workers in "
                f"{time.perf_counter() - started:.1f} s (cached in the runtime folder, not timed below)"
            )
            load = os.getloadavg()[0]
            dask_seconds, dask_run = time_grade(scheduler=loopback.address)
            report(
                f"loopback Dask, 2 one-thread workers: {args.count} notebooks in "
                f"{dask_seconds:.1f} s ({60 * args.count / dask_seconds:.1f}/min; load {load:.1f})"
            )
            report(f"cluster / local time: {dask_seconds / local_seconds:.2f} (target <= 1.10)")
            same = sorted((s.student, s.notebook, s.status) for s in local_run) == sorted(
                (s.student, s.notebook, s.status) for s in dask_run
            )
            report(f"same statuses on both: {same}")
            template = next(s.student for s in local_run if s.status == "graded")
            load = os.getloadavg()[0]
            noop_seconds, noop_graded, canned = time_noop_tasks(
                base, loopback.address, local_runtime, template, args.noop, secret, args.profile
            )
            merge, zero = merge_seconds(canned)
            per_task = noop_seconds / max(1, args.noop)
            report(
                f"parent cost, {args.noop} no-op tasks: {noop_seconds:.1f} s, "
                f"{1000 * per_task:.0f} ms a task ({noop_graded} merged; load {load:.1f}) -> "
                f"1,000 tasks: {1000 * per_task:.0f} s (target < 60 s)"
            )
            report(
                f"of which nbgrader's gradebook API (one session for the run): merge "
                f"{1000 * merge:.1f} ms a notebook, zero (the missing bn_keras of each no-op "
                f"student) {1000 * zero:.1f} ms"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if args.profile and args.profile.exists():
            print_profile(args.profile)
        print("\n".join(["", f"bn_numpy.ipynb, {os.cpu_count()} cores", *lines]))


if __name__ == "__main__":
    main()
