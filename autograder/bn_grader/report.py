"""What a student sees from a graded check: one ``[PASS]``/``[FAIL]`` line per item, a score.

The grader collects the lines and sends them to the kernel's stub, which prints them under the
grade cell (stdout only: stderr in a grade cell scores it 0 in nbgrader). They say what was
checked, what was expected, what was received and the likely cause; they never show hidden
input values, grader source, a traceback or an internal id.

The mistakes an item names travel beside the lines, as data: :attr:`Item.mistake_ids` goes into
the check's result, then the ledger in the autograded notebook's metadata, where the class
report counts them. A printed line never carries them.
"""

import math
import re
from dataclasses import dataclass, field

# The catalogue's sentences name their mistake for the instructor's side, as
# "Likely mistake [<id>]: <cause>" (mistakes.explain) or "... [mistake: <id>]". Both forms are
# read into the item's ids and taken out of the printed line, whoever wrote the detail.
_ID_IN_SENTENCE = re.compile(r"Likely mistake \[([\w-]+)\]:")
_ID_TAG = re.compile(r"\s*\[mistake: ([\w-]+)\]")


def split_mistake_ids(detail):
    """(detail without ids, ids it named in order) for a failure's detail text."""
    ids = [*_ID_IN_SENTENCE.findall(detail), *_ID_TAG.findall(detail)]
    text = _ID_TAG.sub("", _ID_IN_SENTENCE.sub("Likely mistake:", detail))
    return text, tuple(ids)


@dataclass
class Item:
    """One checked property of a student's function.

    ``mistake_ids``: the catalogue ids of the mistakes the failure names, most important first
    (empty when it names none, and always empty for a passed item).
    """

    label: str
    passed: bool
    detail: str = ""
    mistake_ids: tuple = ()

    def as_record(self):
        """The item as the ledger keeps it (JSON types only)."""
        return {"label": self.label, "passed": self.passed, "mistakes": list(self.mistake_ids)}


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

    def add(self, label, passed, detail="", mistake_id=None, mistake_ids=()):
        """Record one item and its printed line; returns whether it passed.

        ``mistake_id`` (one) and ``mistake_ids`` (several) name the mistakes of a failure;
        ids the detail's sentences name are added to them.
        """
        passed = bool(passed)
        ids = ()
        if not passed:
            detail, named = split_mistake_ids(detail)
            given = ((mistake_id,) if mistake_id else ()) + tuple(mistake_ids)
            ids = tuple(dict.fromkeys(given + named))
        item = Item(label, passed, detail, ids)
        self.items.append(item)
        tag = "[PASS]" if passed else "[FAIL]"
        self.lines.append(f"{tag} {label}" + (f": {detail}" if detail and not passed else ""))
        return passed

    def passed(self, label):
        return self.add(label, True)

    def failed(self, label, detail, mistake_id=None, mistake_ids=()):
        return self.add(label, False, detail, mistake_id, mistake_ids)

    @property
    def mistakes(self):
        """Every mistake id any failed item names, sorted, each once."""
        return sorted({mistake for item in self.items for mistake in item.mistake_ids})

    def score(self):
        if not self.items:
            return 0.0
        share = sum(item.passed for item in self.items) / len(self.items)
        return math.floor(self.points * share * 100 + 1e-9) / 100

    def summary(self):
        """The closing tally, e.g. "3/4 checks passed, 2.25/3 points" (no check id: it is
        printed under the grade cell like every other line)."""
        good = sum(item.passed for item in self.items)
        return f"{good}/{len(self.items)} checks passed, {self.score():g}/{self.points:g} points"
