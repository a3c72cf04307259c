"""One SSIM for every figure: evaluation, the live session report and the HTML report."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8 [N, H, W, 3]`` (or one ``[H, W, 3]``) to ``size x size`` (bicubic)."""
    from PIL import Image

    arr = np.asarray(images)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3] or [H, W, 3], got shape {np.shape(images)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if arr.shape[1] == size and arr.shape[2] == size:
        out = arr.copy()
    else:
        out = np.stack(
            [np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC)) for a in arr]
        )
    return out[0] if single else out


def _gaussian_window(win_size: int, sigma: float) -> np.ndarray:
    r = np.arange(win_size) - (win_size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable weighted local mean over the last two axes, 'valid' windows only."""
    pad = len(w) // 2
    y = correlate1d(x, w, axis=-2, mode="constant")
    y = correlate1d(y, w, axis=-1, mode="constant")
    return y[..., pad : x.shape[-2] - pad, pad : x.shape[-1] - pad]


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float = 255.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean SSIM of two images of the same shape ``[H, W]`` or ``[H, W, C]``.

    Gaussian-weighted local statistics (window ``win_size``, std ``sigma``), population
    (weighted) variances, constants ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``; the map is
    averaged over valid windows and channels. Identical images give exactly 1.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[None], b[None]
    elif a.ndim == 3:
        a, b = np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)
    else:
        raise ValueError(f"ssim needs [H, W] or [H, W, C] images, got shape {a.shape}")
    if win_size % 2 != 1 or win_size < 1:
        raise ValueError(f"win_size must be a positive odd number, got {win_size}")
    if min(a.shape[-2:]) < win_size:
        raise ValueError(
            f"images of {a.shape[-2]}x{a.shape[-1]} are smaller than the {win_size}x{win_size} "
            "SSIM window; evaluate at a larger resolution"
        )
    return float(np.mean(_ssim_map(a, b, data_range, win_size, sigma, k1, k2)))


def _ssim_nchw(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, win_size: int = 11,
               sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Mean SSIM per item of float stacks ``[N, C, H, W]`` (same definition as :func:`ssim`)."""
    return _ssim_map(a, b, data_range, win_size, sigma, k1, k2).reshape(len(a), -1).mean(axis=1)


def _ssim_map(a: np.ndarray, b: np.ndarray, data_range: float, win_size: int, sigma: float,
              k1: float, k2: float) -> np.ndarray:
    """The SSIM map over the last two axes (Gaussian-weighted, 'valid' windows only)."""
    w = _gaussian_window(win_size, sigma)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_a = _filter_valid(a, w)
    mu_b = _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a**2
    var_b = _filter_valid(b * b, w) - mu_b**2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return num / den


def ssim_batch(seen: np.ndarray, recon: np.ndarray, size: int, chunk: int = 256) -> np.ndarray:
    """Per-pair SSIM of ``uint8 [N, H, W, 3]`` stacks after resizing both to ``size``."""
    if size < 11:
        raise ValueError(f"SSIM resolution must be at least the 11-pixel window, got {size}")
    seen = resize_images(seen, size)
    recon = resize_images(recon, size)
    if seen.shape != recon.shape:
        raise ValueError(f"seen and reconstructed stacks differ: {seen.shape} vs {recon.shape}")
    out = []
    for i in range(0, len(seen), chunk):
        a = seen[i : i + chunk].transpose(0, 3, 1, 2).astype(np.float64)
        b = recon[i : i + chunk].transpose(0, 3, 1, 2).astype(np.float64)
        out.append(_ssim_nchw(a, b))
    return np.concatenate(out) if out else np.zeros(0)
