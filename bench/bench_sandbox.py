"""Cost of the trusted-grading design: sandboxed kernel + checks in the grader vs in-kernel checks.

For the same submission (the reference answers typed into the release: each kit's own
``coursekit.submissions.reference_notebook``), measures the per-notebook grading time of

(a) the new design (HEAD, checked out into a temporary git worktree so that uncommitted edits in
    the main checkout are not measured): kernel in bubblewrap, hidden checks in the grader's process
    over a Unix socket (``bn_grader.executor.SandboxedExecute``, ``bn_grader.runner.run_check``);
(a') only with ``--with-nosandbox``: the same, ``sandbox=False`` (``coursekit grade
    --no-sandbox``), meant to separate bubblewrap's cost from the protocol's. At 452c64a/d6068df
    no check runs on that route (the stub reports that it is not being graded; scores 0), so its
    time is not comparable and it is off by default;
(b) the old design, commit ``084fd22`` (checks inside the grading kernel, guard + signing),
    checked out into a temporary git worktree and run with its own code and the same .venv;

and the time the hidden checks themselves take per notebook in the new design:

(c) the sum of the ``run_check`` calls of one graded notebook, timed inside the grading worker
    (each includes its round trips to the sandboxed kernel, where the student's code runs);
(c') ``bn_grader.check(check_id, namespace)`` in one process on the solution's namespace, as the
    unit tests run the checks (stub in a thread over a socket pair, no kernel, no sandbox).

Every design grades through its own ``coursekit grade --workers 1`` in a fresh temporary
runtime folder (``BNKIT_RUNTIME``; never ``autograder/runtime``), one child process per
(design, round), the designs interleaved in rotating order within each round so that drift in
the machine's load hits all of them alike. A task's time is ``_run_task`` + ``_record`` in the
parent (worker autograde: kernel start, execution, checks, gradebook; plus the parent's
post-processing). CPU seconds (worker process + its reaped children, i.e. the kernel) are
recorded too: they are far less sensitive than wall time to other load on the machine. Each
child's first task (a fresh worker) is a warm-up and is reported apart.
Figures are medians over all timed tasks; the overhead is compared as a ratio within this run.

Targets (issue 9): overhead of (a) over (b) at most 10% of a notebook's grading time; the
hidden checks of one notebook under 1 s.

Usage: PATH=$PWD/.venv/bin:$PATH .venv/bin/python bench/bench_sandbox.py
           [--count 4] [--rounds 3] [--keras-count 1] [--keras-rounds 2] [--no-keras]
           [--new-commit HEAD] [--with-nosandbox] [--keep]
       .venv/bin/python bench/bench_sandbox.py --from-results <kept folder>/results.json

Needs the machine to itself: other load inflates wall times unevenly (the CPU column and the
per-round ratios show how much); a run of the defaults takes about 25 minutes on 2 cores.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "sandbox_child.py"
OLD_COMMIT = "084fd22"
DESIGNS = {
    "new": "(a)  new: bwrap kernel + trusted checks",
    "nosandbox": "(a') new, sandbox=False",
    "old": f"(b)  old: in-kernel checks ({OLD_COMMIT})",
}


def git(*args, check=True):
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=check, capture_output=True, text=True
    )


def add_worktree(path, commit):
    registered = git("worktree", "list", "--porcelain").stdout
    if f"worktree {path}\n" in registered:
        git("worktree", "remove", "--force", str(path))
    elif path.exists():
        sys.exit(f"{path} exists and is not a git worktree of this repository: remove it first")
    git("worktree", "add", "--detach", str(path), commit)


def remove_worktree(path):
    git("worktree", "remove", "--force", str(path), check=False)
    git("worktree", "prune", check=False)


def child_env(runtime, check_log=None, task_log=None):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.pop("BNKIT_DB_URL", None)  # always the runtime folder's own SQLite gradebook
    env.pop("BENCH_CHECK_LOG", None)
    env.pop("BENCH_TASK_LOG", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["BNKIT_RUNTIME"] = str(runtime)
    if check_log:
        env["BENCH_CHECK_LOG"] = str(check_log)
    if task_log:
        env["BENCH_TASK_LOG"] = str(task_log)
    return env


def run_child(arguments, kit, env, out, log):
    command = [sys.executable, str(CHILD), *arguments, "--kit", str(kit), "--out", str(out)]
    with open(log, "w") as stream:
        done = subprocess.run(command, cwd=kit, env=env, stdout=stream, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not out.exists():
        tail = Path(log).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"child failed ({' '.join(arguments)} in {kit}):\n{tail}")
    return json.loads(out.read_text())


def grade_once(base, design, kit, notebook, count, label):
    folder = base / label
    folder.mkdir(parents=True)
    check_log = folder / "checks.tsv" if design == "new" else None
    arguments = ["grade", "--notebook", notebook, "--count", str(count)]
    if design == "nosandbox":
        arguments.append("--no-sandbox")
    started = time.perf_counter()
    result = run_child(
        arguments,
        kit,
        child_env(folder / "runtime", check_log, folder / "tasks.tsv"),
        folder / "result.json",
        folder / "child.log",
    )
    result["child_seconds"] = time.perf_counter() - started
    result["checks"] = checks_per_task(result["tasks"], check_log) if check_log else []
    return result


def checks_per_task(tasks, check_log):
    """[(n checks, seconds summed)] per task, binning each logged check by the task's end time."""
    entries = []
    if check_log.exists():
        for line in check_log.read_text().splitlines():
            stamp, check_id, seconds = line.split("\t")
            entries.append((float(stamp), check_id, float(seconds)))
    per_task = []
    previous = 0.0
    for task in tasks:
        mine = [e for e in entries if previous < e[0] <= task["ended"]]
        per_task.append(
            {
                "student": task["student"],
                "n": len(mine),
                "seconds": sum(e[2] for e in mine),
                "by_check": {e[1]: e[2] for e in mine},
            }
        )
        previous = task["ended"]
    return per_task


