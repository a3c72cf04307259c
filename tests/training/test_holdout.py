"""Issue 22: held-out classes, by construction. No model component is given a trial or an
image of a held-out class; the bundle records them, and which classes each component saw;
the open-set semantic head holds every class's caption, the held-out ones included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.holdout_bundle import DATA, HOLDOUT, trained_holdout_bundle


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return trained_holdout_bundle(tmp_path_factory.getbasetemp() / "holdout_shared")


def test_no_stage_is_given_a_held_out_trial_or_image(trained):
    from bci_app.stimuli import DemoStimulusSet

    out, got = trained
    demo = DemoStimulusSet()
    held = {demo.class_names().index(c) for c in HOLDOUT}

    def classes_of(stim_ids):
        return {demo.label(s) for s in stim_ids}

    for stage in ("encoder", "semantic_targets", "baseline"):  # labels of the trials each stage got
        assert got[stage], f"{stage} received nothing"
        assert not held & set(got[stage]), f"{stage} was given trials of held-out classes"
    for stage in ("gan_images", "refiner", "refiner_maps", "classifier", "classifier_val", "drawn"):
        assert got[stage], f"{stage} received nothing"
        assert not held & classes_of(got[stage]), f"{stage} was given images of held-out classes"
    # the open-set head trained among the captions of the classes with training trials only
    [candidates] = got["semantic_candidates"]
    trained_classes = json.loads((out / "config.json").read_text())["training"]["component_classes"]["semantic"]
    assert len(candidates) == len(trained_classes) <= 40 - len(HOLDOUT)
    # the judge alone learnt the held-out classes, from rendered instances (none a split's image)
    assert set(got["judge"]) == held


def test_the_bundle_records_the_held_out_classes_and_what_each_component_saw(trained):
    """Read from the bundle, checked against the data."""
    from bci_app.datasets import load_spec

    out, _ = trained
    cfg = json.loads((out / "config.json").read_text())
    tr = cfg["training"]
    assert tr["holdout_classes"] == [c for c in cfg["classes"] if c in HOLDOUT]
    assert tr["config"]["data"]["holdout_classes"] == HOLDOUT
    ds = load_spec(DATA, val_frac=0.2)
    held_ids = {ds.stim_ids[i] for i in range(len(ds)) if ds.class_names[ds.labels[i]] in HOLDOUT}
    assert held_ids and not held_ids & (set(tr["split_images"]["train"]) | set(tr["split_images"]["val"]))
    assert held_ids <= set(tr["split_images"]["test"])
    trained_classes = sorted({ds.class_names[ds.labels[i]] for i in range(len(ds))
                              if ds.stim_ids[i] in set(tr["split_images"]["train"])}, key=cfg["classes"].index)
    comp = tr["component_classes"]
    for name in ("encoder", "generator", "semantic", "refiner", "baseline"):
        assert comp[name] == trained_classes, name
        assert tr["component_images"][name] == (["train", "rendered"] if name == "refiner" else ["train"]), name
    assert set(comp["classifier"]) == set(trained_classes) | set(HOLDOUT)
    assert tr["component_images"]["classifier"] == ["train", "rendered"]
    judge = tr["rendered_instances"]["classifier"]
    assert sorted(judge["classes"]) == sorted(cfg["classes"].index(c) for c in HOLDOUT)
    assert not set(tr["rendered_instances"]["refiner"]["classes"]) & set(judge["classes"])


def test_open_set_head_holds_every_class_caption(trained):
    """The saved head's candidates are every class's label caption (prototype k = class k), so
    a held-out class can be chosen; its weights do not change when candidates are offered."""
    from bci_app.models.bundle import load_component
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.models.text import build_text_encoder

    out, _ = trained
    cfg = json.loads((out / "config.json").read_text())
    head = load_component(out, "semantic")
    assert head.open_set and head.n_prototypes == len(cfg["classes"])
    assert cfg["semantic"]["open_set"]["trained_on"] == cfg["training"]["component_classes"]["semantic"]
    te = build_text_encoder(cfg["semantic"]["text_encoder"])
    captions = te.encode([f"an image of a {c}" for c in cfg["classes"]])
    torch.testing.assert_close(head.prototypes, captions.flatten(1))
    rec = Reconstructor.from_bundle(out, device="cpu")
    x = np.random.default_rng(0).standard_normal((6, 128, rec.n_times)).astype(np.float32)
    [r] = rec.reconstruct(x[:1])
    assert r.caption_probs.shape == (40,)
    feats = rec.encoder(torch.as_tensor(x))
    logits = head._logits(feats, head.trunk(feats))
    held = [cfg["classes"].index(c) for c in HOLDOUT]
    head.set_candidates(captions[held])  # only the held-out captions: the same scores for them
    torch.testing.assert_close(head._logits(feats, head.trunk(feats)), logits[:, held])
    assert head.config["n_prototypes"] == len(HOLDOUT)


def test_holdout_classes_are_checked_and_parsed(tmp_path):
    from bci_app.datasets import load_spec
    from bci_app.training.command import parse_holdout
    from bci_app.training.recipe import hold_out, resolve_holdout, train_bundle

    assert parse_holdout("red star, 3,purple ring") == ["red star", 3, "purple ring"]
    assert parse_holdout("none") == [] and parse_holdout(None) is None
    ds = load_spec("synthetic:80,seed=1")
    assert resolve_holdout(ds, ["red star", 0]) == [0, ds.class_names.index("red star")]
    assert resolve_holdout(ds, None) == []  # the demo set defines no zero-shot classes of its own
    with pytest.raises(ValueError, match=r"\['pink star', 40\] are not classes"):
        resolve_holdout(ds, ["pink star", 40, "red star"])
    with pytest.raises(ValueError, match="leaves no class to train on"):
        resolve_holdout(ds, list(range(40)))
    split = hold_out(ds.splits, ds.labels, [0, 5])
    assert sorted(np.concatenate(list(split.values()))) == list(range(len(ds)))
    assert not np.isin(ds.labels[np.concatenate([split["train"], split["val"]])], [0, 5]).any()
    assert np.isin(np.flatnonzero(np.isin(ds.labels, [0, 5])), split["test"]).all()
    with pytest.raises(ValueError, match="not classes of the data"):
        train_bundle("synthetic:80,seed=1", tmp_path / "b", {"data": {"min_trials_per_class": 0}},
                     stages=["baseline"], holdout_classes=["pink star"], device="cpu")
    assert not (tmp_path / "b" / "config.json").exists()
    # the open-set head's candidates are label captions: refused before any stage runs
    with pytest.raises(ValueError, match="semantic.open_set needs prototypes = true"):
        train_bundle("synthetic:80,seed=1", tmp_path / "c", {"semantic": {"open_set": True, "prototypes": False}})
    assert not (tmp_path / "c").exists()


def test_things_eeg2_holds_out_its_test_concepts(tmp_path):
    """THINGS-EEG2: the default held-out classes are the data set's own test concepts."""
    from bci_app.datasets import load_spec
    from bci_app.training.recipe import hold_out, resolve_holdout
    from tests.datasets.test_loaders import write_things

    write_things(tmp_path, n_train=20, n_test=3)
    ds = load_spec(f"things-eeg2:{tmp_path}")
    test_concepts = sorted({ds.class_names[ds.labels[i]] for i in ds.splits["test"]})
    assert ds.zero_shot_classes == test_concepts == ["test concept 0000", "test concept 0001", "test concept 0002"]
    held = resolve_holdout(ds, None)
    assert [ds.class_names[k] for k in held] == test_concepts
    split = hold_out(ds.splits, ds.labels, held)
    for k in split:  # its split already keeps them out of training
        np.testing.assert_array_equal(split[k], ds.splits[k])
    assert resolve_holdout(ds, []) == []  # [] holds nothing out
