"""The evaluation run of ``bci-app evaluate``: the seed paper's tables, computed so that a
reviewer can trust them.

1. The test trials: images the bundle never trained or validated on
   (:func:`~bci_app.evaluation.split.select_split`), split by image and checked
   disjoint; which components saw any test image is derived from the bundle's record
   (:func:`~bci_app.evaluation.split.component_exposure`).
2. The Reconstructor runs on the test trials, seeded per trial exactly as the live worker
   seeds them (:mod:`~bci_app.evaluation.runner`).
3. One ground truth per trial for every row of every table: the data set's class of the
   seen image. N-way top-k (default 50-way, capped at the number of classes) with the
   same draws for every row; SSIM (:mod:`bci_app.models.ssim`) at a stated resolution;
   pixel correlation; Inception Score, AlexNet and CLIP two-way where the weights are
   local. Each with chance level, 95% interval and a permutation p-value.
4. The bundle's own linear baseline on the same trials, draws and ground truth, and the
   paired difference model minus baseline (:mod:`~bci_app.evaluation.baseline_score`).
5. The block-design probe (:mod:`bci_app.evaluation.leakage`), per-subject rows
   (Table 2), with ``ablation`` the Reconstructor's switched configurations (Table 3).
6. ``metrics.json`` (the same bytes for the same bundle, data and seed), ``report.html``
   and with ``save_images`` the scored pairs as ``images/NNNN_seen.png`` /
   ``NNNN_recon.png`` at the SSIM resolution.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.evaluation import baseline_score
from bci_app.evaluation import metrics as M
from bci_app.evaluation.ablation import run_ablation
from bci_app.evaluation.leakage import block_design_probe
from bci_app.evaluation.pretrained import (
    MetricUnavailable,
    alexnet_two_way,
    clip_two_way,
    inception_score,
)
from bci_app.evaluation.report_html import GridRow, write_report
from bci_app.evaluation.runner import run_reconstructor, trial_onsets, trial_seeds
from bci_app.evaluation.scoring import score_reconstructions
from bci_app.evaluation.split import component_exposure, select_split
from bci_app.evaluation.stages import stage_diagnostics
from bci_app.evaluation.stats import (
    bootstrap_ci,
    finite_or_none,
    interval,
    pair_stat,
    paired_difference,
    sign_flip_p,
)
from bci_app.models.ssim import definition as ssim_definition
from bci_app.models.ssim import resize_images, ssim_resolution

DEFAULT_WAYS = 50
GROUND_TRUTH = (
    "the data set's class of the seen image (its label), for every row of every table: the "
    "reconstruction, each ablation row, the linear baseline and every subject"
)


def resolve_ways(requested: int | None, n_classes: int) -> tuple[int, str | None]:
    """N of N-way and a note for the report.

    Without a request: the number of classes in the data, at most ``DEFAULT_WAYS`` (50, the
    paper's), and no note. A request above the number of classes is capped, with a note.
    """
    if n_classes < 2:
        raise ValueError(f"N-way accuracy needs at least 2 classes, the data set has {n_classes}")
    if requested is None:
        return min(int(n_classes), DEFAULT_WAYS), None
    want = int(requested)
    if want < 2:
        raise ValueError(f"--ways must be >= 2, got {want}")
    if want > n_classes:
        return n_classes, (
            f"{want}-way requested but the data set has {n_classes} classes: reporting "
            f"{n_classes}-way (chance {1 / n_classes:.3f} for top-1)"
        )
    return want, None


def _two_way_stat(per: np.ndarray, seed: int) -> dict[str, Any]:
    return {
        "value": float(per.mean()),
        "available": True,
        "chance": 0.5,
        "ci": interval(bootstrap_ci(per, rng=seed)),
        "p": sign_flip_p(per - 0.5, seed=seed),  # around the chance level 0.5
    }


def _pretrained_metrics(seen: np.ndarray, recon: np.ndarray, seed: int, weights_dir: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    is_res = inception_score(recon, weights_dir=weights_dir)
    if isinstance(is_res, MetricUnavailable):
        out["inception_score"] = None
        out["inception_score_reason"] = is_res.reason
    else:
        out["inception_score"], out["inception_score_std"] = is_res
    if len(seen) < 2:
        return out
    clip = clip_two_way(seen, recon)
    out["clip_two_way"] = clip.to_dict() if isinstance(clip, MetricUnavailable) else _two_way_stat(clip, seed)
    alex = alexnet_two_way(seen, recon, weights_dir=weights_dir)
    for key in ("alexnet2", "alexnet5"):
        out[key] = alex.to_dict() if isinstance(alex, MetricUnavailable) else _two_way_stat(alex[key], seed)
    return out


def _check_classes(probs: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(
            f"the bundle's image classifier gives {probs.shape[-1] if probs.ndim else '?'} class scores "
            f"for the {what}, but the data set has {n_classes} classes; evaluate with a classifier "
            "trained on the data set's classes"
        )
    return probs


def _probe(ds, tr: np.ndarray, te: np.ndarray, seed: int) -> dict[str, Any]:
    onsets = getattr(ds, "onsets", None)
    order, _ = trial_onsets(ds)
    try:
        probe = block_design_probe(
            np.asarray(ds.labels), tr, te,
            onsets=None if onsets is None else np.asarray(onsets),
            trial_index=order.astype(np.float64), groups=np.asarray(ds.subjects),
            stim_ids=list(ds.stim_ids), rng=seed,
        ).to_dict()
        if onsets is None:
            probe["note"] = "the data set gives no onset times: the probe uses the stored trial order within each subject"
    except ValueError as err:
        probe = {"acc": None, "chance": None, "flagged": False, "error": str(err)}
    return probe


def save_scored_images(out_dir: Path, seen: np.ndarray, recon: np.ndarray, size: int,
                       captions: Sequence[dict[str, Any]]) -> Path:
    """``images/NNNN_seen.png`` and ``NNNN_recon.png`` at the SSIM resolution (the exact
    pixels SSIM was computed from) and ``images/index.json`` naming each pair's trial."""
    from PIL import Image

    d = out_dir / "images"
    d.mkdir(parents=True, exist_ok=True)
    for i, (s, r) in enumerate(zip(resize_images(seen, size), resize_images(recon, size), strict=True)):
        Image.fromarray(s).save(d / f"{i:04d}_seen.png")
        Image.fromarray(r).save(d / f"{i:04d}_recon.png")
    (d / "index.json").write_text(json.dumps(_jsonable(list(captions)), indent=1), encoding="utf-8")
    return d


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
    save_images: bool = False,
) -> dict[str, Any]:
    """Evaluate a reconstructor on a data set's test trials; write metrics.json and report.html.

    ``recon`` needs ``reconstruct(x [B, C, T], seeds=[...], **switches) -> [Reconstruction]``
    and ``classify_images(uint8 [N, H, W, 3]) -> [N, n_classes]`` (optionally ``seed`` and
    ``bundle_dir``); ``ds`` is an :class:`~bci_app.datasets.EEGImageDataset` whose ``X``
    is already normalised the way ``recon`` expects. Returns the metrics dict (as written
    to metrics.json).
    """
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
    ids_te = [str(ds.stim_ids[i]) for i in te]
    exposure = component_exposure(bundle_config, set(ids_te))
    notes: list[str] = [ways_note] if ways_note else []
    if split_info.get("warning"):
        notes.append("SPLIT WARNING: " + split_info["warning"])
    for note in exposure["notes"]:  # TEST IMAGES SEEN first, then what cannot be derived
        if note.startswith("TEST IMAGES SEEN"):
            notes.insert(0, note)
        else:
            notes.append(note)

    labels = np.asarray(ds.labels, dtype=np.int64)
    X_te, seen, truth = ds.X[te], ds.images(te), labels[te]
    subjects = np.asarray(ds.subjects)[te]
    onsets, onset_source = trial_onsets(ds)
    base_seed = int(getattr(recon, "seed", 0))
    seeds = trial_seeds(ids_te, onsets[te], base_seed)

    out = run_reconstructor(recon, X_te, seeds, batch=batch_size, desc="reconstruct (test)", progress=progress)
    if out.class_probs is None:
        raise RuntimeError(
            "the bundle has no image classifier, which the N-way top-k metric needs; "
            "use a bundle with a classifier (the demo bundle has one)"
        )
    probs_recon = _check_classes(out.class_probs, n_classes, "reconstructions")
    probs_seen = _check_classes(recon.classify_images(seen), n_classes, "seen images")
    if ssim_size is None:
        ssim_size = ssim_resolution(seen.shape[1:3])

    main, per_acc, per_ssim = score_reconstructions(
        seen, out.images, probs_recon, truth, ways=ways, topk=topk, draws=draws, seed=seed, ssim_size=ssim_size
    )
    pix = resize_images(seen, ssim_size), resize_images(out.images, ssim_size)
    pixel = pair_stat(pix[0], pix[1], M.pixel_correlation(*pix), M.pixel_correlation, seed)

    # ---- linear baseline: same test trials, same N-way draws, same ground truth
    lb, trained_on = baseline_score.load_or_fit(
        getattr(recon, "bundle_dir", None), bundle_config, ds.X[tr], labels[tr], float(ds.spec.sfreq)
    )
    if lb is not None:
        baseline, per_b = baseline_score.score(lb, X_te, truth, n_classes, ways=ways, topk=topk, draws=draws, seed=seed)
        baseline["trained_on"] = trained_on
        baseline["model_minus_baseline"] = paired_difference(per_acc, per_b, seed)
    else:
        per_b = np.full(len(te), np.nan)
        baseline = {"acc": None, "trained_on": trained_on, "reason": trained_on}
    if trained_on.startswith("FALLBACK"):
        notes.append("BASELINE " + trained_on)

    probe = _probe(ds, tr, te, seed)
    if probe.get("flagged"):
        notes.insert(0, probe["message"])

    per_subject: dict[str, dict[str, Any]] = {}
    for s in np.unique(subjects):
        m = subjects == s
        per_subject[str(int(s))] = {
            "n": int(m.sum()),
            "acc": float(per_acc[m].mean()),
            "acc_ci": interval(bootstrap_ci(per_acc[m], rng=seed)),
            "baseline_acc": finite_or_none(np.nanmean(per_b[m])) if np.isfinite(per_b[m]).any() else None,
            "ssim": float(per_ssim[m].mean()),
        }

    chance = M.n_way_chance(ways, topk)
    metrics: dict[str, Any] = {
        **(meta or {}),
        "n": int(len(te)),
        "ways": int(ways),
        "topk": int(topk),
        "draws": int(draws),
        "ground_truth": GROUND_TRUTH,
        "acc": main["acc"],
        "acc_ci": main["acc_ci"],
        "acc_p": main["acc_p"],
        "chance": chance,
        "acc_definition": (
            f"{ways}-way top-{topk}: the bundle classifier's scores of the reconstruction restricted to the "
            f"true class and {ways - 1} random other classes ({draws} draws per trial, the same draws for every "
            f"row); success when the true class is in the top {topk} (ties count as failures)."
        ),
        "classifier_agreement_on_seen": float(np.mean(probs_seen.argmax(axis=1) == truth)),
        "ssim": main["ssim"],
        "ssim_ci": main["ssim_ci"],
        "ssim_chance": main["ssim_chance"],
        "ssim_p": main["ssim_p"],
        "ssim_resolution": int(ssim_size),
        "ssim_definition": ssim_definition(ssim_size),
        "pixel_correlation": pixel,
        **_pretrained_metrics(seen, out.images, seed, weights_dir),
        "baseline": baseline,
        "leakage_probe": probe,
        "split": split_info,
        "stages": stage_diagnostics(
            {"decoder": out.eeg_class_probs, "caption": out.caption_probs, "drawing": probs_recon},
            truth, ways=ways, topk=topk, draws=draws, seed=seed,
        ),
        "component_images": exposure,
        "latent_seeds": (
            f"per trial: trial_seed(stimulus id, onset sample, base seed {base_seed}), onset from "
            f"{onset_source}; the live worker seeds trials with the same function"
        ),
        "per_subject": per_subject,
        "notes": notes,
    }
    if getattr(ds, "photodiode", None):  # --photodiode: the marker-to-light delays of the session
        metrics["photodiode"] = ds.photodiode
    agree = metrics["classifier_agreement_on_seen"]
    if agree < 0.5:
        notes.insert(0, (
            f"CLASSIFIER WARNING: the image classifier names the data set's class of only {agree:.1%} of the "
            f"seen images (chance {1 / n_classes:.1%}); the N-way figure measures agreement with a classifier "
            "that does not recognise these images. Use a classifier that works on the stimuli."
        ))
    if main["acc"] > chance and (main["acc_p"] is None or main["acc_p"] >= 0.05):
        notes.insert(0, (
            f"NOT SIGNIFICANT: N-way accuracy {main['acc']:.3f} is above the nominal chance {chance:.3f} "
            f"but not above the label-shuffled null (p = {main['acc_p']:.3g}): it reflects the classifier's "
            "preference for some classes, not the reconstructions."
        ))
    if metrics.get("inception_score") is None and "inception_score_reason" in metrics:
        notes.append(f"Inception Score unavailable: {metrics['inception_score_reason']}")

    if ablation:
        metrics["ablation"] = run_ablation(
            recon, X_te, seeds, seen, truth, bundle_config, ways=ways, topk=topk, draws=draws, seed=seed,
            ssim_size=ssim_size, batch=batch_size, progress=progress, full=main, full_per=(per_acc, per_ssim),
            baseline_per=per_b if lb is not None else None,
        )

    def caption(i: int) -> dict[str, Any]:
        return {"trial": int(te[i]), "stim_id": ids_te[i], "class": ds.class_names[truth[i]],
                "subject": int(subjects[i]), "acc": float(per_acc[i]), "ssim": float(per_ssim[i])}

    if save_images:
        d = save_scored_images(out_dir, seen, out.images, ssim_size, [caption(i) for i in range(len(te))])
        metrics["images_dir"] = str(d)

    order_q = np.lexsort((per_ssim, per_acc))  # by accuracy, then SSIM
    k = min(n_grid, len(te))

    def rows(idx: Sequence[int]) -> list[GridRow]:
        return [
            GridRow(
                seen[i], None if out.saliency is None else out.saliency[i], out.images[i],
                f"{ids_te[i]} ({ds.class_names[truth[i]]}), subject {subjects[i]}: "
                f"acc {per_acc[i]:.2f}, SSIM {per_ssim[i]:.2f}",
            )
            for i in idx
        ]

    metrics = _jsonable(metrics)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    write_report(
        out_dir / "report.html", metrics, best=rows(order_q[::-1][:k]), worst=rows(order_q[:k]),
        title=f"bci-app evaluation: {metrics.get('data', '')}",
    )
    return metrics


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