def median(values):
    return statistics.median(values) if values else float("nan")


def summarise(runs):
    """Timed (non-warm-up) task seconds, warm-up seconds, autograde seconds, scores, statuses."""
    timed, warm, cpu, scores, statuses = [], [], [], set(), set()
    for result in runs:
        for task in result["tasks"]:
            target = warm if task["student"] == "s00" else timed
            target.append(task["task"])
            if task["student"] != "s00" and task.get("cpu") is not None:
                cpu.append(task["cpu"])
        for score in result["scores"].values():
            scores.add("none" if score is None else f"{score[0]:g}/{score[1]:g}")
        for item in result["statuses"]:
            statuses.add(item[2] + (f" [{item[4]}]" if item[4] else ""))
    return timed, warm, cpu, scores, statuses


def print_notebook_table(notebook, runs_by_design, in_process, rounds, count):
    print(
        f"\n{notebook}: reference submission, {rounds} round(s) x {count} timed task(s) per design"
        f" (+1 warm-up per round), coursekit grade --workers 1, {os.cpu_count()} cores"
    )
    header = f"{'design':44} {'median s':>9} {'min':>7} {'max':>7} {'CPU s':>8} {'warm-up':>8}  score / status"
    print(header)
    print("-" * len(header))
    medians, cpu_medians = {}, {}
    for design, label in DESIGNS.items():
        runs = runs_by_design.get(design)
        if not runs:
            continue
        timed, warm, cpu, scores, statuses = summarise(runs)
        medians[design] = median(timed)
        cpu_medians[design] = median(cpu)
        print(
            f"{label:44} {median(timed):9.2f} {min(timed):7.2f} {max(timed):7.2f}"
            f" {median(cpu):8.2f} {median(warm):8.2f}  {', '.join(sorted(scores))} / {', '.join(sorted(statuses))}"
        )
    # Per-round paired ratios (same round: same machine state).
    paired, paired_cpu = [], []
    for new, old in zip(runs_by_design.get("new", []), runs_by_design.get("old", []), strict=False):
        paired.append(median(summarise([new])[0]) / median(summarise([old])[0]))
        paired_cpu.append(median(summarise([new])[2]) / median(summarise([old])[2]))
    checks = [
        item["seconds"]
        for run in runs_by_design.get("new", [])
        for item in run["checks"]
        if item["student"] != "s00"
    ]
    counts = sorted({item["n"] for run in runs_by_design.get("new", []) for item in run["checks"]})
    warm_checks = [
        item["seconds"]
        for run in runs_by_design.get("new", [])
        for item in run["checks"]
        if item["student"] == "s00"
    ]
    if checks:
        print(
            f"{'(c)  hidden checks in (a), sum of run_check':44} {median(checks):9.3f}"
            f" {min(checks):7.3f} {max(checks):7.3f} {'':8} {median(warm_checks):8.3f}"
            f"  {'/'.join(map(str, counts))} checks per notebook"
        )
    if in_process:
        sums = [
            sum(values[i] for values in in_process["times"].values())
            for i in range(len(next(iter(in_process["times"].values()))))
        ]
        full = all(score == points for score, points in in_process["scores"].values())
        print(
            f"{'(c`) same checks in-process (bn_grader.check)':44} {median(sums):9.3f}"
            f" {min(sums):7.3f} {max(sums):7.3f} {'':8} {'':8}  "
            f"{len(in_process['times'])} checks, {len(sums)} repeats, "
            f"{'full marks' if full else 'NOT full marks'}"
        )
    if "new" in medians and "old" in medians:
        a, b = medians["new"], medians["old"]
        print(
            f"\noverhead (a) - (b): {a - b:+.2f} s per notebook = {100 * (a - b) / a:+.1f}% of (a)'s"
            f" grading time; ratio (a)/(b) = {a / b:.3f}"
            f" (per round: {', '.join(f'{r:.3f}' for r in paired)})"
        )
        ca, cb = cpu_medians["new"], cpu_medians["old"]
        print(
            f"same in CPU seconds: {ca - cb:+.2f} s = {100 * (ca - cb) / ca:+.1f}% of (a)'s CPU time;"
            f" ratio {ca / cb:.3f} (per round: {', '.join(f'{r:.3f}' for r in paired_cpu)})"
        )
        print(
            f"target: overhead <= 10% of a notebook's grading time: wall {'met' if (a - b) <= 0.10 * a else 'NOT met'},"
            f" CPU {'met' if (ca - cb) <= 0.10 * ca else 'NOT met'}"
        )
    if "new" in medians and "nosandbox" in medians:
        a, n = medians["new"], medians["nosandbox"]
        print(f"bubblewrap alone, (a) - (a'): {a - n:+.2f} s = {100 * (a - n) / a:+.1f}% of (a)")
    if checks and "new" in medians:
        worst = max(checks + warm_checks)
        print(
            f"hidden checks (c): {median(checks):.3f} s per notebook = {100 * median(checks) / medians['new']:.1f}%"
            f" of (a); max {max(checks):.3f} s ({worst:.3f} s counting warm-up tasks);"
            f" target < 1 s: {'met' if max(checks) < 1 else 'NOT met'}"
            f"{'' if worst < 1 else ' (not on a fresh worker first task)'}"
        )


