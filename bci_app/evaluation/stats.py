"""Intervals, p-values and paired differences for the evaluation tables (scipy.stats).

- :func:`wilson_ci`: Wilson score interval of a binomial proportion
  (``scipy.stats.binomtest(...).proportion_ci(method="wilson")``).
- :func:`bootstrap_ci`: percentile bootstrap interval of a mean of per-trial scores
  (``scipy.stats.bootstrap``).
- :func:`sign_flip_p`: one-sided p that per-trial values have a mean above 0, by random
  sign flips (``scipy.stats.permutation_test`` with ``permutation_type="samples"``).
- :func:`paired_difference`: ``a - b`` on the same trials: mean, bootstrap CI and
  sign-flip p, the question two overlapping per-configuration CIs cannot answer.
- :func:`permutation_p_value` and :func:`shuffled_pair_null`: p against a null
  distribution the caller builds (label shuffles, mismatched image pairs).

Every random draw takes a seed, so the same inputs give the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

N_PERM = 1000
N_BOOT = 2000


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None for None/NaN/inf (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def interval(ci: tuple[float, float]) -> list[float | None]:
    """A CI as the JSON list ``[lo, hi]``."""
    return [finite_or_none(ci[0]), finite_or_none(ci[1])]


def wilson_ci(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of the proportion ``successes / n``."""
    if n <= 0:
        return (float("nan"), float("nan"))
    if successes != int(successes) or not 0 <= successes <= n:
        raise ValueError(f"successes must be an integer in 0..{n}, got {successes}")
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=1 - alpha, method="wilson")
    return (float(ci.low), float(ci.high))


def bootstrap_ci(
    values: np.ndarray,
    n_boot: int = N_BOOT,
    alpha: float = 0.05,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling trials).

    Non-finite values are left out; one value gives ``(v, v)``, none ``(nan, nan)``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"), float("nan"))
    if v.size == 1 or np.all(v == v[0]):
        return (float(v[0]), float(v[0]))
    res = stats.bootstrap(
        (v,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha, method="percentile",
        vectorized=True, random_state=np.random.default_rng(rng),
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """One-sided p-value ``(1 + #(null >= observed)) / (1 + n_null)`` (never 0)."""
    null = np.asarray(null, dtype=np.float64).ravel()
    # tolerance: floating sums of the same values in another order differ in the last bits
    return float((1 + np.sum(null >= observed - 1e-12)) / (1 + null.size))


def sign_flip_p(d: np.ndarray, n_perm: int = N_PERM, seed: int = 0) -> float:
    """One-sided p that the mean of per-trial values ``d`` is above 0 (random sign flips;
    exact when ``2 ** len(d) <= n_perm``)."""
    d = np.asarray(d, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("sign_flip_p needs at least one per-trial value")
    if np.all(d == 0):
        return 1.0
    res = stats.permutation_test(
        (d,), lambda x, axis=-1: np.mean(x, axis=axis), permutation_type="samples",
        n_resamples=n_perm, alternative="greater", vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    return float(res.pvalue)


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Mean of the per-trial differences ``a - b`` (same trials), its bootstrap CI and the
    one-sided sign-flip p of ``a > b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"paired_difference needs two equal-length 1-D per-trial arrays, got {np.shape(a)} and "
            f"{np.shape(b)}; score both configurations on the same trials"
        )
    d = a - b
    return {"diff": float(d.mean()), "ci": interval(bootstrap_ci(d, rng=seed)), "p": sign_flip_p(d, seed=seed)}


def shuffled_pair_null(
    seen: np.ndarray,
    recon: np.ndarray,
    score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_pairs: int = 2000,
    n_null: int = 1000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[float, np.ndarray]:
    """Chance level of a pairwise image score: reconstructions paired with *other* seen images.

    Scores ``n_pairs`` random mismatched pairs ``(seen_j, recon_i)``, ``i != j`` (every
    such pair when there are no more than ``n_pairs``), with
    ``score_fn(seen_stack, recon_stack) -> [n]``. Returns the mismatched mean (the chance
    level) and ``n_null`` means of ``N`` mismatched scores resampled from them (the null
    distribution of a mean over ``N`` trials, for :func:`permutation_p_value`).
    """
    n = len(seen)
    if n < 2:
        raise ValueError(f"a shuffled-pair chance level needs at least 2 trials, got {n}")
    rng = np.random.default_rng(rng)
    if n * (n - 1) <= n_pairs:  # few trials: all mismatched pairs, an exact chance level
        i, j = np.nonzero(~np.eye(n, dtype=bool))
    else:
        i = rng.integers(0, n, n_pairs)
        j = (i + rng.integers(1, n, n_pairs)) % n  # j != i
    scores = np.asarray(score_fn(seen[j], recon[i]), dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    null = scores[rng.integers(0, len(scores), (n_null, n))].mean(axis=1)
    return float(scores.mean()), null


def pair_stat(seen: np.ndarray, recon: np.ndarray, per: np.ndarray,
              score_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], seed: int,
              n_pairs: int = 2000) -> dict[str, Any]:
    """Mean, bootstrap CI, shuffled-pair chance level and p of a pairwise image score."""
    if len(seen) >= 2:
        chance, null = shuffled_pair_null(seen, recon, score_fn, n_pairs=n_pairs, rng=seed)
    else:
        chance, null = float("nan"), np.zeros(0)
    value = float(np.nanmean(per)) if len(per) else float("nan")
    return {
        "value": finite_or_none(value),
        "ci": interval(bootstrap_ci(per, rng=seed)),
        "chance": finite_or_none(chance),
        "p": finite_or_none(permutation_p_value(value, null)) if len(null) else None,
    }
