"""``bci-app evaluate``: the seed paper's tables, computed so that a reviewer can trust them.

What it does, in order:

1. Loads the bundle (:class:`~bci_app.models.reconstructor.Reconstructor`) and the data
   SPEC with the bundle's filters; normalises with the bundle's statistics.
2. Picks the test trials: images the bundle never trained or validated on (from the
   image ids the bundle recorded, else the same split rule as training), checks that no
   image is in two splits (``ValueError`` otherwise) and writes the split to metrics.json.
3. Runs the Reconstructor on the test trials only (tqdm progress).
4. The paper's N-way top-k (default 50-way, capped at the number of classes: 40 for the
   demo set), with the seen image's class taken as the classifier's top-1 on the seen
   image (the paper's protocol); SSIM at a stated resolution; Inception Score when
   Inception-v3 weights are local; pixel correlation, CLIP and AlexNet two-way
   identification where weights are present. Each with chance level, 95% interval and
   a permutation p-value.
5. A linear baseline (shrinkage LDA, time-binned) trained on the train split and scored
   on the same test trials with the same N-way protocol.
6. The block-design probe (:mod:`bci_app.evaluation.leakage`).
7. Per-subject rows (Table 2), and with ``--ablation`` the switched configurations of
   Table 3 on the same test trials.
8. Writes ``metrics.json`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.evaluation import metrics as M
from bci_app.evaluation.leakage import block_design_probe
from bci_app.evaluation.report_html import GridRow, write_report

log = logging.getLogger(__name__)

DEFAULT_WAYS = 50
N_PERM = 1000


# ----------------------------------------------------------------------------- small helpers
def resolve_ways(requested: int | None, n_classes: int) -> tuple[int, str | None]:
    """N of N-way: the request (default 50) capped at the number of classes, with a note."""
    if n_classes < 2:
        raise ValueError(f"N-way accuracy needs at least 2 classes, the data set has {n_classes}")
    want = DEFAULT_WAYS if requested is None else int(requested)
    if want < 2:
        raise ValueError(f"--ways must be >= 2, got {want}")
    if want > n_classes:
        return n_classes, (
            f"{want}-way requested{' (the default)' if requested is None else ''} but the data set has "
            f"{n_classes} classes: reporting {n_classes}-way (chance {1 / n_classes:.3f} for top-1)"
        )
    return want, None


def _float(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ci(x: tuple[float, float]) -> list[float | None]:
    return [_float(x[0]), _float(x[1])]


def _progress(it, total: int, desc: str, enabled: bool):
    if not enabled:
        return it
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; stay quiet if it is not there
        return it
    return tqdm(it, total=total, desc=desc, unit="batch", leave=False)


@dataclass
class _Outputs:
    images: np.ndarray  # uint8 [N, H, W, 3]
    saliency: np.ndarray | None
    class_probs: np.ndarray | None


def _run(fn: Callable[[np.ndarray], list], X: np.ndarray, batch: int, desc: str, progress: bool) -> _Outputs:
    imgs, sals, probs = [], [], []
    starts = range(0, len(X), batch)
    for a in _progress(starts, len(starts), desc, progress):
        for r in fn(X[a : a + batch]):
            imgs.append(np.asarray(r.image))
            sals.append(None if getattr(r, "saliency", None) is None else np.asarray(r.saliency))
            probs.append(getattr(r, "class_probs", None))
    sal = None if any(s is None for s in sals) else np.stack(sals)
    cp = None if any(p is None for p in probs) else np.stack([np.asarray(p, dtype=np.float64) for p in probs])
    return _Outputs(np.stack(imgs), sal, cp)


# ----------------------------------------------------------------------------- split
def _bundle_split_images(bundle_config: dict[str, Any] | None) -> dict[str, set[str]] | None:
    """Image ids the bundle recorded per split (``training.split_images``), if any."""
    if not bundle_config:
        return None
    tr = bundle_config.get("training", {})
    rec = tr.get("split_images") or tr.get("splits_by_image")
    if isinstance(rec, dict) and "train" in rec:
        return {k: {str(s) for s in v} for k, v in rec.items()}
    return None


def select_split(ds, bundle_config: dict[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train/val/test trial indices of ``ds`` for evaluating a bundle, and what was done.

    When the bundle recorded the image ids of its training and validation splits, test =
    the trials whose image the bundle never saw; train/val follow the bundle's images.
    Otherwise the data set's own split is used, which matches the bundle's only when the
    data SPEC and split seed are the ones the bundle was trained with (said in the note).
    """
    ids = [str(s) for s in ds.stim_ids]
    rec = _bundle_split_images(bundle_config)
    info: dict[str, Any] = {"by": "image"}
    if rec is not None:
        seen = rec.get("train", set()) | rec.get("val", set())
        test = np.array([i for i, s in enumerate(ids) if s not in seen], dtype=np.int64)
        train = np.array([i for i, s in enumerate(ids) if s in rec.get("train", set())], dtype=np.int64)
        val = np.array([i for i, s in enumerate(ids) if s in rec.get("val", set())], dtype=np.int64)
        splits = {"train": train, "val": val, "test": test}
        info["source"] = "images recorded in the bundle (training.split_images): test = images the bundle never trained or validated on"
        info["guaranteed_unseen"] = True
    else:
        splits = {k: np.asarray(v, dtype=np.int64) for k, v in ds.splits.items()}
        trained_on = (bundle_config or {}).get("training", {}).get("data")
        same = trained_on is not None and str(trained_on) == str(getattr(ds, "source", ""))
        info["source"] = "the data set's split by image (same rule and seed as training)"
        info["guaranteed_unseen"] = bool(same)
        if not same:
            info["warning"] = (
                f"the bundle does not record its training images and was trained on {trained_on!r}, "
                f"not on {getattr(ds, 'source', '?')!r}: test images may have been seen in training"
            )
    if len(splits.get("test", [])) == 0:
        raise ValueError(
            f"no test trials in {getattr(ds, 'source', 'the data')}: every image was used by the bundle "
            "for training or validation; evaluate on more trials or other images"
        )
    M.check_split_disjoint(
        [ids[i] for i in splits.get("train", [])],
        [ids[i] for i in splits["test"]],
        val_ids=[ids[i] for i in splits.get("val", [])],
    )
    info["sizes"] = {k: int(len(v)) for k, v in splits.items()}
    info["n_images"] = {k: len({ids[i] for i in v}) for k, v in splits.items()}
    info["disjoint_checked"] = True
    return splits, info


