"""Pixel-level decoding: the saliency GAN of NeuroImagen.

``G(z, f_theta(x))`` maps a latent ``z`` and the EEG feature to a coarse image (the
saliency map) in ``[0, 1]``; ``D(A(y), f_theta(x))`` is a projection discriminator
(Miyato & Koyama 2018) with spectral normalisation, fed DiffAugment-ed images.
Trained with the hinge losses (eqs. 2-3), the mode-seeking term (eq. 4) and SSIM to the
seen image (eq. 5), weighted as eq. (6) (see :func:`bci_app.training.recipe`).
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


def layout_map(layout: torch.Tensor, resolution: int, edge_px: float = 1.0) -> torch.Tensor:
    """A soft disc per row of ``layout [B, 3]`` = (x, y, radius) as fractions of the image
    side: ``[B, 1, R, R]``, 1 inside, 0 outside, a sigmoid edge ``edge_px`` pixels wide."""
    c = (torch.arange(resolution, device=layout.device, dtype=layout.dtype) + 0.5) / resolution
    x, y, r = (layout[:, k, None, None] for k in range(3))
    d = torch.sqrt((c[None, None, :] - x) ** 2 + (c[None, :, None] - y) ** 2)
    return torch.sigmoid((r - d) * (resolution / edge_px))[:, None]


class SaliencyGenerator(ConfigModule):
    """``G(z, f)``: ``z [B, z_dim]``, ``f [B, cond_dim]`` -> image ``[B, 3, R, R]`` in [0, 1].

    Parameters
    ----------
    z_dim, cond_dim : latent and EEG-feature sizes.
    resolution : output side (power of two, 64 by default).
    base_channels : channels at the highest resolution; doubled per stage down to 4x4,
        capped at ``8 * base_channels``.
    layout_dims : 0, or 3 when the last three entries of ``f`` are a decoded object layout
        (x, y, radius as fractions of the side; see :func:`gan_condition`). That layout is
        drawn as a soft disc (:func:`layout_map`) and given to every upsampling stage as one
        more input channel (spatial conditioning, as layout-to-image generators do), so
        ``G`` only has to learn what to paint where the EEG says the object is.
    """

    def __init__(self, z_dim: int = 32, cond_dim: int = 64, resolution: int = 64,
                 base_channels: int = 32, layout_dims: int = 0) -> None:
        super().__init__()
        if layout_dims not in (0, 3):
            raise ValueError(f"layout_dims must be 0 or 3 (x, y, radius), got {layout_dims}")
        if layout_dims >= cond_dim:
            raise ValueError(f"layout_dims ({layout_dims}) must be smaller than cond_dim ({cond_dim})")
        self.register_config(z_dim=z_dim, cond_dim=cond_dim, resolution=resolution,
                             base_channels=base_channels, layout_dims=layout_dims)
        self.z_dim, self.cond_dim, self.resolution = z_dim, cond_dim, resolution
        self.layout_dims = layout_dims
        extra = 1 if layout_dims else 0
        n = _n_stages(resolution)
        chans = [min(base_channels * 2 ** (n - i), base_channels * 8) for i in range(n + 1)]
        self.cond_norm = nn.LayerNorm(cond_dim)
        self.fc = nn.Linear(z_dim + cond_dim, chans[0] * 16)
        self.c0 = chans[0]
        blocks = []
        for i in range(n):
            blocks.append(nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(chans[i] + extra, chans[i + 1], 3, padding=1),
                nn.BatchNorm2d(chans[i + 1]),
                nn.LeakyReLU(0.2),
            ))
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(chans[-1] + extra, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {tuple(z.shape)}")
        if feats.ndim != 2 or feats.shape[1] != self.cond_dim or len(feats) != len(z):
            raise ValueError(f"feats must be [{len(z)}, {self.cond_dim}], got {tuple(feats.shape)}")
        h = self.fc(torch.cat([z, self.cond_norm(feats)], dim=1))
        h = F.leaky_relu(h.view(len(z), self.c0, 4, 4), 0.2)
        if not self.layout_dims:
            return torch.sigmoid(self.out(self.blocks(h)))
        lay = feats[:, -self.layout_dims:]
        for up, *rest in self.blocks:
            h = up(h)
            h = torch.cat([h, layout_map(lay, h.shape[-1]).to(h.dtype)], dim=1)
            for m in rest:
                h = m(h)
        h = torch.cat([h, layout_map(lay, h.shape[-1]).to(h.dtype)], dim=1)
        return torch.sigmoid(self.out(h))

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


def condition_settings(gan_cfg: dict | None) -> tuple[str, float, dict | None]:
    """``(condition, temperature, layout)`` of a bundle's ``gan`` config (paper default:
    ``("features", 1.0, None)``). ``layout`` is the encoder's layout read-out
    (``{"outputs", "mean", "std", ...}``, see ``BinnedLinearEncoder.fit_lda``) when the
    generator is conditioned on it, else None."""
    gan_cfg = gan_cfg or {}
    layout = gan_cfg.get("layout")
    if layout is not None and not isinstance(layout, dict):
        layout = None  # a training config's `layout = true` is resolved by the training code
    return str(gan_cfg.get("condition", "features")), float(gan_cfg.get("temperature", 1.0)), layout


def gan_condition(feats: torch.Tensor, encoder_head: nn.Module | None = None,
                  condition: str = "features", temperature: float = 1.0,
                  layout: dict | None = None) -> torch.Tensor:
    """The generator's conditioning vector from the EEG feature ``f_theta(x)``.

    - ``"features"``: ``f_theta(x)`` itself (the paper);
    - ``"posterior"``: the encoder's class posterior ``softmax(head(f) / temperature)``,
      a function of ``f_theta(x)`` that keeps only what the encoder believes about the
      class. A single-trial feature lies between the class clusters that the generator
      learnt on training trials, and a generator fed such a feature draws a blend of
      classes (a brownish blob); fed the posterior, it draws the decoded class.

    ``layout`` (the encoder's layout read-out) appends the decoded object position and
    size, ``f[:, outputs] * std + mean`` clipped to the image, as the last three entries
    (x, y, radius as fractions of the side), which a generator with ``layout_dims=3`` draws.
    """
    if condition == "features":
        cond = feats
    elif condition == "posterior":
        if encoder_head is None:
            raise ValueError("gan condition 'posterior' needs the bundle's encoder_head component")
        if temperature <= 0:
            raise ValueError(f"gan temperature must be > 0, got {temperature}")
        cond = torch.softmax(encoder_head(feats).float() / float(temperature), dim=-1).to(feats.dtype)
    else:
        raise ValueError(f"gan condition must be one of {CONDITIONS}, got {condition!r}")
    if layout is None:
        return cond
    idx = [int(i) for i in layout["outputs"]]
    if len(idx) != 3 or max(idx) >= feats.shape[1]:
        raise ValueError(f"gan layout must name 3 encoder outputs (x, y, size) below {feats.shape[1]}, got {idx}")
    mu = torch.as_tensor(layout["mean"], dtype=feats.dtype, device=feats.device)
    sd = torch.as_tensor(layout["std"], dtype=feats.dtype, device=feats.device)
    lay = (feats[:, idx] * sd + mu).clamp(0.0, 1.0)
    return torch.cat([cond, lay], dim=1)
