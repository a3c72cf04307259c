"""Issue 22: `evaluate` scores the classes a bundle held out (metrics.json "zero_shot",
report.html), apart from the classic protocol's figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bci_app.evaluation.report_html import check_html
from tests.training.holdout_bundle import DATA, HOLDOUT, trained_holdout_bundle


def test_retrieval_known_answers():
    """Right captions: top-1 = 1 and significant; the neighbour's: 0; a zero prediction (no
    semantics) ties with every candidate, which counts against it; top-5 needs more than 5
    candidates."""
    from bci_app.evaluation.zero_shot import retrieval

    g = torch.Generator().manual_seed(0)
    cand = torch.randn(8, 3, 16, generator=g)
    truth = np.arange(40) % 8
    right, _ = retrieval(cand[truth] + 0.1 * torch.randn(40, 3, 16, generator=g), cand, truth)
    r1, r5 = right["retrieval_top1"], right["retrieval_top5"]
    assert (r1["value"], r1["chance"], r5["value"], r5["chance"]) == (1.0, 1 / 8, 1.0, 5 / 8)
    assert r1["p"] < 0.01 and r1["ci"][0] <= 1.0 <= r1["ci"][1] and r1["ways"] == 8
    wrong, cos = retrieval(cand[(truth + 1) % 8], cand, truth)
    assert wrong["retrieval_top1"]["value"] == 0.0 and wrong["retrieval_top1"]["p"] > 0.5
    assert cos.shape == (40, 8) and np.allclose(cos[np.arange(40), (truth + 1) % 8], 1.0)
    flat, _ = retrieval(torch.zeros(40, 3, 16), cand, truth)
    assert flat["retrieval_top1"]["value"] == 0.0 and flat["retrieval_top5"]["value"] == 0.0
    few, _ = retrieval(cand[truth[:8] % 4], cand[:4], truth[:8] % 4)
    assert few["retrieval_top5"] == {"value": None, "unavailable": "top-5 needs more than 5 held-out classes, "
                                                                   "there are 4"}


def test_nothing_to_score_without_held_out_classes(tmp_path):
    from bci_app.datasets import load_spec
    from bci_app.evaluation.zero_shot import add_zero_shot

    ds = load_spec("synthetic:40,seed=1")
    assert add_zero_shot(None, ds, {"training": {"holdout_classes": []}}, tmp_path) is None
    assert add_zero_shot(None, ds, {"training": {"holdout_classes": ["no such class"]}}, tmp_path) is None
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The held-out bundle, evaluate's output directory on DATA and what it printed, and DATA."""
    import contextlib
    import io

    from bci_app.cli import main
    from bci_app.datasets import load_spec

    root = tmp_path_factory.mktemp("zs")
    bundle, _ = trained_holdout_bundle(tmp_path_factory.getbasetemp() / "holdout_shared")
    out = root / "eval"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["evaluate", "--bundle", str(bundle), "--data", DATA, "--out", str(out), "--draws", "10",
                   "--device", "cpu"])
    assert rc == 0
    return bundle, out, printed.getvalue(), load_spec(DATA)


def test_metrics_json_scores_held_out_classes_apart(evaluated):
    bundle, out, printed, ds = evaluated
    m = json.loads((out / "metrics.json").read_text())
    conf = json.loads((bundle / "config.json").read_text())
    held = np.array([ds.class_names[k] in HOLDOUT for k in ds.labels])
    seen = set(conf["training"]["split_images"]["train"]) | set(conf["training"]["split_images"]["val"])
    unseen = np.array([s not in seen for s in ds.stim_ids])
    zs = m["zero_shot"]
    assert zs["classes"] == [c for c in ds.class_names if c in HOLDOUT]
    assert zs["n"] == int(held.sum()) == sum(zs["n_per_class"].values())  # every held-out trial is a test trial
    assert m["n"] == int((unseen & ~held).sum())  # the classic protocol: unseen images of trained classes
    assert "scored in zero_shot" in m["split"]["holdout_classes"]
    H = len(zs["classes"])
    for key, k in (("retrieval_top1", 1), ("retrieval_top5", 5), ("recon_acc", 1)):
        r = zs[key]
        assert r["chance"] == pytest.approx(k / H) and r["ways"] == H, key
        assert 0 <= r["value"] <= 1 and r["ci"][0] <= r["value"] <= r["ci"][1] and 0 < r["p"] <= 1, key
    # what saw the held-out classes: no model component, the judge from rendered instances
    assert zs["model_components_clean"] is True and zs["judge_knows_holdout"] is True
    assert set(zs["trained_on_holdout"]) == {"classifier"}
    r = zs["retrieval_top1"]
    assert f"zero-shot ({H} held-out classes, n={zs['n']}): retrieval_top1 {r['value']:.3f}" in printed


def test_retrieval_figure_recomputed_from_the_bundle(evaluated):
    """retrieval_top1: the cosine of the bundle's predicted embeddings with the held-out
    classes' caption embeddings, recomputed here from the saved components."""
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.models.text import build_text_encoder
    from bci_app.preprocessing import normalise

    bundle, out, _, ds = evaluated
    zs = json.loads((out / "metrics.json").read_text())["zero_shot"]
    rec = Reconstructor.from_bundle(bundle, device="cpu", load_refiner=False)
    idx = np.flatnonzero([ds.class_names[k] in HOLDOUT for k in ds.labels])
    with torch.no_grad():
        pred = rec.semantic(rec.encoder(torch.as_tensor(normalise(ds.X[idx], rec.spec)))).flatten(1)
    te = build_text_encoder(rec.config["semantic"]["text_encoder"])
    cand = te.encode([f"an image of a {c}" for c in zs["classes"]]).flatten(1)
    cos = torch.nn.functional.cosine_similarity(pred[:, None], cand[None], dim=-1)
    truth = [zs["classes"].index(ds.class_names[ds.labels[i]]) for i in idx]
    assert zs["retrieval_top1"]["value"] == pytest.approx(float((cos.argmax(1).numpy() == truth).mean()))


def test_report_shows_the_held_out_reconstructions(evaluated):
    out = evaluated[1]
    text = (out / "report.html").read_text()
    zs = json.loads((out / "metrics.json").read_text())["zero_shot"]
    assert "Zero-shot: " in text and "caption retrieval top-1" in text
    section = text[text.index("Zero-shot: "):]
    shown = [c for c in zs["classes"] if f"({c}): caption retrieved" in section]
    assert shown == [c for c in zs["classes"] if zs["n_per_class"][c] > 0]
    assert section.count("<img") == 3 * len(shown)  # seen, saliency, reconstruction
    assert check_html(out / "report.html")["images"] > 3 * len(shown)
