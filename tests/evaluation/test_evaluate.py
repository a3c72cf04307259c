"""``evaluate``: split guards, metrics.json contract keys, report.html that opens and shows images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
import pytest

from bci_app.datasets import EEGImageDataset, split_by_image
from bci_app.evaluation.evaluate import evaluate, resolve_ways
from bci_app.evaluation.report_html import check_html
from bci_app.evaluation.split import select_split
from bci_app.models.ssim import ssim
from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import DemoStimulusSet

CONTRACT_KEYS = {
    "n", "ways", "topk", "acc", "chance", "ssim", "inception_score",
    "baseline", "leakage_probe", "split", "per_subject",
}


@dataclass
class _R:
    saliency: np.ndarray
    image: np.ndarray
    class_probs: np.ndarray | None = None


class OracleHalfReconstructor:
    """Reconstructs even trials perfectly (returns the seen image) and odd ones as grey.

    The trial index travels in ``x[:, 0, 0]``. Its classifier knows the demo images: one-hot
    on the true class for a demo image, uniform for anything else. So the expected N-way
    accuracy is exactly the fraction of even test trials (uniform scores tie and ties
    count as failures), and SSIM is 1 on even trials.
    """

    def __init__(self, ds: EEGImageDataset) -> None:
        self.ds = ds
        self.lookup = {ds.image(i).tobytes(): int(ds.labels[i]) for i in range(len(ds))}
        self.grey = np.full_like(ds.image(0), 128)

    def reconstruct(self, x: np.ndarray, seeds=None, **switches) -> list[_R]:
        out = []
        for xi in x:
            i = int(round(float(xi[0, 0])))
            img = self.ds.image(i) if i % 2 == 0 else self.grey
            out.append(_R(saliency=self.grey, image=np.array(img)))
        return out

    def classify_images(self, images: np.ndarray) -> np.ndarray:
        p = np.full((len(images), self.ds.n_classes), 1.0 / self.ds.n_classes)
        for j, im in enumerate(images):
            lab = self.lookup.get(np.ascontiguousarray(im).tobytes())
            if lab is not None:
                p[j] = 0.0
                p[j, lab] = 1.0
        return p


def _tiny_dataset(n_images_per_class: int = 3, design: str = "rapid", seed: int = 0) -> EEGImageDataset:
    """40 classes x ``n_images_per_class`` images, one trial each, two subjects; X carries the index."""
    stim = DemoStimulusSet(n_per_class=n_images_per_class, size=32)
    ids = stim.stim_ids
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids)) if design == "rapid" else np.arange(len(ids))
    ids = [ids[i] for i in order]
    n = len(ids)
    labels = np.array([stim.label(s) for s in ids])
    X = rng.normal(size=(n, 4, 40)).astype(np.float32)
    X[:, 0, 0] = np.arange(n)
    spec = PreprocessingSpec(sfreq=100.0, ch_names=["a", "b", "c", "d"], tmin=0.0, tmax=0.4)
    return EEGImageDataset(
        X=X, labels=labels, stim_ids=ids, subjects=np.arange(n) % 2,
        class_names=stim.class_names(), spec=spec, image_loader=lambda s: np.array(stim.image(s)),
        splits=split_by_image(ids, test_frac=0.25, val_frac=0.1, seed=1), source="tiny",
    )


def test_resolve_ways_caps_and_says_so():
    assert resolve_ways(None, 40) == (40, None)  # the default fits the data, without a warning
    assert resolve_ways(None, 200) == (50, None)
    assert "50-way requested but the data set has 40" in resolve_ways(50, 40)[1]
    assert resolve_ways(10, 40) == (10, None)
    with pytest.raises(ValueError, match="ways"):
        resolve_ways(1, 40)


def test_split_with_shared_image_raises():
    ds = _tiny_dataset()
    bad = dict(ds.splits)
    bad["test"] = np.r_[ds.splits["test"], ds.splits["train"][:1]]  # one training image in test
    ds.splits = bad
    shared = ds.stim_ids[ds.splits["train"][0]]  # the error names the image in both splits
    with pytest.raises(ValueError, match=shared):
        select_split(ds, None)
    with pytest.raises(ValueError, match=shared):
        evaluate(OracleHalfReconstructor(ds), ds, tempfile.mkdtemp(), progress=False)


def test_split_from_images_recorded_in_bundle():
    ds = _tiny_dataset()
    train_imgs = {ds.stim_ids[i] for i in ds.splits["train"]}
    cfg = {"training": {"data": "other", "split_images": {"train": sorted(train_imgs), "val": [], "test": []}}}
    splits, info = select_split(ds, cfg)
    # everything the bundle did not train on is test (val images included here)
    assert len(splits["test"]) == len(ds) - len(train_imgs)
    assert info["guaranteed_unseen"] is True
    _, info2 = select_split(ds, {"training": {"data": "something else"}})
    assert info2["guaranteed_unseen"] is False and "may have been seen" in info2["warning"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    ds = _tiny_dataset()
    out = tmp_path_factory.mktemp("eval")
    m = evaluate(
        OracleHalfReconstructor(ds), ds, out, ways=None, topk=1, draws=20, seed=0,
        meta={"bundle": "fake", "data": "tiny"}, progress=False,
    )
    return ds, out, m


def test_evaluate_metrics_match_hand_expectation(evaluated):
    ds, out, m = evaluated
    te = ds.splits["test"]
    even = (te % 2 == 0)
    assert m["n"] == len(te)
    assert m["ways"] == 40 and m["chance"] == pytest.approx(1 / 40)
    assert not any("-way requested" in n for n in m["notes"])  # the default fits the data quietly
    # perfect reconstructions always win, grey ones always tie (= fail)
    assert m["acc"] == pytest.approx(even.mean())
    # SSIM: 1 on even trials, SSIM(seen, grey) on odd ones
    seen = ds.images(te)
    grey = np.full_like(seen[0], 128)
    expected = np.where(even, 1.0, [ssim(s, grey) for s in seen])
    assert m["ssim_resolution"] == 32
    assert m["ssim"] == pytest.approx(expected.mean(), rel=1e-9)
    assert m["ssim_chance"] < m["ssim"]
    assert m["inception_score"] is None and m["inception_score_reason"]
    # per-subject rows add up to the whole
    rows = m["per_subject"]
    assert sum(r["n"] for r in rows.values()) == len(te)
    subj = np.asarray(ds.subjects)[te]
    for s, r in rows.items():
        assert r["acc"] == pytest.approx(even[subj == int(s)].mean())
    # split written, by image, disjoint
    assert m["split"]["by"] == "image" and m["split"]["sizes"]["test"] == len(te)
    # the probe on a randomised order is not flagged; the baseline on noise is near chance
    assert m["leakage_probe"]["flagged"] is False
    assert m["baseline"]["acc"] < 0.2


def test_metrics_json_has_contract_keys(evaluated):
    _, out, m = evaluated
    on_disk = json.loads((out / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(on_disk)
    assert isinstance(on_disk["acc"], float) and isinstance(on_disk["ssim"], float)
    assert {"acc"} <= set(on_disk["baseline"])
    assert {"acc", "chance", "flagged"} <= set(on_disk["leakage_probe"])


def test_report_html_is_well_formed_and_images_resolve(evaluated):
    _, out, m = evaluated
    info = check_html(out / "report.html")
    # best and worst grids: 6 rows x 3 images each
    assert info["images"] == 36
    text = (out / "report.html").read_text()
    assert "Table 1" in text and "Table 2" in text and "<svg" in text


def test_check_html_catches_broken_reports(tmp_path):
    p = tmp_path / "r.html"
    p.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><div><p>x</div></body></html>")
    with pytest.raises(ValueError, match="closes <p>"):
        check_html(p)
    p.write_text('<html><head><title>x</title></head><body><img src="data:image/png;base64,AAAA"></body></html>')
    with pytest.raises(ValueError, match="does not resolve"):
        check_html(p)
    p.write_text('<html><head><title>x</title></head><body><img src="missing.png"></body></html>')
    with pytest.raises(ValueError, match="does not exist"):
        check_html(p)


def test_block_ordered_data_trips_the_probe_in_evaluate(tmp_path):
    ds = _tiny_dataset(design="block")  # classes in order: time gives the class away
    m = evaluate(OracleHalfReconstructor(ds), ds, tmp_path, draws=5, progress=False)
    assert m["leakage_probe"]["flagged"] is True
    assert "LEAKAGE" in m["notes"][0]
    assert "LEAKAGE" in (tmp_path / "report.html").read_text()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium installed (apt-get install chromium)")
def test_report_opens_headless_and_shows_images(evaluated):
    _, out, _ = evaluated
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
            "--virtual-time-budget=5000", "--dump-dom", (out / "report.html").resolve().as_uri(),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})
    assert res.returncode == 0, res.stderr[-2000:]
    # the page's own load handler counts the images that decoded
    assert 'data-images-loaded="36/36"' in res.stdout, res.stdout[-500:]
    assert '<p id="imgcheck"></p>' in res.stdout  # the page reports no failed image


@pytest.mark.skipif(_chromium() is None, reason="no chromium installed (apt-get install chromium)")
def test_report_screenshot_is_not_blank(evaluated, tmp_path):
    from PIL import Image

    _, out, _ = evaluated
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
            "--window-size=1200,3000", f"--screenshot={shot}", (out / "report.html").resolve().as_uri(),
        ]
        subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": profile})
    img = np.asarray(Image.open(shot).convert("RGB"))
    # many distinct colours = rendered demo images, not just text on white
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200


# ----------------------------------------------------------------------------- end to end
TINY_TOML = """
[train]
seed = 0
[data]
split_seed = 0
test_frac = 0.2
val_frac = 0.2
min_trials_per_class = 0   # a few trials per class: train anyway (recorded)
[encoder]
name = "binned_linear"
n_outputs = 16
kwargs = { bin_ms = 40.0, dropout = 0.2 }
epochs = 2
batch_classes = 8
per_class = 2
[gan]
resolution = 16
z_dim = 8
base_channels = 8
epochs = 1
batch_size = 16
[semantic]
text_encoder = { type = "minilm", seq_len = 8 }
hidden = 32
prototypes = true
epochs = 2
batch_size = 32
[refiner]
type = "demo"
train = { resolution = 16, ae_width = 8, ae_levels = 2, unet_channels = [16, 16], ae_steps = 2, ae_batch_size = 8, unet_steps = 2, batch_size = 8, steps = 2, strength = 0.5 }
[classifier]
train = false
"""


@pytest.mark.slow
def test_cli_evaluate_on_a_tiny_trained_bundle(tmp_path):
    """`bci-app evaluate` on a bundle trained here (tiny config) writes both files (~3 min on CPU)."""
    import torch

    from bci_app.cli import main
    from bci_app.training.classifier import train_image_classifier
    from bci_app.training.recipe import train_bundle

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    torch.manual_seed(0)
    bundle = train_bundle("synthetic:120,seed=3", tmp_path / "bundle", config=cfg, device="cpu", seed=0)
    # a (barely trained) demo image classifier, so that N-way top-k can be computed
    clf, _ = train_image_classifier(DemoStimulusSet(), {"steps": 3, "width": 4}, progress=False)
    clf.save(bundle / "classifier")
    conf = json.loads((bundle / "config.json").read_text())
    conf["classifier"] = {"path": "classifier"}
    (bundle / "config.json").write_text(json.dumps(conf))

    out = tmp_path / "eval"
    rc = main(["evaluate", "--bundle", str(bundle), "--data", "synthetic:160,seed=7", "--out", str(out),
               "--draws", "10", "--device", "cpu", "--ablation"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert CONTRACT_KEYS <= set(m)
    assert m["ways"] == 40 and m["chance"] == pytest.approx(0.025)
    assert 0 <= m["acc"] <= 1 and -1 <= m["ssim"] <= 1
    assert m["baseline"]["acc"] is not None
    d = m["baseline"]["model_minus_baseline"]  # paired on the same trials
    assert d["diff"] == pytest.approx(m["acc"] - m["baseline"]["acc"]) and d["ci"][0] <= d["diff"] <= d["ci"][1]
    assert 0 < d["p"] <= 1
    assert set(m["leakage_probe"]) >= {"acc", "chance", "flagged"}
    # the bundle records its training images, so the test trials are kept to unseen images
    assert m["split"]["guaranteed_unseen"] is True
    bundle_cfg = json.loads((bundle / "config.json").read_text())
    trained = set(bundle_cfg["training"]["split_images"]["train"]) | set(
        bundle_cfg["training"]["split_images"]["val"]
    )
    assert trained and m["split"]["sizes"]["test"] > 0 and m["split"]["disjoint_checked"]
    assert {"I+S (full)", "S only", "I only", "I, no refiner"} <= set(m["ablation"]["rows"])
    rows = m["ablation"]["rows"]
    for name in ("S only", "I only"):  # paired comparison with the full model, same trials
        d = rows[name]["full_minus_row"]
        assert d["ssim"]["diff"] == pytest.approx(rows["I+S (full)"]["ssim"] - rows[name]["ssim"], abs=1e-9)
        assert d["acc"]["diff"] == pytest.approx(rows["I+S (full)"]["acc"] - rows[name]["acc"], abs=1e-9)
        assert d["ssim"]["ci"][0] <= d["ssim"]["diff"] <= d["ssim"]["ci"][1] and 0 < d["ssim"]["p"] <= 1
    for name in ("I+S (full)", "S only", "I only", "I, no refiner"):  # each row against the baseline
        d = rows[name]["row_minus_baseline"]
        assert d["diff"] == pytest.approx(rows[name]["acc"] - m["baseline"]["acc"], abs=1e-9)
    # where the image path loses what the EEG decodes: the drawing stage is the model's own
    # figure (same scores, draws, ground truth); the decoder and caption read-outs exist
    st = m["stages"]
    assert st["rows"]["drawing"]["acc"] == pytest.approx(m["acc"], abs=1e-12)
    for name in ("decoder", "caption"):
        assert 0 <= st["rows"][name]["acc"] <= 1 and 0 <= st["rows"][name]["top1_all_classes"] <= 1
    assert set(st["top1_lost"]) == {"decoder->caption", "caption->drawing"}
    html_text = (out / "report.html").read_text()
    assert "Where the image path loses what the EEG decodes" in html_text
    assert check_html(out / "report.html")["images"] > 0


def test_paired_difference():
    from bci_app.evaluation.stats import paired_difference

    rng = np.random.default_rng(0)
    b = rng.normal(0.6, 0.1, 300)
    better = paired_difference(b + 0.02 + rng.normal(0, 0.01, 300), b)
    assert better["diff"] == pytest.approx(0.02, abs=0.003)
    assert better["ci"][0] > 0 and better["p"] < 0.01
    same = paired_difference(b + rng.normal(0, 0.01, 300), b)
    assert same["ci"][0] < 0 < same["ci"][1] and same["p"] > 0.01
    with pytest.raises(ValueError, match="equal-length"):
        paired_difference(b, b[:10])


# ----------------------------------------------------------------------------- issue 15
def _expected_baseline_acc(model, ds, te, seed: int, draws: int, ways: int) -> np.ndarray:
    """The baseline's per-trial N-way successes computed here, independently of evaluate."""
    from bci_app.evaluation.baseline_score import class_probs
    from bci_app.evaluation.metrics import n_way_top_k_per_trial

    pb = class_probs(model, ds.X[te], ds.n_classes)
    return n_way_top_k_per_trial(pb, np.asarray(ds.labels)[te], ways, 1, draws, rng=seed)


