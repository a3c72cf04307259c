from __future__ import annotations

import numpy as np
import pytest

from bci_app.models import bundle as b
from bci_app.models.reconstructor import Reconstructor
from tests.models.test_bundle import _config, get_dummy_components


@pytest.fixture
def rec(tmp_path):
    cfg = _config()
    cfg["spec"].update(l_freq=None, h_freq=None, notch=None)
    b.save_bundle(tmp_path, cfg, get_dummy_components())
    return Reconstructor.from_bundle(tmp_path, device="cpu")


def test_reconstruct_single_and_batch(rec):
    x = np.random.default_rng(0).standard_normal((4, 20)).astype(np.float32)
    [r] = rec.reconstruct(x)
    assert r.saliency.shape == (8, 8, 3) and r.saliency.dtype == np.uint8
    assert r.image.shape == (8, 8, 3)  # no refiner in this bundle: the saliency map
    assert set(r.times_ms) == {"encoder", "saliency", "semantic", "refiner"}
    assert all(v >= 0 for v in r.times_ms.values())
    rs = rec.reconstruct(np.stack([x, x]))
    assert len(rs) == 2
    np.testing.assert_array_equal(rs[0].saliency, r.saliency)
    assert rec.classify_images(rs[0].image[None]) is None
    rec.warmup(1)


def test_reconstruct_rejects_bad_input(rec):
    with pytest.raises(ValueError, match=r"\[B, 4, 20\]"):
        rec.reconstruct(np.zeros((5, 20), np.float32))
    bad = np.zeros((4, 20), np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rec.reconstruct(bad)


def test_wrong_channel_count_fails_clearly(rec):
    with pytest.raises(ValueError, match=r"stream has 128 channels.*expects 4"):
        rec.check_compatible([f"E{i}" for i in range(128)], 100.0, 20)
    assert rec.spec.sfreq == 100.0


def test_device_and_dtype_checks(tmp_path):
    import torch

    from bci_app.models.reconstructor import resolve_dtype

    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float8", torch.device("cpu"))
