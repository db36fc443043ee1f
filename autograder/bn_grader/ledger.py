"""Auto scores from the ledger only: nbgrader's SaveAutoGrades, with the executor's ledger.

nbgrader's own SaveAutoGrades scores a grade cell from what it printed and returned, which the
student's code controls. :class:`LedgerScores` replaces it in the autograde pipeline: a code
grade cell scores what its check recorded in the ledger that :class:`bn_grader.executor.
SandboxedExecute` kept in this process, and 0 when there is no entry. Written answers
(markdown grade cells) keep nbgrader's handling (manual grading).

The ledger, the refused requests and the sandbox state are also written into the autograded
notebook's metadata (``bnkit_grading``), where ``coursekit grade`` reads statuses and flags and
the class report reads which mistakes each grade cell's check named
(:func:`recorded_mistakes`): the lines printed for students carry no mistake ids.
"""

from nbgrader.preprocessors import SaveAutoGrades

from .executor import RESOURCE_KEY

METADATA_KEY = "bnkit_grading"


class LedgerScores(SaveAutoGrades):
    """Write auto scores from the ledger; record it in the notebook's metadata."""

    def preprocess(self, nb, resources):
        self._grading = resources.get(RESOURCE_KEY) or {
            "ledger": {},
            "expected": {},
            "flags": ["the notebook was not run by the kit's executor: no check counted"],
            "sandboxed": False,
        }
        self._missing = []
        nb, resources = super().preprocess(nb, resources)
        nb.metadata[METADATA_KEY] = dict(self._grading, unscored=self._missing)
        return nb, resources

    def _add_score(self, cell, resources):
        if cell.cell_type != "code":
            return super()._add_score(cell, resources)
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        grade = self.gradebook.find_grade(
            grade_id, self.notebook_id, self.assignment_id, self.student_id
        )
        entry = self._grading["ledger"].get(grade_id)
        if entry is None:
            self._missing.append(grade_id)
        score = float(entry["score"]) if entry else 0.0
        grade.auto_score = min(score, float(grade.max_score))
        grade.needs_manual_grade = grade.manual_score is not None
        self.gradebook.db.commit()


def recorded_mistakes(notebook):
    """{grade_id: mistake ids} its check named, from an autograded notebook's ledger.

    Each grade cell lists every id any of its failed items named, once (two mistakes found in
    one item give two ids). Cells whose check named nothing map to an empty list; a notebook
    without a ledger (not graded by the kit's executor) gives ``{}``.
    """
    ledger = (notebook.metadata.get(METADATA_KEY) or {}).get("ledger") or {}
    found = {}
    for grade_id, entry in ledger.items():
        ids = {mistake for item in entry.get("items", []) for mistake in item.get("mistakes", [])}
        found[grade_id] = sorted(ids | set(entry.get("mistakes", [])))
    return found
