"""Which trials ``evaluate`` may score, and whether any bundle component saw their images.

Both answers are derived from what the bundle recorded in its ``config.json``, never
assumed:

- ``training.split_images``: the image ids of the bundle's train/val/test splits; the
  test trials are those whose image the bundle neither trained nor validated on.
- ``training.component_images``: for each trained component (encoder, generator,
  semantic, refiner, classifier, baseline) the splits whose images it was trained on,
  e.g. ``["train"]``. A component trained on ``"test"`` (or ``"all"``) images has seen
  test images, and ``evaluate`` says so at the top of its notes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bci_app.datasets import check_split_disjoint

#: split names that put a component's training images among the evaluated test images
SEEING_TEST = ("test", "all")
#: the split names ``training.component_images`` may hold (anything else: not derivable);
#: "rendered" = new procedural instances, none of them a split's image (the seeds are in
#: ``training.rendered_instances``)
KNOWN_SPLITS = ("train", "val", "test", "all", "rendered")


def bundle_split_images(bundle_config: dict[str, Any] | None) -> dict[str, set[str]] | None:
    """Image ids the bundle recorded per split (``training.split_images``), if any."""
    if not bundle_config:
        return None
    tr = bundle_config.get("training", {})
    rec = tr.get("split_images") or tr.get("splits_by_image")
    if isinstance(rec, dict) and "train" in rec:
        return {k: {str(s) for s in v} for k, v in rec.items()}
    return None


def holdout_classes(bundle_config: dict[str, Any] | None) -> list[str]:
    """The classes the bundle held out of every component (``training.holdout_classes``)."""
    return [str(c) for c in ((bundle_config or {}).get("training") or {}).get("holdout_classes") or []]


def select_split(ds, bundle_config: dict[str, Any] | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train/val/test trial indices of ``ds`` for evaluating a bundle, and what was done.

    When the bundle recorded the image ids of its training and validation splits, test =
    the trials whose image the bundle never saw; train/val follow the bundle's images.
    Otherwise the data set's own split is used, which matches the bundle's only when the
    data SPEC and split seed are the ones the bundle was trained with (said in the note).
    Test trials of classes the bundle held out (``training.holdout_classes``) are left to
    :mod:`~bci_app.evaluation.zero_shot` unless they are all there is.
    ``ValueError`` when an image is in two splits or no test trial is left.
    """
    ids = [str(s) for s in ds.stim_ids]
    rec = bundle_split_images(bundle_config)
    info: dict[str, Any] = {"by": "image"}
    if rec is not None:
        seen = rec.get("train", set()) | rec.get("val", set())
        test = np.array([i for i, s in enumerate(ids) if s not in seen], dtype=np.int64)
        train = np.array([i for i, s in enumerate(ids) if s in rec.get("train", set())], dtype=np.int64)
        val = np.array([i for i, s in enumerate(ids) if s in rec.get("val", set())], dtype=np.int64)
        splits = {"train": train, "val": val, "test": test}
        info["source"] = (
            "images recorded in the bundle (training.split_images): test = images the bundle never "
            "trained or validated on"
        )
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
    held = set(holdout_classes(bundle_config))
    if held:  # the classic protocol: unseen images of trained classes; the held-out ones are zero-shot
        names = list(ds.class_names)
        is_held = np.array([names[k] in held for k in np.asarray(ds.labels)[splits["test"]]], dtype=bool)
        if is_held.any() and not is_held.all():
            splits["test"] = splits["test"][~is_held]
            info["holdout_classes"] = (
                f"{int(is_held.sum())} test trials of the {len(held)} classes the bundle held out are scored "
                "in zero_shot, not here: these figures are the classic protocol (unseen images of trained classes)")
        elif is_held.any():
            info["holdout_classes"] = (
                "every test trial is of a class the bundle held out (e.g. THINGS-EEG2's test concepts): these "
                "figures are over unseen classes too")
    if len(splits.get("test", [])) == 0:
        raise ValueError(
            f"no test trials in {getattr(ds, 'source', 'the data')}: every image was used by the bundle "
            "for training or validation; evaluate on more trials or other images"
        )
    check_split_disjoint(ids, splits, f"evaluation split of {getattr(ds, 'source', '') or 'the data'}")
    info["sizes"] = {k: int(len(v)) for k, v in splits.items()}
    info["n_images"] = {k: len({ids[i] for i in v}) for k, v in splits.items()}
    info["disjoint_checked"] = True
    return splits, info


