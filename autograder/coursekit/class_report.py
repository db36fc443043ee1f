"""What the class has not understood: per-check statistics, a table and a PNG.

Reads the course gradebook (scores) and the autograded notebooks' ledgers (the mistake ids
each grade cell's check named, kept in the notebook's metadata by the grader: the lines printed
for students carry no ids), counting only notebooks that were actually graded: a missing or
crashed notebook says nothing about which idea was misunderstood. A grade cell whose check named
two mistakes counts for both.
"""

from collections import Counter
from dataclasses import dataclass, field

import nbformat
from matplotlib.figure import Figure  # no pyplot: a file only, works without a display
from rich.table import Table

from bn_grader.ledger import recorded_mistakes

from . import status as st
from .gradebook import cell_scores
from .paths import ASSIGNMENT, autograded_dir, db_url, runtime_dir


@dataclass
class CheckSummary:
    """Class statistics of one auto-graded cell."""

    notebook: str
    cell: str
    max_score: float
    scores: list = field(default_factory=list)
    mistakes: Counter = field(default_factory=Counter)

    @property
    def mean(self):
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    @property
    def failure_rate(self):
        """Share of students below full marks on this cell."""
        return (
            sum(score < self.max_score for score in self.scores) / len(self.scores)
            if self.scores
            else 0.0
        )


def _graded_pairs():
    graded = set()
    for item in st.read_status_csv(runtime_dir() / "status.csv"):
        if item.status == st.GRADED:
            graded.add((item.student, item.notebook.removesuffix(".ipynb")))
    return graded


def _mistakes_in(path):
    """{grade_id: [mistake ids]} from the ledger of an autograded notebook."""
    return recorded_mistakes(nbformat.read(path, as_version=4))


def summarise():
    """Per-check summaries and per-student totals (graded notebooks only).

    Returns:
        (list of CheckSummary, dict student -> total auto score).
    """
    graded = _graded_pairs()
    summaries, totals = {}, {}
    for student, notebooks in sorted(cell_scores(db_url()).items()):
        for notebook, cells in notebooks.items():
            if (student, notebook) not in graded:
                continue
            path = autograded_dir() / student / ASSIGNMENT / f"{notebook}.ipynb"
            mistakes = _mistakes_in(path) if path.exists() else {}
            for cell, (score, max_score, is_auto) in cells.items():
                if not is_auto:
                    continue
                summary = summaries.setdefault(
                    (notebook, cell), CheckSummary(notebook, cell, max_score)
                )
                summary.scores.append(score or 0.0)
                summary.mistakes.update(mistakes.get(cell, []))
                totals[student] = totals.get(student, 0.0) + (score or 0.0)
    return list(summaries.values()), totals


def write_report(console):
    """Print the per-check table and write ``<runtime>/report/class_report.png``."""
    summaries, totals = summarise()
    if not summaries:
        console.print("nothing graded yet: run `make grade` first")
        return None
    table = Table(title="batchnorm: per-check class summary (graded notebooks only)")
    for column in (
        "notebook",
        "check",
        "mean",
        "max",
        "students failing",
        "most frequent mistakes",
    ):
        table.add_column(
            column, justify="right" if column in ("mean", "max", "students failing") else "left"
        )
    for item in summaries:
        common = ", ".join(f"{name} ({count})" for name, count in item.mistakes.most_common(3))
        table.add_row(
            item.notebook,
            item.cell,
            f"{item.mean:.2f}",
            f"{item.max_score:g}",
            f"{item.failure_rate:.0%}",
            common,
        )
    console.print(table)

    out_dir = runtime_dir() / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(13, 5))
    histogram, bars = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    histogram.hist(list(totals.values()), bins=min(20, max(5, len(totals))), color="#4C72B0")
    histogram.set_title("Total auto-graded score per student")
    histogram.set_xlabel("points")
    histogram.set_ylabel("students")
    labels = [f"{item.notebook}:{item.cell}" for item in summaries]
    bars.barh(labels, [100 * item.failure_rate for item in summaries], color="#C44E52")
    bars.set_title("Students below full marks, per check")
    bars.set_xlabel("students failing (%)")
    bars.set_xlim(0, 100)
    bars.invert_yaxis()
    figure.tight_layout()
    png = out_dir / "class_report.png"
    figure.savefig(png, dpi=100)
    console.print(f"report written to {png}")
    return png
