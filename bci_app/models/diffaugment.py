"""Differentiable augmentation ``A`` for the discriminator (Zhao et al. 2020, DiffAugment).

Applied to real and generated images alike, before ``D``; every operation is
differentiable with respect to the image so the generator still gets gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def rand_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, size=(b, 1, 1), device=x.device)
    ty = torch.randint(-sw, sw + 1, size=(b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device),
        torch.arange(h, device=x.device),
        torch.arange(w, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + tx + 1, 0, h + 1)
    gy = torch.clamp(gy + ty + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gx, gy].permute(0, 3, 1, 2)


def rand_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ox = torch.randint(0, h + (1 - ch % 2), size=(b, 1, 1), device=x.device)
    oy = torch.randint(0, w + (1 - cw % 2), size=(b, 1, 1), device=x.device)
    gb, gx, gy = torch.meshgrid(
        torch.arange(b, device=x.device),
        torch.arange(ch, device=x.device),
        torch.arange(cw, device=x.device),
        indexing="ij",
    )
    gx = torch.clamp(gx + ox - ch // 2, min=0, max=h - 1)
    gy = torch.clamp(gy + oy - cw // 2, min=0, max=w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


def diff_augment(x: torch.Tensor, policy: str | list[str] = "color,translation,cutout") -> torch.Tensor:
    """Apply the augmentations named in ``policy`` (comma-separated or a list).

    ``x`` is ``[B, C, H, W]``; an empty policy returns ``x`` unchanged.
    """
    names = [p.strip() for p in policy.split(",")] if isinstance(policy, str) else list(policy)
    names = [n for n in names if n]
    for n in names:
        if n not in POLICIES:
            raise ValueError(f"unknown DiffAugment policy {n!r}; allowed: {', '.join(POLICIES)}")
    for n in names:
        if n == "color":
            x = rand_contrast(rand_saturation(rand_brightness(x)))
        elif n == "translation":
            x = rand_translation(x)
        elif n == "cutout":
            x = rand_cutout(x)
    return x.contiguous()
