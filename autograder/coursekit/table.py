"""Print the score table an instructor reads after grading."""

from rich.console import Console
from rich.table import Table

from .paths import NOTEBOOKS


def print_score_table(rows, console=None):
    """Render :func:`coursekit.export.student_rows` output as a table on the terminal."""
    table = Table(title="batchnorm: auto-graded scores")
    table.add_column("student")
    for notebook in NOTEBOOKS:
        table.add_column(notebook.removesuffix(".ipynb"), justify="right")
    table.add_column("auto", justify="right")
    table.add_column("of", justify="right")
    table.add_column("to grade by hand", justify="right")
    table.add_column("status")
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
    (console or Console(width=160)).print(table)