def test_one_ground_truth_for_every_row_stated_in_json_and_report(evaluated):
    from bci_app.models.baseline import LinearBaseline

    ds, out, m = evaluated
    on_disk = json.loads((out / "metrics.json").read_text())
    assert "label" in on_disk["ground_truth"] and "every row" in on_disk["ground_truth"]
    assert "acc_vs_dataset_labels" not in on_disk  # no second ground truth
    assert "Ground truth" in (out / "report.html").read_text()
    # the fallback baseline (no baseline.safetensors here) is said to be one, and it is scored
    # against the same labels with the same draws as the model: recompute it independently
    assert on_disk["baseline"]["trained_on"].startswith("FALLBACK")
    assert any(n.startswith("BASELINE FALLBACK") for n in on_disk["notes"])
    tr, te = ds.splits["train"], ds.splits["test"]
    lb = LinearBaseline(sfreq=ds.spec.sfreq).fit(ds.X[tr], np.asarray(ds.labels)[tr])
    per_b = _expected_baseline_acc(lb, ds, te, seed=0, draws=20, ways=40)
    assert on_disk["baseline"]["acc"] == pytest.approx(per_b.mean(), abs=1e-12)
    d = on_disk["baseline"]["model_minus_baseline"]
    assert d["diff"] == pytest.approx(on_disk["acc"] - per_b.mean(), abs=1e-12)


