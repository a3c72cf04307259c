"""The one SSIM (bci_app.models.ssim): equals scikit-image's value on hand-made image pairs,
matches hand computations, and the differentiable training loss agrees with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from bci_app.models import losses
from bci_app.models.ssim import (
    definition,
    image_ssim,
    resize_images,
    ssim,
    ssim_batch,
    ssim_resolution,
)


def _skimage(a: np.ndarray, b: np.ndarray) -> float:
    """The brain-decoding convention, spelled out: grayscale, Gaussian window sigma 1.5,
    no sample covariance, data range 1."""
    ga = rgb2gray(a) if a.ndim == 3 else a.astype(np.float64) / 255
    gb = rgb2gray(b) if b.ndim == 3 else b.astype(np.float64) / 255
    return structural_similarity(ga, gb, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0)


def hand_made_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """uint8 RGB pairs drawn by hand: shapes, shifts, gradients, inversions, blur, noise."""
    yy, xx = np.mgrid[0:48, 0:48]
    disc = ((yy - 24) ** 2 + (xx - 24) ** 2 < 12**2)
    red_disc = np.zeros((48, 48, 3), np.uint8)
    red_disc[disc] = (220, 30, 30)
    shifted = np.roll(red_disc, (3, -2), axis=(0, 1))
    blue_disc = red_disc[..., ::-1].copy()
    checker = (((yy // 6) + (xx // 6)) % 2 * 255).astype(np.uint8)
    checker = np.stack([checker] * 3, -1)
    gradient = np.stack([(xx * 255 // 47).astype(np.uint8)] * 3, -1)
    rng = np.random.default_rng(7)
    noisy = np.clip(gradient + rng.normal(0, 25, gradient.shape), 0, 255).astype(np.uint8)
    blurred = ((checker.astype(int) + np.roll(checker, 1, 0) + np.roll(checker, 1, 1)) // 3).astype(np.uint8)
    return {
        "disc vs shifted disc": (red_disc, shifted),
        "red vs blue disc (colour only)": (red_disc, blue_disc),
        "checker vs inverted": (checker, 255 - checker),
        "checker vs blurred": (checker, blurred),
        "gradient vs noisy gradient": (gradient, noisy),
        "gradient vs grey": (gradient, np.full_like(gradient, 128)),
    }


@pytest.mark.parametrize("name", list(hand_made_pairs()))
def test_ssim_equals_scikit_image_on_hand_made_pairs(name):
    a, b = hand_made_pairs()[name]
    expected = _skimage(a, b)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # the batch path (at the images' own resolution) gives the same number
    assert ssim_batch(a[None], b[None], size=48)[0] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_hand_made_pairs_span_the_range():
    vals = {k: ssim(a, b) for k, (a, b) in hand_made_pairs().items()}
    assert vals["checker vs inverted"] < 0 < vals["disc vs shifted disc"] < 1
    assert vals["checker vs blurred"] > vals["checker vs inverted"]


def test_ssim_identical_is_one():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_closed_form():
    # constant images: variances and covariance vanish -> luminance term only (data range 1)
    a = np.full((16, 16), 100.0 / 255)
    b = np.full((16, 16), 150.0 / 255)
    c1 = 0.01**2
    ma, mb = 100 / 255, 150 / 255
    expected = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1)
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)


def test_ssim_single_window_by_definition():
    # an 11x11 image has exactly one window that fits: compute the weighted statistics by hand
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (11, 11)).astype(float) / 255
    b = np.clip(a + rng.normal(0, 40 / 255, (11, 11)), 0, 1)
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    va = (w * (a - mu_a) ** 2).sum()
    vb = (w * (b - mu_b) ** 2).sum()
    cov = (w * (a - mu_a) * (b - mu_b)).sum()
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)
    assert expected < 0.95  # the noisy copy is really different


def test_ssim_errors_and_batch():
    with pytest.raises(ValueError, match="same shape"):
        ssim(np.zeros((12, 12)), np.zeros((12, 13)))
    with pytest.raises(ValueError, match="smaller than"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ssim(np.full((12, 12), 200.0), np.zeros((12, 12)))
    rng = np.random.default_rng(0)
    seen = rng.integers(0, 256, (3, 40, 40, 3)).astype(np.uint8)
    vals = ssim_batch(seen, seen, size=32)
    np.testing.assert_allclose(vals, 1.0, atol=1e-12)
    other = ssim_batch(seen, seen[::-1], size=32)
    assert other[0] < 0.2 and other[1] == pytest.approx(1.0)


def test_ssim_batch_matches_single_image_ssim_after_resizing():
    rng = np.random.default_rng(4)
    seen = rng.integers(0, 256, (4, 24, 24, 3)).astype(np.uint8)
    recon = np.clip(seen + rng.normal(0, 30, seen.shape), 0, 255).astype(np.uint8)
    batch = ssim_batch(seen, recon, size=24)
    single = [ssim(s, r) for s, r in zip(seen, recon, strict=True)]
    np.testing.assert_allclose(batch, single, rtol=1e-12)
    # a 16 x 16 reconstruction against a 40 x 40 seen image: both resized to the stated size
    big = rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)
    small = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    size = ssim_resolution(big.shape)
    assert size == 40 and "40x40" in definition(size)
    assert image_ssim(big, small) == pytest.approx(_skimage(big, resize_images(small, 40)), rel=1e-12)


def test_resolution_is_capped_and_checked():
    assert ssim_resolution((512, 640, 3)) == 256
    assert ssim_resolution((64, 80)) == 64
    with pytest.raises(ValueError, match="smaller than the 11x11"):
        ssim_resolution((8, 8, 3))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_training_loss_agrees_with_the_evaluation_ssim(dtype):
    """losses.ssim(grayscale=True) on the same images gives the evaluation SSIM."""
    pairs = hand_made_pairs()
    a = np.stack([p[0] for p in pairs.values()])
    b = np.stack([p[1] for p in pairs.values()])
    ta = torch.as_tensor(a, dtype=dtype).permute(0, 3, 1, 2) / 255
    tb = torch.as_tensor(b, dtype=dtype).permute(0, 3, 1, 2) / 255
    got = losses.ssim(ta, tb, grayscale=True, reduction="none").double().numpy()
    expected = np.array([ssim(x, y) for x, y in zip(a, b, strict=True)])
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    np.testing.assert_allclose(got, expected, atol=tol)
    # and the loss is 1 - that, differentiable
    ta.requires_grad_(True)
    loss = losses.ssim_loss(ta, tb, grayscale=True)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(1 - expected.mean(), abs=tol) and ta.grad is not None
