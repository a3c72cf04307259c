"""One SSIM for every figure: evaluation, the live session report and the HTML report.

The brain-decoding convention (as in the image-reconstruction papers that report SSIM):
both images are resized to one square resolution (bicubic, uint8), converted to
grayscale (ITU-R 709 luma, ``skimage.color.rgb2gray``) in [0, 1], and compared with
scikit-image's :func:`~skimage.metrics.structural_similarity` with a Gaussian window
(sigma 1.5, 11 x 11), population (not sample) covariance and data range 1. The mean of
the SSIM map excludes the 5-pixel border that the window cannot cover.

    from bci_app.models.ssim import ssim_batch, ssim_resolution
    size = ssim_resolution(seen.shape[1:3])         # stated next to every figure
    per_trial = ssim_batch(seen, recon, size)       # uint8 [N, H, W, 3] stacks

The differentiable loss used in training (:func:`bci_app.models.losses.ssim` with
``grayscale=True``) is tested to agree with this one on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: keyword arguments of ``skimage.metrics.structural_similarity`` for every SSIM figure
SSIM_SETTINGS: dict[str, object] = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1.0,
}
#: the side of the Gaussian window those settings imply (truncate 3.5 -> radius 5)
WINDOW = 11
#: the largest resolution SSIM is computed at (larger seen images are resized down to it)
MAX_RESOLUTION = 256

DEFINITION = (
    "SSIM: both images resized to {size}x{size} (bicubic, uint8), grayscale (ITU-R 709 luma), "
    "scikit-image structural_similarity with a Gaussian window (sigma 1.5, 11x11), population "
    "covariance, data range 1, border of 5 pixels excluded"
)


def definition(size: int) -> str:
    """The sentence that states how an SSIM figure at ``size`` was computed."""
    return DEFINITION.format(size=int(size))


def ssim_resolution(shape: Sequence[int], max_resolution: int = MAX_RESOLUTION) -> int:
    """The square resolution SSIM is computed at for seen images of ``shape`` ``(H, W, ...)``:
    the smaller side, capped at ``max_resolution``."""
    h, w = int(shape[0]), int(shape[1])
    size = min(h, w, int(max_resolution))
    if size < WINDOW:
        raise ValueError(
            f"seen images of {h}x{w} are smaller than the {WINDOW}x{WINDOW} SSIM window; "
            "use larger images"
        )
    return size


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
        raise ValueError(f"images must be uint8, got {arr.dtype}; convert with (x * 255).round()")
    if arr.shape[1] == size and arr.shape[2] == size:
        out = arr.copy()
    else:
        out = np.stack(
            [np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC)) for a in arr]
        )
    return out[0] if single else out


def to_gray(image: np.ndarray) -> np.ndarray:
    """One image as float64 grayscale ``[H, W]`` in [0, 1].

    ``uint8`` images are divided by 255; ``[H, W, 3]`` is converted with
    ``skimage.color.rgb2gray`` (0.2125 R + 0.7154 G + 0.0721 B); float images must
    already lie in [0, 1].
    """
    from skimage.color import rgb2gray

    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 255.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
        if a.size and (np.nanmin(a) < 0.0 or np.nanmax(a) > 1.0):
            raise ValueError(
                f"float images must lie in [0, 1] (data range 1), got values in "
                f"[{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]; pass uint8 or divide by 255"
            )
    else:
        raise ValueError(f"images must be uint8 or float in [0, 1], got {a.dtype}")
    if a.ndim == 3 and a.shape[-1] == 3:
        return rgb2gray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        return a[..., 0]
    if a.ndim == 2:
        return a
    raise ValueError(f"an image must be [H, W], [H, W, 1] or [H, W, 3], got shape {a.shape}")


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two images of the same shape (no resizing; see :func:`ssim_batch` for that).

    ``uint8`` or float-in-[0, 1] images, ``[H, W]`` or ``[H, W, 3]`` (converted to
    grayscale). Identical images give exactly 1.
    """
    from skimage.metrics import structural_similarity

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs images of the same shape, got {a.shape} and {b.shape}")
    ga, gb = to_gray(a), to_gray(b)
    if min(ga.shape) < WINDOW:
        raise ValueError(
            f"images of {ga.shape[0]}x{ga.shape[1]} are smaller than the {WINDOW}x{WINDOW} SSIM "
            "window; evaluate at a larger resolution"
        )
    return float(structural_similarity(ga, gb, **SSIM_SETTINGS))


def ssim_batch(seen: np.ndarray, recon: np.ndarray, size: int) -> np.ndarray:
    """Per-pair SSIM of ``uint8 [N, H, W, 3]`` stacks after resizing both to ``size``."""
    if size < WINDOW:
        raise ValueError(f"SSIM resolution must be at least the {WINDOW}-pixel window, got {size}")
    seen = resize_images(seen, size)
    recon = resize_images(recon, size)
    if seen.shape != recon.shape:
        raise ValueError(f"seen and reconstructed stacks differ: {seen.shape} vs {recon.shape}")
    return np.array([ssim(s, r) for s, r in zip(seen, recon, strict=True)], dtype=np.float64)


def image_ssim(seen: np.ndarray, recon: np.ndarray, size: int | None = None) -> float:
    """SSIM of one seen and one reconstructed ``uint8 [H, W, 3]`` image, both resized to
    ``size`` (default :func:`ssim_resolution` of the seen image): the live report's figure,
    computed exactly as ``bci-app evaluate`` computes it."""
    seen, recon = np.asarray(seen), np.asarray(recon)
    if size is None:
        size = ssim_resolution(seen.shape)
    return float(ssim_batch(seen[None], recon[None], size)[0])
