"""Sample submissions: the reference answers, the untouched release, one per classic mistake.

A sample is described, not stored: it is built from the committed release notebook by filling
each solution cell with the reference solution's code (from ``solutions/``), then applying the
sample's text edits. The pipeline (``coursekit``) writes them as nbgrader submissions; the tests
use the same descriptions to grade them without nbgrader.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One sample submission of one notebook.

    Attributes:
        name: the student id it is submitted under, e.g. ``"np-unbiased-var"``.
        notebook: the notebook file it concerns, e.g. ``"bn_numpy.ipynb"``.
        edits: ``(solution grade_id, old text, new text)`` replacements applied to the reference
            code of that solution cell; each ``old`` must occur exactly once.
        affected_cells: test-cell grade_ids that must score below their maximum; every other
            auto-graded cell of the notebook keeps full marks.
        mistake_id: the mistake the feedback must name (``None`` for no particular mistake).
    """

    name: str
    notebook: str
    edits: tuple = ()
    affected_cells: frozenset = field(default_factory=frozenset)
    mistake_id: str | None = None


def all_samples():
    """Every mistake sample of both notebooks (reference and untouched are built separately)."""
    samples = []
    for module_name in ("samples_numpy", "samples_keras"):
        try:
            module = __import__(f"bn_grader.{module_name}", fromlist=["SAMPLES"])
        except ModuleNotFoundError:
            continue
        samples.extend(module.SAMPLES)
    names = [sample.name for sample in samples]
    duplicated = {name for name in names if names.count(name) > 1}
    if duplicated:
        raise ValueError(f"sample names must be unique, duplicated: {sorted(duplicated)}")
    return samples
