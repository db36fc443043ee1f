"""Print the score table an instructor reads after grading."""

from rich.console import Console
from rich.table import Table

from .paths import NOTEBOOKS

# The table fits a 120-column terminal whatever the console's own width: one line per student
# when nothing is flagged, long statuses and flags wrapped in their own columns.
TABLE_WIDTH = 120


def score_table(rows):
    """The :func:`coursekit.export.student_rows` output as a rich table."""
    table = Table(title="batchnorm: auto-graded scores")
    # The student column never wraps: a student id cut in two reads as two students.
    longest = max([len(row["student_id"]) for row in rows] + [len("student")])
    table.add_column("student", no_wrap=True, min_width=longest)
    for notebook in NOTEBOOKS:
        table.add_column(notebook.removesuffix(".ipynb"), justify="right", no_wrap=True)
    table.add_column("auto", justify="right", no_wrap=True)
    table.add_column("of", justify="right", no_wrap=True)
    table.add_column("by hand", justify="right", no_wrap=True)
    table.add_column("status", overflow="fold")
    table.add_column("flags", overflow="fold")
    for row in rows:
        table.add_row(
            row["student_id"],
            *[f"{row[nb.removesuffix('.ipynb')]:g}" for nb in NOTEBOOKS],
            f"{row['auto_score']:g}",
            f"{row['auto_max']:g}",
            str(row["needs_manual_grade"]),
            row["status"],
            row.get("flags", ""),
        )
    table.caption = "by hand: cells still to grade by hand (written answers)"
    return table


def print_score_table(rows, console=None):
    """Print :func:`score_table` within :data:`TABLE_WIDTH` columns on ``console``."""
    console = console or Console(width=TABLE_WIDTH)
    console.print(score_table(rows), width=min(console.width, TABLE_WIDTH))
