"""Evaluation metrics of the seed paper and of later EEG-to-image work.

Everything here works on plain arrays so it can be checked against hand-computed
cases. The figures are:

- **N-way top-k** (the seed paper, after MinD-Vis): a pretrained classifier scores the
  reconstruction; a trial is a success when the seen image's class is among the top
  ``k`` of the reconstruction's scores restricted to ``N`` classes drawn at random
  (the true class plus ``N - 1`` others). Averaged over ``draws`` random draws per
  trial. Chance level is ``k / N``. Ties count *against* the trial (a classifier that
  outputs a constant gets 0, not 1), see :func:`n_way_top_k_per_trial`.
- **SSIM** (Wang et al. 2004): 11x11 gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, data range 255, computed on RGB channels after resizing both images to
  a stated square resolution, averaged over channels and windows ("valid" windows
  only, no padding).
- **Pixel correlation**: Pearson correlation of the flattened pixels of each pair.
- **Inception Score**: Inception-v3 with *local* weights only; otherwise ``None``
  together with the reason. Never computed from another network.
- **Two-way identification** (CLIP image features, AlexNet layers 2 and 5): the
  fraction of (i, j != i) pairs for which the reconstruction ``i`` correlates more
  with its own seen image than with seen image ``j``. Chance is 0.5.
- Confidence intervals: Wilson (binomial proportions) and percentile bootstrap
  (means of per-trial scores); one-sided permutation p-values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from bci_app.models.ssim import resize_images, ssim, ssim_batch  # noqa: F401  (one SSIM, shared with the live report)

log = logging.getLogger(__name__)

__all__ = [
    "check_split_disjoint",
    "n_way_top_k_per_trial",
    "n_way_top_k",
    "n_way_top_k_expected",
    "n_way_chance",
    "n_way_permutation_p",
    "wilson_ci",
    "bootstrap_ci",
    "permutation_p_value",
    "ssim",
    "ssim_batch",
    "shuffled_pair_null",
    "resize_images",
    "pixel_correlation",
    "two_way_identification",
    "inception_score_from_probs",
    "MetricUnavailable",
    "inception_score",
    "clip_two_way",
    "alexnet_two_way",
]


# ----------------------------------------------------------------------------- splits
def check_split_disjoint(
    train_ids: Sequence[str],
    test_ids: Sequence[str],
    val_ids: Sequence[str] | None = None,
) -> None:
    """Raise ``ValueError`` when any stimulus (image) id is in more than one split.

    Splits must be *by image*: the same image seen in training and in test lets a
    model score by recognising the image's EEG trace rather than decoding content.
    """
    parts = {"train": set(map(str, train_ids)), "test": set(map(str, test_ids))}
    if val_ids is not None:
        parts["val"] = set(map(str, val_ids))
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = parts[a] & parts[b]
            if shared:
                example = sorted(shared)[:5]
                raise ValueError(
                    f"split is not disjoint by image: {len(shared)} image id(s) are in both "
                    f"'{a}' and '{b}' (e.g. {example}); expected every image in exactly one "
                    "split - split the data by image, not by trial"
                )


# ----------------------------------------------------------------------------- N-way top-k
def _check_probs_labels(probs: np.ndarray, labels: np.ndarray, ways: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [n_trials, n_classes], got shape {probs.shape}")
    n, c = probs.shape
    if labels.shape != (n,):
        raise ValueError(f"true_labels must have shape ({n},) to match probs, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError("true_labels must be integer class indices")
        labels = labels.astype(np.int64)
    if n and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"true_labels must be in 0..{c - 1}, got range {labels.min()}..{labels.max()}")
    if not 2 <= ways <= c:
        raise ValueError(f"ways must be in 2..{c} (the number of classes), got {ways}")
    if not 1 <= k < ways:
        raise ValueError(f"topk must be in 1..{ways - 1} for {ways}-way, got {k}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contain NaN or inf")
    return probs, labels.astype(np.int64)


def _n_beating(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per trial: how many *other* classes score >= the true class (ties count against)."""
    true_score = probs[np.arange(len(labels)), labels]
    return (probs >= true_score[:, None]).sum(axis=1) - 1


