"""Hostile and broken submissions: right status, right scores, flags, nobody else affected.

The corpus and its expectations live in autograder/corpus/hostile.py. A victim is graded in a
first run; the corpus (with a bystander) in a second, parallel run with a short cell timeout and
a memory limit, sandboxed as in production. Then: every entry's scores and status are exactly as
expected (an attack scores what its honest twin scores), the victims' grades and files are
unchanged, nothing outside the tasks' scratch folders changed (kit tree and home by content,
the venv by size and mtime), and no process an attack started is still alive.

``test_attacks_work_without_the_sandbox`` grades two attacks unsandboxed and shows they then
succeed: the sandbox, not luck, is what stops them.
"""

import hashlib
import os
from pathlib import Path

import pytest

from conftest import KIT_ROOT, auto_points, auto_scores, runtime_env
from corpus.hostile import (
    BYSTANDER,
    CORPUS,
    EARLY_VICTIM,
    SURVIVOR_MARK,
    build_corpus,
    build_early_victim,
)
from coursekit.grade import grade
from coursekit.gradebook import cell_scores
from coursekit.paths import db_url, submitted_dir
from coursekit.release import release

NOTEBOOK_FILES = {"bn_numpy": "bn_numpy.ipynb", "bn_keras": "bn_keras.ipynb"}
SKIPPED_IN_KIT = {".git", ".venv", "runtime", "__pycache__", ".pytest_cache", ".ruff_cache", "node"}


def _content_hashes(root, skip=SKIPPED_IN_KIT):
    """{relative path: sha256} of the files under ``root`` (skipping caches and the venv)."""
    hashes = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = Path(folder) / name
            if path.suffix != ".pyc" and path.is_file():
                hashes[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _stat_fingerprint(root):
    """{relative path: (size, mtime_ns)} of every file under ``root``, for a large tree."""
    prints = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            try:
                info = path.lstat()
            except OSError:
                continue
            prints[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return prints


def _home_fingerprint():
    """The grading user's home where a kernel could plant start-up code (content)."""
    home = Path.home()
    state = {"top": sorted(p.name for p in home.iterdir())}
    for sub in (".ipython", ".jupyter", ".config/ipython", ".local/share/jupyter"):
        if (home / sub).exists():
            state[sub] = _content_hashes(home / sub, skip=set())
    return state


def _fingerprints():
    venv = Path(os.environ.get("VIRTUAL_ENV") or Path(os.sys.executable).parents[1])
    return {
        "kit": _content_hashes(KIT_ROOT),
        "venv": _stat_fingerprint(venv),
        "home": _home_fingerprint(),
    }


def _survivors():
    """Command lines of live processes that carry the corpus's survivor mark."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if SURVIVOR_MARK in command and "pytest" not in command:
                found.append(command[:200])
    return found


@pytest.fixture(scope="module")
def graded_corpus(tmp_path_factory):
    runtime = tmp_path_factory.mktemp("hostile") / "runtime"
    with pytest.MonkeyPatch.context() as monkeypatch:
        # The longest NumPy-notebook cell takes a few seconds; the endless loop costs 20.
        runtime_env(monkeypatch, runtime, BNKIT_CELL_TIMEOUT="20")
        release(release_root=runtime.parent / "release")
        build_early_victim()
        grade([EARLY_VICTIM], workers=1, memory_limit_mb=2048, show_progress=False)
        early_scores = cell_scores(db_url())[EARLY_VICTIM]
        students = build_corpus()
        before = _fingerprints()
        submitted_before = _content_hashes(submitted_dir(), skip=set())
        statuses = grade(students, workers=2, memory_limit_mb=2048, show_progress=False)
        yield {
            "statuses": {(s.student, s.notebook): s for s in statuses},
            "scores": cell_scores(db_url()),
            "early_scores": early_scores,
            "before": before,
            "after": _fingerprints(),
            "submitted_before": submitted_before,
            "submitted_after": _content_hashes(submitted_dir(), skip=set()),
            "survivors": _survivors(),
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
        elif expectation.at_most:
            ceiling = auto_scores(graded_corpus["scores"], expectation.at_most, notebook)
            assert all(got[cell] <= ceiling[cell] for cell in maximum), (got, ceiling)
            assert sum(got.values()) < sum(maximum.values())
        elif expectation.all_zero:
            assert got == {cell: 0.0 for cell in maximum}
        else:
            for cell, points in maximum.items():
                if cell in expectation.lost_cells:
                    assert got[cell] < points, f"{cell} should lose points"
                else:
                    assert got[cell] == points, f"{cell} should keep its {points} points"


def test_victims_keep_their_grades_and_files(graded_corpus):
    assert graded_corpus["scores"][EARLY_VICTIM] == graded_corpus["early_scores"]
    full = auto_points("bn_numpy")
    assert auto_scores(graded_corpus["scores"], BYSTANDER, "bn_numpy") == full
    assert auto_scores(graded_corpus["scores"], EARLY_VICTIM, "bn_numpy") == full
    assert graded_corpus["submitted_after"] == graded_corpus["submitted_before"]


@pytest.mark.parametrize("tree", ["kit", "venv", "home"])
def test_nothing_outside_the_scratch_folders_changed(graded_corpus, tree):
    before, after = graded_corpus["before"][tree], graded_corpus["after"][tree]
    if isinstance(before, dict) and "top" not in before:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert not changed, f"{tree}: {changed[:10]}"
    else:
        assert before == after


def test_no_process_of_a_task_survives(graded_corpus):
    assert graded_corpus["survivors"] == []


@pytest.fixture
def unsandboxed_attacks(tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    runtime_env(monkeypatch, runtime, BNKIT_CELL_TIMEOUT="20")
    release(release_root=tmp_path / "release")
    build_early_victim()
    names = ["attack-steal-answers", "attack-overwrite-victims"]
    build_corpus(names)
    victim_file = submitted_dir() / EARLY_VICTIM / "batchnorm" / "bn_numpy.ipynb"
    victim_before = victim_file.read_bytes()
    statuses = grade(names, workers=2, memory_limit_mb=2048, show_progress=False, sandbox=False)
    return statuses, cell_scores(db_url()), victim_before, victim_file.read_bytes()


def test_attacks_work_without_the_sandbox(unsandboxed_attacks):
    statuses, scores, victim_before, victim_after = unsandboxed_attacks
    assert {s.status for s in statuses if s.notebook == "bn_numpy.ipynb"} == {"unsandboxed"}
    assert all("unsandboxed" in s.flags for s in statuses if s.notebook == "bn_numpy.ipynb")
    stolen = auto_scores(scores, "attack-steal-answers", "bn_numpy")
    assert sum(stolen.values()) > 0, "reading the model answers should work unsandboxed"
    assert victim_after != victim_before, "overwriting a classmate should work unsandboxed"
