"""Feedback HTML a student can read, and that gives nothing hidden away.

One small grading run (module fixture, private runtime): the reference answers of bn_numpy with
its written answers not graded yet, the untouched release, and one catalogued mistake, through
``coursekit grade`` and ``coursekit feedback`` (what ``make feedback`` runs). The formgrader's
feedback button (the hub's release_feedback route) runs nbgrader's same GenerateFeedback
converter with the same configured preprocessors, checked at the end.

The leak test is a property, not a list of markers: the hidden inputs of every check are
rebuilt from the grading secret and the student's own functions (the checks are deterministic
given their seed), and no feedback line may show more of them than the one expected/received
pair a failure reports; no line of the reference implementation or of the hidden tests may
appear either.
"""

import html
import inspect
import re

import nbformat
import numpy as np
import pytest

from bn_grader import mistakes, reference
from bn_grader import mistakes_keras as mk
from bn_grader.executor import expected_checks
from bn_grader.runner import check, check_seed
from bn_grader.samples_numpy import SAMPLES
from conftest import ASSIGNMENT_SOURCE, runtime_env
from coursekit.config import load_nbgrader_config
from coursekit.feedback import (
    NBGRADER_TEMPLATES,
    TALLY_LINE,
    WRAP_CSS,
    StudentFeedback,
    StudentFeedbackExporter,
    generate_feedback,
)
from coursekit.grade import grade
from coursekit.paths import feedback_dir, runtime_dir
from coursekit.release import release
from coursekit.submissions import RELEASE_DIR, apply_edits, reference_notebook, write_submission
from nbcode import namespace_from_notebook

NOTEBOOK = "bn_numpy.ipynb"
KERAS = "bn_keras.ipynb"
MISTAKE = next(sample for sample in SAMPLES if sample.mistake_id == "unbiased-variance")
STUDENTS = {"fb-reference": (), "fb-untouched": None, "fb-mistake": MISTAKE.edits}


