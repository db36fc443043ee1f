"""The 8x8 handwritten digits (UCI), loaded offline from scikit-learn's bundled copy.

1797 grey-scale images of the digits 0-9 with pixel values 0..16, from the UCI "Optical
Recognition of Handwritten Digits" data set; scikit-learn ships them inside its wheel (BSD-3),
so no network is needed. The kit's top-level ``data/digits.npz`` holds the same arrays with
their provenance (see data/README.md).
"""

from collections import namedtuple

import numpy as np

Digits = namedtuple("Digits", ["x_train", "y_train", "x_val", "y_val"])

# Every fifth image (index 0, 5, 10, ...) is for validation: a split that is fixed without any
# random generator, so it is the same on every machine and every NumPy version.
VALIDATION_EVERY = 5


def load_digits_raw():
    """All 1797 images as stored: pixels (1797, 8, 8) uint8 in 0..16, labels (1797,) uint8."""
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    return bunch.images.astype(np.uint8), bunch.target.astype(np.uint8)


def load_digits():
    """Features in [0, 1] and labels, with a fixed train/validation split.

    Returns:
        Digits(x_train, y_train, x_val, y_val):
            x_train: (1437, 64) float32 in [0, 1] (pixel / 16), y_train: (1437,) int64 in 0..9;
            x_val: (360, 64) float32, y_val: (360,) int64.
    """
    images, labels = load_digits_raw()
    features = images.reshape(len(images), -1).astype(np.float32) / np.float32(16.0)
    labels = labels.astype(np.int64)
    is_val = np.arange(len(labels)) % VALIDATION_EVERY == 0
    return Digits(features[~is_val], labels[~is_val], features[is_val], labels[is_val])
