"""Feedback a student can read: nbgrader's feedback HTML, with a summary, wrapped and plain.

``generate_feedback`` runs ``nbgrader generate_feedback``; the formgrader's "generate feedback"
button (the hub's release_feedback route) runs the same converter. Both take their
preprocessors and exporter from nbgrader_config.py, which ends the preprocessors with
:class:`StudentFeedback`:

- a summary at the top: one row per grade cell, what it checked, passed or failed, points;
- each grade cell's output starts with its own one-line summary, before the detail;
- internal lines (the grader's per-check tally) and internal ids are dropped;
- written answers not graded by hand yet say "not graded yet" instead of "0.0 / 2.0";
- long lines wrap, so the page reads on a 13-inch laptop without horizontal scrolling;

and sets the exporter to :class:`StudentFeedbackExporter`, whose template heads grade cells
without nbgrader's "Grade cell: <grade_id>" line. The formgrader's button forces nbgrader's
template name ("feedback"), so the kit's template is chosen by the exporter class, which that
route takes from the configuration like the command line does.
"""

import html
import re
from pathlib import Path

import nbgrader
from jinja2 import FileSystemLoader, PrefixLoader
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_markdown_cell
from traitlets import Bool, default

from bn_grader.report import split_mistake_ids

from .errors import KitError
from .nbgrader_cli import run_nbgrader
from .paths import ASSIGNMENT, autograded_dir, feedback_dir

# The grader's closing tally of one check, e.g. "3/4 checks passed, 2.25/3 points" (older runs
# started it with the check's id): it repeats the score the cell's summary gives.
TALLY_LINE = re.compile(r"^(?:[A-Za-z0-9_]+: )?\d+/\d+ checks passed, [\d.]+/[\d.]+ points\s*$")

TEMPLATES = Path(__file__).resolve().parent / "templates"
# nbgrader's own templates, where GenerateFeedback finds its "feedback" template.
NBGRADER_TEMPLATES = (
    Path(nbgrader.__file__).resolve().parent / "server_extensions" / "formgrader" / "templates"
)

WRAP_CSS = """
/* Feedback reads without horizontal scrolling: long code and output lines wrap. */
pre, div.output_area pre, div.input_area pre, .highlight pre, code {
  white-space: pre-wrap;
  overflow-wrap: anywhere;
  word-break: break-word;
}
div.output_area, div.output_subarea, div.input_area, div.inner_cell, div.panel-body {
  max-width: 100%;
  overflow-x: hidden;
}
div.prompt { min-width: 0; }
div.output_subarea { max-width: 100%; }
img { max-width: 100%; height: auto; }
div.rendered_html table { max-width: 100%; table-layout: auto; }
div.rendered_html td, div.rendered_html th { overflow-wrap: anywhere; vertical-align: top; }
div.bnkit-cell-summary { font-weight: bold; margin: 0.2em 0 0.4em 0; }
div.bnkit-cell-summary.passed { color: #1a7f37; }
div.bnkit-cell-summary.failed { color: #c62828; }
"""

NOT_GRADED = "not graded yet"


class StudentFeedbackExporter(HTMLExporter):
    """nbgrader's feedback HTML, rendered with ``templates/student_feedback.html.j2``.

    That template extends nbgrader's feedback template (reached as ``nbgrader/feedback/...``
    through a loader of its own, so no other template name is shadowed) and replaces only the
    heading of grade cells. nbgrader's settings (template name, bootstrap CSS path) still apply.
    """

    @default("extra_loaders")
    def _kit_loaders(self):
        return [
            FileSystemLoader(str(TEMPLATES)),
            PrefixLoader({"nbgrader": FileSystemLoader(str(NBGRADER_TEMPLATES))}),
        ]

    @default("template_file")
    def _kit_template_file(self):
        return "student_feedback.html.j2"


def _what_it_checks(cell):
    """The first line of a grade cell's docstring, without the points it repeats."""
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    text = first.strip().strip('"').strip("'").strip()
    return re.sub(r"\s*\(\d+(\.\d+)? points?\)\.?$", ".", text) or "Hidden tests."


def _status(score, points):
    if score is None:
        return NOT_GRADED
    if score >= points:
        return "passed"
    return "failed" if score <= 0 else "partly passed"


def _points(value):
    return f"{float(value):g}"


