"""A small CNN that names the class of a 64x64 image of the demo set (40 classes).

It judges reconstructions (the demo's top-1 quality figure), so it is trained with
augmentations that look like reconstruction errors: blur, low contrast, colour casts,
pixel noise, small shifts. Saved as ``classifier.safetensors`` + a JSON config.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bci_app.models.images import gaussian_blur, stimulus_tensors

CLASSIFIER_WEIGHTS = "classifier.safetensors"
CLASSIFIER_CONFIG = "classifier.json"


class ImageClassifier(nn.Module):
    """Conv net over ``[B, 3, R, R]`` images in [0, 1] -> logits ``[B, n_classes]``.

    Parameters
    ----------
    n_classes : int
    resolution : int
        Input side; other sizes are resized (bilinear, antialiased) in :meth:`forward`.
    width : int
        Channels of the first stage (doubled at each of the 3 stages).
    """

    def __init__(self, n_classes: int = 40, resolution: int = 32, width: int = 24):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.init_kwargs = {
            "n_classes": int(n_classes),
            "resolution": int(resolution),
            "width": int(width),
        }
        self.n_classes, self.resolution = int(n_classes), int(resolution)
        w = int(width)

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(stage(3, w), stage(w, 2 * w), stage(2 * w, 4 * w))
        # Global pooling of both mean and max keeps it position-invariant; the colour
        # statistics get a direct path (mean RGB of the image and of its brightest pixels).
        self.head = nn.Sequential(
            nn.Linear(8 * w + 6, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images [B, 3, H, W] in [0, 1], got {tuple(x.shape)}")
        if x.shape[-2:] != (self.resolution, self.resolution):
            x = F.interpolate(
                x, size=(self.resolution,) * 2, mode="bilinear", antialias=True, align_corners=False
            )
        f = self.features(x * 2 - 1)
        flat = x.flatten(2)
        colour = torch.cat([flat.mean(-1), flat.amax(-1)], 1)
        return self.head(torch.cat([f.mean((2, 3)), f.amax((2, 3)), colour], 1))

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` of uint8 ``[N, H, W, 3]`` images (or float
        ``[N, 3, H, W]`` tensors in [0, 1])."""
        x = to_tensor_images(images)
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        out = [
            F.softmax(self(x[i : i + batch_size].to(dev)), -1).cpu()
            for i in range(0, len(x), batch_size)
        ]
        self.train(was)
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_classes), np.float32)

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.state_dict().items()},
            str(directory / CLASSIFIER_WEIGHTS),
        )
        cfg = {
            "class": "ImageClassifier",
            **self.init_kwargs,
            **({"training": extra} if extra else {}),
        }
        (directory / CLASSIFIER_CONFIG).write_text(json.dumps(cfg, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> ImageClassifier:
        from safetensors.torch import load_file

        directory = Path(directory)
        wpath, cpath = directory / CLASSIFIER_WEIGHTS, directory / CLASSIFIER_CONFIG
        if not wpath.is_file() or not cpath.is_file():
            raise FileNotFoundError(
                f"no image classifier in {str(directory)!r}: expected {CLASSIFIER_WEIGHTS} and "
                f"{CLASSIFIER_CONFIG}; train one with bci_app.models.image_classifier.train_image_classifier"
            )
        cfg = json.loads(cpath.read_text())
        model = cls(**{k: cfg[k] for k in ("n_classes", "resolution", "width")})
        model.load_state_dict(load_file(str(wpath)))
        return model.to(device).eval()


def to_tensor_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` (or ``[H, W, 3]``) arrays -> float ``[N, 3, H, W]`` in [0, 1]."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return images if images.ndim == 4 else images[None]
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected uint8 images [N, H, W, 3], got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0


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


@dataclass
class ClassifierConfig:
    width: int = 24
    resolution: int = 32  # inputs are resized to this inside the model (4x cheaper than 64)
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    val_fraction: float = 0.1
    seed: int = 0


def train_image_classifier(
    stimuli,
    cfg: ClassifierConfig | dict | None = None,
    progress: bool = True,
    device: str = "cpu",
    stim_ids: list[str] | None = None,
) -> tuple[ImageClassifier, dict[str, Any]]:
    """Train :class:`ImageClassifier` on a stimulus set's images (augmented).

    A stratified ``val_fraction`` of the images per class is held out; the returned
    metrics hold ``val_acc`` (clean held-out images), ``val_acc_degraded`` (the same
    images blurred/noised as reconstructions are), ``chance`` and the wall time.
    """
    from tqdm.auto import tqdm

    cfg = cfg if isinstance(cfg, ClassifierConfig) else ClassifierConfig(**(cfg or {}))
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    if stim_ids is not None:
        sub = _Subset(stimuli, stim_ids)
        images, labels = stimulus_tensors(sub, 64)
    else:
        images, labels = stimulus_tensors(stimuli, 64)
    n_classes = int(getattr(stimuli, "n_classes", int(labels.max()) + 1))
    g = torch.Generator().manual_seed(cfg.seed)
    val_mask = torch.zeros(len(labels), dtype=torch.bool)
    for k in labels.unique():
        idx = (labels == k).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_val = int(round(cfg.val_fraction * len(idx)))
        if 0 < n_val < len(idx):
            val_mask[idx[:n_val]] = True
    tr_x, tr_y, va_x, va_y = (
        images[~val_mask],
        labels[~val_mask],
        images[val_mask],
        labels[val_mask],
    )
    model = ImageClassifier(n_classes=n_classes, resolution=cfg.resolution, width=cfg.width).to(
        device
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    model.train()
    for step in tqdm(range(cfg.steps), desc="image classifier", disable=not progress):
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / max(1, cfg.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(tr_x), (min(cfg.batch_size, len(tr_x)),), generator=g)
        x = augment(tr_x[idx], g).to(device)
        loss = F.cross_entropy(model(x), tr_y[idx].to(device), label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    metrics: dict[str, Any] = {
        "chance": 1.0 / n_classes,
        "n_train": len(tr_x),
        "n_val": len(va_x),
        "loss_first": float(np.mean(losses[:10])),
        "loss_last": float(np.mean(losses[-10:])),
    }
    if len(va_x):
        gv = torch.Generator().manual_seed(cfg.seed + 99)
        metrics["val_acc"] = accuracy(model, va_x, va_y)
        metrics["val_acc_degraded"] = accuracy(model, augment(va_x, gv), va_y)
    metrics["train_seconds"] = round(time.perf_counter() - t0, 1)
    metrics["config"] = asdict(cfg)
    return model, metrics


@torch.no_grad()
def accuracy(model: ImageClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    dev = next(model.parameters()).device
    pred = torch.cat(
        [model(x[i : i + 256].to(dev)).argmax(-1).cpu() for i in range(0, len(x), 256)]
    )
    return float((pred == y).float().mean())


class _Subset:
    """A view of a stimulus set restricted to some stimulus ids."""

    def __init__(self, stimuli, stim_ids: list[str]):
        self._s, self.stim_ids = stimuli, list(stim_ids)
        self.n_classes = getattr(stimuli, "n_classes", None)

    def image(self, stim_id: str, size: int | None = None) -> np.ndarray:
        return self._s.image(stim_id, size) if size is not None else self._s.image(stim_id)

    def label(self, stim_id: str) -> int:
        return self._s.label(stim_id)