def n_way_top_k_per_trial(
    probs_recon: np.ndarray,
    true_labels: np.ndarray,
    ways: int = 50,
    k: int = 1,
    draws: int = 100,
    rng: np.random.Generator | int | None = 0,
) -> np.ndarray:
    """Per-trial N-way top-k success rate, averaged over ``draws`` random class draws.

    Parameters
    ----------
    probs_recon : ndarray [n_trials, n_classes]
        Classifier scores (probabilities or logits) of each reconstruction.
    true_labels : ndarray [n_trials]
        Class of the seen image (the seed paper takes the classifier's top-1 on the
        seen image; the caller decides).
    ways : int
        N: classes per draw, the true class included. ``2 <= ways <= n_classes``.
    k : int
        Success when the true class ranks within the top ``k`` of the N.
    draws : int
        Random draws of the ``N - 1`` distractor classes per trial.
    rng : Generator, int seed or None

    Returns
    -------
    ndarray [n_trials] of floats in [0, 1]: the fraction of draws that succeeded.

    Notes
    -----
    A distractor whose score *equals* the true class's score counts as ranking above it,
    so ties never help: uniform scores give 0.
    """
    probs, labels = _check_probs_labels(probs_recon, true_labels, ways, k)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(rng)
    n, c = probs.shape
    out = np.zeros(n, dtype=np.float64)
    for i in range(n):
        y = labels[i]
        others = np.delete(np.arange(c), y)
        beats = probs[i, others] >= probs[i, y]  # [c - 1]
        # draws x (ways - 1) distinct distractors: argsort of uniform noise = random subsets
        picks = np.argsort(rng.random((draws, c - 1)), axis=1)[:, : ways - 1]
        n_above = beats[picks].sum(axis=1)
        out[i] = np.mean(n_above < k)
    return out


def n_way_top_k(
    probs_recon: np.ndarray,
    true_labels: np.ndarray,
    ways: int = 50,
    k: int = 1,
    draws: int = 100,
    rng: np.random.Generator | int | None = 0,
) -> float:
    """Mean N-way top-k accuracy over trials (see :func:`n_way_top_k_per_trial`)."""
    per = n_way_top_k_per_trial(probs_recon, true_labels, ways, k, draws, rng)
    return float(per.mean()) if per.size else float("nan")


def n_way_top_k_expected(
    probs_recon: np.ndarray, true_labels: np.ndarray, ways: int = 50, k: int = 1
) -> np.ndarray:
    """Exact per-trial expectation of the N-way top-k success over infinitely many draws.

    With ``m`` of the ``C - 1`` other classes scoring >= the true class, the number of
    them among ``N - 1`` random distractors is hypergeometric, and success is
    ``P(X <= k - 1)``. This is the limit of :func:`n_way_top_k_per_trial` and is used
    for the permutation test (no Monte-Carlo noise).
    """
    probs, labels = _check_probs_labels(probs_recon, true_labels, ways, k)
    c = probs.shape[1]
    m = _n_beating(probs, labels)
    return stats.hypergeom.cdf(k - 1, c - 1, m, ways - 1)


def n_way_chance(ways: int, k: int = 1) -> float:
    """Chance level of N-way top-k: ``k / N``."""
    return k / ways


def n_way_permutation_p(
    probs_recon: np.ndarray,
    true_labels: np.ndarray,
    ways: int,
    k: int = 1,
    n_perm: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> float:
    """One-sided permutation p-value of the N-way top-k accuracy.

    The null pairs reconstructions with the labels of other trials (labels shuffled
    across trials), which keeps the classifier's biases (a classifier that always says
    "class 3" on a set rich in class 3 is not credited). Uses the exact expectation.
    """
    probs, labels = _check_probs_labels(probs_recon, true_labels, ways, k)
    observed = float(n_way_top_k_expected(probs, labels, ways, k).mean())
    rng = np.random.default_rng(rng)
    null = np.empty(n_perm)
    for b in range(n_perm):
        null[b] = n_way_top_k_expected(probs, rng.permutation(labels), ways, k).mean()
    return permutation_p_value(observed, null)


# ----------------------------------------------------------------------------- statistics
def wilson_ci(successes: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``."""
    if n <= 0:
        return (float("nan"), float("nan"))
    z = stats.norm.ppf(1 - alpha / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = 2000,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling trials)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(rng)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided p-value ``(1 + #(null >= observed)) / (1 + n_null)`` (never 0)."""
    null = np.asarray(null, dtype=np.float64).ravel()
    # tolerance: floating sums of the same values in another order differ in the last bits
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size))


