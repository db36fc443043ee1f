"""Sample submissions of bn_numpy.ipynb with one classic mistake each (see mistakes.py).

The edits live with the mistakes they make, in the catalogue; this module only lists them in the
form the pipeline expects (``bn_grader.samples.Sample``).
"""

from .mistakes import MISTAKES
from .samples import Sample

NOTEBOOK = "bn_numpy.ipynb"

SAMPLES = [
    Sample(
        name=spec.name,
        notebook=NOTEBOOK,
        edits=spec.edits,
        affected_cells=spec.affected_cells,
        mistake_id=mistake.mistake_id,
    )
    for mistake in MISTAKES
    for spec in mistake.samples
]
