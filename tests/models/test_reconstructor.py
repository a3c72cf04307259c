from __future__ import annotations

import numpy as np
import pytest
import torch

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


# ----------------------------------------------------------------------------- a bundle with a refiner
def tiny_demo_refiner(dim: int = 8, seq_len: int = 2):
    """A real DemoRefiner (diffusers UNet2DConditionModel + AutoencoderTiny + DDIM) from a
    tiny config: the refiner's code path, per-trial noise included, in milliseconds."""
    from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel

    from bci_app.models.refiners.demo import DemoRefiner

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 8), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=dim, attention_head_dim=2, norm_num_groups=4,
    )
    vae = AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                          num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1))
    sched = DDIMScheduler(num_train_timesteps=1000, prediction_type="sample", steps_offset=1,
                          timestep_spacing="trailing", clip_sample=False)
    return DemoRefiner(unet, vae, sched, resolution=16, steps=2, strength=0.5, seq_len=seq_len,
                       guidance_scale=1.5)


def tiny_classifier(n_classes: int):
    """An image classifier module (``[B, 3, H, W]`` in [0, 1] -> logits)."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(48, n_classes)).eval()


def tiny_reconstructor(n_chans: int = 4, n_times: int = 20, n_classes: int = 40,
                       refiner: bool = True, **kw) -> Reconstructor:
    """A real Reconstructor: tiny encoder, GAN and semantic head (``get_dummy_components``
    with an 8-dim embedding), a tiny DemoRefiner and a tiny image classifier."""
    from bci_app.models.semantic import SemanticHead

    comps = get_dummy_components(n_chans, n_times)
    torch.manual_seed(0)
    # no prototypes (they start at zero) and a wide head: embeddings the UNet visibly reacts to
    comps["semantic"] = SemanticHead(6, seq_len=2, embed_dim=8, hidden=8, n_prototypes=0)
    with torch.no_grad():
        comps["semantic"].head.weight.mul_(20.0)
    cfg = _config(n_chans)
    cfg["spec"].update(l_freq=None, h_freq=None, notch=None)
    return Reconstructor(cfg, comps, refiner=tiny_demo_refiner() if refiner else None,
                         classifier=tiny_classifier(n_classes), device="cpu", dtype="float32", **kw)


@pytest.fixture(scope="module")
def rrec():
    return tiny_reconstructor()


def _windows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 4, 20)).astype(np.float32)


def test_trial_seed_is_stable_and_tells_trials_apart():
    import subprocess
    import sys

    from bci_app.models.reconstructor import trial_seed

    s = trial_seed("c03_i07", 12345)
    assert s == trial_seed("c03_i07", 12345) and 0 <= s < 2**63
    assert len({s, trial_seed("c03_i07", 12346), trial_seed("c03_i08", 12345),
                trial_seed("c03_i07", 12345, base_seed=1)}) == 4
    # the same in another process (not Python's salted hash)
    code = "from bci_app.models.reconstructor import trial_seed; print(trial_seed('c03_i07', 12345))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout.strip()) == s


def test_same_trial_same_image_alone_and_in_any_batch(rrec):
    x = _windows(5)
    seeds = [101, 202, 303, 404, 505]
    batch = rrec.reconstruct(x, seeds=seeds)
    for i in (0, 2, 4):
        [alone] = rrec.reconstruct(x[i], seeds=[seeds[i]])
        np.testing.assert_array_equal(alone.image, batch[i].image)
        np.testing.assert_array_equal(alone.saliency, batch[i].saliency)
    # another batch composition, another order
    again = rrec.reconstruct(x[[4, 2]], seeds=[seeds[4], seeds[2]])
    np.testing.assert_array_equal(again[0].image, batch[4].image)
    np.testing.assert_array_equal(again[1].image, batch[2].image)
    # the seed matters: the same window with another seed draws other latents
    [other] = rrec.reconstruct(x[0], seeds=[999])
    assert not np.array_equal(other.saliency, batch[0].saliency)
    # default seeds: a hash of the window, also independent of the batch
    d = rrec.reconstruct(x)
    np.testing.assert_array_equal(rrec.reconstruct(x[3])[0].image, d[3].image)


def test_ablation_switches(rrec):
    x = _windows(3, seed=1)
    seeds = [1, 2, 3]
    full = rrec.reconstruct(x, seeds=seeds)
    no_sal = rrec.reconstruct(x, seeds=seeds, saliency=False)
    no_sem = rrec.reconstruct(x, seeds=seeds, semantics="none")
    no_ref = rrec.reconstruct(x, seeds=seeds, refine=False)
    for i in range(3):
        # the saliency map is the same in every row; the switches act on the refiner's inputs
        for rows in (no_sal, no_sem, no_ref):
            np.testing.assert_array_equal(rows[i].saliency, full[i].saliency)
        np.testing.assert_array_equal(no_ref[i].image, full[i].saliency)
    assert full[0].image.shape == (16, 16, 3)
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(full, no_sal, strict=True))
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(full, no_sem, strict=True))
    with pytest.raises(ValueError, match="semantics must be one of"):
        rrec.reconstruct(x, semantics="caption")
    with pytest.raises(ValueError, match="one int per trial"):
        rrec.reconstruct(x, seeds=[1, 2])


def test_switches_without_a_refiner_are_an_error():
    rec = tiny_reconstructor(refiner=False)
    x = _windows(2)
    with pytest.raises(RuntimeError, match="has no refiner"):
        rec.reconstruct(x, saliency=False)
    with pytest.raises(RuntimeError, match="has no refiner"):
        rec.reconstruct(x, semantics="none")
    [a, _] = rec.reconstruct(x, refine=False)
    np.testing.assert_array_equal(a.image, a.saliency)


def test_refiner_errors_are_not_swallowed(rrec):
    """No catch-and-retry around the refiner: its TypeError reaches the caller."""
    import copy

    rec = copy.copy(rrec)

    class Broken:
        def refine(self, *a, **kw):
            raise TypeError("refine() got an unexpected keyword argument 'generator'")

    rec.refiner = Broken()
    with pytest.raises(TypeError, match="generator"):
        rec.reconstruct(_windows(1)[0])