class StudentFeedback(Preprocessor):
    """The last feedback step: summaries, no internal lines, "not graded yet", wrapping CSS."""

    enabled = Bool(True, help="nbconvert runs a preprocessor only when it is enabled").tag(
        config=True
    )

    def preprocess(self, nb, resources):
        rows = []
        auto_score = auto_max = pending = 0.0
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("grade"):
                continue
            score, points = meta.get("score"), float(meta.get("points") or 0)
            status, state = _status(score, points), None
            if cell.cell_type == "code":
                what = _what_it_checks(cell)
                self._summarise_code_cell(cell, what, status, score, points)
                auto_score += float(score or 0)
                auto_max += points
            else:
                what = "Written answer, read by your instructor."
                state = self._hand_grading_state(meta.get("grade_id"), resources)
                if state == "pending":
                    score = None
                    self._mark_not_graded(cell, points)
                    pending += points
            status = _status(score, points)
            if state == "unanswered":
                status = "no answer given"
            rows.append((meta.get("grade_id", ""), what, status, score, points))
        if rows:
            nb.cells.insert(0, self._summary_cell(rows, auto_score, auto_max, pending))
        inlining = resources.setdefault("inlining", {})
        inlining.setdefault("css", []).append(WRAP_CSS)
        return nb, resources

    @staticmethod
    def _hand_grading_state(grade_id, resources):
        """ "pending" (no score at all yet), "unanswered" (nbgrader's automatic 0 for an answer
        left as released) or None (graded by hand, or no gradebook to ask).

        nbgrader's ``Grade.score`` is 0.0 in the first two cases, which reads as a zero.
        """
        info = resources.get("nbgrader", {})
        if not info.get("db_url") or grade_id is None:
            return None
        from nbgrader.api import Gradebook, MissingEntry

        try:
            with Gradebook(info["db_url"]) as gradebook:
                grade = gradebook.find_grade(
                    grade_id, info["notebook"], info["assignment"], info["student"]
                )
                if grade.manual_score is not None:
                    return None
                return "pending" if grade.auto_score is None else "unanswered"
        except MissingEntry:
            return None

    @staticmethod
    def _summarise_code_cell(cell, what, status, score, points):
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                lines = output.get("text", "").splitlines(keepends=True)
                # The grader prints no mistake ids any more; notebooks autograded before it
                # stopped may still carry them, and feedback can be made again from those.
                output["text"] = "".join(
                    split_mistake_ids(line)[0] for line in lines if not TALLY_LINE.match(line)
                )
                if not output["text"]:
                    continue
            kept.append(output)
        css = "passed" if status == "passed" else "failed"
        summary = f"{status.capitalize()}: {_points(score or 0)} / {_points(points)} points. {what}"
        cell["outputs"] = [
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {
                    "text/html": f'<div class="bnkit-cell-summary {css}">{html.escape(summary)}</div>',
                    "text/plain": summary,
                },
            },
            *kept,
        ]

    @staticmethod
    def _mark_not_graded(cell, points):
        # nbgrader's template prints a missing score as 0.0; without the grade flag it prints
        # no score, and the cell says what is going on instead.
        cell.metadata["nbgrader"]["grade"] = False
        cell.source = (
            f"*Written answer ({_points(points)} points): {NOT_GRADED}. Your instructor reads "
            "it; the score appears here once it is graded.*\n\n" + cell.source
        )

    @staticmethod
    def _summary_cell(rows, auto_score, auto_max, pending):
        lines = [
            "## Summary",
            "",
            f"Graded automatically: **{_points(auto_score)} / {_points(auto_max)} points**."
            + (f" Written answers: {_points(pending)} points {NOT_GRADED}." if pending else ""),
            "",
            "| | What it checks | Result | Points |",
            "|---|---|---|---|",
        ]
        # Each row links to its cell's anchor; the grade_id stays in the link target only, a
        # reader sees the sentence.
        for number, (grade_id, what, status, score, points) in enumerate(rows, start=1):
            shown = "–" if score is None else _points(score)
            text = re.sub(r"([\[\]|])", r"\\\1", what)
            lines.append(
                f"| {number} | [{text}](#{grade_id}) | {status} | {shown} / {_points(points)} |"
            )
        return new_markdown_cell("\n".join(lines))


def generate_feedback():
    """Run ``nbgrader generate_feedback`` for all autograded students; return the HTML files."""
    if not autograded_dir().is_dir():
        raise KitError(f"nothing autograded yet in {autograded_dir()}: run `make grade` first")
    run_nbgrader(["generate_feedback", ASSIGNMENT, "--force"])
    return sorted(feedback_dir().glob(f"*/{ASSIGNMENT}/*.html"))
