"""Grading throughput: plain nbgrader vs the kit's parallel grader, against a lower bound.

Grades the same 40 synthetic submissions of bn_numpy.ipynb (the reference, every NumPy mistake
sample, broken ones from the hostile corpus, repeated to 40) three ways, each in its own runtime
folder:

1. plain sequential ``nbgrader autograde batchnorm`` (one call for all students);
2. ``coursekit grade --workers 1``;
3. ``coursekit grade --workers 2``.

Lower bound: the sum of bare execution times of the same autograded notebooks (nbclient, no
grading, one after another) divided by the number of cores. Prints a table; not a test.
Targets on 2 cores: workers=2 at least 1.6x faster than plain nbgrader, within 1.3x of the bound.

Usage: PYTHONPATH=autograder .venv/bin/python bench/bench_grading.py [--count 40]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "autograder"))

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from bn_grader.samples import all_samples  # noqa: E402
from corpus.hostile import CORPUS  # noqa: E402
from coursekit.grade import grade  # noqa: E402
from coursekit.nbgrader_cli import run_nbgrader  # noqa: E402
from coursekit.paths import tool_env  # noqa: E402
from coursekit.release import release  # noqa: E402
from coursekit.submissions import apply_edits, reference_notebook, write_submission  # noqa: E402

# Broken-but-quick corpus entries (no timeouts or memory bombs: they would measure the limits).
BROKEN = (
    "hostile-syntax-error",
    "hostile-invalid-json",
    "hostile-deleted-test-cell",
    "hostile-patched-grader",
)


def write_submissions(count):
    """Write ``count`` submissions into the current runtime; return their ids."""
    makers = [("bench-reference", lambda: reference_notebook("bn_numpy.ipynb"))]
    for sample in all_samples():
        if sample.notebook == "bn_numpy.ipynb":
            makers.append(
                (
                    f"bench-{sample.name}",
                    lambda s=sample: apply_edits(reference_notebook(s.notebook), s.edits, s.name),
                )
            )
    broken = [entry for entry in CORPUS if entry.name in BROKEN]
    students = []
    for index in range(count):
        if index % 8 == 7 and broken:
            entry = broken[(index // 8) % len(broken)]
            student = f"{index:02d}-{entry.name}"
            entry.build(student)
        else:
            name, make = makers[index % len(makers)]
            student = f"{index:02d}-{name}"
            write_submission(student, {"bn_numpy.ipynb": make()})
        students.append(student)
    return students


def fresh_runtime(base, label):
    runtime = base / label
    os.environ["BNKIT_RUNTIME"] = str(runtime)
    release(release_root=base / f"{label}-release")
    return runtime


def time_plain_nbgrader(base, count):
    runtime = fresh_runtime(base, "plain")
    write_submissions(count)
    started = time.perf_counter()
    run_nbgrader(["autograde", "batchnorm", "--force"], check=False)
    return time.perf_counter() - started, runtime


def autograded_count(runtime):
    """How many notebooks a run autograded (a run that graded nothing must not look fast)."""
    return len(list((runtime / "autograded").glob("*/batchnorm/bn_numpy.ipynb")))


def time_kit(base, count, workers, expected):
    runtime = fresh_runtime(base, f"kit{workers}")
    write_submissions(count)
    started = time.perf_counter()
    grade(workers=workers, show_progress=False, regrade_all=True)
    seconds = time.perf_counter() - started
    if autograded_count(runtime) != expected:
        raise SystemExit(
            f"kit with {workers} worker(s) autograded {autograded_count(runtime)} notebooks, "
            f"plain nbgrader {expected}: the timing would compare different work"
        )
    return seconds


def bare_execution_seconds(runtime):
    """Execute each autograded notebook (hidden tests included) with nbclient, one by one."""
    os.environ.update(tool_env())
    total = 0.0
    notebooks = sorted((runtime / "autograded").glob("*/batchnorm/bn_numpy.ipynb"))
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook,
            kernel_name="bn-course",
            timeout=300,
            allow_errors=True,
            resources={"metadata": {"path": str(path.parent)}},
        )
        started = time.perf_counter()
        client.execute()
        total += time.perf_counter() - started
    return total, len(notebooks)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    base = Path(tempfile.mkdtemp(prefix="bnkit-bench-"))
    try:
        plain, plain_runtime = time_plain_nbgrader(base, args.count)
        expected = autograded_count(plain_runtime)
        kit1 = time_kit(base, args.count, 1, expected)
        kit2 = time_kit(base, args.count, cores, expected)
        bare, executed = bare_execution_seconds(plain_runtime)
    finally:
        load = os.getloadavg()[0]
        shutil.rmtree(base, ignore_errors=True)
    bound = bare / cores
    rows = [
        ("plain nbgrader, sequential", plain),
        ("coursekit grade, 1 worker", kit1),
        (f"coursekit grade, {cores} workers", kit2),
        (f"lower bound (bare nbclient sum / {cores} cores)", bound),
    ]
    print(
        f"\n{args.count} submissions of bn_numpy.ipynb ({executed} executable), {cores} cores, load {load:.1f}"
    )
    print(f"{'method':48} {'seconds':>9} {'subm/min':>9} {'vs plain':>9} {'vs bound':>9}")
    for label, seconds in rows:
        print(
            f"{label:48} {seconds:9.1f} {60 * args.count / seconds:9.1f} {plain / seconds:9.2f} {seconds / bound:9.2f}"
        )
    print(
        f"\ntargets: {cores} workers >= 1.6x faster than plain ({plain / kit2:.2f}x), within 1.3x of the bound ({kit2 / bound:.2f}x)"
    )


if __name__ == "__main__":
    main()
