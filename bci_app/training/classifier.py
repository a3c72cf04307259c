"""Training of the image classifier that judges reconstructions
(:class:`bci_app.models.image_classifier.ImageClassifier`).

It is trained with augmentations that look like reconstruction errors (blur, low
contrast, colour casts, pixel noise, small shifts) on the images it is given - in a
bundle, the training split's images only - and measured on held-out images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bci_app.models.image_classifier import ImageClassifier
from bci_app.models.images import gaussian_blur, stimulus_tensors
from bci_app.training.data import StimulusSubset
from bci_app.training.loop import FitLoop, seed_everything


@dataclass
class ClassifierConfig:
    """Architecture and training of the image classifier."""

    width: int = 24
    resolution: int = 32  # inputs are resized to this inside the model (4x cheaper than 64)
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    val_fraction: float = 0.1  # held out per class when no validation images are given
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ClassifierConfig:
        d = dict(d or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown classifier setting(s) {unknown}; allowed: {', '.join(known)}")
        return cls(**d)


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Reconstruction-like corruptions (each applied to a random part of the batch)."""
    b = x.shape[0]

    def u(*s):
        return torch.rand(*s, generator=g)

    # shifts of up to 4 px (reflect padding + crop)
    pad = 4
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b), generator=g)
    h, w = x.shape[-2:]
    x = torch.stack([xp[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    flip = u(b) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    sigma = torch.where(u(b) < 0.6, 0.3 + 2.2 * u(b), torch.full((b,), 0.01))
    x = gaussian_blur(x, sigma)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = torch.lerp(x, mean.expand_as(x), 0.4 * u(b, 1, 1, 1))
    x = x * (1 + 0.2 * (u(b, 3, 1, 1) - 0.5)) + 0.1 * (u(b, 3, 1, 1) - 0.5)
    x = x + 0.08 * u(b, 1, 1, 1) * torch.randn(x.shape, generator=g)
    return x.clamp(0, 1)


@torch.no_grad()
def accuracy(model: ImageClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on images ``x [N, 3, H, W]`` with labels ``y [N]``."""
    dev = next(model.parameters()).device
    pred = torch.cat(
        [model(x[i : i + 256].to(dev)).argmax(-1).cpu() for i in range(0, len(x), 256)]
    )
    return float((pred == y).float().mean())


def _held_out(labels: torch.Tensor, fraction: float, g: torch.Generator) -> torch.Tensor:
    """A stratified mask of ``fraction`` of the images of each class."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for k in labels.unique():
        idx = (labels == k).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(fraction * len(idx)))
        if 0 < n_val < len(idx):
            mask[idx[:n_val]] = True
    return mask


def train_image_classifier(
    stimuli: Any,
    cfg: ClassifierConfig | dict[str, Any] | None = None,
    progress: bool = True,
    device: str = "cpu",
    stim_ids: Sequence[str] | None = None,
    val_ids: Sequence[str] | None = None,
    checkpoint_dir: str | Path | None = None,
    extra: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[ImageClassifier, dict[str, Any]]:
    """Train :class:`ImageClassifier` on a stimulus set's images (augmented).

    ``stim_ids``: the images to train on (default all of ``stimuli``). ``val_ids``: the
    images to measure on (never trained on); without them a stratified ``val_fraction``
    of the training images per class is held out. ``extra``: more training images (float
    ``[M, 3, H, W]`` in [0, 1], any H = W) and their labels, e.g. rendered instances of
    classes the split does not train (counted in ``n_extra``). The returned metrics hold ``val_acc``
    (clean held-out images), ``val_acc_degraded`` (the same images blurred/noised as
    reconstructions are), ``chance``, the image counts and the wall time.
    """
    cfg = cfg if isinstance(cfg, ClassifierConfig) else ClassifierConfig.from_dict(cfg)
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    train_set = StimulusSubset(stimuli, stim_ids) if stim_ids is not None else stimuli
    images, labels = stimulus_tensors(train_set, 64)
    n_classes = int(getattr(stimuli, "n_classes", None) or int(labels.max()) + 1)
    g = torch.Generator().manual_seed(cfg.seed)
    if val_ids is not None:
        overlap = set(map(str, val_ids)) & set(map(str, train_set.stim_ids))
        if overlap:
            raise ValueError(
                f"{len(overlap)} validation images are also training images (e.g. {sorted(overlap)[0]!r}); "
                "expected disjoint sets"
            )
        tr_x, tr_y = images, labels
        va_x, va_y = stimulus_tensors(StimulusSubset(stimuli, val_ids), 64) if len(val_ids) else (images[:0], labels[:0])
    else:
        val_mask = _held_out(labels, cfg.val_fraction, g)
        tr_x, tr_y, va_x, va_y = images[~val_mask], labels[~val_mask], images[val_mask], labels[val_mask]
    n_split = len(tr_x)
    if extra is not None:
        x_extra = F.interpolate(extra[0].float(), size=images.shape[-2:], mode="bilinear", antialias=True,
                                align_corners=False).clamp(0, 1)
        tr_x, tr_y = torch.cat([tr_x, x_extra]), torch.cat([tr_y, extra[1].long()])
    loop = FitLoop("image classifier", cfg.steps, device=device, checkpoint_dir=checkpoint_dir,
                   checkpoint_every=max(1, cfg.steps // 4), unit="step", progress=progress)
    from diffusers.optimization import get_cosine_schedule_with_warmup

    model = ImageClassifier(n_classes=n_classes, resolution=cfg.resolution, width=cfg.width)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, 0, max(1, cfg.steps))
    model, opt, sched = loop.prepare(model, opt, sched)
    loop.track("data_order", g)
    model.train()

    def train_step(step: int) -> dict[str, float]:
        idx = torch.randint(0, len(tr_x), (min(cfg.batch_size, len(tr_x)),), generator=g)
        x = augment(tr_x[idx], g).to(loop.device)
        loss = F.cross_entropy(model(x), tr_y[idx].to(loop.device), label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loop.accelerator.backward(loss)
        opt.step()
        sched.step()
        return {"loss": float(loss.detach())}

    losses = [h["loss"] for h in loop.run(train_step).history]
    model = loop.unwrap(model).eval()
    metrics: dict[str, Any] = {
        "chance": 1.0 / n_classes,
        "n_train": n_split,
        "n_extra": len(tr_x) - n_split,
        "n_val": len(va_x),
        "loss_first": float(np.mean(losses[:10])) if losses else None,
        "loss_last": float(np.mean(losses[-10:])) if losses else None,
    }
    if len(va_x):
        gv = torch.Generator().manual_seed(cfg.seed + 99)
        metrics["val_acc"] = accuracy(model, va_x, va_y)
        metrics["val_acc_degraded"] = accuracy(model, augment(va_x, gv), va_y)
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    metrics["config"] = asdict(cfg)
    return model, metrics
