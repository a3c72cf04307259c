"""A tiny but complete bundle on disk (encoder, GAN generator, semantic head, DemoRefiner,
image classifier, optionally the linear baseline) for the synthetic data's montage, built
from tiny configs of the real classes (diffusers' get_dummy_components pattern)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bci_app.models import bundle as bundle_io


def write_tiny_bundle(out: Path, *, training: dict[str, Any] | None = None) -> Path:
    """Write a bundle for ``synthetic`` data (the demo bundle's montage, window and
    normalisation) into ``out``; ``training`` replaces its ``training`` record."""
    from bci_app.models.encoders import build_encoder
    from bci_app.models.image_classifier import ImageClassifier
    from bci_app.models.saliency_gan import SaliencyGenerator
    from bci_app.models.semantic import SemanticHead
    from tests.models.test_reconstructor import tiny_demo_refiner

    demo = bundle_io.read_bundle_config(bundle_io.resolve_bundle_path("demo"))
    n_chans, n_times, sfreq = len(demo["spec"]["ch_names"]), int(demo["n_times"]), float(demo["spec"]["sfreq"])
    torch.manual_seed(0)
    comps = {
        "encoder": build_encoder("shallow", n_chans, 6, n_times, sfreq=sfreq, n_filters=4),
        "generator": SaliencyGenerator(z_dim=4, cond_dim=6, resolution=8, base_channels=4),
        "semantic": SemanticHead(6, seq_len=2, embed_dim=8, hidden=8, n_prototypes=0),
    }
    with torch.no_grad():
        comps["semantic"].head.weight.mul_(20.0)
    cfg = {"spec": demo["spec"], "n_times": n_times, "classes": demo["classes"],
           "training": training or {"data": "synthetic:2000", "seed": 0},
           "refiner": {"type": "demo", "path": "refiner"}, "classifier": {"path": "classifier"}}
    bundle_io.save_bundle(out, cfg, comps)
    tiny_demo_refiner().save(out / "refiner")
    torch.manual_seed(0)
    ImageClassifier(n_classes=len(demo["classes"]), resolution=32, width=4).save(out / "classifier")
    return out


def set_training_record(bundle: Path, **record: Any) -> None:
    """Update ``training`` entries of a bundle's config.json."""
    p = bundle / "config.json"
    cfg = json.loads(p.read_text())
    cfg.setdefault("training", {}).update(record)
    p.write_text(json.dumps(cfg))
