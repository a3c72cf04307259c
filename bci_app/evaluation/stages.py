"""Where the image path loses what the EEG decoder knows: decoder -> caption -> drawing.

The same test trials are read at three points of the model, each against the same ground
truth with the same N-way draws as every other row:

- ``decoder``: the encoder's class read-out (``encoder_head``), what the EEG side decodes;
- ``caption``: the semantic head's caption mixture (prototype ``k`` is class ``k``'s
  caption), the caption the refiner is guided by;
- ``drawing``: the image classifier on the reconstruction (the model's figure).

and chained trial by trial on all-class top-1: how often the caption keeps a right
decoding, and how often the drawing shows a right caption. The step with the largest
loss is named in ``lost_most_at``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bci_app.evaluation import metrics as M
from bci_app.evaluation.stats import bootstrap_ci, interval

_WHAT = {
    "decoder": "the encoder's class read-out of the EEG window",
    "caption": "the semantic head's most probable caption (the refiner's guidance)",
    "drawing": "the image classifier on the reconstruction (the model's N-way figure)",
}


def _conditional(num: np.ndarray, given: np.ndarray) -> dict[str, Any]:
    n = int(given.sum())
    return {"rate": float(num[given].mean()) if n else None, "n": n}


def stage_diagnostics(stage_probs: dict[str, np.ndarray | None], truth: np.ndarray, *, ways: int,
                      topk: int, draws: int, seed: int) -> dict[str, Any]:
    """``stage_probs``: ``{"decoder", "caption", "drawing"}`` -> scores ``[N, n_classes]``
    (``None`` where the bundle has no such stage). Returns ``metrics["stages"]``."""
    truth = np.asarray(truth, dtype=np.int64)
    rows: dict[str, Any] = {}
    right: dict[str, np.ndarray] = {}
    for name in ("decoder", "caption", "drawing"):
        p = stage_probs.get(name)
        if p is None:
            rows[name] = {"acc": None, "what": _WHAT[name], "unavailable": "the bundle has no such read-out"}
            continue
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (len(truth), p.shape[1]) or p.shape[1] <= int(truth.max()):
            rows[name] = {"acc": None, "what": _WHAT[name],
                          "unavailable": f"{p.shape[1]} scores per trial for classes up to {int(truth.max())}"}
            continue
        per = M.n_way_top_k_per_trial(p, truth, ways, topk, draws, rng=seed)
        right[name] = p.argmax(axis=1) == truth
        rows[name] = {"acc": float(per.mean()), "acc_ci": interval(bootstrap_ci(per, rng=seed)),
                      "top1_all_classes": float(right[name].mean()), "what": _WHAT[name]}
    chain: dict[str, Any] = {}
    if "decoder" in right and "caption" in right:
        chain["caption_right_given_decoder_right"] = _conditional(right["caption"], right["decoder"])
        chain["caption_right_given_decoder_wrong"] = _conditional(right["caption"], ~right["decoder"])
    if "caption" in right and "drawing" in right:
        chain["drawing_right_given_caption_right"] = _conditional(right["drawing"], right["caption"])
        chain["drawing_right_given_caption_wrong"] = _conditional(right["drawing"], ~right["caption"])
    steps = [(a, b) for a, b in (("decoder", "caption"), ("caption", "drawing")) if a in right and b in right]
    losses = {f"{a}->{b}": float(right[a].mean() - right[b].mean()) for a, b in steps}
    return {
        "rows": rows,
        "chain": chain,
        "top1_lost": losses,
        "lost_most_at": max(losses, key=losses.get) if losses else None,
        "note": ("acc: N-way top-k with the same draws and ground truth as every other row; chain and "
                 "top1_lost: all-class top-1 (argmax), trial by trial"),
    }
