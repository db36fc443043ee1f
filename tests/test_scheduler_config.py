"""Where `coursekit grade` finds its Dask scheduler: --scheduler, else BNKIT_SCHEDULER, else
``c.CourseKit.scheduler`` in nbgrader_config.py, else the local pool."""

import pytest
from traitlets.config import Config

from coursekit import cli
from coursekit import config as kit_config
from coursekit.errors import KitError

FLAG = "tcp://from-flag:1"
ENV = "tcp://from-env:2"
CONFIGURED = "tcp://from-config:3"


def course_config(tmp_path, scheduler):
    """A course nbgrader_config.py in ``tmp_path`` setting only the scheduler, loaded."""
    (tmp_path / "nbgrader_config.py").write_text(f"c.CourseKit.scheduler = {scheduler!r}\n")
    return kit_config.load_nbgrader_config(tmp_path)


@pytest.mark.parametrize(
    ("flag", "environ", "expected"),
    [
        (FLAG, {"BNKIT_SCHEDULER": ENV}, (FLAG, "--scheduler")),
        (None, {"BNKIT_SCHEDULER": ENV}, (ENV, "BNKIT_SCHEDULER")),
        (None, {}, (CONFIGURED, "c.CourseKit.scheduler in nbgrader_config.py")),
        # Blank values count as not given: an exported but empty variable falls through.
        (
            "  ",
            {"BNKIT_SCHEDULER": ""},
            (CONFIGURED, "c.CourseKit.scheduler in nbgrader_config.py"),
        ),
    ],
)
def test_flag_beats_environment_beats_config(tmp_path, flag, environ, expected):
    config = course_config(tmp_path, CONFIGURED)
    assert kit_config.resolve_scheduler(flag, environ, config) == expected


def test_nothing_set_grades_locally(tmp_path):
    assert kit_config.resolve_scheduler(None, {}, course_config(tmp_path, "")) == (None, None)


def test_the_kit_config_defaults_to_the_local_pool():
    # The shipped nbgrader_config.py documents the setting and leaves it empty.
    assert kit_config.course_kit_settings().scheduler == ""


def test_a_wrong_type_in_the_config_is_named():
    config = Config()
    config.CourseKit.scheduler = 8786
    with pytest.raises(KitError, match="c.CourseKit"):
        kit_config.resolve_scheduler(None, {}, config)


def test_grade_command_uses_the_configured_scheduler(tmp_path, monkeypatch):
    """The CLI passes the resolved address to grade() (grading itself is replaced here)."""
    import coursekit.grade as grade_module

    config = course_config(tmp_path, CONFIGURED)
    monkeypatch.setattr(kit_config, "load_nbgrader_config", lambda root=None: config)
    monkeypatch.delenv("BNKIT_SCHEDULER", raising=False)
    received = []

    def fake_grade(students, **kwargs):
        received.append(kwargs["scheduler"])
        return grade_module.GradeRun()

    monkeypatch.setattr(grade_module, "grade", fake_grade)
    assert cli.main(["grade"]) == 0
    monkeypatch.setenv("BNKIT_SCHEDULER", ENV)
    assert cli.main(["grade"]) == 0
    assert cli.main(["grade", "--scheduler", FLAG]) == 0
    assert received == [CONFIGURED, ENV, FLAG]
