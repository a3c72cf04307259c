"""Image tensors shared by the models: stimulus sets as float tensors, a per-sample blur."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def stimulus_tensors(stimuli, resolution: int = 64, upright: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a stimulus set as float ``[N, 3, R, R]`` in [0, 1] and labels ``[N]``
    (``upright``: drawn with rotation 0, see :meth:`DemoStimulusSet.image_upright`)."""
    ids = list(stimuli.stim_ids)
    if upright and not hasattr(stimuli, "image_upright"):
        raise ValueError(f"{type(stimuli).__name__} cannot draw upright images (no image_upright)")
    render = stimuli.image_upright if upright else stimuli.image
    imgs = np.stack(
        [render(s, resolution) if _takes_size(stimuli) else render(s) for s in ids]
    )
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != resolution:
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
        )
    y = torch.tensor([stimuli.label(s) for s in ids], dtype=torch.long)
    return x.clamp(0, 1), y


def _takes_size(stimuli) -> bool:
    import inspect

    try:
        return "size" in inspect.signature(stimuli.image).parameters
    except (TypeError, ValueError):
        return False


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur: ``x [B, C, H, W]``, ``sigma [B]`` in pixels."""
    b, c, h, w = x.shape
    radius = int(math.ceil(3 * float(sigma.max())))
    if radius < 1:
        return x
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(r[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None].to(x.dtype) ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, K]
    y = x.reshape(1, b * c, h, w)
    y = F.conv2d(
        F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=b * c
    )
    y = F.conv2d(
        F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=b * c
    )
    return y.reshape(b, c, h, w)
