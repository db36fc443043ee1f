"""What a student sees from a graded check: one ``[PASS]``/``[FAIL]`` line per item, a score.

The grader collects the lines and sends them to the kernel's stub, which prints them under the
grade cell (stdout only: stderr in a grade cell scores it 0 in nbgrader). They say what was
checked, what was expected, what was received and the likely cause; they never show hidden
input values, grader source or a traceback.
"""

import math
from dataclasses import dataclass, field


@dataclass
class Item:
    """One checked property of a student's function."""

    label: str
    passed: bool
    detail: str = ""
    mistake_id: str | None = None


@dataclass
class Report:
    """Collects the items of one check and turns them into points.

    ``points`` is the grade cell's maximum; the score is ``points * passed / total`` rounded
    down to 2 decimals, so it never exceeds the maximum (nbgrader rejects that).
    """

    check_id: str
    points: float
    items: list[Item] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(self, label, passed, detail="", mistake_id=None):
        item = Item(label, bool(passed), detail, mistake_id)
        self.items.append(item)
        tag = "[PASS]" if item.passed else "[FAIL]"
        line = f"{tag} {label}" + (f": {detail}" if detail and not item.passed else "")
        if mistake_id and not item.passed and f"[{mistake_id}]" not in line:
            # A stable tag the class report counts (the NumPy checks already print
            # "Likely mistake [id]: cause"; the others explain in words only).
            line += f" [mistake: {mistake_id}]"
        self.lines.append(line)
        return item.passed

    def passed(self, label):
        return self.add(label, True)

    def failed(self, label, detail, mistake_id=None):
        return self.add(label, False, detail, mistake_id)

    @property
    def mistakes(self):
        return sorted({item.mistake_id for item in self.items if item.mistake_id})

    def score(self):
        if not self.items:
            return 0.0
        share = sum(item.passed for item in self.items) / len(self.items)
        return math.floor(self.points * share * 100 + 1e-9) / 100

    def summary(self):
        good = sum(item.passed for item in self.items)
        return f"{self.check_id}: {good}/{len(self.items)} checks passed, {self.score():g}/{self.points:g} points"
