"""One measurement for bench_sandbox.py, run with the kit under test (``--kit``) on sys.path.

Modes:

``grade``: release the kit's assignment into a fresh runtime folder (``BNKIT_RUNTIME``, set by
the caller), write ``--count`` + 1 copies of the reference submission of ``--notebook`` (the
release with every solution cell answered by the reference code: the kit's own
``reference_notebook``) and grade them with the kit's own ``coursekit grade --workers 1``.
Records, per task, the wall time of the task (``_run_task`` + ``_record``) and of the worker's
nbgrader autograde call inside it. The first task is a warm-up (a fresh worker's first task);
the caller reports it separately. With ``--time-checks`` (new design only) every
``bn_grader.runner.run_check`` call in the worker is timed too (check id, seconds).

``checks``: time ``bn_grader.check(check_id, namespace)`` in this process on the solution
notebook's namespace, built as the unit tests build it (bn_keras: ``tests/test_checks_keras.py``'s
``solution_namespace``, with made-up training histories), the kernel stub in a thread over a
socket pair; ``--repeat`` times per check.

Writes one JSON object to ``--out``. Never imports anything from another kit.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

CHECK_LOG_ENV = "BENCH_CHECK_LOG"
TASK_LOG_ENV = "BENCH_TASK_LOG"


def _cpu_seconds(who):
    import resource

    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class _ChildrenCPU:
    """CPU seconds of this process's descendants (the kernel, bwrap), sampled every 0.1 s.

    RUSAGE_CHILDREN misses a sandboxed kernel (bwrap is killed before it reaps the kernel), so
    each descendant's own user + system time is polled; a process loses at most its last 0.1 s.
    """

    def __init__(self):
        import threading

        self._last = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self):
        import psutil

        for process in psutil.Process().children(recursive=True):
            try:
                times = process.cpu_times()
                key = (process.pid, process.create_time())
            except psutil.Error:
                continue
            self._last[key] = times.user + times.system

    def _poll(self):
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._sample()
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self):
        return sum(self._last.values())


def _timed_autograde(original, task_log):
    """Wrap the worker's autograde_one: wall and CPU seconds (worker + its descendants)."""
    import resource

    def autograde_one(student, *args, **kwargs):
        wall = time.perf_counter()
        own = _cpu_seconds(resource.RUSAGE_SELF)
        try:
            with _ChildrenCPU() as children:
                return original(student, *args, **kwargs)
        finally:
            own = _cpu_seconds(resource.RUSAGE_SELF) - own
            wall = time.perf_counter() - wall
            with open(task_log, "a") as log:
                log.write(f"{student}\t{wall:.6f}\t{own:.6f}\t{children.seconds:.6f}\n")

    return autograde_one


def _timed_initialise(env, memory_limit_bytes):
    """Worker initializer: the kit's own, then a timing wrapper around the executor's run_check."""
    from coursekit import worker

    worker._initialise(env, memory_limit_bytes)
    task_log = os.environ.get(TASK_LOG_ENV)
    if task_log:
        # The parent pickles autograde_one by name; this process resolves the name to the wrapper.
        worker.autograde_one = _timed_autograde(worker.autograde_one, task_log)
    log_path = os.environ.get(CHECK_LOG_ENV)
    if not log_path:
        return
    try:
        import bn_grader.executor as executor
    except ImportError:  # the old design has no executor: nothing to time
        return

    original = executor.run_check

    def timed_run_check(check_id, kernel, seed):
        started = time.perf_counter()
        try:
            return original(check_id, kernel, seed)
        finally:
            seconds = time.perf_counter() - started
            with open(log_path, "a") as log:
                log.write(f"{time.time():.6f}\t{check_id}\t{seconds:.6f}\n")

    executor.run_check = timed_run_check


def _install_task_timers(record):
    """Wrap coursekit.grade's task functions and WorkerPool.autograde; append to ``record``."""
    from coursekit import grade as grade_module
    from coursekit import worker

    original_run_task = grade_module._run_task
    original_record = grade_module._record
    original_autograde = worker.WorkerPool.autograde
    current = {}

    def run_task(task, *args, **kwargs):
        started = time.perf_counter()
        result = original_run_task(task, *args, **kwargs)
        current[task.key] = {
            "student": task.student,
            "run_task": time.perf_counter() - started,
            "ended": time.time(),
        }
        return result

    def record_result(task, *args, **kwargs):
        started = time.perf_counter()
        result = original_record(task, *args, **kwargs)
        entry = current.pop(task.key)
        entry["record"] = time.perf_counter() - started
        entry["task"] = entry["run_task"] + entry["record"]
        entry["status"] = getattr(args[2] if len(args) > 2 else None, "status", None)
        record["tasks"].append(entry)
        return result

    def autograde(self, student, *args):
        started = time.perf_counter()
        result = original_autograde(self, student, *args)
        record["autograde"][student] = time.perf_counter() - started
        return result

    grade_module._run_task = run_task
    grade_module._record = record_result
    worker.WorkerPool.autograde = autograde

    original_new_executor = worker.WorkerPool._new_executor

    def new_executor(self):
        executor = original_new_executor(self)
        executor._initializer = _timed_initialise  # same arguments (env, memory limit)
        return executor

    worker.WorkerPool._new_executor = new_executor


