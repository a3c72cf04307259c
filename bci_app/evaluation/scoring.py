"""Scoring one configuration on the test trials: N-way top-k and SSIM, with CIs, chance, p.

Every row of every table (the model, the ablation rows, per subject) is scored here
against one ground truth per trial and with the same N-way draws (same seed, same
trials), so rows can be paired trial by trial.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bci_app.evaluation import metrics as M
from bci_app.evaluation.stats import N_PERM, bootstrap_ci, interval, pair_stat
from bci_app.models.ssim import ssim_batch


def score_reconstructions(
    seen: np.ndarray,
    recon: np.ndarray,
    probs_recon: np.ndarray,
    truth: np.ndarray,
    *,
    ways: int,
    topk: int,
    draws: int,
    seed: int,
    ssim_size: int,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The row of one configuration and its per-trial N-way successes and SSIMs.

    ``seen``/``recon``: uint8 ``[N, H, W, 3]``; ``probs_recon``: the classifier's scores
    of the reconstructions ``[N, n_classes]``; ``truth``: the ground-truth class per trial.
    """
    per_acc = M.n_way_top_k_per_trial(probs_recon, truth, ways, topk, draws, rng=seed)
    per_ssim = ssim_batch(seen, recon, ssim_size)
    ssim_stat = pair_stat(seen, recon, per_ssim, lambda s, r: ssim_batch(s, r, ssim_size), seed)
    row = {
        "acc": float(per_acc.mean()),
        "acc_ci": interval(bootstrap_ci(per_acc, rng=seed)),
        "acc_p": M.n_way_permutation_p(probs_recon, truth, ways, topk, n_perm=N_PERM, rng=seed),
        "ssim": ssim_stat["value"],
        "ssim_ci": ssim_stat["ci"],
        "ssim_chance": ssim_stat["chance"],
        "ssim_p": ssim_stat["p"],
    }
    return row, per_acc, per_ssim
