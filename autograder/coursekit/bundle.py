"""Build the student bundle: the release, the environment files and the data, no answers."""

import tarfile

from .paths import KIT_ROOT

# Paths relative to the kit root. Nothing under solutions/ or autograder/ is ever added.
BUNDLE_CONTENTS = (
    "assignments",
    "data",
    "environment.yml",
    "requirements.txt",
    "docs/students.md",
    "LICENSE",
)
EXCLUDED_PARTS = {"__pycache__", ".ipynb_checkpoints"}
FORBIDDEN_TOP = {"solutions", "autograder"}


def _filter(info):
    parts = set(info.name.split("/"))
    return None if parts & EXCLUDED_PARTS else info


def build_bundle(output=None):
    """Write ``dist/batchnorm-student.tar.gz`` (or ``output``); return its path."""
    output = output or KIT_ROOT / "dist" / "batchnorm-student.tar.gz"
    output.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(output, "w:gz") as archive:
        for name in BUNDLE_CONTENTS:
            if name.split("/")[0] in FORBIDDEN_TOP:
                raise ValueError(f"{name} must never be in the student bundle")
            path = KIT_ROOT / name
            if path.exists():
                archive.add(path, arcname=f"batchnorm-kit/{name}", filter=_filter)
    return output