def in_process_checks(base, kit, notebook):
    folder = base / f"{notebook.removesuffix('.ipynb')}-inprocess"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    print(f"{folder.name} ...", flush=True)
    return run_child(
        ["checks", "--notebook", notebook, "--repeat", "5"],
        kit,
        child_env(folder / "runtime"),
        folder / "result.json",
        folder / "child.log",
    )


def render_saved(args):
    saved = json.loads(args.from_results.read_text())
    new_commit = (
        saved.get("new_commit") or git("rev-parse", "--short", args.new_commit).stdout.strip()
    )
    plan = saved.get("plan") or [[name, None, None] for name in saved["results"]]
    missing = [name for name, _c, _r in plan if name not in saved["in_process"]]
    if missing:
        base = Path(tempfile.mkdtemp(prefix="bnkit-bench-sandbox-checks-"))
        add_worktree(args.new_worktree, new_commit)
        try:
            for notebook in missing:
                saved["in_process"][notebook] = in_process_checks(base, args.new_worktree, notebook)
        finally:
            remove_worktree(args.new_worktree)
            shutil.rmtree(base, ignore_errors=True)
        args.from_results.write_text(json.dumps(saved, default=str))
    print(f"\nnew design {new_commit} vs old design {OLD_COMMIT} (from {args.from_results})")
    for notebook, count, rounds in plan:
        runs = saved["results"][notebook]
        rounds = rounds or len(runs["new"])
        count = count or sum(1 for t in runs["new"][0]["tasks"] if t["student"] != "s00")
        print_notebook_table(notebook, runs, saved["in_process"].get(notebook), rounds, count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4, help="timed bn_numpy tasks per child")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keras-count", type=int, default=1)
    parser.add_argument("--keras-rounds", type=int, default=2)
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--with-nosandbox", action="store_true", help="also design (a')")
    parser.add_argument("--new-commit", default="HEAD")
    parser.add_argument("--worktree", type=Path, default=Path("/tmp/bnkit-old"))
    parser.add_argument("--new-worktree", type=Path, default=Path("/tmp/bnkit-new"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    parser.add_argument(
        "--from-results",
        type=Path,
        help="print the tables of a kept results.json; run only its missing in-process checks",
    )
    args = parser.parse_args()
    if args.from_results:
        return render_saved(args)
    designs = [d for d in DESIGNS if args.with_nosandbox or d != "nosandbox"]
    new_commit = git("rev-parse", "--short", args.new_commit).stdout.strip()
    plan = [("bn_numpy.ipynb", args.count, args.rounds)]
    if not args.no_keras:
        plan.append(("bn_keras.ipynb", args.keras_count, args.keras_rounds))
    base = Path(tempfile.mkdtemp(prefix="bnkit-bench-sandbox-"))
    kits = {"new": args.new_worktree, "nosandbox": args.new_worktree, "old": args.worktree}
    results, in_process = {}, {}
    started = time.perf_counter()
    add_worktree(args.worktree, OLD_COMMIT)
    add_worktree(args.new_worktree, new_commit)
    try:
        for notebook, count, rounds in plan:
            results[notebook] = {}
            for round_index in range(rounds):
                order = (
                    designs[round_index % len(designs) :] + designs[: round_index % len(designs)]
                )
                for design in order:
                    label = f"{notebook.removesuffix('.ipynb')}-{design}-r{round_index}"
                    print(f"[{time.perf_counter() - started:7.1f} s] {label} ...", flush=True)
                    result = grade_once(base, design, kits[design], notebook, count, label)
                    results[notebook].setdefault(design, []).append(result)
            print(f"[{time.perf_counter() - started:7.1f} s]", end=" ", flush=True)
            in_process[notebook] = in_process_checks(base, args.new_worktree, notebook)
    finally:
        load = os.getloadavg()
        remove_worktree(args.worktree)
        remove_worktree(args.new_worktree)
        saved = {
            "new_commit": new_commit,
            "plan": plan,
            "results": results,
            "in_process": in_process,
            "load_at_end": load,
            "seconds": time.perf_counter() - started,
        }
        (base / "results.json").write_text(json.dumps(saved, default=str))
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(
        f"\nnew design {new_commit} vs old design {OLD_COMMIT};"
        f" total {time.perf_counter() - started:.0f} s; load at end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"
    )
    for notebook, _count, _rounds in plan:
        print_notebook_table(notebook, results[notebook], in_process.get(notebook), _rounds, _count)


if __name__ == "__main__":
    main()
