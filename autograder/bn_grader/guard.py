"""Loaded by every grading kernel at start-up, before any student cell runs.

nbgrader_config.py passes ``--IPKernelApp.exec_lines=['import bn_grader.guard']`` to grading
kernels. At that moment nothing of the student's has run, so this module can:

- snapshot NumPy's public functions (``numpy``, ``numpy.testing``, ``numpy.linalg``), so that a
  check can put back any the student replaced while it runs (:func:`pristine_numpy`) and say so;
- snapshot the grader's own modules, the classes they define and the check registry, so that
  a check can undo a student's patch of any of them before it runs (:func:`restore_grader`);
- read the per-task signing key that coursekit wrote to a file, and delete the file, so that
  each check can sign its score. coursekit verifies the signatures after grading: a grade cell
  whose score was not produced by a real check (a replaced ``check``, a faked output) scores 0
  and the submission is flagged.

A student who digs the key out of this process's memory could still forge a signature; coursekit
therefore also flags submissions whose cells mention the grader (see coursekit.tamper).
"""

import contextlib
import hashlib
import hmac
import importlib
import os
import sys

import numpy


class _Missing:
    pass


_MISSING = _Missing()
_SNAPSHOT_MODULES = {"numpy": numpy, "numpy.testing": numpy.testing, "numpy.linalg": numpy.linalg}
_snapshot = {name: dict(vars(module)) for name, module in _SNAPSHOT_MODULES.items()}


GRADER_MODULES = (
    "bn_grader",
    "bn_grader.runner",
    "bn_grader.report",
    "bn_grader.registry",
    "bn_grader.compare",
    "bn_grader.reference",
    "bn_grader.cases",
    "bn_grader.mistakes",
    "bn_grader.mistakes_keras",
    "bn_grader.checks_numpy",
    "bn_grader.checks_keras",
)
# Importing the checks here registers them before any student code can run (no TensorFlow:
# the Keras checks import it when they run).
_grader_modules = {name: importlib.import_module(name) for name in GRADER_MODULES}
_grader_snapshot = []  # (module or class, its attributes at kernel start)
for _module in _grader_modules.values():
    _grader_snapshot.append((_module, dict(vars(_module))))
    for _value in list(vars(_module).values()):
        if isinstance(_value, type) and _value.__module__ == _module.__name__:
            _grader_snapshot.append((_value, dict(vars(_value))))
_checks = _grader_modules["bn_grader.registry"].CHECKS
_checks_snapshot = dict(_checks)


def restore_grader():
    """Undo every change a student made to the grader since kernel start.

    Restores ``sys.modules`` entries, module attributes, attributes of the grader's classes
    (and removes ones added to them, which could override inherited methods) and the check
    registry.

    Returns:
        list of str naming what had been changed (empty when nothing was).
    """
    changed = []
    for name, module in _grader_modules.items():
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
            changed.append(f"sys.modules[{name!r}]")
    for target, original in _grader_snapshot:
        current = dict(vars(target))
        is_class = isinstance(target, type)
        label = f"{target.__module__}.{target.__qualname__}" if is_class else target.__name__
        for attr, value in original.items():
            if current.get(attr, _MISSING) is not value:
                setattr(target, attr, value)
                changed.append(f"{label}.{attr}")
        if is_class:
            for attr in set(current) - set(original):
                delattr(target, attr)
                changed.append(f"{label}.{attr}")
    if _checks != _checks_snapshot or any(_checks[k] is not v for k, v in _checks_snapshot.items()):
        _checks.clear()
        _checks.update(_checks_snapshot)
        changed.append("bn_grader.registry.CHECKS")
    return changed


def _read_key():
    path = os.environ.pop("BNKIT_GRADING_KEY_FILE", None)
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            key = handle.read()
        os.unlink(path)
    except OSError:
        return None
    return key or None


_key = _read_key()
ACTIVE = True


def replaced_numpy_names():
    """Names in numpy / numpy.testing / numpy.linalg that differ from the start-up snapshot."""
    changed = []
    for name, module in _SNAPSHOT_MODULES.items():
        original = _snapshot[name]
        current = vars(module)
        for attr, value in original.items():
            if current.get(attr, None) is not value:
                changed.append(f"{name}.{attr}")
    if sys.modules.get("numpy") is not numpy:
        changed.append("sys.modules['numpy']")
    return sorted(changed)


@contextlib.contextmanager
def pristine_numpy():
    """Inside the block NumPy is as it was at kernel start; the student's patches come back after.

    Yields:
        list of the names the student had replaced (empty when none).
    """
    saved = {}
    for name, module in _SNAPSHOT_MODULES.items():
        current = vars(module)
        for attr, value in _snapshot[name].items():
            if current.get(attr, None) is not value:
                saved[(name, attr)] = current.get(attr, _MISSING)
                setattr(module, attr, value)
    modules_entry = sys.modules.get("numpy")
    sys.modules["numpy"] = numpy
    try:
        yield sorted(f"{name}.{attr}" for name, attr in saved)
    finally:
        for (name, attr), value in saved.items():
            if value is _MISSING:
                delattr(_SNAPSHOT_MODULES[name], attr)
            else:
                setattr(_SNAPSHOT_MODULES[name], attr, value)
        if modules_entry is not None:
            sys.modules["numpy"] = modules_entry


def sign(check_id, score):
    """HMAC of the check id and score with this task's key; ``"unsigned"`` without a key."""
    if _key is None:
        return "unsigned"
    message = f"{check_id}|{score:.4f}".encode()
    return hmac.new(_key, message, hashlib.sha256).hexdigest()[:32]
