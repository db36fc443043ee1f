"""Hostile and broken submissions: right status, right scores, flags, nobody else affected.

The corpus and its expectations live in autograder/corpus/hostile.py. It is graded in one
parallel run with a short cell timeout (so the endless loop costs seconds) and a memory limit.
"""

import pytest

from conftest import auto_points, auto_scores, runtime_env
from corpus.hostile import CORPUS, build_corpus
from coursekit.grade import grade
from coursekit.gradebook import cell_scores
from coursekit.paths import db_url
from coursekit.release import release

NOTEBOOK_FILES = {"bn_numpy": "bn_numpy.ipynb", "bn_keras": "bn_keras.ipynb"}


@pytest.fixture(scope="module")
def graded_corpus(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("hostile") / "runtime"
    with pytest.MonkeyPatch.context() as monkeypatch:
        # The longest NumPy-notebook cell takes a few seconds; the endless loop costs 20.
        runtime_env(monkeypatch, runtime, BNKIT_CELL_TIMEOUT="20")
        release(release_root=runtime.parent / "release")
        build_corpus()
        statuses = grade(workers=2, memory_limit_mb=2048, show_progress=False)
        yield {
            "statuses": {(s.student, s.notebook): s for s in statuses},
            "scores": cell_scores(db_url()),
        }


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.name for entry in CORPUS])
def test_hostile_submission(graded_corpus, entry):
    for notebook, expectation in (("bn_numpy", entry.numpy), ("bn_keras", entry.keras)):
        outcome = graded_corpus["statuses"][(entry.name, NOTEBOOK_FILES[notebook])]
        assert outcome.status == expectation.status, f"{notebook}: {outcome.detail} {outcome.flags}"
        assert bool(outcome.flags) == expectation.flagged, f"{notebook} flags: {outcome.flags!r}"
        got = auto_scores(graded_corpus["scores"], entry.name, notebook)
        maximum = auto_points(notebook)
        assert set(got) == set(maximum), f"{notebook}: every auto-graded cell has a score"
        if expectation.same_as:
            assert got == auto_scores(graded_corpus["scores"], expectation.same_as, notebook)
            assert sum(got.values()) < sum(maximum.values())
        elif expectation.all_zero:
            assert got == {cell: 0.0 for cell in maximum}
        else:
            for cell, points in maximum.items():
                if cell in expectation.lost_cells:
                    assert got[cell] < points, f"{cell} should lose points"
                else:
                    assert got[cell] == points, f"{cell} should keep its {points} points"