def test_the_bundles_own_baseline_is_scored_on_the_same_trials(tmp_path):
    from bci_app.models.baseline import LinearBaseline

    ds = _tiny_dataset()
    tr, te = ds.splits["train"], ds.splits["test"]
    labels = np.asarray(ds.labels)
    # a baseline "trained by `train`" (here: on shuffled labels, so it differs from a refit)
    own = LinearBaseline(sfreq=ds.spec.sfreq).fit(ds.X[tr], np.random.default_rng(5).permutation(labels[tr]))
    bundle = tmp_path / "bundle"
    own.save(bundle)
    rec = OracleHalfReconstructor(ds)
    rec.bundle_dir = bundle
    cfg = {"training": {"data": "tiny", "component_images": {"baseline": ["train"]},
                        "data_summary": {"splits": {"train": len(tr)}}}}
    m = evaluate(rec, ds, tmp_path / "eval", draws=20, progress=False, bundle_config=cfg)
    b = m["baseline"]
    assert b["trained_on"].startswith("the bundle's own baseline") and f"{len(tr)} training trials" in b["trained_on"]
    assert not any(n.startswith("BASELINE FALLBACK") for n in m["notes"])
    per_b = _expected_baseline_acc(LinearBaseline.load(bundle), ds, te, seed=0, draws=20, ways=40)
    assert b["acc"] == pytest.approx(per_b.mean(), abs=1e-12)
    refit = _expected_baseline_acc(LinearBaseline(sfreq=ds.spec.sfreq).fit(ds.X[tr], labels[tr]), ds, te, 0, 20, 40)
    assert not np.array_equal(per_b, refit)  # it really is the bundled one, not a refit
    assert b["model_minus_baseline"]["diff"] == pytest.approx(m["acc"] - per_b.mean(), abs=1e-12)


