"""Time the solved bn_numpy.ipynb run top to bottom on the course kernel (target: < 30 s).

Runs the solution notebook with nbclient (Agg backend, no grader: grade cells say the hidden
tests run at grading time, so this times the student's work), checks that no cell raised and
no grade cell wrote to stderr, and prints the wall time, the kernel's own execution time and the
slowest cells. Scores are not measured here: `make validate` grades the solutions. Not a timed
test.

Usage: .venv/bin/python bench/run_notebook_timing.py [notebook]
"""

import os
import sys
from pathlib import Path

from notebook_run import cell_seconds, execute_notebook

ROOT = Path(__file__).resolve().parents[1]


def main():
    path = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else ROOT / "solutions" / "batchnorm" / "bn_numpy.ipynb"
    )
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    wall, notebook = execute_notebook(path)
    cells, problems = [], []
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        name = meta.get("grade_id") or f"cell {number}"
        if "execution" in cell.metadata:
            cells.append((cell_seconds(cell.metadata["execution"]), name))
        for output in cell.outputs:
            if output.output_type == "error":
                problems.append(f"{name}: {output.ename}")
            if output.output_type == "stream" and output.name == "stderr" and meta.get("grade"):
                problems.append(f"{name}: wrote to stderr")
    kernel_time = sum(seconds for seconds, _ in cells)
    print(
        f"{path.name}: wall time {wall:.1f} s (kernel start included), cells {kernel_time:.1f} s, target < 30 s"
    )
    for seconds, name in sorted(cells, reverse=True)[:5]:
        print(f"  {seconds:6.2f} s  {name}")
    if problems:
        print("PROBLEMS:", *problems, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
