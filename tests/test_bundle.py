"""The student bundle holds the release, data and environment, and nothing of the answers."""

import tarfile

from conftest import GRADER_DIR, KIT_ROOT
from coursekit.bundle import build_bundle


def test_bundle_contents_and_no_answers(tmp_path):
    archive_path = build_bundle(tmp_path / "bundle.tar.gz")
    with tarfile.open(archive_path) as archive:
        members = archive.getmembers()
        names = [member.name for member in members]
        texts = {
            member.name: archive.extractfile(member).read().decode(errors="replace")
            for member in members
            if member.isfile()
        }
    top = "batchnorm-kit/"
    assert f"{top}assignments/batchnorm/bn_numpy.ipynb" in names
    assert f"{top}assignments/batchnorm/bn_keras.ipynb" in names
    assert f"{top}environment.yml" in names and f"{top}requirements.txt" in names
    assert any(name.startswith(f"{top}data/") for name in names)
    assert not [name for name in names if "/solutions/" in name or "/autograder/" in name]
    grader_module_names = {path.stem for path in (GRADER_DIR / "bn_grader").glob("*.py")} - {
        "__init__"
    }
    assert not [
        n for n in names if n.endswith(".py") and n.rsplit("/", 1)[-1][:-3] in grader_module_names
    ]
    for name, text in texts.items():
        if name.endswith(("requirements.txt", "environment.yml")):
            # Shared with the instructor's install: its comments may name instructor commands
            # (e.g. why a pin is there); only what gets installed must not be grader code.
            text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "bn_grader", "coursekit"):
            assert marker not in text, f"{marker} in {name}"


def test_everything_a_notebook_imports_is_in_the_bundle(tmp_path):
    # The release folder is what a student has after fetching: its helper package must be there.
    archive_path = build_bundle(tmp_path / "bundle.tar.gz")
    with tarfile.open(archive_path) as archive:
        names = set(archive.getnames())
    helpers = sorted((KIT_ROOT / "assignments" / "batchnorm" / "bnkit").glob("*.py"))
    assert helpers
    for helper in helpers:
        assert f"batchnorm-kit/assignments/batchnorm/bnkit/{helper.name}" in names