def _recorded_splits(ds) -> dict[str, list[str]]:
    return {k: sorted({ds.stim_ids[i] for i in v}) for k, v in ds.splits.items()}


def test_a_component_trained_on_a_test_image_makes_evaluate_say_so(tmp_path):
    ds = _tiny_dataset()
    split_images = _recorded_splits(ds)
    n_test_images = len(split_images["test"])
    clean = {c: ["train"] for c in ("encoder", "generator", "semantic", "refiner", "classifier", "baseline")}
    rec = OracleHalfReconstructor(ds)

    def run(component_images, name):
        training = {"data": "tiny", "split_images": split_images}
        if component_images is not None:
            training["component_images"] = component_images
        return evaluate(rec, ds, tmp_path / name, draws=5, progress=False, bundle_config={"training": training})

    m = run({**clean, "refiner": ["train", "test"]}, "leaky")
    exp = m["component_images"]
    assert exp["test_images_unseen"] is False and exp["seen_test"] == {"refiner": n_test_images}
    assert m["notes"][0].startswith("TEST IMAGES SEEN") and f"refiner ({n_test_images} of {n_test_images}" in m["notes"][0]
    assert "TEST IMAGES SEEN" in (tmp_path / "leaky" / "report.html").read_text()
    # "all" images (e.g. a classifier trained on the whole stimulus set) is seen too
    m_all = run({**clean, "classifier": ["all"]}, "all")
    assert set(m_all["component_images"]["seen_test"]) == {"classifier"}
    # trained on the training split only: derived as unseen, no warning
    m_ok = run(clean, "clean")
    assert m_ok["component_images"]["test_images_unseen"] is True
    assert not any(n.startswith("TEST IMAGES SEEN") for n in m_ok["notes"])
    # a referenced component whose images nobody recorded ("external"): not derivable, said so
    m_ext = run({**clean, "refiner": "external"}, "external")
    assert m_ext["component_images"]["test_images_unseen"] is None
    assert m_ext["component_images"]["unknown"] == ["refiner"]
    assert any(n.startswith("COMPONENT RECORD") and "refiner (external)" in n for n in m_ext["notes"])
    # no record: nothing can be derived, and evaluate says that instead of claiming either
    m_none = run(None, "none")
    assert m_none["component_images"]["test_images_unseen"] is None
    assert any(n.startswith("COMPONENT RECORD") for n in m_none["notes"])


