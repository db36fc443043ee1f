"""After grading: prove every grade cell's score came from a real check, flag interference.

Each grading task gets a random key (written to a file the kernel's guard reads and deletes).
A real ``bn_grader.check`` prints ``[grader] <check id> <score> <HMAC>``; a grade cell whose
score nbgrader recorded has no such line, or a line that does not verify, or a different score,
was not scored by the grader: it gets 0 and the notebook is flagged. Student cells that name the
grader or reach into interpreter internals are flagged for the instructor to read.
"""

import hashlib
import hmac
import re
import secrets

import nbformat

SIGNATURE_LINE = re.compile(r"^\[grader\] (\S+) ([0-9.]+) (\S+)$", re.MULTILINE)
FLAG_LINE = re.compile(r"^\[FLAG\] (.+)$", re.MULTILINE)
# Text in a student's own cells that has no business in a BatchNorm answer.
SUSPICIOUS = re.compile(
    r"bn_grader|sys\.modules|\[grader\]|__closure__|gc\.get_objects|builtins|\bdef check\("
)


def new_key():
    return secrets.token_bytes(32)


def expected_signature(key, check_id, score):
    message = f"{check_id}|{score:.4f}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def _text(outputs, kind):
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream" and kind == "stream":
            parts.append(output.get("text", ""))
        if output.get("output_type") == "execute_result" and kind == "result":
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def inspect_notebook(path, key):
    """Check the signatures of an autograded notebook.

    Args:
        path: the autograded notebook (Path).
        key: the task's signing key (bytes).

    Returns:
        (unverified, flags): grade_ids whose score must be set to 0, and human-readable flags.
    """
    notebook = nbformat.read(path, as_version=4)
    unverified, flags = [], []
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("grade") and not meta.get("solution"):
            if "check(" not in cell.source:
                continue  # a grade cell without a grader check (none in this kit today)
            outputs = cell.get("outputs", [])
            failed = any(
                o.get("output_type") == "error"
                or (o.get("output_type") == "stream" and o.get("name") == "stderr")
                for o in outputs
            )
            stream = _text(outputs, "stream")
            result = _text(cell.get("outputs", []), "result").strip()
            verified = False
            for check_id, score, signature in SIGNATURE_LINE.findall(stream):
                try:
                    same_score = result != "" and abs(float(result) - float(score)) < 1e-9
                except ValueError:
                    same_score = False
                if same_score and hmac.compare_digest(
                    signature, expected_signature(key, check_id, float(score))
                ):
                    verified = True
            # nbgrader gives full marks to a grade cell with no output at all, so a cell that did
            # not fail must carry a verified signature whatever it shows.
            if not verified and not failed:
                unverified.append(meta["grade_id"])
            flags += [f"{meta['grade_id']}: {text}" for text in FLAG_LINE.findall(stream)]
        elif not meta.get("locked") and SUSPICIOUS.search(cell.source):
            where = meta.get("grade_id", "an unlocked cell")
            flags.append(f"{where} mentions {SUSPICIOUS.search(cell.source).group(0)!r}")
    if unverified:
        flags.append(f"scores not produced by the grader, set to 0: {', '.join(unverified)}")
    return unverified, flags
