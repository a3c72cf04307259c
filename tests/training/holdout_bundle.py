"""A tiny bundle trained with held-out classes and an open-set semantic head (all stages, the
demo refiner with rendered instances), once per test session, with what every stage was given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.training.test_recipe import TINY_TOML

DATA = "synthetic:160,seed=3"
# each a different shape and colour
HOLDOUT = ["red circle", "green square", "blue triangle", "yellow star", "purple cross", "red hexagon"]
HOLDOUT_TOML = (TINY_TOML.replace("hidden = 32\n", "hidden = 32\nopen_set = true\nlogits_from = \"features\"\n")
                .replace("steps = 2, strength = 0.5 }", "steps = 2, strength = 0.5, p_rendered = 0.5, p_saliency = 0.5 }"))

_TRAINED: dict[str, Any] = {}


def trained_holdout_bundle(root: Path) -> tuple[Path, dict[str, list]]:
    """``(bundle, received)``: the bundle (trained under ``root`` on the first call of the
    session) and, per stage, the stimulus ids / labels of the data it was given."""
    if "bundle" in _TRAINED:
        return _TRAINED["bundle"], _TRAINED["received"]
    from bci_app.models.baseline import LinearBaseline
    from bci_app.stimuli import DemoStimulusSet
    from bci_app.training import classifier, data, demo_refiner, encoder, recipe, semantic

    received: dict[str, list] = {k: [] for k in (
        "encoder", "gan_images", "semantic_targets", "semantic_candidates", "refiner", "refiner_maps",
        "classifier", "classifier_val", "judge", "baseline", "drawn")}

    def spy(module, name, record):
        real = getattr(module, name)

        def wrapper(*a, **kw):
            record(*a, **kw)
            return real(*a, **kw)
        return wrapper

    def on_encoder(X_tr, y_tr, X_va, y_va, *a, **kw):
        received["encoder"] += list(y_tr) + list(y_va)

    def on_images(ds, idx, size):
        received["gan_images"] += [str(ds.stim_ids[i]) for i in idx]

    def on_captions(ds, idx, *a, **kw):
        received["semantic_targets"] += [int(ds.labels[i]) for i in idx]

    def on_semantic(f_tr, t_tr, f_va, t_va, cfg, prototypes=None, *a, **kw):
        received["semantic_candidates"].append(prototypes)

    def on_refiner(stimuli, te, cfg=None, progress=True, device="cpu", saliency_maps=None):
        received["refiner"] += list(stimuli.stim_ids)
        received["refiner_maps"] += list(saliency_maps[1]) if saliency_maps is not None else []

    def on_classifier(stimuli, cfg=None, progress=True, device="cpu", stim_ids=None, val_ids=None,
                      checkpoint_dir=None, extra=None):
        received["classifier"] += list(stim_ids)
        received["classifier_val"] += list(val_ids or [])
        received["judge"] += [] if extra is None else extra[1].tolist()

    def on_baseline(self, X, y):
        received["baseline"] += list(y)

    real_draw = {name: getattr(DemoStimulusSet, name) for name in ("image", "image_upright", "image_at")}

    def drawn(name):
        def draw(self, stim_id, *a, **kw):
            received["drawn"].append(str(stim_id))
            return real_draw[name](self, stim_id, *a, **kw)
        return draw

    root.mkdir(parents=True, exist_ok=True)
    cfg = root / "holdout.toml"
    cfg.write_text(HOLDOUT_TOML)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(encoder, "train_encoder", spy(encoder, "train_encoder", on_encoder))
        mp.setattr(recipe, "images_tensor", spy(recipe, "images_tensor", on_images))
        mp.setattr(data, "caption_targets", spy(data, "caption_targets", on_captions))
        mp.setattr(semantic, "train_semantic", spy(semantic, "train_semantic", on_semantic))
        mp.setattr(demo_refiner, "train_demo_refiner", spy(demo_refiner, "train_demo_refiner", on_refiner))
        mp.setattr(classifier, "train_image_classifier",
                   spy(classifier, "train_image_classifier", on_classifier))
        mp.setattr(LinearBaseline, "fit", spy(LinearBaseline, "fit", on_baseline))
        for name in real_draw:
            mp.setattr(DemoStimulusSet, name, drawn(name))
        torch.manual_seed(0)
        out = recipe.train_bundle(DATA, root / "bundle", str(cfg), device="cpu", seed=0, progress=False,
                                  holdout_classes=HOLDOUT)
    received["encoder"] = np.asarray(received["encoder"]).tolist()
    _TRAINED.update(bundle=out, received=received)
    return out, received
