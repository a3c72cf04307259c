"""Pixel-level decoding: the saliency GAN of NeuroImagen.

``G(z, f_theta(x))`` maps a latent ``z`` and the EEG feature to a coarse image (the
saliency map) in ``[0, 1]``; ``D(A(y), f_theta(x))`` is a projection discriminator
(Miyato & Koyama 2018) with spectral normalisation, fed DiffAugment-ed images.
Trained with the hinge losses (eqs. 2-3), the mode-seeking term (eq. 4) and SSIM to the
seen image (eq. 5), weighted as eq. (6) (see :func:`bci_app.models.training`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from bci_app.models.bundle import ConfigModule


def _n_stages(resolution: int) -> int:
    n = int(round(math.log2(resolution / 4)))
    if resolution < 8 or 4 * 2**n != resolution:
        raise ValueError(f"resolution must be a power of two >= 8 (e.g. 64), got {resolution}")
    return n


class SaliencyGenerator(ConfigModule):
    """``G(z, f)``: ``z [B, z_dim]``, ``f [B, cond_dim]`` -> image ``[B, 3, R, R]`` in [0, 1].

    Parameters
    ----------
    z_dim, cond_dim : latent and EEG-feature sizes.
    resolution : output side (power of two, 64 by default).
    base_channels : channels at the highest resolution; doubled per stage down to 4x4,
        capped at ``8 * base_channels``.
    """

    def __init__(self, z_dim: int = 32, cond_dim: int = 64, resolution: int = 64,
                 base_channels: int = 32) -> None:
        super().__init__()
        self.register_config(z_dim=z_dim, cond_dim=cond_dim, resolution=resolution,
                             base_channels=base_channels)
        self.z_dim, self.cond_dim, self.resolution = z_dim, cond_dim, resolution
        n = _n_stages(resolution)
        chans = [min(base_channels * 2 ** (n - i), base_channels * 8) for i in range(n + 1)]
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.fc = nn.Linear(z_dim + cond_dim, chans[0] * 16)
        self.c0 = chans[0]
        blocks = []
        for i in range(n):
            blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1),
                nn.BatchNorm2d(chans[i + 1]),
                nn.LeakyReLU(0.2),
            ))
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(chans[-1], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {tuple(z.shape)}")
        if feats.ndim != 2 or feats.shape[1] != self.cond_dim or len(feats) != len(z):
            raise ValueError(f"feats must be [{len(z)}, {self.cond_dim}], got {tuple(feats.shape)}")
        h = self.fc(torch.cat([z, self.cond_norm(feats)], dim=1))
        h = F.leaky_relu(h.view(len(z), self.c0, 4, 4), 0.2)
        return torch.sigmoid(self.out(self.blocks(h)))

    def sample_z(self, n: int, generator: torch.Generator | None = None,
                 device=None, dtype=None) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=device, dtype=dtype)


class SaliencyDiscriminator(ConfigModule):
    """``D(y, f)`` -> logit ``[B]``; projection of the EEG feature onto the image features."""

    def __init__(self, cond_dim: int = 64, resolution: int = 64, base_channels: int = 32) -> None:
        super().__init__()
        self.register_config(cond_dim=cond_dim, resolution=resolution, base_channels=base_channels)
        self.resolution = resolution
        n = _n_stages(resolution)
        chans = [min(base_channels * 2**i, base_channels * 8) for i in range(n + 1)]
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, chans[0], 3, padding=1)), nn.LeakyReLU(0.2)]
        for i in range(n):
            layers += [spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 4, stride=2, padding=1)),
                       nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.linear = spectral_norm(nn.Linear(chans[-1], 1))
        self.proj = spectral_norm(nn.Linear(cond_dim, chans[-1], bias=False))

    def forward(self, images: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        h = self.body(images * 2 - 1).sum(dim=(2, 3))
        return self.linear(h).squeeze(1) + (self.proj(self.cond_norm(feats)) * h).sum(1)


#: what ``G`` is conditioned on (bundle config ``gan.condition``)
CONDITIONS = ("features", "posterior")


def condition_settings(gan_cfg: dict | None) -> tuple[str, float]:
    """``(condition, temperature)`` of a training or bundle ``gan`` config (paper default)."""
    gan_cfg = gan_cfg or {}
    return str(gan_cfg.get("condition", "features")), float(gan_cfg.get("temperature", 1.0))


def gan_condition(feats: torch.Tensor, encoder_head: nn.Module | None = None,
                  condition: str = "features", temperature: float = 1.0) -> torch.Tensor:
    """The generator's conditioning vector from the EEG feature ``f_theta(x)``.

    - ``"features"``: ``f_theta(x)`` itself (the paper);
    - ``"posterior"``: the encoder's class posterior ``softmax(head(f) / temperature)``,
      a function of ``f_theta(x)`` that keeps only what the encoder believes about the
      class. A single-trial feature lies between the class clusters that the generator
      learnt on training trials, and a generator fed such a feature draws a blend of
      classes (a brownish blob); fed the posterior, it draws the decoded class.
    """
    if condition == "features":
        return feats
    if condition == "posterior":
        if encoder_head is None:
            raise ValueError("gan condition 'posterior' needs the bundle's encoder_head component")
        if temperature <= 0:
            raise ValueError(f"gan temperature must be > 0, got {temperature}")
        return torch.softmax(encoder_head(feats).float() / float(temperature), dim=-1).to(feats.dtype)
    raise ValueError(f"gan condition must be one of {CONDITIONS}, got {condition!r}")
