"""Metrics that need pretrained networks: Inception Score (Inception-v3), AlexNet(2)/(5)
and CLIP two-way identification.

Weights are only ever read from local files (no download is attempted): torchvision's
checkpoint files in ``weights_dir`` or the torch hub folder (``$TORCH_HOME/hub/checkpoints``),
loaded into the plain-torch networks of :mod:`bci_app.evaluation.networks` (torchvision is
not needed), and CLIP from the Hugging Face cache. When a metric cannot be computed it is a
:class:`MetricUnavailable` whose reason says where the weights were looked for and how to
get them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_app.evaluation.metrics import inception_score_from_probs, two_way_identification
from bci_app.models.ssim import resize_images

__all__ = ["MetricUnavailable", "inception_score", "alexnet_two_way", "clip_two_way", "NETWORKS",
           "search_dirs", "find_checkpoint", "CLIP_MODEL", "CLIP_FILES", "missing_clip_files"]

#: checkpoint file patterns of each network (torchvision's files) and where to get them;
#: ``bci-app doctor`` looks for them with :func:`find_checkpoint` too
NETWORKS = {
    "inception_v3": (["inception_v3_google-*.pth", "inception_v3*.pth"],
                     "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"),
    "alexnet": (["alexnet-*.pth", "alexnet*.pth"],
                "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
}


@dataclass
class MetricUnavailable:
    """A metric that could not be computed, and why (written to metrics.json as such)."""

    name: str
    reason: str
    value: None = field(default=None, init=False)

    def to_dict(self) -> dict:
        return {"value": None, "available": False, "reason": self.reason}


def search_dirs(weights_dir: str | Path | None) -> list[Path]:
    """Where the checkpoints are looked for, in order: ``weights_dir``, then
    ``$TORCH_HOME/hub/checkpoints`` (torch's hub folder)."""
    import torch

    dirs = [Path(torch.hub.get_dir()) / "checkpoints"]
    if weights_dir is not None:
        dirs.insert(0, Path(weights_dir))
    return dirs


def find_checkpoint(patterns: Sequence[str], weights_dir: str | Path | None) -> Path | None:
    """The first file matching ``patterns`` in :func:`search_dirs`, or None."""
    for d in search_dirs(weights_dir):
        if d.is_dir():
            for pat in patterns:
                hits = sorted(d.glob(pat))
                if hits:
                    return hits[0]
    return None


def _network(name: str, weights_dir: str | Path | None):
    """A network of :mod:`bci_app.evaluation.networks` with local weights, or a
    MetricUnavailable saying where the weights were looked for and how to get them."""
    patterns, url = NETWORKS[name]
    ckpt = find_checkpoint(patterns, weights_dir)
    if ckpt is None:
        where = ", ".join(str(d) for d in search_dirs(weights_dir))
        return MetricUnavailable(
            name,
            f"no local {name} weights ({' or '.join(patterns)}) in {where}; to get them, download "
            f"{url} on a machine with internet (torchvision's own checkpoint: "
            f"`torchvision.models.{name}(weights='DEFAULT')` saves it to its torch hub checkpoints "
            "folder) and copy the .pth file into one of those folders or pass --weights-dir",
        )
    import torch

    from bci_app.evaluation.networks import AlexNet, InceptionV3

    model = InceptionV3(aux_logits=True, transform_input=True) if name == "inception_v3" else AlexNet()
    try:
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
    model = _network("inception_v3", weights_dir)
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
    model = _network("alexnet", weights_dir)
    if isinstance(model, MetricUnavailable):
        return model
    import torch

    from bci_app.evaluation.networks import ALEXNET_TAPS

    def feats(imgs: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {k: v.numpy() for k, v in model.taps(_to_tensor(imgs, 224)).items()}

    fs, fr = feats(seen), feats(recon)
    return {key: two_way_identification(fr[key], fs[key]) for key in ALEXNET_TAPS}


#: CLIP two-way's model (a Hugging Face id or a local directory) and the files of it that
#: evaluate reads: the image tower's weights and the processor's files
CLIP_MODEL = "openai/clip-vit-base-patch32"
CLIP_FILES = ("config.json", "preprocessor_config.json", "vocab.json", "merges.txt", "model.safetensors")
_OLDER_FILE = {"model.safetensors": "pytorch_model.bin"}  # transformers also loads the older format


def missing_clip_files(model_name: str = CLIP_MODEL) -> tuple[str, list[str]]:
    """Where ``model_name``'s :data:`CLIP_FILES` were looked for (the directory itself, else
    the Hugging Face cache, as ``local_files_only`` loading finds them) and which are missing."""
    if Path(model_name).is_dir():
        where = str(model_name)

        def present(f: str) -> bool:
            return (Path(model_name) / f).is_file()
    else:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        where = f"the Hugging Face cache {HF_HUB_CACHE}"

        def present(f: str) -> bool:
            return isinstance(try_to_load_from_cache(model_name, f), str)

    missing = [f for f in CLIP_FILES if not present(f) and not (f in _OLDER_FILE and present(_OLDER_FILE[f]))]
    return where, missing


def clip_two_way(
    seen: np.ndarray, recon: np.ndarray, model_name: str = CLIP_MODEL
) -> np.ndarray | MetricUnavailable:
    """CLIP image-embedding two-way identification; weights resolved with local_files_only."""
    # the files first: importing transformers' CLIP costs seconds
    try:
        where, missing = missing_clip_files(model_name)
    except ImportError:
        return MetricUnavailable("clip", "huggingface_hub is not installed")
    if missing:
        return MetricUnavailable(
            "clip", f"no local CLIP weights for {model_name!r} in {where}: missing {', '.join(missing)} "
            f"(no download is attempted); `hf download {model_name}` on a machine with internet, then "
            "copy the cache"
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
        return MetricUnavailable("clip", f"could not load CLIP {model_name!r} from {where}: {type(err).__name__}: {err}")
    with torch.no_grad():
        fs = model.get_image_features(**proc(images=list(seen), return_tensors="pt")).numpy()
        fr = model.get_image_features(**proc(images=list(recon), return_tensors="pt")).numpy()
    return two_way_identification(fr, fs)