def component_exposure(bundle_config: dict[str, Any] | None, test_ids: set[str]) -> dict[str, Any]:
    """Which components were trained on any of the evaluated test images ``test_ids``.

    Reads ``training.component_images`` (per component, the bundle splits it was trained
    on, or a string such as ``"external"`` for a referenced component whose images nobody
    recorded) and ``training.split_images`` (the images of those splits). Returns
    ``{"recorded", "components", "seen_test": {component: n_test_images_seen},
    "unknown": [component, ...], "test_images_unseen": bool | None, "notes": [...]}``;
    ``test_images_unseen`` is None when nothing can be derived for some component (no
    record, or an entry that names no split), and the notes say so.
    """
    training = (bundle_config or {}).get("training", {}) or {}
    rec = training.get("component_images")
    if not isinstance(rec, dict) or not rec:
        return {
            "recorded": False, "components": None, "seen_test": {}, "unknown": [],
            "test_images_unseen": None,
            "notes": [
                "COMPONENT RECORD: the bundle does not record which images each component was trained "
                "on (training.component_images): whether the refiner, classifier or baseline saw the "
                "test images cannot be derived; retrain the bundle with a current `bci-app train`"
            ],
        }
    images = bundle_split_images(bundle_config) or {}
    seen: dict[str, int] = {}
    unknown: list[str] = []
    components: dict[str, list[str]] = {}
    for comp, splits in rec.items():
        names = [str(s) for s in ([splits] if isinstance(splits, str) else list(splits or []))]
        components[comp] = names
        if "all" in names:
            seen[comp] = len(test_ids)
            continue
        hit: set[str] = set()
        for name in names:
            if name in SEEING_TEST and name not in images:
                hit = set(test_ids)  # trained on "test" images the bundle did not list: assume all
                break
            if name not in KNOWN_SPLITS:
                unknown.append(comp)
                continue
            hit |= images.get(name, set()) & test_ids
        if hit:
            seen[comp] = len(hit)
    # a component the bundle has but the record leaves out is not known to be clean
    present = set((bundle_config or {}).get("components", {}) or {}) & {"encoder", "generator", "semantic"}
    present |= {k for k in ("refiner", "classifier", "baseline") if (bundle_config or {}).get(k)}
    for comp in sorted(present - set(rec)):
        components[comp] = ["not recorded"]
        unknown.append(comp)
    unknown = sorted(set(unknown) - set(seen))
    notes: list[str] = []
    if seen:
        parts = [f"{c} ({n} of {len(test_ids)} test images)" for c, n in sorted(seen.items())]
        notes.append(
            "TEST IMAGES SEEN: by training.component_images these components were trained on images "
            f"that are scored here as test images: {', '.join(parts)}; their figures are not held-out "
            "figures - retrain them on the training split only"
        )
    if unknown:
        desc = ", ".join(f"{c} ({'/'.join(components[c])})" for c in unknown)
        notes.append(
            f"COMPONENT RECORD: the training images of {desc} are not recorded as splits of this bundle "
            "(e.g. a referenced pretrained component): whether they saw the test images cannot be derived"
        )
    return {
        "recorded": True,
        "components": components,
        "seen_test": seen,
        "unknown": unknown,
        "test_images_unseen": False if seen else (None if unknown else True),
        "notes": notes,
    }
