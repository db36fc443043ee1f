"""End to end on a real JupyterHub (127.0.0.1): release, fetch, submit, collect, grade, feedback.

The instructor works through the formgrader's REST API in their own single-user server, the
student through nbgrader's assignment-list API in theirs, each with a token the hub issued to
them, as the JupyterLab extensions would.
"""

import json
import time
from pathlib import Path

import pytest

from .conftest import ASSIGNMENT, COURSE_ID, REPO

pytestmark = pytest.mark.hub

PROBE = """
import json, os, sys
results = {}
for path in sys.argv[1:]:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, "rb").read(1)
        results[path] = "readable"
    except PermissionError:
        results[path] = "denied"
    except FileNotFoundError:
        results[path] = "missing"
print(json.dumps(results))
"""


# What a student who has read the kit would submit: the untouched notebook plus code that runs
# the model answers from the course folder, which the grading user (the instructor) can read.
# Unsandboxed this scores full marks (tests/test_hostile_corpus.py shows the same attack working
# without the sandbox); graded from the formgrader it must score 0.
ATTACK = """
import glob, json
for _path in glob.glob("@COURSE@/solutions/batchnorm/*.ipynb"):
    try:
        for _cell in json.load(open(_path))["cells"]:
            _meta = _cell.get("metadata", {}).get("nbgrader", {})
            if _meta.get("solution") and _cell["cell_type"] == "code":
                exec("".join(_cell["source"]))
    except Exception:
        pass
"""


def _plant_attack(path, course_dir):
    """Append the attack to the first answer cell of the notebook at ``path`` (in place)."""
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if (
            cell.get("metadata", {}).get("nbgrader", {}).get("solution")
            and cell["cell_type"] == "code"
        ):
            source = "".join(cell["source"])
            cell["source"] = source + "\n" + ATTACK.replace("@COURSE@", str(course_dir))
            break
    path.write_text(json.dumps(notebook))


def _auto_scores(hub, student, notebook):
    """{grade_id: auto_score} of one student's notebook, from the formgrader's API."""
    notebooks = _check(
        hub.user_request(
            hub.instructor, "GET", f"formgrader/api/submitted_notebooks/{ASSIGNMENT}/{notebook}"
        ),
        "submitted notebooks",
    )
    mine = [nb for nb in notebooks if nb["student"] == student]
    assert len(mine) == 1, notebooks
    grades = _check(
        hub.user_request(
            hub.instructor, "GET", "formgrader/api/grades", params={"submission_id": mine[0]["id"]}
        ),
        "grades",
    )
    return {grade["name"]: grade["auto_score"] for grade in grades}


def _released_notebooks():
    return sorted(p.name for p in (REPO / "assignments" / ASSIGNMENT).glob("*.ipynb"))


