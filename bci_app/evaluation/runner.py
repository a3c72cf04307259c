"""Running a Reconstructor over test trials, seeded per trial as the live worker seeds them.

Each trial's seed is :func:`~bci_app.models.reconstructor.trial_seed` of its stimulus id
and onset sample (the data set's ``onset_samples`` when it has them, e.g. a recorded
session, else the trial's position within its subject), with the Reconstructor's own
``seed`` as base: the same trial gives the same image in ``evaluate`` (batches of 32) as
in ``live``/``replay`` (batches of 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Outputs:
    """What one configuration produced on the test trials."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    saliency: np.ndarray | None
    class_probs: np.ndarray | None
    eeg_class_probs: np.ndarray | None = None  # the encoder's read-out, per trial
    caption_probs: np.ndarray | None = None  # the semantic head's caption mixture, per trial


def trial_onsets(ds) -> tuple[np.ndarray, str]:
    """Per-trial onset sample of ``ds`` and where it came from (for metrics.json)."""
    onsets = getattr(ds, "onset_samples", None)
    if onsets is not None and len(onsets) == len(ds.labels):
        return np.asarray(onsets, dtype=np.int64), "the data set's onset samples"
    order = np.zeros(len(ds.labels), dtype=np.int64)
    subjects = np.asarray(ds.subjects)
    for s in np.unique(subjects):  # presentation order within each subject, as stored
        idx = np.flatnonzero(subjects == s)
        order[idx] = np.arange(len(idx))
    return order, "the trial's position within its subject (the data set gives no onset samples)"


def trial_seeds(stim_ids: Sequence[str], onsets: Sequence[int], base_seed: int) -> list[int]:
    """One seed per trial, the same function the live worker uses."""
    from bci_app.models.reconstructor import trial_seed

    return [trial_seed(str(s), int(o), base_seed) for s, o in zip(stim_ids, onsets, strict=True)]


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, unit="batch", leave=False)


def run_reconstructor(recon, X: np.ndarray, seeds: Sequence[int], *, batch: int = 32,
                      desc: str = "reconstruct", progress: bool = False,
                      **switches: Any) -> Outputs:
    """``recon.reconstruct(X[a:b], seeds=seeds[a:b], **switches)`` over batches, stacked.

    ``switches`` are the Reconstructor's ablation switches (``saliency``, ``semantics``,
    ``refine``); class probabilities come from the Reconstruction when it has them, else
    from ``recon.classify_images`` on the images.
    """
    if len(seeds) != len(X):
        raise ValueError(f"need one seed per trial: {len(seeds)} seeds for {len(X)} trials")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    imgs, sals, probs = [], [], []
    diag: dict[str, list] = {"eeg_class_probs": [], "caption_probs": []}
    starts = range(0, len(X), batch)
    for a in _progress(starts, len(starts), desc, progress):
        for r in recon.reconstruct(X[a : a + batch], seeds=list(seeds[a : a + batch]), **switches):
            imgs.append(np.asarray(r.image))
            sals.append(None if getattr(r, "saliency", None) is None else np.asarray(r.saliency))
            probs.append(getattr(r, "class_probs", None))
            for key, got in diag.items():
                got.append(getattr(r, key, None))
    images = np.stack(imgs)
    sal = None if any(s is None for s in sals) else np.stack(sals)
    if any(p is None for p in probs):
        cp = recon.classify_images(images)
        cp = None if cp is None else np.asarray(cp, dtype=np.float64)
    else:
        cp = np.stack([np.asarray(p, dtype=np.float64) for p in probs])
    extra = {key: None if any(v is None for v in got) else np.stack(got).astype(np.float64)
             for key, got in diag.items()}
    return Outputs(images, sal, cp, **extra)
