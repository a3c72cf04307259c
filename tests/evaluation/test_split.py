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


def _bundle_config(record):
    return {
        "components": {"encoder": {}, "generator": {}, "semantic": {}},
        "refiner": {"type": "demo"}, "classifier": {"path": "classifier"},
        "training": {"split_images": {"train": ["a", "b"], "val": ["c"], "test": ["d", "e"]},
                     "component_images": record},
    }


def test_component_exposure_is_derived_from_the_record():
    from bci_app.evaluation.split import component_exposure

    clean = {k: ["train"] for k in ("encoder", "generator", "semantic", "refiner", "classifier")}
    assert component_exposure(_bundle_config(clean), {"d", "e"})["test_images_unseen"] is True
    # new rendered instances (none a split's image) keep the test images unseen
    rendered = component_exposure(_bundle_config({**clean, "refiner": ["train", "rendered"]}), {"d", "e"})
    assert rendered["test_images_unseen"] is True and rendered["unknown"] == []
    seen = component_exposure(_bundle_config({**clean, "refiner": ["train", "test"]}), {"d", "e"})
    assert seen["test_images_unseen"] is False and seen["seen_test"] == {"refiner": 2}
    assert "TEST IMAGES SEEN" in seen["notes"][0] and "refiner" in seen["notes"][0]
    # a record that leaves a component out proves nothing about it
    partial = component_exposure(_bundle_config({"encoder": ["train"]}), {"d", "e"})
    assert partial["test_images_unseen"] is None
    assert set(partial["unknown"]) == {"generator", "semantic", "refiner", "classifier"}