def _stub_namespace():
    """What the untouched release defines: every function raises NotImplementedError."""
    import nbformat

    namespace = {"__name__": "__main__"}
    release_nb = nbformat.read(RELEASE_DIR / NOTEBOOK, as_version=4)
    for cell in release_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            exec(compile(cell.source, "<release>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def feedback(tmp_path_factory):
    import nbformat

    runtime = tmp_path_factory.mktemp("feedback") / "runtime"
    with pytest.MonkeyPatch.context() as monkeypatch:
        runtime_env(monkeypatch, runtime)
        release(release_root=runtime.parent / "release")
        for student, edits in STUDENTS.items():
            if edits is None:
                notebook = nbformat.read(RELEASE_DIR / NOTEBOOK, as_version=4)
            else:
                notebook = apply_edits(reference_notebook(NOTEBOOK), edits, student)
            notebooks = {NOTEBOOK: notebook}
            if edits is None:  # the untouched student hands in both notebooks
                notebooks[KERAS] = nbformat.read(RELEASE_DIR / KERAS, as_version=4)
            write_submission(student, notebooks)
        # A fixed grading secret: the hidden inputs, and so the chance that a number shown in
        # feedback happens to round like one of them, are the same on every run.
        (runtime_dir() / "grading.secret").write_bytes(b"tests/test_feedback.py fixed secret")
        grade(workers=2, show_progress=False)
        generate_feedback()
        pages = {
            student: (feedback_dir() / student / "batchnorm" / "bn_numpy.html").read_text()
            for student in STUDENTS
        }
        pages["fb-untouched (keras)"] = (
            feedback_dir() / "fb-untouched" / "batchnorm" / "bn_keras.html"
        ).read_text()
        pages["fb-mistake (formgrader)"] = _formgrader_feedback("fb-mistake")
        yield {
            "pages": pages,
            "secret": (runtime_dir() / "grading.secret").read_bytes(),
            "submitted": runtime_dir() / "submitted",
        }


def _formgrader_feedback(student):
    """The page the formgrader's "generate feedback" button writes (the hub's route).

    The button calls NbGraderAPI.generate_feedback inside the formgrader, whose own settings
    name its "formgrade" template and nbgrader's template folder; the API then forces the
    template name "feedback". Both are reproduced here on top of nbgrader_config.py.
    """
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = load_nbgrader_config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [str(NBGRADER_TEMPLATES)]
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    result = api.generate_feedback("batchnorm", student)
    assert result["success"], result.get("error") or result.get("log")
    return (feedback_dir() / student / "batchnorm" / "bn_numpy.html").read_text()


def _text(page):
    """The page as a reader sees it: tags dropped, entities decoded, one line per line."""
    page = re.sub(r"<style.*?</style>|<script.*?</script>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", page))


# ------------------------------------------------------------------------- readable
def _notebook_of(page_name):
    return KERAS if "keras" in page_name else NOTEBOOK


def _summary_html(page):
    """The summary cell's HTML: from its heading to the end of its table."""
    start = page.index('id="Summary"')
    return page[start : page.index("</table>", start)]


def test_every_page_starts_with_a_summary_of_every_grade_cell(feedback):
    for student, page in feedback["pages"].items():
        checks = expected_checks(ASSIGNMENT_SOURCE / _notebook_of(student))
        summary = _summary_html(page)
        assert page.index('id="Summary"') < page.index('<a name="test_'), student
        assert "Graded automatically:" in _text(summary), student
        for grade_id in checks:
            # a row per grade cell, linked to it; the id is the link's target, not its text
            assert f'href="#{grade_id}"' in summary, (student, grade_id)
            assert grade_id not in _text(summary), (student, grade_id)


def test_each_grade_cell_output_starts_with_its_own_summary_line(feedback):
    for student, page in feedback["pages"].items():
        for match in re.finditer(r'<a name="(test_[a-z_]+)"></a>', page):
            rest = page[match.end() :]
            summary = rest.find("bnkit-cell-summary")
            first_line = min(
                [
                    position
                    for position in (rest.find("[PASS]"), rest.find("[FAIL]"))
                    if position >= 0
                ]
                or [len(rest)]
            )
            assert 0 <= summary < first_line, (student, match.group(1))


def test_reference_page_passes_everything_and_written_answers_are_not_graded_yet(feedback):
    text = _text(feedback["pages"]["fb-reference"])
    assert "Passed: 3 / 3 points" in text
    assert "not graded yet" in text
    assert "0.0 / 2.0" not in text  # what nbgrader prints for a written answer with no score
    assert "Failed:" not in text and "Partly passed:" not in text


def test_unanswered_written_answers_say_so(feedback):
    text = _text(feedback["pages"]["fb-untouched"])
    assert "no answer given" in text and "not graded yet" not in text


def test_keras_page_says_plainly_why_the_numpy_comparison_is_skipped(feedback):
    text = _text(feedback["pages"]["fb-untouched (keras)"])
    # Until grading stages the student's bn_numpy.ipynb next to bn_keras.ipynb the message is
    # "not submitted"; with it, the untouched stubs are "not implemented yet". Never "could not
    # read", and never "loaded" for a stub.
    assert "bn_numpy.ipynb was not submitted" in text or "not implemented yet" in text
    assert "could not read" not in text and ": loaded" not in text


def test_mistake_page_says_failed_with_points(feedback):
    text = _text(feedback["pages"]["fb-mistake"])
    assert re.search(r"(Partly passed|Failed): [\d.]+ / 3 points", text)


@pytest.mark.parametrize("page_name", ["fb-mistake", "fb-mistake (formgrader)"])
def test_mistake_page_gives_the_cause_without_its_id(feedback, page_name):
    text = _text(feedback["pages"][page_name])
    assert "Likely mistake: " + mistakes.cause(MISTAKE.mistake_id) in text
    assert MISTAKE.mistake_id not in text


def test_no_internal_lines_reach_students(feedback):
    cells = {
        **expected_checks(ASSIGNMENT_SOURCE / NOTEBOOK),
        **expected_checks(ASSIGNMENT_SOURCE / KERAS),
    }
    check_ids = set(cells.values())
    # Catalogue ids are hyphenated words ("unbiased-variance"): found as such, they are ids.
    mistake_ids = set(mistakes.BY_ID) | set(mk.MISTAKES)
    for student, page in feedback["pages"].items():
        text = _text(page)
        assert not any(TALLY_LINE.match(line) for line in text.splitlines()), student
        leaked = [check_id for check_id in check_ids if re.search(rf"\b{check_id}\b", text)]
        assert leaked == [], student
        shown_cells = [grade_id for grade_id in cells if re.search(rf"\b{grade_id}\b", text)]
        assert shown_cells == [], student  # nbgrader's "Grade cell: <grade_id>" heading
        assert "Grade cell" not in text, student
        named = [m for m in mistake_ids if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", text)]
        assert named == [], student
        assert "[mistake:" not in text and "Likely mistake [" not in text, student
        for marker in ("bn_grader", "autograder/", "grading.secret"):  # grader code and files
            assert marker not in text, (student, marker)


def test_long_lines_wrap(feedback):
    for page in feedback["pages"].values():
        assert WRAP_CSS.strip() in page
        assert "white-space: pre-wrap" in page


# ------------------------------------------------------------------------ no leaks
def _hidden_inputs(namespace, secret, student):
    """Every array the checks hand the student's functions, per check id (replayed)."""
    seen = {}
    recorded = []

    def recorder(function):
        def wrapper(*args, **kwargs):
            for value in list(args) + list(kwargs.values()):
                if isinstance(value, np.ndarray):
                    recorded.append(np.array(value, dtype=np.float64).ravel())
                elif isinstance(value, dict):
                    recorded.extend(
                        np.array(v, dtype=np.float64).ravel()
                        for v in value.values()
                        if isinstance(v, np.ndarray)
                    )
            return function(*args, **kwargs)

        wrapper.__name__ = function.__name__
        return wrapper

    wrapped = dict(namespace)
    for name, value in namespace.items():
        if inspect.isfunction(value) and not name.startswith("_"):
            wrapped[name] = recorder(value)
    for check_id in set(expected_checks(ASSIGNMENT_SOURCE / NOTEBOOK).values()):
        recorded.clear()
        seed = check_seed(secret, f"{student}/bn_numpy", check_id)
        check(check_id, wrapped, seed=seed)
        seen[check_id] = np.concatenate(recorded) if recorded else np.zeros(0)
    return np.concatenate(list(seen.values()))


NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")


def _significant(number_text):
    mantissa = number_text.lstrip("-").split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def _shown_hidden_values(line, hidden):
    """How many distinct hidden values ``line`` prints (to 4 or more significant digits)."""
    found = set()
    for number_text in NUMBER.findall(line):
        if _significant(number_text) < 4:
            continue
        value = float(number_text)
        decimals = len(number_text.split("e")[0].split(".")[1])
        scale = 10.0 ** int(number_text.split("e")[1]) if "e" in number_text else 1.0
        close = np.abs(hidden - value) <= 0.51 * 10.0**-decimals * scale
        found |= set(np.round(hidden[close], 12).tolist())
    return len(found)


def test_feedback_shows_no_hidden_inputs(feedback):
    for student, edits in STUDENTS.items():
        if edits is None:
            namespace = _stub_namespace()
        else:
            namespace = namespace_from_notebook(ASSIGNMENT_SOURCE / NOTEBOOK, edits=edits)
        hidden = _hidden_inputs(namespace, feedback["secret"], student)
        hidden = hidden[np.isfinite(hidden) & (np.abs(hidden) > 1e-3)]
        hidden = hidden[np.abs(hidden - np.round(hidden, 2)) > 1e-9]  # not round public constants
        if edits is not None:
            assert hidden.size > 100, student  # the replay really saw the hidden inputs
        text = _text(feedback["pages"][student])
        lines = text.splitlines()
        per_line = [(_shown_hidden_values(line, hidden), line) for line in lines]
        assert [line for count, line in per_line if count > 2] == [], student
        failures = sum("[FAIL]" in line for line in lines)
        assert sum(count for count, _ in per_line) <= 2 * failures + 2, student


def test_feedback_shows_no_reference_or_hidden_test_code(feedback):
    reference_lines = {
        line.strip()
        for line in inspect.getsource(reference).splitlines()
        if len(line.strip()) > 30
        and not line.strip().startswith(("#", '"""', "-", "Args", "Returns"))
    }
    for student, page in feedback["pages"].items():
        text = _text(page)
        # The student's own code is theirs to see, even where it equals the reference.
        name = student.split(" ")[0]
        submitted = feedback["submitted"] / name / "batchnorm" / _notebook_of(student)
        own = "\n".join(cell.source for cell in nbformat.read(submitted, as_version=4).cells)
        shown = [line for line in reference_lines if line in text and line not in own]
        assert shown == [], student
        assert "from bnkit.grading import check" not in text, student
        assert 'check("' not in text, student


def test_every_feedback_route_uses_the_student_feedback_step():
    # `make feedback` (nbgrader generate_feedback) and the formgrader's button both build
    # nbgrader's GenerateFeedback converter from this configuration.
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import ClearHiddenTests

    converter = GenerateFeedback(config=load_nbgrader_config())
    assert converter.preprocessors[-1] is StudentFeedback
    assert ClearHiddenTests in converter.preprocessors
    # The template without ids comes with the exporter: the formgrader forces the template name.
    assert converter.exporter_class is StudentFeedbackExporter


def test_the_leak_check_catches_an_input_array_appended_to_a_failure(feedback):
    namespace = namespace_from_notebook(ASSIGNMENT_SOURCE / NOTEBOOK, edits=MISTAKE.edits)
    hidden = _hidden_inputs(namespace, feedback["secret"], "fb-mistake")
    hidden = hidden[np.abs(hidden - np.round(hidden, 2)) > 1e-9]
    with np.printoptions(precision=4):
        leaky = "[FAIL] batchnorm_forward train out: largest error 0.5 on x = " + str(hidden[:6])
    assert _shown_hidden_values(leaky, hidden) > 2
