"""The realistic corpus: failing items carry the right cause, and never a wrong one.

Every submission of autograder/corpus/realistic.py is graded through the real protocol
(``bn_grader.runner.check_result``); each failing item is read the way the class report reads
it: the mistake ids its result records (what goes into the ledger), beside the line the student
reads. A line is right when it names at least one cause and every cause it names is one of the
submission's true causes; a wrong name is a line naming anything else.
"""

import contextlib
import io
import re

import pytest

from bn_grader import mistakes
from bn_grader import mistakes_keras as mk
from bn_grader.runner import check_result
from corpus.realistic import SUBMISSIONS, namespace

TARGET = 0.9


def failing_lines(submission):
    """[(check id, line, named ids)] of the submission's failing items."""
    ns = namespace(submission)
    found = []
    for check_id in submission.checks:
        with contextlib.redirect_stdout(io.StringIO()):
            result = check_result(check_id, ns)
        # One printed line per item, in order; the last line is the tally.
        for item, line in zip(result.items, result.lines, strict=False):
            if not item["passed"]:
                assert line.startswith("[FAIL]"), line
                found.append((check_id, line, set(item["mistakes"])))
    return found


@pytest.fixture(scope="module")
def graded():
    return {submission.name: (submission, failing_lines(submission)) for submission in SUBMISSIONS}


def test_corpus_is_large_and_varied():
    names = [submission.name for submission in SUBMISSIONS]
    assert len(names) == len(set(names))
    assert len(SUBMISSIONS) >= 40
    assert sum(len(submission.causes) >= 2 for submission in SUBMISSIONS) >= 5
    known = set(mistakes.BY_ID) | set(mk.MISTAKES)
    for submission in SUBMISSIONS:
        assert submission.causes <= known, submission.name
        assert submission.checks, submission.name


def test_every_submission_fails_somewhere(graded):
    passing = [name for name, (_, lines) in graded.items() if not lines]
    assert not passing


def test_no_failing_item_names_a_wrong_cause(graded):
    wrong = [
        (name, sorted(submission.causes), line)
        for name, (submission, lines) in graded.items()
        for _, line, named in lines
        if named - submission.causes
    ]
    assert not wrong, "\n".join(map(str, wrong))


def test_failing_items_carry_the_right_cause(graded, capsys):
    right = total = 0
    unnamed = []
    for name, (submission, lines) in graded.items():
        for _, line, named in lines:
            total += 1
            if named and named <= submission.causes:
                right += 1
            elif not named:
                unnamed.append(f"{name}: {line[:160]}")
    ratio = right / total
    with capsys.disabled():
        print(
            f"\nrealistic corpus: {len(graded)} submissions, {total} failing items, "
            f"{right} carry the right cause ({ratio:.1%}); {len(unnamed)} name nothing"
        )
    assert ratio >= TARGET, "\n".join(unnamed)


def test_every_submission_gets_its_causes_named_somewhere(graded):
    """Each true cause (but equivalents listed for the same mistake) shows up at least once."""
    missing = []
    for name, (submission, lines) in graded.items():
        named = set().union(*(ids for _, _, ids in lines)) if lines else set()
        if not named & submission.causes:
            missing.append(name)
    assert not missing


def test_two_mistakes_in_one_item_are_both_named(graded):
    """A two-mistake submission's item that shows both records both ids (the ledger and the
    class report count them), and its line gives both causes in words, without the ids."""
    submission, lines = graded["momentum-pytorch-style"]
    both = [(line, named) for _, line, named in lines if named == submission.causes]
    assert both, lines
    for line, _ in both:
        for mistake_id in submission.causes:
            assert "Likely mistake: " + mistakes.cause(mistake_id) in line
            assert mistake_id not in line


def test_no_printed_line_carries_an_id(graded):
    known = set(mistakes.BY_ID) | set(mk.MISTAKES)
    an_id = re.compile("|".join(rf"(?<![\w-]){re.escape(m)}(?![\w-])" for m in known))
    carrying = [
        line
        for _, lines in graded.values()
        for _, line, _ in lines
        if "[mistake:" in line or "Likely mistake [" in line or an_id.search(line)
    ]
    assert not carrying, carrying[:5]
