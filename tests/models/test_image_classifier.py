"""The image classifier that judges reconstructions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bci_app.models.image_classifier import ImageClassifier
from bci_app.stimuli import DemoStimulusSet
from bci_app.training.classifier import ClassifierConfig, augment, train_image_classifier


def test_trains_above_chance_quickly_on_a_subset_and_round_trips(tmp_path):
    stimuli = DemoStimulusSet(seed=0, n_per_class=10)
    ids = [s for s in stimuli.stim_ids if stimuli.label(s) < 8]  # 8 classes x 10 images
    cfg = ClassifierConfig(width=8, steps=60, batch_size=32, lr=5e-3, val_fraction=0.2)
    model, metrics = train_image_classifier(stimuli, cfg, progress=False, stim_ids=ids)
    assert metrics["n_val"] == 16 and metrics["n_train"] == 64
    assert metrics["loss_last"] < metrics["loss_first"]
    # 8 classes present: chance is 1/8 among them
    assert metrics["val_acc"] >= 0.4, metrics
    model.save(tmp_path / "clf", extra=metrics)
    loaded = ImageClassifier.load(tmp_path / "clf")
    imgs = stimuli.images(ids[:5])
    np.testing.assert_array_equal(model.eval().predict_proba(imgs), loaded.predict_proba(imgs))
    p = loaded.predict_proba(imgs)
    assert p.shape == (5, 40) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_classifier_checks_inputs_and_missing_files(tmp_path):
    model = ImageClassifier(width=8)
    with pytest.raises(ValueError, match="expected uint8 images"):
        model.predict_proba(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(FileNotFoundError, match="classifier.safetensors"):
        ImageClassifier.load(tmp_path)
    # any input size is resized to the model's resolution
    assert model.eval()(torch.rand(2, 3, 40, 40)).shape == (2, 40)


def test_augment_keeps_range_and_shape():
    x = torch.rand(4, 3, 64, 64)
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.equal(x, y)


def test_validation_images_are_held_out_and_checked():
    """Given validation images, it trains on the others only and measures on those."""
    stimuli = DemoStimulusSet(seed=0, n_per_class=4)
    ids = [s for s in stimuli.stim_ids if stimuli.label(s) < 4]
    train, val = ids[::2], ids[1::2]
    cfg = ClassifierConfig(width=4, steps=3, batch_size=8)
    _, metrics = train_image_classifier(stimuli, cfg, progress=False, stim_ids=train, val_ids=val)
    assert (metrics["n_train"], metrics["n_val"]) == (len(train), len(val))
    with pytest.raises(ValueError, match="also training images"):
        train_image_classifier(stimuli, cfg, progress=False, stim_ids=train, val_ids=train[:2])
    with pytest.raises(ValueError, match="unknown classifier setting"):
        train_image_classifier(stimuli, {"step": 3}, progress=False)
