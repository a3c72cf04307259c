"""The floor: a bundle's decoder is never below its own linear read-out.

Trained as a lab would (configs/calibration.toml, its EEG side) on data of the *other*
simulator structure (shared ERP components, no shape/colour structure), on a cap and rate
the demo never saw, with a session that holds a subset of the classes in any order of ids;
judged on a second session of images the bundle never saw, trial by trial against the
bundle's linear baseline. This is the test that would have caught the class-index bug of
``fit_lda`` (decoder at chance while the baseline read 0.27).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

CALIBRATION = Path(__file__).parents[2] / "configs" / "calibration.toml"


@pytest.mark.slow
def test_decoder_is_not_below_its_baseline_on_the_components_simulator(tmp_path):
    from bci_app.config import load_train_config
    from bci_app.datasets import load_spec
    from bci_app.evaluation.stats import paired_difference
    from bci_app.models.baseline import LinearBaseline
    from bci_app.models.bundle import load_component, read_bundle_config
    from bci_app.preprocessing import PreprocessingSpec, normalise
    from bci_app.training.encoder import encode
    from bci_app.training.recipe import train_bundle

    cap = "model=components,classes=20,montage=biosemi32,sfreq=250"
    cfg = load_train_config(CALIBRATION)
    out = train_bundle(f"synthetic:900,seed=21,{cap}", tmp_path / "b", cfg, stages=["encoder", "baseline"],
                       device="cpu", progress=False)
    conf = read_bundle_config(out)
    sel = conf["training"]["selection"]
    # every optional term was judged on validation against the plain LDA, and recorded
    assert {"lda", "attributes", "layout", "triplet", "decoder"} <= set(sel["encoder"])
    assert sel["encoder"]["layout"]["kept"] is False  # the components EEG carries no layout
    assert sel["encoder"]["decoder"]["val_acc"] >= sel["encoder"]["decoder"]["baseline_val_acc"]
    assert sel["data"]["classes_trained"] == 20

    # a second session: its trials of images the bundle never trained on
    spec = PreprocessingSpec.from_dict(conf["spec"])
    raw = PreprocessingSpec.from_dict({**conf["spec"], "norm_mean": None, "norm_std": None})
    held = load_spec(f"synthetic:900,seed=22,{cap}", preprocessing=raw)
    seen = set(conf["training"]["split_images"]["train"]) | set(conf["training"]["split_images"]["val"])
    te = np.array([i for i, s in enumerate(held.stim_ids) if str(s) not in seen])
    assert len(te) > 200
    X, y = normalise(held.X[te], spec), held.labels[te]
    enc, head = load_component(out, "encoder"), load_component(out, "encoder_head")
    with torch.no_grad():
        decoded = head(encode(enc, X)).argmax(1).numpy()
    base = LinearBaseline.load(out)
    right_dec, right_base = (decoded == y).astype(float), (base.predict(X) == y).astype(float)
    assert right_base.mean() > 3 / 20  # the data are decodable (chance 0.05)
    d = paired_difference(right_dec, right_base, seed=0)
    assert d["ci"][1] >= 0, (f"decoder {right_dec.mean():.3f} below its baseline {right_base.mean():.3f} "
                             f"beyond the CI: {d}")
