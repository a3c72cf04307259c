"""Evaluation metrics of the seed paper and of later EEG-to-image work, on plain arrays.

- **N-way top-k** (the seed paper, after MinD-Vis): a classifier scores the
  reconstruction; a trial is a success when the ground-truth class is among the top
  ``k`` of the reconstruction's scores restricted to ``N`` classes drawn at random
  (the true class plus ``N - 1`` others). Averaged over ``draws`` random draws per
  trial. Chance level is ``k / N``. Ties count *against* the trial (a classifier that
  outputs a constant gets 0, not 1), see :func:`n_way_top_k_per_trial`. The draws
  depend only on the seed, the ground truth and the number of classes, so two rows
  scored with the same seed on the same trials use the same draws.
- **Pixel correlation**: Pearson correlation of the flattened pixels of each pair.
- **Two-way identification** (pixels, CLIP, AlexNet layers): the fraction of
  (i, j != i) pairs for which the reconstruction ``i`` correlates more with its own
  seen image than with seen image ``j``. Chance is 0.5.
- **Inception Score** from class probabilities (the network: :mod:`.pretrained`).

SSIM is :mod:`bci_app.models.ssim` (one definition for every figure); intervals and
p-values are :mod:`bci_app.evaluation.stats`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from bci_app.evaluation.stats import permutation_p_value

__all__ = [
    "n_way_top_k_per_trial",
    "n_way_top_k",
    "n_way_top_k_expected",
    "n_way_chance",
    "n_way_permutation_p",
    "pixel_correlation",
    "two_way_identification",
    "inception_score_from_probs",
]


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


# ----------------------------------------------------------------------------- image scores
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
