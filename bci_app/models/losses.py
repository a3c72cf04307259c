"""Losses of the NeuroImagen method (eqs. 1-7 of "Seeing through the Brain").

- :func:`triplet_loss`: eq. (1), margin ``beta``, with online batch-hard or semi-hard
  mining over the stimulus classes present in the batch.
- :func:`hinge_d_loss` / :func:`hinge_g_loss`: eqs. (2)-(3).
- :func:`mode_seeking_loss`: eq. (4) (Mao et al. 2019), computed as the ratio of image
  distance to latent distance; the generator *minimises* its inverse.
- :func:`ssim` / :func:`ssim_loss`: eq. (5), Gaussian-window SSIM on images in [0, 1]; with
  ``grayscale=True`` it is the evaluation SSIM (:mod:`bci_app.models.ssim`), differentiable.
- :func:`semantic_l2_loss`: eq. (7), mean squared distance between embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MINING = ("batch_hard", "semi_hard", "all")


def _pairwise_sq_dist(emb: torch.Tensor) -> torch.Tensor:
    dot = emb @ emb.t()
    sq = dot.diagonal()
    return (sq[:, None] - 2 * dot + sq[None, :]).clamp_min(0.0)


def triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    mining: str = "batch_hard",
    normalize: bool = True,
) -> torch.Tensor:
    """Triplet loss ``max(0, ||f(a)-f(p)||^2 - ||f(a)-f(n)||^2 + margin)`` (eq. 1).

    Parameters
    ----------
    embeddings : Tensor [B, D]
    labels : Tensor [B] (int)
    margin : float
        ``beta`` of eq. (1).
    mining : {"batch_hard", "semi_hard", "all"}
        ``batch_hard``: for each anchor the farthest positive and the nearest negative.
        ``semi_hard``: for each anchor-positive pair, the nearest negative farther than
        the positive (FaceNet); falls back to the hardest negative when none is.
        ``all``: mean over all valid triplets with a positive loss.
    normalize : bool
        L2-normalise embeddings first (distances then lie in [0, 4]).

    Returns 0 (with a gradient path) when the batch holds no valid triplet.
    """
    if mining not in MINING:
        raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
    if embeddings.ndim != 2 or labels.ndim != 1 or len(labels) != len(embeddings):
        raise ValueError(
            f"expected embeddings [B, D] and labels [B]; got {tuple(embeddings.shape)} "
            f"and {tuple(labels.shape)}"
        )
    emb = F.normalize(embeddings, dim=1) if normalize else embeddings
    d = _pairwise_sq_dist(emb)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask = same & ~eye
    neg_mask = ~same
    zero = embeddings.sum() * 0.0
    if not pos_mask.any() or not neg_mask.any():
        return zero
    big = d.detach().max() + 1.0
    if mining == "batch_hard":
        hardest_pos = (d * pos_mask).max(dim=1).values
        hardest_neg = (d + big * (~neg_mask)).min(dim=1).values
        valid = pos_mask.any(1) & neg_mask.any(1)
        loss = F.relu(hardest_pos - hardest_neg + margin)[valid]
        return loss.mean() if loss.numel() else zero
    # anchor-positive pairs x negatives: [B, B, B]
    ap = d[:, :, None]
    an = d[:, None, :]
    trip_mask = pos_mask[:, :, None] & neg_mask[:, None, :]
    if mining == "all":
        losses = F.relu(ap - an + margin)[trip_mask]
        active = losses[losses > 1e-12]
        return active.mean() if active.numel() else zero
    # semi-hard: negatives with d_ap < d_an < d_ap + margin preferred; nearest such
    semi = trip_mask & (an > ap)
    an_semi = torch.where(semi, an.expand_as(semi), big.expand_as(semi)).min(dim=2).values
    an_hard = (d + big * (~neg_mask)).min(dim=1).values[:, None].expand_as(an_semi)
    has_semi = semi.any(dim=2)
    an_sel = torch.where(has_semi, an_semi, an_hard)
    losses = F.relu(d - an_sel + margin)[pos_mask]
    return losses.mean() if losses.numel() else zero


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss (eq. 2): ``E[max(0, 1 - D(y))] + E[max(0, 1 + D(G(z)))]``."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss (eq. 3): ``-E[D(G(z))]``."""
    return -fake_logits.mean()


def mode_seeking_loss(
    img1: torch.Tensor, img2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """Mode-seeking term (eq. 4): ``1 / (mean|G(z1)-G(z2)| / mean|z1-z2| + eps)``.

    Minimising it pushes two samples from different latents apart (against mode collapse).
    """
    ratio = (img1 - img2).abs().mean() / ((z1 - z2).abs().mean() + eps)
    return 1.0 / (ratio + eps)


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    w = g[:, None] * g[None, :]
    return w.expand(channels, 1, size, size).contiguous()


#: ITU-R 709 luma, the weights of ``skimage.color.rgb2gray`` (the evaluation SSIM's grayscale)
LUMA = (0.2125, 0.7154, 0.0721)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` -> ``[B, 1, H, W]`` with the luma weights of ``skimage.color.rgb2gray``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_gray expects [B, 3, H, W], got {tuple(x.shape)}")
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    reduction: str = "mean",
    grayscale: bool = False,
) -> torch.Tensor:
    """Structural similarity of images ``[B, C, H, W]`` (Wang et al. 2004).

    Gaussian window, population covariance, the mean over the windows that fit inside
    the image ("valid"), then over channels. ``grayscale=True`` converts RGB to luma
    first: on images in [0, 1] of at least 11 x 11 this equals the evaluation SSIM
    (:func:`bci_app.models.ssim.ssim`, scikit-image) up to float rounding.
    ``reduction="none"`` returns one value per image.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"ssim expects two [B, C, H, W] tensors of the same shape; got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if grayscale:
        x, y = rgb_to_gray(x), rgb_to_gray(y)
    c = x.shape[1]
    # smaller images than the window (e.g. 8 x 8 saliency maps in tests) use a smaller window
    window_size = min(window_size, x.shape[-1], x.shape[-2])
    w = _gaussian_window(window_size, sigma, c, x.device, x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    per_image = s.flatten(1).mean(1)
    if reduction == "none":
        return per_image
    return per_image.mean()


def ssim_loss(x: torch.Tensor, y: torch.Tensor, **kwargs) -> torch.Tensor:
    """SSIM loss (eq. 5): ``1 - SSIM(x, y)``."""
    return 1.0 - ssim(x, y, **kwargs)


def semantic_l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. (7): squared L2 distance between predicted and caption embeddings, averaged
    over elements (so the scale does not depend on ``L * D``)."""
    if pred.shape != target.shape:
        raise ValueError(
            f"semantic loss: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ"
        )
    return F.mse_loss(pred, target)