# ----------------------------------------------------------------------------- scoring
def _expand_probs(p: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(p), n_classes))
    out[:, np.asarray(classes, dtype=np.int64)] = p
    return out


def _pair_stat(seen: np.ndarray, recon: np.ndarray, per: np.ndarray, fn, seed: int) -> dict[str, Any]:
    """Mean, bootstrap CI, shuffled-pair chance level and p-value of a pairwise image score."""
    chance, null = M.shuffled_pair_null(seen, recon, fn, rng=seed) if len(seen) >= 2 else (float("nan"), np.zeros(0))
    value = float(np.nanmean(per)) if len(per) else float("nan")
    return {
        "value": _float(value),
        "ci": _ci(M.bootstrap_ci(per, rng=seed)),
        "chance": _float(chance),
        "p": _float(M.permutation_p_value(value, null)) if len(null) else None,
    }


def score_reconstructions(
    seen: np.ndarray,
    recon: np.ndarray,
    probs_recon: np.ndarray,
    true_labels: np.ndarray,
    *,
    ways: int,
    topk: int,
    draws: int,
    seed: int,
    ssim_size: int,
) -> dict[str, Any]:
    """N-way top-k and SSIM (with CIs, chance, p) of one configuration on the test trials."""
    per_acc = M.n_way_top_k_per_trial(probs_recon, true_labels, ways, topk, draws, rng=seed)
    per_ssim = M.ssim_batch(seen, recon, ssim_size)
    ssim_stat = _pair_stat(seen, recon, per_ssim, lambda s, r: M.ssim_batch(s, r, ssim_size), seed)
    return {
        "acc": float(per_acc.mean()),
        "acc_ci": _ci(M.bootstrap_ci(per_acc, rng=seed)),
        "acc_p": M.n_way_permutation_p(probs_recon, true_labels, ways, topk, n_perm=N_PERM, rng=seed),
        "ssim": ssim_stat["value"],
        "ssim_ci": ssim_stat["ci"],
        "ssim_chance": ssim_stat["chance"],
        "ssim_p": ssim_stat["p"],
        "_per_acc": per_acc,
        "_per_ssim": per_ssim,
    }


