"""Incremental grading: grade a notebook again only when it, or what grades it, has changed.

Each graded notebook gets a digest of three things: the submission's bytes (and its
``timestamp.txt``, which decides late penalties), the *grader version* (a hash of the release,
the trusted source notebooks, the grader's code and nbgrader_config.py) and the run's settings
that can change an outcome (sandbox, cell timeout, memory limit, grading secret, gradebook).
The digests live in ``<runtime>/graded_versions.json``; a notebook whose digest is unchanged
is skipped unless ``grade --all``. Outcomes that say something about the run and not the
submission (``grading failed``, ``interrupted``, ``worker lost``) are never recorded, so the
next run grades them again.
"""

import hashlib
import json
import os
from pathlib import Path

from .paths import ASSIGNMENT, KIT_ROOT, runtime_dir

STATE_FILE = "graded_versions.json"


def _files(kit_root):
    """The files whose content decides how a notebook is graded (sorted, relative to the kit)."""
    kit_root = Path(kit_root)
    release = kit_root / "assignments" / ASSIGNMENT
    found = [p for p in release.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    found += list((kit_root / "solutions" / ASSIGNMENT).glob("*.ipynb"))
    found += list((kit_root / "autograder" / "bn_grader").glob("*.py"))
    found.append(kit_root / "nbgrader_config.py")
    return sorted(p for p in found if p.is_file())


def grader_version(kit_root=KIT_ROOT):
    """SHA-256 (hex) over the release, source notebooks, grader code and nbgrader_config.py."""
    digest = hashlib.sha256()
    for path in _files(kit_root):
        digest.update(str(path.relative_to(kit_root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def run_settings(sandbox, memory_limit_mb, course_url, secret_file):
    """The settings of a run that can change an outcome, as one string."""
    secret = Path(secret_file)
    secret_hash = hashlib.sha256(secret.read_bytes()).hexdigest() if secret.exists() else ""
    return json.dumps(
        {
            "sandbox": bool(sandbox),
            "memory_limit_mb": int(memory_limit_mb),
            "cell_timeout": os.environ.get("BNKIT_CELL_TIMEOUT", ""),
            "gradebook": course_url,
            "secret": secret_hash,
        },
        sort_keys=True,
    )


def submission_digest(notebook_path, version, settings):
    """Digest of one submitted notebook under one grader version and run settings."""
    notebook_path = Path(notebook_path)
    digest = hashlib.sha256()
    digest.update(version.encode() + b"\0" + settings.encode() + b"\0")
    digest.update(hashlib.sha256(notebook_path.read_bytes()).digest())
    timestamp = notebook_path.parent / "timestamp.txt"
    if timestamp.exists():
        digest.update(b"timestamp\0" + timestamp.read_bytes())
    return digest.hexdigest()


class GradedVersions:
    """The digests of the last final outcome of each ``student/notebook`` (a JSON file)."""

    def __init__(self, path=None):
        self.path = Path(path or runtime_dir() / STATE_FILE)
        try:
            self._digests = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            self._digests = {}  # unreadable state only costs a full re-grade

    @staticmethod
    def key(student, notebook):
        return f"{student}/{notebook}"

    def is_current(self, student, notebook, digest):
        return self._digests.get(self.key(student, notebook)) == digest

    def record(self, student, notebook, digest):
        """Remember a final outcome and save at once (a Ctrl-C later keeps it)."""
        self._digests[self.key(student, notebook)] = digest
        self._save()

    def forget(self, student, notebook):
        if self._digests.pop(self.key(student, notebook), None) is not None:
            self._save()

    def _save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self._digests, indent=0, sort_keys=True))
        partial.replace(self.path)  # atomic: an interrupted save never leaves half a file