def test_save_images_writes_the_scored_pairs(tmp_path):
    from PIL import Image

    ds = _tiny_dataset()
    m = evaluate(OracleHalfReconstructor(ds), ds, tmp_path, draws=5, progress=False, save_images=True)
    d = tmp_path / "images"
    n = m["n"]
    assert sorted(p.name for p in d.glob("*.png")) == sorted(
        [f"{i:04d}_seen.png" for i in range(n)] + [f"{i:04d}_recon.png" for i in range(n)])
    pairs = [(np.asarray(Image.open(d / f"{i:04d}_seen.png")), np.asarray(Image.open(d / f"{i:04d}_recon.png")))
             for i in range(n)]
    assert all(s.shape == (m["ssim_resolution"],) * 2 + (3,) for s, _ in pairs)
    # SSIM recomputed from the files is the reported figure
    assert np.mean([ssim(s, r) for s, r in pairs]) == pytest.approx(m["ssim"], abs=1e-12)
    index = json.loads((d / "index.json").read_text())
    assert [e["stim_id"] for e in index] == [ds.stim_ids[i] for i in ds.splits["test"]]


def test_same_reconstructor_data_and_seed_give_identical_metrics_json(tmp_path):
    """Determinism of the evaluation itself, with a real (tiny) Reconstructor and refiner."""
    from tests.models.test_reconstructor import tiny_reconstructor

    ds = _tiny_dataset(n_images_per_class=1)
    texts = []
    for run in ("a", "b"):
        rec = tiny_reconstructor(n_times=40)  # built afresh: nothing carried over between runs
        evaluate(rec, ds, tmp_path / run, draws=10, seed=3, ablation=True, progress=False)
        texts.append((tmp_path / run / "metrics.json").read_text())
    assert texts[0] == texts[1]
    rows = json.loads(texts[0])["ablation"]["rows"]
    assert all(rows[k]["acc"] is not None for k in ("S only", "I only", "I, no refiner"))
    # another draw seed gives other draws (the comparison above could fail)
    evaluate(tiny_reconstructor(n_times=40), ds, tmp_path / "c", draws=10, seed=4, progress=False)
    assert (tmp_path / "c" / "metrics.json").read_text() != texts[0]


