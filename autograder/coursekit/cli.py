"""``python -m coursekit <verb>``: the instructor's commands, one per pipeline step.

release    regenerate assignments/ from solutions/ (and record it in the gradebook)
validate   run the solution notebooks; every grade cell must earn full marks
samples    write the sample submissions (reference, untouched, one per mistake)
grade      autograde all (or --student) submissions in parallel, with a status each
feedback   write feedback HTML (hidden tests cleared)
export     write grades.csv (scores + status) and print the score table
report     per-check summary table and PNG for the class
bundle     write the student bundle (no solutions, no grader code)
demo       release, validate, samples, grade, feedback, export in one go
"""

import argparse
import os
import sys
import time

from rich.console import Console

from .errors import KitError
from .paths import tool_env
from .release import check_assignment_name

console = Console(width=160)


def _step(title):
    console.print(f"[bold]==> {title}[/bold]")


def cmd_release(args):
    from .release import release

    _step("release: nbgrader generate_assignment")
    console.print(f"released to {release(args.assignment)}")


def cmd_validate(args):
    from .validate import validate_solutions

    _step("validate: run the solution notebooks (nbgrader Validator)")
    failures = validate_solutions(progress=lambda name: console.print(f"  validated {name}"))
    bad = {name: items for name, items in failures.items() if items}
    for name, items in bad.items():
        for item in items:
            console.print(f"[red]FAILED[/red] {name}: {item.strip()[:300]}")
    if bad:
        raise KitError("the solutions do not earn full marks: fix solutions/ before releasing")
    console.print("all grade cells of the solutions earn full marks")


def cmd_samples(args):
    from .submissions import build_samples

    _step("samples: write sample submissions")
    students = build_samples(include_mistakes=not args.core_only, every_sample=args.all_samples)
    console.print(f"{len(students)} sample submissions: {', '.join(students)}")


def _print_grade_summary(run):
    """What a grading run did, skipped and could not see; problems one per line."""
    from . import status as st

    for item in run.misplaced:
        console.print(f"[yellow]not graded:[/yellow] submitted/{item.path}: {item.fix}")
    interrupted = {(s.student, s.notebook) for s in run.interrupted}
    graded = [
        s for s in run if s.status not in st.ABSENT and (s.student, s.notebook) not in interrupted
    ]
    absent = [s for s in run if s.status in st.ABSENT]
    problems = [s for s in run if s.status != st.GRADED]
    console.print(
        f"graded {len(graded)} notebooks, {len(problems)} with a problem "
        f"({len(absent)} missing or unreadable), {len(run.unchanged)} skipped as unchanged"
        + (" (`grade --all` grades them again)" if run.unchanged else "")
        + (f", {len(run.misplaced)} misplaced notebooks not graded" if run.misplaced else "")
    )
    for item in sorted(problems, key=lambda s: (s.student, s.notebook)):
        console.print(f"  {item.student}/{item.notebook}: {item.status}. {item.detail}")


def cmd_grade(args):
    from .config import resolve_scheduler
    from .grade import GradingInterrupted, grade

    scheduler, source = resolve_scheduler(args.scheduler)
    where = (
        f"the Dask cluster at {scheduler} (from {source})"
        if scheduler
        else f"{args.workers or 'all-core'} workers"
    )
    _step(f"grade: autograde with {where}")
    if args.no_sandbox:
        console.print(
            "[yellow]warning:[/yellow] grading without the sandbox: student code can read and "
            "write whatever this user can; every notebook is marked 'unsandboxed'"
        )
    try:
        run = grade(
            args.student or None,
            workers=args.workers,
            memory_limit_mb=args.memory_limit_mb,
            sandbox=not args.no_sandbox,
            scheduler=scheduler,
            regrade_all=args.all,
        )
    except GradingInterrupted as stopped:
        _print_grade_summary(stopped.run)
        raise
    _print_grade_summary(run)


def cmd_feedback(args):
    from .feedback import generate_feedback

    _step("feedback: nbgrader generate_feedback")
    files = generate_feedback()
    console.print(f"{len(files)} feedback files under the runtime feedback/ folder")


def cmd_export(args):
    from .export import export_csv
    from .table import print_score_table

    _step("export: grades.csv with statuses")
    path, rows = export_csv()
    print_score_table(rows, console)
    console.print(f"grades written to {path}")


def cmd_report(args):
    from .class_report import write_report

    _step("report: per-check summary")
    write_report(console)


def cmd_bundle(args):
    from .bundle import build_bundle

    _step("bundle: student archive")
    console.print(f"wrote {build_bundle()}")


def cmd_demo(args):
    started = time.monotonic()
    cmd_release(args)
    cmd_validate(args)
    cmd_samples(args)
    cmd_grade(args)
    cmd_feedback(args)
    cmd_export(args)
    cmd_report(args)
    console.print(f"demo finished in {time.monotonic() - started:.0f} s")


COMMANDS = {
    "release": cmd_release,
    "validate": cmd_validate,
    "samples": cmd_samples,
    "grade": cmd_grade,
    "feedback": cmd_feedback,
    "export": cmd_export,
    "report": cmd_report,
    "bundle": cmd_bundle,
    "demo": cmd_demo,
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m coursekit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument(
        "--assignment", default="batchnorm", help="assignment name (this kit has one: batchnorm)"
    )
    parser.add_argument("--student", action="append", help="grade only this student (repeatable)")
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel grading kernels (default: CPU cores)"
    )
    parser.add_argument(
        "--memory-limit-mb", type=int, default=6144, help="address-space limit per grading kernel"
    )
    parser.add_argument(
        "--core-only", action="store_true", help="samples: only reference and untouched"
    )
    parser.add_argument(
        "--all-samples",
        action="store_true",
        help="samples/demo: every catalogued mistake sample (default: one per solution cell)",
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="grade: run kernels without bubblewrap (warns; notebooks marked 'unsandboxed')",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="grade: also the notebooks unchanged since they were last graded",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="grade: send the tasks to this Dask scheduler (default: $BNKIT_SCHEDULER, else "
        "c.CourseKit.scheduler in nbgrader_config.py, else the local pool)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # nbgrader, also when used in-process, runs `alembic` by name and starts kernels that
    # must import the grader: give this process the same environment as its subprocesses.
    os.environ.update(tool_env())
    try:
        check_assignment_name(args.assignment)
        COMMANDS[args.command](args)
    except KitError as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: grades recorded so far are kept")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