def shuffled_pair_null(
    seen: np.ndarray,
    recon: np.ndarray,
    score_fn,
    n_pairs: int = 2000,
    n_null: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, np.ndarray]:
    """Chance level of a pairwise image score: reconstructions paired with *other* seen images.

    Scores ``n_pairs`` random mismatched pairs ``(seen_j, recon_i)``, ``i != j``, with
    ``score_fn(seen_stack, recon_stack) -> [n]``. Returns the mismatched mean (the chance
    level) and ``n_null`` means of ``N`` mismatched scores resampled from them (the null
    distribution of a mean over ``N`` trials, for :func:`permutation_p_value`).
    """
    n = len(seen)
    if n < 2:
        raise ValueError("a shuffled-pair chance level needs at least 2 trials")
    rng = np.random.default_rng(rng)
    i = rng.integers(0, n, n_pairs)
    j = (i + rng.integers(1, n, n_pairs)) % n  # j != i
    scores = np.asarray(score_fn(seen[j], recon[i]), dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    null = scores[rng.integers(0, len(scores), (n_null, n))].mean(axis=1)
    return float(scores.mean()), null


def pixel_correlation(seen: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Per-pair Pearson correlation of the flattened pixels (same shapes, ``[N, ...]``)."""
    x = np.asarray(seen, dtype=np.float64).reshape(len(seen), -1)
    y = np.asarray(recon, dtype=np.float64).reshape(len(recon), -1)
    if x.shape != y.shape:
        raise ValueError(f"seen and reconstructed stacks differ: {x.shape} vs {y.shape}")
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x * y).sum(axis=1) / den
    return np.where(den > 0, r, np.nan)


def two_way_identification(feat_recon: np.ndarray, feat_seen: np.ndarray) -> np.ndarray:
    """Per-trial two-way identification from features (pixels, CLIP, AlexNet layers).

    For reconstruction ``i``: the fraction of ``j != i`` with
    ``corr(recon_i, seen_i) > corr(recon_i, seen_j)`` (ties count half). Chance 0.5.
    """
    r = np.asarray(feat_recon, dtype=np.float64).reshape(len(feat_recon), -1)
    s = np.asarray(feat_seen, dtype=np.float64).reshape(len(feat_seen), -1)
    if r.shape != s.shape:
        raise ValueError(f"feature stacks differ: {r.shape} vs {s.shape}")
    n = len(r)
    if n < 2:
        raise ValueError("two-way identification needs at least 2 trials")
    r = r - r.mean(axis=1, keepdims=True)
    s = s - s.mean(axis=1, keepdims=True)
    r /= np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    s /= np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)
    corr = r @ s.T  # [recon, seen]
    own = np.diag(corr)[:, None]
    wins = (own > corr).astype(float) + 0.5 * (own == corr)
    np.fill_diagonal(wins, 0.0)
    return wins.sum(axis=1) / (n - 1)


def inception_score_from_probs(probs: np.ndarray, splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))`` from class probabilities.

    Returns ``(mean, std)`` over ``splits`` equal chunks (std 0 for one split).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must be a non-empty [N, n_classes] array, got shape {p.shape}")
    if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs must be non-negative rows summing to 1 (softmax outputs)")
    if not 1 <= splits <= len(p):
        raise ValueError(f"splits must be in 1..{len(p)}, got {splits}")
    scores = []
    for chunk in np.array_split(p, splits):
        py = chunk.mean(axis=0, keepdims=True)
        kl = (chunk * (np.log(chunk + eps) - np.log(py + eps))).sum(axis=1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------- pretrained-feature metrics
@dataclass
class MetricUnavailable:
    """A metric that could not be computed, and why (written to metrics.json as such)."""

    name: str
    reason: str
    value: None = field(default=None, init=False)

    def to_dict(self) -> dict:
        return {"value": None, "available": False, "reason": self.reason}


def _torch_hub_checkpoint(patterns: Sequence[str], weights_dir: str | Path | None) -> Path | None:
    import torch

    dirs = []
    if weights_dir is not None:
        dirs.append(Path(weights_dir))
    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    for d in dirs:
        if not d.is_dir():
            continue
        for pat in patterns:
            hits = sorted(d.glob(pat))
            if hits:
                return hits[0]
    return None


def _searched(weights_dir: str | Path | None) -> str:
    import torch

    places = [str(Path(torch.hub.get_dir()) / "checkpoints")]
    if weights_dir is not None:
        places.insert(0, str(weights_dir))
    return ", ".join(places)


def _torchvision_model(name: str, patterns: Sequence[str], weights_dir: str | Path | None):
    """A torchvision model with local weights, or a MetricUnavailable saying why not."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return MetricUnavailable(name, f"torchvision is not installed (needed for the {name} network)")
    ckpt = _torch_hub_checkpoint(patterns, weights_dir)
    if ckpt is None:
        return MetricUnavailable(
            name, f"no local {name} weights ({' or '.join(patterns)}) in {_searched(weights_dir)}"
        )
    import torch
    import torchvision.models as tvm

    try:
        if name == "inception_v3":
            model = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
        else:
            model = getattr(tvm, name)(weights=None)
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    except Exception as err:  # a corrupt or mismatched file is reported, not guessed around
        return MetricUnavailable(name, f"could not load {ckpt}: {err}")
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
    model = _torchvision_model("inception_v3", ["inception_v3_google-*.pth", "inception_v3*.pth"], weights_dir)
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
    model = _torchvision_model("alexnet", ["alexnet-*.pth", "alexnet*.pth"], weights_dir)
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
