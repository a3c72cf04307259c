"""Metrics that need pretrained networks: Inception Score (Inception-v3), AlexNet(2)/(5)
and CLIP two-way identification.

Weights are only ever read from local files (no download is attempted): torchvision's
checkpoint files in ``weights_dir`` or the torch hub folder (``$TORCH_HOME/hub/checkpoints``),
and CLIP from the Hugging Face cache. When a metric cannot be computed it is a
:class:`MetricUnavailable` whose reason says where the weights were looked for and
how to get them; torchvision comes with ``pip install "bci-app[eval]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_app.evaluation.metrics import inception_score_from_probs, two_way_identification
from bci_app.models.ssim import resize_images

__all__ = ["MetricUnavailable", "inception_score", "alexnet_two_way", "clip_two_way"]

# torchvision constructor and checkpoint file patterns of each network
_NETWORKS = {
    "inception_v3": ("inception_v3", ["inception_v3_google-*.pth", "inception_v3*.pth"]),
    "alexnet": ("alexnet", ["alexnet-*.pth", "alexnet*.pth"]),
}


@dataclass
class MetricUnavailable:
    """A metric that could not be computed, and why (written to metrics.json as such)."""

    name: str
    reason: str
    value: None = field(default=None, init=False)

    def to_dict(self) -> dict:
        return {"value": None, "available": False, "reason": self.reason}


def _search_dirs(weights_dir: str | Path | None) -> list[Path]:
    import torch

    dirs = [Path(torch.hub.get_dir()) / "checkpoints"]
    if weights_dir is not None:
        dirs.insert(0, Path(weights_dir))
    return dirs


def _find_checkpoint(patterns: Sequence[str], weights_dir: str | Path | None) -> Path | None:
    for d in _search_dirs(weights_dir):
        if d.is_dir():
            for pat in patterns:
                hits = sorted(d.glob(pat))
                if hits:
                    return hits[0]
    return None


def _torchvision_problem() -> str | None:
    """None when torchvision imports, else what is wrong and how to fix it."""
    import torch

    try:
        import torchvision  # noqa: F401
    except ImportError:
        return ('torchvision is not installed: pip install "bci-app[eval]" (a torchvision built for '
                f"torch {torch.__version__})")
    except Exception as err:  # e.g. a CUDA build of torchvision next to a CPU-only torch
        return (f"torchvision is installed but does not load with torch {torch.__version__} "
                f"({type(err).__name__}: {err}); install the torchvision build made for this torch "
                "(for a '+cpu' torch: the same PyTorch CPU package index)")
    return None


def _torchvision_model(name: str, weights_dir: str | Path | None):
    """A torchvision model with local weights, or a MetricUnavailable saying why not."""
    ctor, patterns = _NETWORKS[name]
    ckpt = _find_checkpoint(patterns, weights_dir)
    problem = _torchvision_problem()
    if ckpt is None:
        where = ", ".join(str(d) for d in _search_dirs(weights_dir))
        reason = (
            f"no local {name} weights ({' or '.join(patterns)}) in {where}; to get them, run "
            f"`python -c \"import torchvision; torchvision.models.{ctor}(weights='DEFAULT')\"` on a "
            "machine with internet and copy the .pth file from its torch hub checkpoints folder into "
            "one of those folders"
        )
        return MetricUnavailable(name, reason + (f" (also: {problem})" if problem else ""))
    if problem is not None:
        return MetricUnavailable(name, f"weights found at {ckpt}, but {problem}")
    import torch
    import torchvision.models as tvm

    try:
        if name == "inception_v3":
            model = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
        else:
            model = getattr(tvm, ctor)(weights=None)
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    except Exception as err:  # a corrupt or mismatched file is reported, not guessed around
        return MetricUnavailable(name, f"could not load {ckpt}: {type(err).__name__}: {err}")
    return model.eval()


_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _to_tensor(images: np.ndarray, size: int):
    import torch

    x = resize_images(np.asarray(images), size).astype(np.float32) / 255.0
    x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


def inception_score(
    images: np.ndarray, splits: int = 1, weights_dir: str | Path | None = None, batch: int = 32
) -> tuple[float, float] | MetricUnavailable:
    """Inception Score of ``uint8 [N, H, W, 3]`` images with Inception-v3 *local* weights.

    Looks for torchvision's ``inception_v3_google-*.pth`` in ``weights_dir`` and the
    torch hub checkpoint folder. Returns :class:`MetricUnavailable` when absent.
    """
    model = _torchvision_model("inception_v3", weights_dir)
    if isinstance(model, MetricUnavailable):
        return model
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            logits = model(_to_tensor(images[i : i + batch], 299))
            out.append(torch.softmax(logits, dim=1).numpy())
    return inception_score_from_probs(np.concatenate(out), splits=splits)


def alexnet_two_way(
    seen: np.ndarray, recon: np.ndarray, weights_dir: str | Path | None = None
) -> dict[str, np.ndarray] | MetricUnavailable:
    """AlexNet(2) and AlexNet(5) two-way identification (features after conv 2 and 5)."""
    model = _torchvision_model("alexnet", weights_dir)
    if isinstance(model, MetricUnavailable):
        return model
    import torch

    # indices of the ReLU after conv2 and conv5 in torchvision's AlexNet.features
    taps = {"alexnet2": 4, "alexnet5": 11}

    def feats(imgs: np.ndarray) -> dict[str, np.ndarray]:
        x = _to_tensor(imgs, 224)
        got: dict[str, np.ndarray] = {}
        with torch.no_grad():
            for idx, layer in enumerate(model.features):
                x = layer(x)
                for key, tap in taps.items():
                    if idx == tap:
                        got[key] = x.flatten(1).numpy()
        return got

    fs, fr = feats(seen), feats(recon)
    return {key: two_way_identification(fr[key], fs[key]) for key in taps}


def clip_two_way(
    seen: np.ndarray, recon: np.ndarray, model_name: str = "openai/clip-vit-base-patch32"
) -> np.ndarray | MetricUnavailable:
    """CLIP image-embedding two-way identification; weights resolved with local_files_only."""
    if not Path(model_name).is_dir():
        # look in the Hugging Face cache first: importing transformers' CLIP costs seconds
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return MetricUnavailable("clip", "huggingface_hub is not installed")
        if not isinstance(try_to_load_from_cache(model_name, "config.json"), str):
            return MetricUnavailable(
                "clip", f"no local CLIP weights for {model_name!r} in the Hugging Face cache (no download is attempted)"
            )
    try:
        import torch
        from transformers import CLIPModel, CLIPProcessor
    except ImportError as err:
        return MetricUnavailable("clip", f"transformers CLIP is not importable: {err}")
    try:
        model = CLIPModel.from_pretrained(model_name, local_files_only=True).eval()
        proc = CLIPProcessor.from_pretrained(model_name, local_files_only=True)
    except Exception as err:
        return MetricUnavailable("clip", f"no local CLIP weights for {model_name!r} ({type(err).__name__})")
    with torch.no_grad():
        fs = model.get_image_features(**proc(images=list(seen), return_tensors="pt")).numpy()
        fr = model.get_image_features(**proc(images=list(recon), return_tensors="pt")).numpy()
    return two_way_identification(fr, fs)
