"""Bad input gets a one-line message, a non-zero exit, and loses nothing already recorded."""

import subprocess
import sys

from conftest import GRADER_DIR, KIT_ROOT


def run_kit(*args, env_extra=None, runtime):
    env = {"PYTHONPATH": str(GRADER_DIR), "BNKIT_RUNTIME": str(runtime), "PATH": "/usr/bin:/bin"}
    env.update(env_extra or {})
    result = subprocess.run(
        [sys.executable, "-m", "coursekit", *args],
        cwd=KIT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return result.returncode, result.stdout + result.stderr


def test_misspelled_assignment(tmp_path):
    code, out = run_kit("grade", "--assignment", "batchnrom", runtime=tmp_path / "rt")
    assert code == 2
    assert "unknown assignment 'batchnrom'" in out and "'batchnorm'" in out
    assert "Traceback" not in out


def test_grade_before_release_says_to_release(tmp_path):
    code, out = run_kit("grade", runtime=tmp_path / "rt")
    assert code == 2
    assert "run `make release` first" in out
    assert "Traceback" not in out


def test_unwritable_runtime_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out = run_kit("release", runtime=blocker / "rt")
    assert code == 2
    assert "cannot write to the runtime folder" in out and "BNKIT_RUNTIME" in out


def test_feedback_before_grading(tmp_path):
    code, out = run_kit("feedback", runtime=tmp_path / "rt")
    assert code == 2
    assert "run `make grade` first" in out


def test_unknown_command_lists_the_verbs(tmp_path):
    code, out = run_kit("autograde", runtime=tmp_path / "rt")
    assert code == 2  # argparse's usage error
    assert "release" in out and "grade" in out


def test_missing_course_kernel_is_named(monkeypatch):
    from coursekit import preflight
    from coursekit.errors import KitError

    monkeypatch.setattr(preflight, "COURSE_KERNEL", "bn-course-not-installed")
    try:
        preflight.require_course_kernel()
    except KitError as error:
        assert "bn-course-not-installed" in str(error) and "ipykernel install" in str(error)
    else:
        raise AssertionError("a missing kernel must raise KitError")