@pytest.mark.slow
def test_same_bundle_data_and_seed_give_identical_metrics_json(tmp_path):
    """Determinism, end to end through `bci-app evaluate` on a tiny bundle (with --ablation; ~2 min)."""
    from bci_app.cli import main
    from tests.evaluation.tiny_bundle import write_tiny_bundle

    bundle = write_tiny_bundle(tmp_path / "bundle")
    texts = []
    for run in ("a", "b"):
        out = tmp_path / run
        rc = main(["evaluate", "--bundle", str(bundle), "--data", "synthetic:80,seed=5", "--out", str(out),
                   "--draws", "10", "--device", "cpu", "--ablation", "--seed", "3"])
        assert rc == 0
        texts.append((out / "metrics.json").read_text())
    assert texts[0] == texts[1]
    m = json.loads(texts[0])
    assert m["n"] > 0 and {"S only", "I only", "I, no refiner"} <= set(m["ablation"]["rows"])
    assert "acc" in m["ablation"]["rows"]["S only"]["full_minus_row"]


# ---------------------------------------------------------------- photodiode (--photodiode CHANNEL)
def test_photodiode_summary_goes_to_metrics_and_report(tmp_path):
    from bci_app.preprocessing.photodiode import photodiode_summary

    ds = _tiny_dataset()
    ds.photodiode = photodiode_summary([12.0, 20.0, 31.0, np.nan, 44.0])
    m = evaluate(OracleHalfReconstructor(ds), ds, tmp_path, draws=5, progress=False)
    pd = json.loads((tmp_path / "metrics.json").read_text())["photodiode"]
    assert pd == m["photodiode"]
    assert {k: pd[k] for k in ("n", "missing", "min_ms", "max_ms")} == {"n": 5, "missing": 1, "min_ms": 12.0,
                                                                          "max_ms": 44.0}
    assert abs(pd["mean_ms"] - 26.75) < 1e-9 and pd["sd_ms"] > 0
    html_text = (tmp_path / "report.html").read_text()
    assert "marker-to-light delay" in html_text and 'aria-label="photodiode delay histogram"' in html_text
    assert check_html(tmp_path / "report.html")


