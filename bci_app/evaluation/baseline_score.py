"""The linear-baseline row: the bundle's own EEG decoder, scored like the model.

The bundle carries a linear baseline (shrinkage LDA on the same preprocessed windows,
``baseline.safetensors``, trained by ``bci-app train`` on the bundle's training trials,
:meth:`bci_app.models.baseline.LinearBaseline.load`). ``evaluate`` scores it on the same
test trials, with the same N-way draws and the same ground truth as the model, and
reports the paired difference. A bundle without one falls back to a baseline trained
here on the evaluated data's train split, and ``trained_on`` says so plainly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bci_app.evaluation import metrics as M
from bci_app.evaluation.stats import N_PERM, bootstrap_ci, interval

BASELINE_FILE = "baseline.safetensors"


def load_or_fit(bundle_dir: str | Path | None, bundle_config: dict[str, Any] | None,
                X_train: np.ndarray, y_train: np.ndarray, sfreq: float) -> tuple[Any | None, str]:
    """The baseline to score and a sentence saying what it was trained on.

    Returns ``(None, reason)`` when there is neither a bundled baseline nor a train split
    with two classes to fit one on.
    """
    from bci_app.models.baseline import LinearBaseline

    training = (bundle_config or {}).get("training", {}) or {}
    if bundle_dir is not None and (Path(bundle_dir) / BASELINE_FILE).is_file():
        if not hasattr(LinearBaseline, "load"):
            raise RuntimeError(
                f"bundle {bundle_dir} has {BASELINE_FILE} but bci_app.models.baseline.LinearBaseline "
                "has no load(); update bci-app"
            )
        lb = LinearBaseline.load(bundle_dir)
        splits = (training.get("component_images") or {}).get("baseline", ["train"])
        n = ((training.get("data_summary") or {}).get("splits") or {}).get("train")
        return lb, (
            f"the bundle's own baseline ({BASELINE_FILE}), trained by `bci-app train` on the "
            f"{'/'.join(map(str, splits))} split of {training.get('data', '?')!r}"
            + (f" ({n} training trials)" if n else "")
        )
    n_cls = len(np.unique(y_train))
    if n_cls < 2 or len(y_train) <= n_cls:  # shrinkage LDA needs more trials than classes
        return None, (
            f"no baseline: the bundle has no {BASELINE_FILE} and the evaluated data's train split "
            f"has {len(y_train)} trials of {n_cls} class(es), too few to fit one (more trials than "
            "classes, at least 2 classes)"
        )
    lb = LinearBaseline(sfreq=float(sfreq)).fit(X_train, y_train)
    return lb, (
        f"FALLBACK: the bundle has no {BASELINE_FILE}; trained here on the {len(y_train)} train-split "
        "trials of the evaluated data, not on the bundle's training trials (on a small session this "
        "starves the baseline; retrain the bundle with a current `bci-app train` to get its own)"
    )


def class_probs(model, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``predict_proba`` spread over all ``n_classes`` columns (classes it never saw get 0)."""
    p = np.asarray(model.predict_proba(X), dtype=np.float64)
    classes = np.asarray(model.classes_, dtype=np.int64)
    if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
        raise ValueError(
            f"the baseline predicts classes {classes.min()}..{classes.max()} but the data set has "
            f"{n_classes} classes; the bundle and the data must use the same class list"
        )
    out = np.zeros((len(p), n_classes))
    out[:, classes] = p
    return out


def score(model, X_test: np.ndarray, truth: np.ndarray, n_classes: int, *, ways: int, topk: int,
          draws: int, seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """The baseline's row (same N-way protocol, draws and ground truth as the model) and its
    per-trial successes (for the paired difference)."""
    pb = class_probs(model, X_test, n_classes)
    per = M.n_way_top_k_per_trial(pb, truth, ways, topk, draws, rng=seed)
    row = {
        "acc": float(per.mean()),
        "acc_ci": interval(bootstrap_ci(per, rng=seed)),
        "chance": M.n_way_chance(ways, topk),
        "p": M.n_way_permutation_p(pb, truth, ways, topk, n_perm=N_PERM, rng=seed),
        "top1_all_classes": float(np.mean(pb.argmax(axis=1) == truth)),
        "model": (
            f"shrinkage LDA on {getattr(model, 'bin_ms', 0):g} ms time bins "
            "(bci_app.models.baseline.LinearBaseline)"
        ),
    }
    return row, per