def _autograded_tests(notebook):
    """{grade_id: points} of the cells nbgrader grades by running them (tests, not answers)."""
    cells = {}
    for cell in notebook["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cells[meta["grade_id"]] = float(meta.get("points") or 0)
    return cells


def _fill_in_reference(released, solution):
    """The released notebook with each answer cell's source taken from the solution."""
    answers = {
        cell["metadata"]["nbgrader"]["grade_id"]: cell["source"]
        for cell in solution["cells"]
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution")
    }
    filled = 0
    for cell in released["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = answers[meta["grade_id"]]
            filled += 1
    assert filled, "the released notebook has no answer cells"
    return released


def _probe(hub, name, paths):
    result = hub.run_as(name, ["/usr/bin/python3", "-c", PROBE, *map(str, paths)])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _check(response, what):
    assert response.status_code == 200, (what, response.status_code, response.text[:3000])
    body = response.json()
    if isinstance(body, dict) and "success" in body:
        assert body["success"], (what, body.get("log"), body.get("error"), body.get("value"))
    return body


def test_round_trip_through_the_hub(released):
    hub = released
    student, other, _ = hub.students
    timings = {}
    clock = time.monotonic()

    def lap(name):
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 1)
        clock = now

    hub.start_server(student)
    lap("student server start")

    # The student fetches through their own server.
    fetch = {"course_id": COURSE_ID, "assignment_id": ASSIGNMENT}
    listing = _check(hub.user_request(student, "POST", "assignments/fetch", data=fetch), "fetch")
    assert any(
        a["assignment_id"] == ASSIGNMENT and a["status"] == "fetched" for a in listing["value"]
    ), listing
    lap("fetch")

    # ... fills in the reference answers and saves through the contents API ...
    for name in _released_notebooks():
        path = f"api/contents/{ASSIGNMENT}/{name}"
        fetched = _check(hub.user_request(student, "GET", path), "read " + name)["content"]
        solution = json.loads((hub.course_dir / "solutions" / ASSIGNMENT / name).read_text())
        body = {
            "type": "notebook",
            "format": "json",
            "content": _fill_in_reference(fetched, solution),
        }
        _check(hub.user_request(student, "PUT", path, json=body), "save " + name)
    # ... and submits.
    _check(hub.user_request(student, "POST", "assignments/submit", data=fetch), "submit")
    lap("fill in and submit")

    # A second student submits an attack from the command line (same exchange, same config).
    result = hub.run_as(
        other, ["nbgrader", "fetch_assignment", ASSIGNMENT, f"--course={COURSE_ID}"]
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    _plant_attack(hub.home(other) / ASSIGNMENT / "bn_numpy.ipynb", hub.course_dir)
    result = hub.run_as(other, ["nbgrader", "submit", ASSIGNMENT, f"--course={COURSE_ID}"])
    assert result.returncode == 0, (result.stdout, result.stderr)
    lap("second student submits an attack (CLI)")

    # The instructor collects, autogrades the student, generates and releases feedback.
    instructor = hub.instructor
    base = f"formgrader/api/assignment/{ASSIGNMENT}"
    _check(hub.user_request(instructor, "POST", f"{base}/collect"), "collect")
    lap("collect")
    _check(
        hub.user_request(
            instructor,
            "POST",
            f"formgrader/api/submission/{ASSIGNMENT}/{student}/autograde",
            timeout=900,
        ),
        "autograde",
    )
    lap("autograde")
    # The attacker, autograded with the formgrader's button too, gains nothing: the kernel ran
    # sandboxed, so there were no model answers to read.
    _check(
        hub.user_request(
            instructor,
            "POST",
            f"formgrader/api/submission/{ASSIGNMENT}/{other}/autograde",
            timeout=900,
        ),
        "autograde the attacker",
    )
    attacker = _auto_scores(hub, other, "bn_numpy")
    tests = _autograded_tests(
        json.loads((REPO / "assignments" / ASSIGNMENT / "bn_numpy.ipynb").read_text())
    )
    assert {k: attacker[k] for k in tests} == {k: 0.0 for k in tests}, attacker
    lap("autograde the attacker")

    # Score: every auto-graded test cell at full marks, per the gradebook and the metadata.
    expected = {}
    for name in _released_notebooks():
        released_nb = json.loads((REPO / "assignments" / ASSIGNMENT / name).read_text())
        expected.update({(name[:-6], k): v for k, v in _autograded_tests(released_nb).items()})
    max_points = sum(expected.values())
    assert max_points > 0, "no auto-graded test cells in the released notebooks"
    scored = {}
    for name in _released_notebooks():
        notebooks = _check(
            hub.user_request(
                instructor, "GET", f"formgrader/api/submitted_notebooks/{ASSIGNMENT}/{name[:-6]}"
            ),
            "submitted notebooks",
        )
        mine = [nb for nb in notebooks if nb["student"] == student]
        assert len(mine) == 1, notebooks
        grades = _check(
            hub.user_request(
                instructor, "GET", "formgrader/api/grades", params={"submission_id": mine[0]["id"]}
            ),
            "grades",
        )
        for grade in grades:
            if (name[:-6], grade["name"]) in expected:
                assert grade["max_score"] == expected[(name[:-6], grade["name"])], grade
                scored[(name[:-6], grade["name"])] = grade["auto_score"]
    assert set(scored) == set(expected), (scored, expected)
    student_score = sum(scored.values())
    assert student_score == max_points > 0, (scored, expected)
    print(f"\nauto-graded score {student_score} / {max_points}: {scored}")

    _check(
        hub.user_request(instructor, "POST", f"{base}/{student}/generate_feedback", timeout=300),
        "generate feedback",
    )
    _check(
        hub.user_request(instructor, "POST", f"{base}/{student}/release_feedback"),
        "release feedback",
    )
    lap("feedback")

    # The student fetches the feedback HTML.
    _check(
        hub.user_request(student, "POST", "assignments/fetch_feedback", data=fetch),
        "fetch feedback",
    )
    feedback = list((hub.home(student) / ASSIGNMENT / "feedback").glob("*/*.html"))
    assert sorted(p.name for p in feedback) == [n[:-6] + ".html" for n in _released_notebooks()]
    html = feedback[0].read_text()
    assert "Score" in html or "score" in html
    lap("fetch feedback")

    # The formgrader: an error, not a page, for the student, in their server and the instructor's.
    for owner in (student, instructor):
        for path in ("formgrader", f"formgrader/api/assignment/{ASSIGNMENT}"):
            response = hub.user_request(student, "GET", path, owner=owner)
            assert response.status_code in (403, 404), (owner, path, response.status_code)
    own = hub.user_request(instructor, "GET", "formgrader", allow_redirects=True)
    assert own.status_code == 200 and "formgrader" in own.text.lower()

    # Unix permissions: other students' submissions and the grader-only code stay closed.
    inbound = hub.exchange / COURSE_ID / "inbound"
    others = [p for p in inbound.iterdir() if p.name.startswith(other + "+")]
    assert len(others) == 1, list(inbound.iterdir())
    other_notebook = others[0] / _released_notebooks()[0]
    grader_code = hub.course_dir / "autograder" / "bn_grader" / "__init__.py"
    closed = [
        inbound,
        others[0],
        other_notebook,
        grader_code,
        grader_code.parent,
        hub.course_dir / "solutions" / ASSIGNMENT / _released_notebooks()[0],
        hub.course_dir / "autograder" / "runtime" / "gradebook.db",
    ]
    seen = _probe(hub, student, closed)
    assert all(state == "denied" for state in seen.values()), seen
    # The same files exist and are open to the instructor, so the denials above are real.
    seen = _probe_instructor(hub, closed)
    assert all(state == "readable" for state in seen.values()), seen
    lap("access checks")
    print("steps (s):", timings)


def _probe_instructor(hub, paths):
    result = hub.run_as(hub.instructor, ["/usr/bin/python3", "-c", PROBE, *map(str, paths)])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_student_cannot_switch_formgrader_back_on(released):
    """A ~/.jupyter config enabling the formgrader is ignored by the student's server."""
    hub = released
    _, _, student = hub.students
    config = Path(hub.home(student)) / ".jupyter"
    config.mkdir(exist_ok=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {"ServerApp": {"jpserver_extensions": {"nbgrader.server_extensions.formgrader": True}}}
        )
    )
    hub.stop_server(student)  # servers read their config when they start
    hub.start_server(student)
    response = hub.user_request(student, "GET", "formgrader")
    assert response.status_code == 404, response.status_code
    extensions = hub.user_request(student, "GET", "api/status")
    assert extensions.status_code == 200