def test_cli_evaluate_photodiode_reports_the_true_delays(tmp_path, capsys):
    """`evaluate --photodiode PD` on a simulated session whose light trails each marker by a
    known random 10-50 ms: mean and SD of the delays within 2 ms of the truth."""
    from bci_app.cli import main
    from bci_app.models import bundle as bundle_io
    from bci_app.simulation import simulate_raw
    from tests.evaluation.tiny_bundle import write_tiny_bundle
    from tests.preprocessing.test_photodiode import add_photodiode

    demo = bundle_io.read_bundle_config(bundle_io.resolve_bundle_path("demo"))
    bundle = write_tiny_bundle(tmp_path / "bundle")
    n = 50
    raw = simulate_raw(n, seed=4, sfreq=float(demo["spec"]["sfreq"]), on=0.3, off=0.2)
    truth = np.random.default_rng(11).uniform(0.010, 0.050, n)
    add_photodiode(raw, truth, name="PD", seed=5)
    raw.save(tmp_path / "s_raw.fif", verbose="error")
    out = tmp_path / "eval"
    rc = main(["evaluate", "--bundle", str(bundle), "--data", f"session:{tmp_path / 's_raw.fif'}",
               "--out", str(out), "--draws", "5", "--device", "cpu", "--photodiode", "PD"])
    assert rc == 0, capsys.readouterr().err
    pd = json.loads((out / "metrics.json").read_text())["photodiode"]
    assert (pd["n"], pd["missing"]) == (n, 0)
    assert abs(pd["mean_ms"] - 1000 * truth.mean()) < 2, pd
    assert abs(pd["sd_ms"] - 1000 * truth.std(ddof=1)) < 2, pd
    assert "photodiode PD: marker-to-light delay" in capsys.readouterr().out
    rc = main(["evaluate", "--bundle", str(bundle), "--data", f"session:{tmp_path / 's_raw.fif'}",
               "--out", str(out), "--draws", "5", "--device", "cpu", "--photodiode", "LIGHT"])
    assert rc == 2 and "'LIGHT': no such channel" in capsys.readouterr().err
