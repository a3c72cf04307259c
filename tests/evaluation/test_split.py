"""One split check (bci_app.datasets.check_split_disjoint), used by evaluate and the probe."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.datasets import check_split_disjoint


def _splits(**parts: list[int]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.int64) for k, v in parts.items()}


def test_split_with_shared_image_raises():
    ids = ["c00_i00", "c01_i02", "c01_i02", "c03_i04"]
    with pytest.raises(ValueError, match="c01_i02"):
        check_split_disjoint(ids, _splits(train=[0, 1], test=[2, 3]), "tiny")
    check_split_disjoint(["a", "b", "a", "c"], _splits(train=[0, 1, 2], test=[3]), "tiny")  # repeats are fine


def test_an_image_in_validation_and_another_split_raises():
    # validation selects the model: an image in val and test (or train) leaks just the same
    ids = ["a", "b", "c", "b"]
    with pytest.raises(ValueError, match="'b'"):
        check_split_disjoint(ids, _splits(train=[0, 1], val=[3], test=[2]), "tiny")
    with pytest.raises(ValueError, match="'c'"):
        check_split_disjoint(["a", "c", "c"], _splits(train=[0], val=[1], test=[2]), "tiny")
