"""Table 3: the ablation rows, as switches of the Reconstructor (no re-implementation).

Each row runs the same trained bundle on the same test trials with the same per-trial
seeds, one of :meth:`~bci_app.models.reconstructor.Reconstructor.reconstruct`'s switches
changed, and is scored against the same ground truth with the same N-way draws; the full
model minus each row is a paired difference (mean, bootstrap CI, sign-flip p).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bci_app.evaluation.runner import run_reconstructor
from bci_app.evaluation.scoring import score_reconstructions
from bci_app.evaluation.stats import paired_difference

#: name -> Reconstructor switches and what the row means (I = saliency start, S = semantics)
ABLATION_ROWS: dict[str, dict[str, Any]] = {
    "I+S (full)": {
        "switches": {},
        "description": "saliency map start + EEG semantic embeddings (the full model)",
    },
    "S only": {
        "switches": {"saliency": False},
        "description": "refiner from a blank grey start (no saliency map) + EEG semantic embeddings",
    },
    "I only": {
        "switches": {"semantics": "none"},
        "description": "refiner from the saliency map with zero (unconditional) embeddings",
    },
    "I, no refiner": {
        "switches": {"refine": False},
        "description": "the saliency map itself, no refinement",
    },
}

_KEYS = ("acc", "acc_ci", "acc_p", "ssim", "ssim_ci")


def _semantics_label(switches: dict[str, Any], captions: str) -> str:
    if switches.get("refine") is False:
        return "none (no refiner)"
    if switches.get("semantics") == "none":
        return "none (zero embeddings)"
    return "B (free caption)" if captions == "free" else "L (label caption)"


def run_ablation(recon, X_te: np.ndarray, seeds: Sequence[int], seen: np.ndarray, truth: np.ndarray,
                 bundle_config: dict[str, Any] | None, *, ways: int, topk: int, draws: int, seed: int,
                 ssim_size: int, batch: int, progress: bool, full: dict[str, Any],
                 full_per: tuple[np.ndarray, np.ndarray],
                 baseline_per: np.ndarray | None = None) -> dict[str, Any]:
    """The ablation table (``metrics["ablation"]``); ``full``/``full_per`` are the full
    model's row and per-trial (accuracy, SSIM), already computed by ``evaluate``;
    ``baseline_per``: the bundled baseline's per-trial N-way successes on the same trials
    and draws (each row gets ``row_minus_baseline``, paired)."""
    def minus_baseline(per_acc: np.ndarray) -> dict[str, Any] | None:
        if baseline_per is None or not np.isfinite(baseline_per).all():
            return None
        return paired_difference(per_acc, baseline_per, seed)

    sem_cfg = (bundle_config or {}).get("training", {}).get("config", {}).get("semantic", {}) or {}
    captions = sem_cfg.get("captions", "label")
    other = "L (label caption)" if captions == "free" else "B (free caption)"
    rows: dict[str, Any] = {}
    for name, spec in ABLATION_ROWS.items():
        sw = spec["switches"]
        entry: dict[str, Any] = {
            "saliency": sw.get("saliency", True),
            "semantics": _semantics_label(sw, captions),
            "switches": dict(sw),
            "description": spec["description"],
        }
        if not sw:
            entry.update({k: full[k] for k in _KEYS})
            entry["row_minus_baseline"] = minus_baseline(full_per[0])
            rows[name] = entry
            continue
        try:
            out = run_reconstructor(recon, X_te, seeds, batch=batch, desc=f"ablation {name}",
                                    progress=progress, **sw)
        except RuntimeError as err:  # e.g. a bundle without a refiner: the row does not exist
            entry.update({"acc": None, "ssim": None, "unavailable": str(err)})
            rows[name] = entry
            continue
        if out.class_probs is None:
            raise RuntimeError(f"ablation row {name!r}: the bundle's classifier gave no scores")
        row, per_acc, per_ssim = score_reconstructions(
            seen, out.images, out.class_probs, truth, ways=ways, topk=topk, draws=draws, seed=seed,
            ssim_size=ssim_size,
        )
        entry.update({k: row[k] for k in _KEYS})
        entry["full_minus_row"] = {
            "acc": paired_difference(full_per[0], per_acc, seed),
            "ssim": paired_difference(full_per[1], per_ssim, seed),
        }
        entry["row_minus_baseline"] = minus_baseline(per_acc)
        rows[name] = entry
    rows[f"{other} + I"] = {
        "saliency": True, "semantics": other, "acc": None, "ssim": None,
        "description": f"needs a bundle whose semantic head was trained on {other} captions "
        f"(train with semantic.captions = '{'label' if captions == 'free' else 'free'}'); this bundle used {captions}",
    }
    return {
        "rows": rows,
        "note": "every row runs the same bundle on the same test trials with the same per-trial seeds, "
        "one Reconstructor switch changed, scored against the same ground truth with the same N-way "
        "draws; full_minus_row: the full model minus the row, per trial (mean, bootstrap CI, one-sided "
        "sign-flip p that the full model is better); row_minus_baseline: the row minus the bundled linear "
        "baseline on the same trials and draws (p: the row is better).",
    }
