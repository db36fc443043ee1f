"""The digits data: the kit's data/digits.npz is scikit-learn's bundled copy, the loader's split
is fixed, features are in [0, 1]."""

import hashlib
import re
from pathlib import Path

import numpy as np

from bnkit.data import load_digits, load_digits_raw

DATA = Path(__file__).resolve().parents[1] / "data"


def _readme_hash(name):
    text = (DATA / "README.md").read_text()
    match = re.search(rf"\| {name} sha256 \| `([0-9a-f]{{64}})`", text)
    assert match, f"{name} sha256 missing from data/README.md"
    return match.group(1)


def test_npz_matches_the_hashes_in_the_readme():
    assert hashlib.sha256((DATA / "digits.npz").read_bytes()).hexdigest() == _readme_hash("File")
    with np.load(DATA / "digits.npz") as stored:
        content = stored["images"].tobytes() + stored["target"].tobytes()
    assert hashlib.sha256(content).hexdigest() == _readme_hash("Content")


def test_npz_is_identical_to_the_bundled_copy():
    images, target = load_digits_raw()
    with np.load(DATA / "digits.npz") as stored:
        assert stored["images"].dtype == np.uint8 and stored["target"].dtype == np.uint8
        np.testing.assert_array_equal(stored["images"], images)
        np.testing.assert_array_equal(stored["target"], target)


def test_loader_split_and_ranges():
    data = load_digits()
    assert data.x_train.shape == (1437, 64) and data.x_val.shape == (360, 64)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0
    images, target = load_digits_raw()
    # Every fifth image (0, 5, 10, ...) is for validation, the rest for training, in order.
    np.testing.assert_array_equal(data.x_val[1], images[5].reshape(-1) / 16.0)
    np.testing.assert_array_equal(data.y_val, target[::5])
    np.testing.assert_array_equal(data.y_train[:4], target[[1, 2, 3, 4]])
    assert set(np.unique(data.y_val)) == set(range(10))