def _pretrained_metrics(seen: np.ndarray, recon: np.ndarray, seed: int, weights_dir: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    is_res = M.inception_score(recon, weights_dir=weights_dir)
    if isinstance(is_res, M.MetricUnavailable):
        out["inception_score"] = None
        out["inception_score_reason"] = is_res.reason
    else:
        out["inception_score"], out["inception_score_std"] = is_res
    if len(seen) < 2:
        return out
    clip = M.clip_two_way(seen, recon)
    out["clip_two_way"] = clip.to_dict() if isinstance(clip, M.MetricUnavailable) else _two_way_stat(clip, seed)
    alex = M.alexnet_two_way(seen, recon, weights_dir=weights_dir)
    for key in ("alexnet2", "alexnet5"):
        out[key] = alex.to_dict() if isinstance(alex, M.MetricUnavailable) else _two_way_stat(alex[key], seed)
    return out


def _sign_flip_p(d: np.ndarray, seed: int) -> float:
    """One-sided p that the mean of the per-trial values ``d`` is above 0 (sign-flip permutation)."""
    rng = np.random.default_rng(seed)
    null = (rng.choice([-1.0, 1.0], size=(N_PERM, len(d))) * d).mean(axis=1)
    return M.permutation_p_value(float(d.mean()), null)


def _two_way_stat(per: np.ndarray, seed: int) -> dict[str, Any]:
    return {
        "value": float(per.mean()),
        "available": True,
        "chance": 0.5,
        "ci": _ci(M.bootstrap_ci(per, rng=seed)),
        "p": _sign_flip_p(per - 0.5, seed),  # around the chance level 0.5
    }


# ----------------------------------------------------------------------------- ablation
ABLATION_ROWS: dict[str, dict[str, Any]] = {
    # name: switches (I = saliency start for the refiner, semantics = EEG-predicted embeddings)
    "I+S (full)": {"saliency": True, "semantics": "eeg", "description": "saliency map start + EEG semantic embeddings (the full model)"},
    "S only": {"saliency": False, "semantics": "eeg", "description": "refiner from a blank grey start (no saliency map) + EEG semantic embeddings"},
    "I only": {"saliency": True, "semantics": "none", "description": "refiner from the saliency map with zero (unconditional) embeddings"},
    "I, no refiner": {"saliency": True, "semantics": None, "description": "the saliency map itself, no refinement"},
}


@dataclass
class _Variant:
    image: np.ndarray
    saliency: np.ndarray | None
    class_probs: np.ndarray | None


def _zero_semantics(recon, x: np.ndarray) -> list[_Variant]:
    """Saliency start, zero (unconditional) embeddings: the Reconstructor's path with M_s off."""
    import torch

    from bci_app.models.reconstructor import _to_uint8

    with torch.no_grad():
        xt = torch.as_tensor(np.asarray(x)).to(recon.device, recon.dtype)
        feats = recon.encoder(xt)
        g = torch.Generator().manual_seed(recon.seed)  # the same latents as reconstruct()
        z = torch.randn(len(xt), recon.generator.z_dim, generator=g)
        sal = recon.generator(z.to(recon.device, recon.dtype), recon._gan_condition(feats))
        emb = torch.zeros_like(recon.semantic(feats))
        gen = torch.Generator(device="cpu").manual_seed(recon.seed)
        img = recon.refiner.refine(sal, emb, generator=gen, **recon.refine_settings())
    sal_u8, img_u8 = _to_uint8(sal), _to_uint8(img)
    probs = recon.classify_images(img_u8)
    return [_Variant(img_u8[i], sal_u8[i], None if probs is None else probs[i]) for i in range(len(xt))]


def _ablation_fn(recon, row: dict[str, Any]) -> Callable[[np.ndarray], list]:
    """The reconstruction function of one switched configuration (RuntimeError if impossible)."""
    has_refiner = getattr(recon, "refiner", None) is not None
    if row["semantics"] is None:  # the saliency map itself

        def no_refiner(x: np.ndarray) -> list:
            rs = recon.reconstruct(x)
            sal = np.stack([r.saliency for r in rs])
            probs = recon.classify_images(sal)
            return [_Variant(sal[i], sal[i], None if probs is None else probs[i]) for i in range(len(rs))]

        return no_refiner
    if not has_refiner:
        raise RuntimeError("the bundle has no refiner, so refiner on/off rows coincide")
    if row["semantics"] == "eeg" and not row["saliency"]:
        return lambda x: recon.reconstruct(x, use_saliency=False)
    if row["semantics"] == "none" and row["saliency"]:
        for name in ("encoder", "generator", "semantic", "refiner"):
            if not hasattr(recon, name):
                raise RuntimeError(f"the Reconstructor exposes no {name!r}; cannot switch the semantics off")
        return lambda x: _zero_semantics(recon, x)
    return recon.reconstruct


# ----------------------------------------------------------------------------- main work
def evaluate(
    recon,
    ds,
    out_dir: str | Path,
    *,
    ways: int | None = None,
    topk: int = 1,
    draws: int = 100,
    seed: int = 0,
    ablation: bool = False,
    bundle_config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    batch_size: int = 32,
    n_grid: int = 6,
    ssim_size: int | None = None,
    weights_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a reconstructor on a data set's test trials; write metrics.json and report.html.

    ``recon`` needs ``reconstruct(x [B, C, T]) -> [Reconstruction]`` and
    ``classify_images(uint8 [N, H, W, 3]) -> [N, n_classes]``; ``ds`` is an
    :class:`~bci_app.datasets.loaders.EEGImageDataset` whose ``X`` is already normalised
    the way ``recon`` expects. Returns the metrics dict (as written to metrics.json).
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if draws < 1:
        raise ValueError(f"--draws must be >= 1, got {draws}")
    n_classes = int(ds.n_classes)
    ways, ways_note = resolve_ways(ways, n_classes)
    if not 1 <= topk < ways:
        raise ValueError(f"--topk must be in 1..{ways - 1} for {ways}-way, got {topk}")
    splits, split_info = select_split(ds, bundle_config)
    split_info.update({"seed_draws": int(seed), "split_seed": (meta or {}).get("split_seed")})
    te, tr = splits["test"], splits["train"]
    notes: list[str] = [ways_note] if ways_note else []
    if split_info.get("warning"):
        notes.append("SPLIT WARNING: " + split_info["warning"])

    X_te = ds.X[te]
    seen = ds.images(te)
    labels = np.asarray(ds.labels)[te]
    subjects = np.asarray(ds.subjects)[te]

    out = _run(recon.reconstruct, X_te, batch_size, "reconstruct (test)", progress)
    probs_seen = recon.classify_images(seen)
    if probs_seen is None:
        raise RuntimeError(
            "the bundle has no image classifier, which the N-way top-k metric needs; "
            "use a bundle with a classifier (the demo bundle has one)"
        )
    probs_seen = np.asarray(probs_seen, dtype=np.float64)
    probs_recon = out.class_probs if out.class_probs is not None else np.asarray(recon.classify_images(out.images))
    true_cls = probs_seen.argmax(axis=1)  # the paper: the seen image's class by the same classifier
    if ssim_size is None:
        ssim_size = int(min(256, seen.shape[1], seen.shape[2]))
        ssim_size = max(ssim_size, 11)

    main = score_reconstructions(
        seen, out.images, probs_recon, true_cls, ways=ways, topk=topk, draws=draws, seed=seed, ssim_size=ssim_size
    )
    per_acc, per_ssim = main.pop("_per_acc"), main.pop("_per_ssim")
    acc_vs_labels = M.n_way_top_k(probs_recon, labels, ways, topk, draws, rng=seed)
    pix = M.resize_images(seen, ssim_size), M.resize_images(out.images, ssim_size)
    per_pix = M.pixel_correlation(*pix)
    pixel = _pair_stat(pix[0], pix[1], per_pix, M.pixel_correlation, seed)

    # ---- linear baseline: same test trials, trained on the train split, same N-way protocol
    from bci_app.models.baseline import LinearBaseline

    baseline: dict[str, Any]
    if len(tr) and len(np.unique(np.asarray(ds.labels)[tr])) >= 2:
        lb = LinearBaseline(sfreq=float(ds.spec.sfreq)).fit(ds.X[tr], np.asarray(ds.labels)[tr])
        pb = _expand_probs(lb.predict_proba(X_te), lb.classes_, n_classes)
        per_b = M.n_way_top_k_per_trial(pb, labels, ways, topk, draws, rng=seed)
        baseline = {
            "acc": float(per_b.mean()),
            "acc_ci": _ci(M.bootstrap_ci(per_b, rng=seed)),
            "chance": M.n_way_chance(ways, topk),
            "p": M.n_way_permutation_p(pb, labels, ways, topk, n_perm=N_PERM, rng=seed),
            "top1_all_classes": float(np.mean(pb.argmax(axis=1) == labels)),
            "model": f"shrinkage LDA on {lb.bin_ms:g} ms time bins (bci_app.models.baseline.LinearBaseline)",
            "n_train": int(len(tr)),
            "labels": "data set labels (it decodes the EEG directly)",
            # the question "does the model reach the baseline?" on the same trials and draws
            "model_minus_baseline": paired_difference(per_acc, per_b, seed),
        }
    else:
        per_b = np.full(len(te), np.nan)
        baseline = {"acc": None, "reason": "the train split is empty or has one class"}

    # ---- block-design probe, same split
    onsets = getattr(ds, "onsets", None)
    order = np.zeros(len(ds.labels), dtype=np.float64)
    for s in np.unique(ds.subjects):  # presentation order within each subject, as stored
        idx = np.flatnonzero(np.asarray(ds.subjects) == s)
        order[idx] = np.arange(len(idx))
    try:
        probe = block_design_probe(
            np.asarray(ds.labels),
            tr,
            te,
            onsets=None if onsets is None else np.asarray(onsets),
            trial_index=order,
            groups=np.asarray(ds.subjects),
            stim_ids=list(ds.stim_ids),
            rng=seed,
        ).to_dict()
        if onsets is None:
            probe["note"] = "the data set gives no onset times: the probe uses the stored trial order within each subject"
    except ValueError as err:
        probe = {"acc": None, "chance": None, "flagged": False, "error": str(err)}
    if probe.get("flagged"):
        notes.insert(0, probe["message"])

    # ---- per subject (Table 2)
    per_subject: dict[str, dict[str, Any]] = {}
    for s in np.unique(subjects):
        m = subjects == s
        per_subject[str(int(s))] = {
            "n": int(m.sum()),
            "acc": float(per_acc[m].mean()),
            "acc_ci": _ci(M.bootstrap_ci(per_acc[m], rng=seed)),
            "baseline_acc": _float(np.nanmean(per_b[m])) if np.isfinite(per_b[m]).any() else None,
            "ssim": float(per_ssim[m].mean()),
        }

    metrics: dict[str, Any] = {
        **(meta or {}),
        "n": int(len(te)),
        "ways": int(ways),
        "topk": int(topk),
        "draws": int(draws),
        "acc": main["acc"],
        "acc_ci": main["acc_ci"],
        "acc_p": main["acc_p"],
        "chance": M.n_way_chance(ways, topk),
        "acc_definition": (
            f"{ways}-way top-{topk}: the classifier's scores of the reconstruction restricted to the seen "
            f"image's class and {ways - 1} random other classes ({draws} draws per trial); success when the "
            f"seen class is in the top {topk} (ties count as failures). The seen class is the classifier's "
            "top-1 on the seen image (the paper's protocol)."
        ),
        "acc_vs_dataset_labels": acc_vs_labels,
        "classifier_agreement_on_seen": float(np.mean(true_cls == labels)),
        "ssim": main["ssim"],
        "ssim_ci": main["ssim_ci"],
        "ssim_chance": main["ssim_chance"],
        "ssim_p": main["ssim_p"],
        "ssim_resolution": int(ssim_size),
        "ssim_definition": f"mean SSIM, 11x11 gaussian window (sigma 1.5), RGB, both images resized to {ssim_size}x{ssim_size}",
        "pixel_correlation": pixel,
        **_pretrained_metrics(seen, out.images, seed, weights_dir),
        "baseline": baseline,
        "leakage_probe": probe,
        "split": split_info,
        "per_subject": per_subject,
        "notes": notes,
    }
    agree = metrics["classifier_agreement_on_seen"]
    if agree < 0.5:
        notes.insert(0, (
            f"CLASSIFIER WARNING: the image classifier names the data set's class of only {agree:.1%} of the "
            f"seen images (chance {1 / n_classes:.1%}); the N-way figure measures agreement with a classifier "
            "that does not recognise these images. Use a classifier that works on the stimuli."
        ))
    if main["acc"] > metrics["chance"] and (main["acc_p"] is None or main["acc_p"] >= 0.05):
        notes.insert(0, (
            f"NOT SIGNIFICANT: N-way accuracy {main['acc']:.3f} is above the nominal chance {metrics['chance']:.3f} "
            f"but not above the label-shuffled null (p = {main['acc_p']:.3g}): it reflects the classifier's "
            "preference for some classes, not the reconstructions."
        ))
    if metrics.get("inception_score") is None and "inception_score_reason" in metrics:
        notes.append(f"Inception Score unavailable: {metrics['inception_score_reason']}")

    # ---- ablation (Table 3)
    if ablation:
        metrics["ablation"] = _run_ablation(
            recon, X_te, seen, true_cls, bundle_config, ways=ways, topk=topk, draws=draws, seed=seed,
            ssim_size=ssim_size, batch=batch_size, progress=progress, full=main,
            full_per=(per_acc, per_ssim),
        )

    # ---- best / worst grids
    order_q = np.lexsort((per_ssim, per_acc))  # by accuracy, then SSIM
    k = min(n_grid, len(te))

    def rows(idx: Sequence[int]) -> list[GridRow]:
        return [
            GridRow(
                seen[i],
                None if out.saliency is None else out.saliency[i],
                out.images[i],
                f"{ds.stim_ids[te[i]]} ({ds.class_names[labels[i]]}), subject {subjects[i]}: "
                f"acc {per_acc[i]:.2f}, SSIM {per_ssim[i]:.2f}",
            )
            for i in idx
        ]

    metrics["elapsed_s"] = round(time.perf_counter() - t0, 2)
    (out_dir / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2), encoding="utf-8")
    write_report(
        out_dir / "report.html",
        _jsonable(metrics),
        best=rows(order_q[::-1][:k]),
        worst=rows(order_q[:k]),
        title=f"bci-app evaluation: {metrics.get('data', '')}",
    )
    return metrics


def paired_difference(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Mean of the per-trial differences ``a - b`` (same trials), its bootstrap CI and the
    one-sided sign-flip permutation p of ``a > b``: whether one configuration beats another
    on the same trials, which two overlapping per-configuration CIs cannot tell."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"paired_difference needs two equal-length 1-D per-trial arrays, got {np.shape(a)} and {np.shape(b)}")
    d = a - b
    return {"diff": float(d.mean()), "ci": _ci(M.bootstrap_ci(d, rng=seed)), "p": _sign_flip_p(d, seed)}


def _run_ablation(recon, X_te, seen, true_cls, bundle_config, *, ways, topk, draws, seed, ssim_size, batch, progress, full,
                  full_per: tuple[np.ndarray, np.ndarray] | None = None):
    captions = ((bundle_config or {}).get("training", {}).get("config", {}).get("semantic", {}) or {}).get("captions", "label")
    sem_kind = "B (free caption)" if captions == "free" else "L (label caption)"
    other = "L (label caption)" if captions == "free" else "B (free caption)"
    rows: dict[str, Any] = {}
    for name, row in ABLATION_ROWS.items():
        sem = {"eeg": sem_kind, "none": "none (zero embeddings)", None: "none (no refiner)"}[row["semantics"]]
        entry: dict[str, Any] = {"saliency": row["saliency"], "semantics": sem, "description": row["description"]}
        if name == "I+S (full)":
            entry.update({k: full[k] for k in ("acc", "acc_ci", "acc_p", "ssim", "ssim_ci")})
        else:
            try:
                o = _run(_ablation_fn(recon, row), X_te, batch, f"ablation {name}", progress)
                p = o.class_probs if o.class_probs is not None else np.asarray(recon.classify_images(o.images))
                sc = score_reconstructions(seen, o.images, p, true_cls, ways=ways, topk=topk, draws=draws, seed=seed, ssim_size=ssim_size)
                entry.update({k: sc[k] for k in ("acc", "acc_ci", "acc_p", "ssim", "ssim_ci")})
                if full_per is not None:  # the full model against this row, trial by trial
                    entry["full_minus_row"] = {
                        "acc": paired_difference(full_per[0], sc["_per_acc"], seed),
                        "ssim": paired_difference(full_per[1], sc["_per_ssim"], seed),
                    }
            except RuntimeError as err:
                entry.update({"acc": None, "ssim": None, "unavailable": str(err)})
        rows[name] = entry
    rows[f"{other} + I"] = {
        "saliency": True, "semantics": other, "acc": None, "ssim": None,
        "description": f"needs a bundle whose semantic head was trained on {other} captions "
        f"(train with semantic.captions = '{'label' if captions == 'free' else 'free'}'); this bundle used {captions}",
    }
    return {
        "rows": rows,
        "note": "every row runs on the same test trials with the same classifier and N-way draws; "
        "switched rows reuse the trained bundle (no retraining); full_minus_row: the full model minus "
        "the row, per trial (mean, bootstrap CI, one-sided sign-flip p that the full model is better).",
    }


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.bool_ | bool):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating | float):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, Path):
        return str(o)
    return o


