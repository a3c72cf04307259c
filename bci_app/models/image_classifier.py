"""A small CNN that names the class of a 64x64 image of the demo set (40 classes).

It judges reconstructions (the demo's top-1 quality figure); its training, with
augmentations that look like reconstruction errors, is in
:mod:`bci_app.training.classifier`. Saved as ``classifier.safetensors`` + a JSON config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bci_app.file_errors import reading

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
                f"{CLASSIFIER_CONFIG}; train one with bci_app.training.classifier.train_image_classifier"
            )
        with reading(cpath, "the image classifier's JSON config"):
            cfg = json.loads(cpath.read_text())
        model = cls(**{k: cfg[k] for k in ("n_classes", "resolution", "width")})
        with reading(wpath, "the image classifier's safetensors weights"):
            state = load_file(str(wpath))
        model.load_state_dict(state)
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