def _scores(notebook_stem, students):
    """{student: (auto score, max)} from the runtime's gradebook, through nbgrader's API."""
    from nbgrader.api import Gradebook

    from coursekit.paths import ASSIGNMENT, db_url

    scores = {}
    with Gradebook(db_url()) as gradebook:
        for student in students:
            try:
                notebook = gradebook.find_submission_notebook(notebook_stem, ASSIGNMENT, student)
            except Exception:  # noqa: BLE001
                scores[student] = None
                continue
            auto = sum(grade.score for grade in notebook.grades if grade.auto_score is not None)
            possible = sum(
                grade.max_score for grade in notebook.grades if grade.auto_score is not None
            )
            scores[student] = (auto, possible)
    return scores


def run_grade(args):
    from coursekit.grade import grade
    from coursekit.release import release
    from coursekit.submissions import reference_notebook, write_submission

    runtime = Path(os.environ["BNKIT_RUNTIME"])
    release(release_root=runtime.parent / f"{runtime.name}-release")
    students = [f"s{index:02d}" for index in range(args.count + 1)]  # s00: warm-up
    notebook = reference_notebook(args.notebook)
    for student in students:
        write_submission(student, {args.notebook: notebook})
    record = {"tasks": [], "autograde": {}}
    _install_task_timers(record)
    kwargs = {"workers": 1, "show_progress": False}
    if args.no_sandbox:
        kwargs["sandbox"] = False
    started = time.perf_counter()
    statuses = grade(**kwargs)
    record["grade_call"] = time.perf_counter() - started
    record["statuses"] = [
        [item.student, item.notebook, item.status, item.detail, getattr(item, "flags", "")]
        for item in statuses
        if item.notebook == args.notebook
    ]
    record["scores"] = _scores(args.notebook.removesuffix(".ipynb"), students)
    cpu = {}
    task_log = os.environ.get(TASK_LOG_ENV)
    if task_log and Path(task_log).exists():
        for line in Path(task_log).read_text().splitlines():
            student, wall, own, children = line.split("\t")
            cpu[student] = (float(wall), float(own), float(children))
    for entry in record["tasks"]:
        entry["autograde"] = record["autograde"].get(entry["student"])
        if entry["student"] in cpu:
            entry["worker_wall"], entry["cpu_worker"], entry["cpu_children"] = cpu[entry["student"]]
            entry["cpu"] = entry["cpu_worker"] + entry["cpu_children"]
    return record


def run_checks(args):
    """bn_grader.check on the solution namespace, in this process (new design only)."""
    import contextlib
    import io

    import nbformat

    kit = Path(args.kit)
    sys.path.insert(0, str(kit / "tests"))
    import bn_grader.checks_keras  # noqa: F401
    import bn_grader.checks_numpy  # noqa: F401
    from bn_grader import check
    from bn_grader.registry import CHECKS
    from nbcode import namespace_from_notebook

    solution = kit / "solutions" / "batchnorm" / args.notebook
    # The notebook's grade cells, in order, name their checks.
    notebook = nbformat.read(str(solution), as_version=4)
    ids = [cid for cid, spec in CHECKS.items() if spec.notebook == args.notebook]
    order = {cid: index for index, cid in enumerate(ids)}
    for index, cell in enumerate(notebook.cells):
        for cid in ids:
            if f'check("{cid}")' in cell.source:
                order[cid] = index
    ids.sort(key=order.get)
    started = time.perf_counter()
    if args.notebook == "bn_keras.ipynb":
        # As tests/test_checks_keras.py builds it: the function cells, DEVICE, and made-up
        # training histories (the notebook's experiments are not run).
        import test_checks_keras

        namespace = test_checks_keras.solution_namespace()
    else:
        namespace = namespace_from_notebook(solution)
    namespace_seconds = time.perf_counter() - started
    times = {cid: [] for cid in ids}
    scores = {}
    for _ in range(args.repeat):
        for cid in ids:
            out = io.StringIO()
            started = time.perf_counter()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                score = check(cid, namespace)
            times[cid].append(time.perf_counter() - started)
            scores[cid] = [score, CHECKS[cid].points]
    return {"namespace_seconds": namespace_seconds, "times": times, "scores": scores}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["grade", "checks"])
    parser.add_argument("--kit", required=True)
    parser.add_argument("--notebook", default="bn_numpy.ipynb")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    kit = Path(args.kit).resolve()
    sys.path.insert(0, str(kit / "autograder"))
    os.chdir(kit)
    result = run_grade(args) if args.mode == "grade" else run_checks(args)
    result["kit"] = str(kit)
    result["load_after"] = os.getloadavg()[0]
    Path(args.out).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