# ----------------------------------------------------------------------------- CLI entry
def run_evaluate(args) -> int:
    """Entry point of ``bci-app evaluate`` (argparse namespace from ``bci_app.cli``)."""
    from bci_app.datasets.loaders import load_spec
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.preprocessing import PreprocessingSpec, normalise

    recon = Reconstructor.from_bundle(args.bundle, device=getattr(args, "device", "auto") or "auto",
                                      steps=getattr(args, "steps", None), strength=getattr(args, "strength", None),
                                      guidance=getattr(args, "guidance", None))
    bundle_config = dict(getattr(recon, "config", {}) or {})
    spec = recon.spec
    raw_spec = PreprocessingSpec.from_dict({**spec.to_dict(), "norm_mean": None, "norm_std": None})
    dcfg = bundle_config.get("training", {}).get("config", {}).get("data", {})
    split_seed = int(dcfg.get("split_seed", 0))
    ds = load_spec(
        args.data,
        images_dir=getattr(args, "images", None),
        preprocessing=raw_spec,
        split_seed=split_seed,
        test_frac=float(dcfg.get("test_frac", 0.2)),
        val_frac=float(dcfg.get("val_frac", 0.1)),
    )
    if hasattr(recon, "check_compatible"):
        recon.check_compatible(list(ds.spec.ch_names), float(ds.spec.sfreq), int(ds.X.shape[2]))
    ds.X = normalise(ds.X, spec)
    meta = {
        "bundle": str(getattr(recon, "bundle_dir", args.bundle)),
        "data": args.data,
        "device": str(getattr(recon, "device", getattr(args, "device", "cpu"))),
        "split_seed": split_seed,
    }
    m = evaluate(
        recon, ds, args.out, ways=args.ways, topk=args.topk, draws=args.draws, seed=args.seed,
        ablation=bool(getattr(args, "ablation", False)), bundle_config=bundle_config, meta=meta,
    )
    probe = m["leakage_probe"]
    print(
        f"{m['ways']}-way top-{m['topk']}: {m['acc']:.3f} (chance {m['chance']:.3f}, p={m['acc_p']:.3g}) | "
        f"baseline {m['baseline'].get('acc')} | SSIM@{m['ssim_resolution']} {m['ssim']:.3f} "
        f"(shuffled {m['ssim_chance']:.3f}) | IS {m['inception_score']} | probe "
        f"{'FLAGGED' if probe.get('flagged') else 'ok'} ({probe.get('acc')}) | n={m['n']} -> {args.out}"
    )
    return 0
