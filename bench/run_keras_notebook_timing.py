"""Time the solved bn_keras.ipynb top to bottom on the course kernel (target: < 90 s on 2 CPUs).

Runs the solution notebook with nbclient (Agg backend, TensorFlow quiet, no grader: grade cells
say the hidden tests run at grading time), then prints a table: the time of each part of the
notebook (the setup cell, which imports TensorFlow, counts as its own part), the slowest cells,
the device the work ran on, and any cell that raised or any grade cell that wrote to stderr.
Scores are not measured here: `make validate` grades the solutions. Not a timed test: timings on a shared machine vary.

Usage: .venv/bin/python bench/run_keras_notebook_timing.py [notebook] [--repeats N]
"""

import argparse
import os
import sys
from pathlib import Path

from notebook_run import cell_seconds, execute_notebook

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 90.0


def summarise(notebook):
    """Per-part and per-cell times, problems, device lines."""
    parts, cells, problems, devices = {}, [], [], []
    part = "title"
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            part = cell.source.splitlines()[0][3:].split(":")[0]
            continue
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        name = meta.get("grade_id") or f"cell {number}"
        seconds = cell_seconds(cell.metadata["execution"]) if "execution" in cell.metadata else 0.0
        bucket = "setup (import tensorflow)" if name == "setup" else part
        parts[bucket] = parts.get(bucket, 0.0) + seconds
        cells.append((seconds, name))
        for output in cell.outputs:
            if output.output_type == "error":
                problems.append(f"{name}: {output.ename}: {output.evalue[:100]}")
            if output.output_type == "stream":
                if output.name == "stderr" and meta.get("grade"):
                    problems.append(f"{name}: grade cell wrote to stderr")
                devices += [line for line in output.text.splitlines() if "ran on" in line]
    return parts, cells, problems, devices


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebook",
        nargs="?",
        default=str(ROOT / "solutions" / "batchnorm" / "bn_keras.ipynb"),
    )
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    path = Path(args.notebook).resolve()
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

    walls, failed = [], False
    for repeat in range(args.repeats):
        wall, notebook = execute_notebook(path)
        walls.append(wall)
        parts, cells, problems, devices = summarise(notebook)
        print(f"\nrun {repeat + 1}/{args.repeats}: {path.name} on {os.cpu_count()} CPUs")
        print(f"{'part':40s} {'seconds':>8s}")
        for name, seconds in parts.items():
            print(f"{name[:40]:40s} {seconds:8.1f}")
        print(f"{'all cells':40s} {sum(parts.values()):8.1f}")
        print(
            f"{'wall time (kernel start included)':40s} {wall:8.1f}   target < {TARGET_SECONDS:g}"
        )
        print("slowest cells:")
        for seconds, name in sorted(cells, reverse=True)[:8]:
            print(f"  {seconds:6.2f} s  {name}")
        for line in devices[:1]:
            print(f"device: {line}")
        if problems:
            failed = True
            print("PROBLEMS:", *problems, sep="\n  ")
    if args.repeats > 1:
        print(f"\nwall times: {', '.join(f'{w:.1f}' for w in walls)} s; best {min(walls):.1f} s")
    verdict = "within" if min(walls) < TARGET_SECONDS else "OVER"
    print(f"best wall time {min(walls):.1f} s: {verdict} the {TARGET_SECONDS:g} s target")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
