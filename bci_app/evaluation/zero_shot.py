"""Zero-shot figures of ``bci-app evaluate``: test trials of the classes the bundle held out of
every component (``training.holdout_classes``, see ``bci-app train --holdout-classes``).

The protocol of THINGS-EEG2 papers (ATM, UBP, NeuroBridge), on single trials:

- ``retrieval_top1`` / ``retrieval_top5``: the cosine between the semantic head's predicted
  caption embedding (its own prediction, eq. 7: temperature 1, whatever sharpening the refiner's
  guidance is sampled with) and the label-caption embeddings of the held-out classes (the
  bundle's text encoder); a trial is right when its class's caption is among the ``k`` most
  similar, all held-out classes being the candidates.
- ``recon_acc``: the judge (the bundle's image classifier) on the reconstruction, its scores
  restricted to the held-out classes; right when the true class scores highest.

Each with its chance level (``k`` over the number of held-out classes), a bootstrap 95 %
interval and a label-permutation p (:mod:`bci_app.evaluation.stats`,
:func:`bci_app.evaluation.metrics.n_way_permutation_p`). Which components were trained on a
held-out class is read from ``training.component_classes``: only the judge may be (it learns
them from rendered instances, none of them a test image), and the figures say so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bci_app.evaluation import metrics as M
from bci_app.evaluation.report_html import GridRow, add_section, zero_shot_section
from bci_app.evaluation.runner import run_reconstructor, trial_onsets, trial_seeds
from bci_app.evaluation.split import bundle_split_images, holdout_classes
from bci_app.evaluation.stats import N_PERM, bootstrap_ci, interval

#: components that must never have trained on a held-out class (the judge is not one)
MODEL_COMPONENTS = ("encoder", "generator", "semantic", "refiner", "baseline")


def holdout_trials(ds, bundle_config: dict[str, Any] | None) -> tuple[list[str], np.ndarray]:
    """The held-out classes known to the data (in the data's class order) and the trials of
    them whose image the bundle neither trained nor validated on."""
    held = set(holdout_classes(bundle_config))
    names = list(ds.class_names)
    classes = [c for c in names if c in held]
    rec = bundle_split_images(bundle_config)
    seen = (rec.get("train", set()) | rec.get("val", set())) if rec is not None else None
    test = set(np.asarray(ds.splits.get("test", []), dtype=np.int64).tolist())
    labels = np.asarray(ds.labels)
    idx = [i for i in range(len(labels)) if names[labels[i]] in held
           and (str(ds.stim_ids[i]) not in seen if seen is not None else i in test)]
    return classes, np.asarray(idx, dtype=np.int64)


def top_k_rate(scores: np.ndarray, truth: np.ndarray, k: int, seed: int = 0) -> dict[str, Any]:
    """Top-``k`` of ``truth`` among all candidates (the columns of ``scores [N, H]``; ties
    count against): value, chance ``k / H``, bootstrap CI, label-permutation p."""
    ways = scores.shape[1]
    if not 1 <= k < ways:
        return {"value": None, "unavailable": f"top-{k} needs more than {k} held-out classes, there are {ways}"}
    per = M.n_way_top_k_per_trial(scores, truth, ways, k, draws=1)  # every candidate: nothing to draw
    return {"value": float(per.mean()), "chance": k / ways, "ci": interval(bootstrap_ci(per, rng=seed)),
            "p": M.n_way_permutation_p(scores, truth, ways, k, n_perm=N_PERM, rng=seed), "ways": ways}


def retrieval(pred: torch.Tensor, candidates: torch.Tensor, truth: np.ndarray, seed: int = 0
              ) -> tuple[dict[str, Any], np.ndarray]:
    """``{"retrieval_top1", "retrieval_top5"}`` of predicted embeddings ``pred [N, L, D]``
    against ``candidates [H, L, D]`` (``truth [N]``: the right candidate of each trial) and
    the cosines ``[N, H]``."""
    cos = (torch.nn.functional.normalize(pred.flatten(1).double(), dim=1)
           @ torch.nn.functional.normalize(candidates.flatten(1).double(), dim=1).T).numpy()
    truth = np.asarray(truth, dtype=np.int64)
    return {f"retrieval_top{k}": top_k_rate(cos, truth, k, seed) for k in (1, 5)}, cos


@torch.no_grad()
def predicted_embeddings(recon, X: np.ndarray, batch: int = 64) -> torch.Tensor:
    """The semantic head's caption embeddings ``[N, L, D]`` of windows ``X``: its own prediction
    (temperature 1), not the sharpened mixture the refiner is guided by (a sampling setting,
    chosen for the drawings)."""
    from bci_app.models.semantic import SemanticHead

    head = recon.semantic
    out = []
    for a in range(0, len(X), batch):
        x = torch.as_tensor(np.asarray(X[a : a + batch])).to(recon.device, recon.dtype)
        feats = recon.encoder(x)
        emb = head.embed(feats, temperature=1.0)[0] if isinstance(head, SemanticHead) else head(feats)
        out.append(emb.float().cpu())
    return torch.cat(out)


def caption_embeddings(bundle_config: dict[str, Any], captions: list[str]) -> torch.Tensor:
    """``captions`` embedded by the bundle's text encoder (``semantic.text_encoder``)."""
    from bci_app.models.text import build_text_encoder

    te_cfg = (bundle_config.get("semantic") or {}).get("text_encoder")
    if not te_cfg:
        raise ValueError("the bundle records no semantic.text_encoder: zero-shot retrieval needs the text "
                         "encoder its semantic head was trained against")
    return build_text_encoder(te_cfg).encode(captions).float()


def _exposure(bundle_config: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """Which components were trained on a held-out class, from ``training.component_classes``."""
    training = bundle_config.get("training") or {}
    rec = training.get("component_classes") or {}
    held = set(classes)
    seen = {c: sorted(held & set(v)) for c, v in rec.items() if isinstance(v, list) and held & set(v)}
    present = [c for c in MODEL_COMPONENTS if c in (training.get("component_images") or {}) or c in rec]
    unknown = sorted(c for c in present if c in rec and not isinstance(rec[c], list))
    missing = sorted(c for c in present if c not in rec)
    model_seen = sorted(c for c in seen if c != "classifier")
    notes = []
    if model_seen:
        notes.append(f"HELD-OUT CLASSES SEEN: {', '.join(model_seen)} were trained on held-out classes; these "
                     "are not zero-shot figures")
    if unknown or missing:
        notes.append(f"COMPONENT RECORD: the classes of {', '.join(unknown + missing)} are not recorded: whether "
                     "they saw the held-out classes cannot be derived")
    if "classifier" not in seen:
        notes.append("the judge (image classifier) was not trained on the held-out classes: recon_acc measures "
                     "a classifier that does not know them")
    return {"trained_on_holdout": seen, "model_components_clean": not model_seen and not unknown and not missing,
            "judge_knows_holdout": "classifier" in seen, "notes": notes}


def zero_shot(recon, ds, bundle_config: dict[str, Any] | None, *, seed: int = 0, batch_size: int = 32,
              n_grid: int = 8, progress: bool = False) -> tuple[dict[str, Any] | None, list[GridRow]]:
    """``metrics["zero_shot"]`` and report rows (one trial per held-out class, up to
    ``n_grid``) for a bundle that holds classes out and data with test trials of them;
    ``(None, [])`` otherwise. ``ds.X`` is normalised the way ``recon`` expects."""
    bundle_config = bundle_config or {}
    classes, idx = holdout_trials(ds, bundle_config)
    if len(idx) == 0 or len(classes) < 2:
        return None, []
    names = list(ds.class_names)
    cls_idx = np.array([names.index(c) for c in classes])
    labels = np.asarray(ds.labels)
    truth = np.searchsorted(cls_idx, labels[idx])  # position among the held-out classes (both sorted by index)

    cand = caption_embeddings(bundle_config, [ds.label_caption(k) for k in cls_idx])
    figures, sims = retrieval(predicted_embeddings(recon, ds.X[idx]), cand, truth, seed)

    ids = [str(ds.stim_ids[i]) for i in idx]
    onsets, _ = trial_onsets(ds)
    seeds = trial_seeds(ids, onsets[idx], int(getattr(recon, "seed", 0)))
    out = run_reconstructor(recon, ds.X[idx], seeds, batch=batch_size, desc="reconstruct (zero-shot)",
                            progress=progress)
    zs: dict[str, Any] = {
        "classes": classes,
        "n": int(len(idx)),
        "n_per_class": {c: int((truth == j).sum()) for j, c in enumerate(classes)},
    }
    zs.update(figures)
    zs["retrieval_definition"] = (
        "cosine between the semantic head's predicted caption embedding (temperature 1: its own prediction, "
        "not the sharpened guidance) and the label-caption embeddings "
        f"('{ds.label_caption(cls_idx[0])}', ...) of the {len(classes)} held-out classes, by the bundle's text "
        "encoder; right when the true class's caption is among the k most similar (ties count against)")
    judged = None
    probs = out.class_probs
    if probs is None:
        zs["recon_acc"] = {"value": None, "unavailable": "the bundle has no image classifier (the judge)"}
    elif probs.shape[1] != len(names):
        zs["recon_acc"] = {"value": None, "unavailable": f"the judge scores {probs.shape[1]} classes, the data "
                                                        f"has {len(names)}"}
    else:
        judged = np.asarray(probs, dtype=np.float64)[:, cls_idx]
        zs["recon_acc"] = top_k_rate(judged, truth, 1, seed)
    zs["recon_acc_definition"] = (
        f"{len(classes)}-way top-1 among the held-out classes: the judge's scores of the reconstruction "
        "restricted to them; right when the true class scores highest. The reconstruction is the live one "
        "(seeded per trial as evaluate seeds them): the refiner is guided by whatever the semantic head "
        "predicts, among every class's caption for an open-set head")
    zs.update(_exposure(bundle_config, classes))

    rows = []
    for j, c in enumerate(classes[:n_grid]):
        hit = np.flatnonzero(truth == j)
        if len(hit) == 0:
            continue
        i = int(hit[0])
        said = f"; judge: {classes[int(judged[i].argmax())]}" if judged is not None else ""
        rows.append(GridRow(ds.image(int(idx[i])), None if out.saliency is None else out.saliency[i],
                            out.images[i], f"{ids[i]} ({c}): caption retrieved {classes[int(sims[i].argmax())]}"
                            f"{said}"))
    return zs, rows


def zero_shot_line(zs: dict[str, Any]) -> str:
    """One line for the console."""
    def part(name: str) -> str:
        r = zs.get(name) or {}
        if r.get("value") is None:
            return f"{name} n/a"
        return f"{name} {r['value']:.3f} (chance {r['chance']:.3f}, p={r['p']:.3g})"

    return (f"zero-shot ({len(zs['classes'])} held-out classes, n={zs['n']}): "
            + " | ".join(part(k) for k in ("retrieval_top1", "retrieval_top5", "recon_acc")))


def add_zero_shot(recon, ds, bundle_config: dict[str, Any] | None, out_dir: str | Path, *, seed: int = 0,
                  progress: bool = False) -> dict[str, Any] | None:
    """Score the zero-shot protocol and add it to ``out_dir``'s ``metrics.json`` (key
    ``"zero_shot"``) and ``report.html`` (a section with the held-out classes'
    reconstructions), as written by :func:`~bci_app.evaluation.evaluate.evaluate`. Returns
    ``metrics["zero_shot"]``, or None when there is nothing to score (no held-out classes,
    or no trials of them)."""
    zs, rows = zero_shot(recon, ds, bundle_config, seed=seed, progress=progress)
    if zs is None:
        return None
    out_dir = Path(out_dir)
    path = out_dir / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["zero_shot"] = zs
    path.write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    add_section(out_dir / "report.html", zero_shot_section(zs, rows))
    return zs

