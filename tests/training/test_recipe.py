"""End-to-end `run_train` on a small synthetic set with a tiny config: all stages, bundle
saved, resume, reload gives identical outputs."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest
import torch

TINY_TOML = """
[train]
seed = 0
keep_checkpoints = true

[data]
split_seed = 0
test_frac = 0.2
val_frac = 0.2
min_trials_per_class = 0   # a few trials per class: train anyway (recorded)

[encoder]
name = "binned_linear"
n_outputs = 16
kwargs = { bin_ms = 40.0, dropout = 0.2 }
epochs = 3
batch_classes = 8
per_class = 2
patience = 5

[gan]
resolution = 16
z_dim = 8
base_channels = 8
epochs = 2
batch_size = 16

[semantic]
text_encoder = { type = "minilm", seq_len = 8 }
hidden = 32
epochs = 3
batch_size = 32

[refiner]
type = "demo"
train = { resolution = 16, ae_width = 8, ae_levels = 2, unet_channels = [16, 16], ae_steps = 2, ae_batch_size = 8, unet_steps = 2, batch_size = 8, steps = 2, strength = 0.5 }

[classifier]
train = true
config = { steps = 4, width = 4, batch_size = 8 }
"""


RENDERED: set[str] = set()  # every demo image drawn while the module's bundle trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from bci_app.stimuli import DemoStimulusSet
    from bci_app.training.command import run_train

    root = tmp_path_factory.mktemp("train")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out = root / "bundle"
    args = Namespace(data="synthetic:120,seed=3", out=str(out), images=None, config=str(cfg),
                     stages="encoder,gan,semantic,refiner,baseline", epochs=None, device="cpu", seed=0,
                     resume=False)
    torch.manual_seed(0)
    real = {name: getattr(DemoStimulusSet, name) for name in ("image", "image_upright", "image_at")}

    def spy(name):
        def draw(self, stim_id, *a, **kw):
            RENDERED.add(str(stim_id))
            return real[name](self, stim_id, *a, **kw)
        return draw

    try:
        for name in real:
            setattr(DemoStimulusSet, name, spy(name))
        assert run_train(args) == 0
    finally:
        for name, fn in real.items():
            setattr(DemoStimulusSet, name, fn)
    return root, out, args


def test_bundle_written_with_config_and_spec(trained):
    _, out, _ = trained
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["data"] == "synthetic:120,seed=3"
    assert cfg["training"]["seed"] == 0
    assert cfg["training"]["config"]["encoder"]["n_outputs"] == 16
    assert cfg["training"]["stages_done"] == ["encoder", "gan", "semantic", "refiner", "baseline"]
    assert len(cfg["spec"]["ch_names"]) == 128 and cfg["spec"]["sfreq"] == 1000.0
    assert len(cfg["spec"]["norm_mean"]) == 128
    for name in ("encoder", "generator", "semantic", "discriminator", "baseline"):
        assert (out / f"{name}.safetensors").is_file()
    assert (out / "refiner").is_dir()
    split = cfg["training"]["data_summary"]["splits"]
    assert split["train"] > 0 and split["val"] > 0 and split["test"] > 0


def test_reload_gives_identical_outputs(trained):
    from bci_app.models.reconstructor import Reconstructor

    _, out, _ = trained
    x = np.random.default_rng(0).standard_normal((2, 128, 440)).astype(np.float32)
    r1 = Reconstructor.from_bundle(out, device="cpu").reconstruct(x)
    r2 = Reconstructor.from_bundle(out, device="cpu").reconstruct(x)
    assert len(r1) == 2
    assert r1[0].saliency.shape == (16, 16, 3) and r1[0].saliency.dtype == np.uint8
    assert r1[0].image.dtype == np.uint8 and r1[0].image.ndim == 3
    assert set(r1[0].times_ms) == {"encoder", "saliency", "semantic", "refiner"}
    for a, b in zip(r1, r2, strict=True):
        np.testing.assert_array_equal(a.saliency, b.saliency)
        np.testing.assert_array_equal(a.image, b.image)


def test_resume_skips_finished_stages_and_keeps_weights(trained):
    from safetensors.torch import load_file

    from bci_app.training.command import run_train

    _, out, args = trained
    before = load_file(str(out / "encoder.safetensors"))
    args2 = Namespace(**{**vars(args), "resume": True, "stages": "encoder,gan,semantic"})
    assert run_train(args2) == 0
    after = load_file(str(out / "encoder.safetensors"))
    for k in before:
        torch.testing.assert_close(before[k], after[k])


def test_resume_continues_a_stage_from_its_checkpoint(trained, tmp_path):
    """A stage checkpoint at epoch k: resuming runs only the remaining epochs."""
    from bci_app.training.command import run_train
    from bci_app.training.loop import read_progress

    root, out, args = trained
    ck = read_progress(out / "checkpoints" / "semantic")
    assert ck is not None and ck["units_done"] == 3
    cfg = json.loads((out / "config.json").read_text())
    cfg["training"]["stages_done"] = ["encoder", "gan"]  # pretend semantic was interrupted
    (out / "config.json").write_text(json.dumps(cfg))
    args2 = Namespace(**{**vars(args), "resume": True, "stages": "semantic", "epochs": 4})
    assert run_train(args2) == 0
    ck2 = read_progress(out / "checkpoints" / "semantic")
    assert ck2["units_done"] == 4 and len(ck2["history"]) == 4
    assert ck2["history"][:3] == ck["history"]


def test_every_component_sees_only_training_images(trained):
    """Issue 15: no component trains on a test image; the bundle says what each one saw."""
    _, out, _ = trained
    cfg = json.loads((out / "config.json").read_text())
    split = cfg["training"]["split_images"]
    assert RENDERED and not RENDERED & set(split["test"]), "a test image was drawn while training"
    assert cfg["training"]["component_images"] == {
        "encoder": ["train"], "generator": ["train"], "semantic": ["train"],
        "refiner": ["train"], "classifier": ["train"], "baseline": ["train"]}
    refiner = json.loads((out / "refiner" / "refiner_config.json").read_text())
    assert refiner["training"]["n_images"] == len(split["train"])
    clf = cfg["classifier"]["metrics"]
    assert (clf["n_train"], clf["n_val"]) == (len(split["train"]), len(split["val"]))


def test_baseline_is_a_bundle_component(trained):
    from bci_app.datasets import load_spec
    from bci_app.models.baseline import LinearBaseline
    from bci_app.preprocessing import PreprocessingSpec, normalise

    _, out, _ = trained
    cfg = json.loads((out / "config.json").read_text())
    base = LinearBaseline.load(out)
    assert cfg["baseline"]["file"] == "baseline.safetensors" and cfg["baseline"]["n_channels"] == 128
    assert base.sfreq == cfg["spec"]["sfreq"] and base.bin_ms == 40.0
    # the recorded validation accuracy is the saved decoder's, on the bundle's normalised windows
    ds = load_spec("synthetic:120,seed=3", val_frac=0.2)
    X = normalise(ds.X, PreprocessingSpec.from_dict(cfg["spec"]))
    va = ds.splits["val"]
    assert base.score(X[va], ds.labels[va]) == pytest.approx(cfg["training"]["metrics"]["baseline"]["val_acc"])


def test_baseline_stage_added_to_an_existing_bundle(trained, tmp_path):
    """`train --stages baseline --resume` adds the baseline and touches nothing else."""
    import hashlib
    import shutil

    from bci_app.cli import main
    from bci_app.training.recipe import train_bundle

    _, out, _ = trained
    b = tmp_path / "b"
    shutil.copytree(out, b, ignore=shutil.ignore_patterns("checkpoints"))
    (b / "baseline.safetensors").unlink()
    cfg = json.loads((b / "config.json").read_text())
    del cfg["baseline"], cfg["training"]["component_images"]["baseline"]
    cfg["training"]["stages_done"] = [s for s in cfg["training"]["stages_done"] if s != "baseline"]
    (b / "config.json").write_text(json.dumps(cfg))

    def digests():
        return {p.relative_to(b).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(b.rglob("*")) if p.is_file() and p.name != "config.json"}

    before = digests()
    rc = main(["train", "--stages", "baseline", "--resume", "--data", "synthetic:120,seed=3", "--out", str(b),
               "--seed", "0", "--device", "cpu"])
    assert rc == 0
    after = digests()
    assert after.pop("baseline.safetensors") and after == before
    new = json.loads((b / "config.json").read_text())
    assert new["training"]["component_images"]["baseline"] == ["train"]
    assert new["training"]["stages_done"] == cfg["training"]["stages_done"] + ["baseline"]
    for key in ("spec", "components", "refiner", "classifier", "semantic", "gan", "encoder"):
        assert new[key] == cfg[key], key
    for table in ("encoder", "gan", "semantic", "refiner", "classifier"):
        assert new["training"]["config"][table] == cfg["training"]["config"][table], table
    # another split than the bundle's components were trained on: refused, naming it
    with pytest.raises(ValueError, match="trained on another split"):
        train_bundle("synthetic:120,seed=3", b, {"data": {"split_seed": 1, "val_frac": 0.2}},
                     stages=["baseline"], resume=True, device="cpu")


def test_unknown_stage_and_setting_are_clear_errors(tmp_path):
    from bci_app.config import load_train_config
    from bci_app.training.recipe import train_bundle

    with pytest.raises(ValueError, match="unknown stage"):
        train_bundle("synthetic:10", tmp_path / "b", stages=["encoder", "decoder"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[encoder]\nlearning_rate = 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_train_config(bad)
    # refiner settings are checked before any stage runs
    with pytest.raises(ValueError, match="unknown demo refiner settings"):
        train_bundle("synthetic:10", tmp_path / "b", {"refiner": {"train": {"unet_step": 3}}})
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_layout_recipe_end_to_end(tmp_path):
    """The demo recipe's layout path on a tiny run: the encoder regresses the object's
    x, y, size; the GAN draws them; the refiner trains on its maps with decoded-layout
    targets; the semantic head samples sharpened. Saved, reloaded and run."""
    from bci_app.config import load_train_config
    from bci_app.models import bundle as bundle_io
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.training.recipe import train_bundle

    toml = (TINY_TOML
            .replace("patience = 5\n", "patience = 5\nlda_init = true\nattributes = true\nlayout = true\nn_outputs_note = 0\n")
            .replace("n_outputs = 16", "n_outputs = 64")
            .replace("batch_size = 16\n", "batch_size = 16\ncondition = \"posterior\"\nlayout = true\n")
            .replace("batch_size = 32\n", "batch_size = 32\nsample_temperature = 0.25\nprototypes = true\n"
                                           "logits_from = \"features\"\n")
            .replace("steps = 2, strength = 0.5 }",
                     "steps = 2, strength = 0.5, p_saliency = 0.5, saliency_targets = \"decoded\", "
                     "p_uncond = 0.2 }\nsample_guidance = 1.5\nsample_grid = [\"2:0.5:1.5\", \"2:1.0:1.5\"]")
            .replace("n_outputs_note = 0\n", ""))
    cfg_path = tmp_path / "layout.toml"
    cfg_path.write_text(toml)
    cfg = load_train_config(cfg_path)
    # a clean subject (snr 4): with 160 trials the layout must decode on validation to be kept
    out = train_bundle("synthetic:160,seed=3,snr=4", tmp_path / "b", cfg, device="cpu", seed=0)
    conf = bundle_io.read_bundle_config(out)
    assert conf["training"]["selection"]["encoder"]["layout"]["kept"] is True
    lay = conf["encoder"]["layout"]
    assert lay["names"] == ["x", "y", "size"] and len(lay["outputs"]) == 3 and len(lay["val_r2"]) == 3
    assert conf["gan"]["layout"] == lay and conf["gan"]["condition"] == "posterior"
    rec = Reconstructor.from_bundle(out, device="cpu")
    sharp = conf["training"]["selection"]["semantic"]["sharpening"]  # judged on validation drawings
    assert rec.generator.layout_dims == 3 and rec.semantic.temperature == (0.25 if sharp["kept"] else 1.0)
    assert rec.refiner.guidance_scale == 1.5  # classifier-free guidance, stored with the refiner
    # the sampling defaults were chosen on the validation drawings among the grid, and recorded
    samp = conf["training"]["selection"]["sampling"]
    assert [r["setting"] for r in samp["rows"]] == ["2:0.5:1.5", "2:1.0:1.5"] and samp["n_val"] > 0
    best = max(samp["rows"], key=lambda r: (round(r["val_drawing_acc"], 6), r["val_ssim"]))
    assert samp["chosen"] == best["setting"] and rec.refiner.strength == float(best["setting"].split(":")[1])
    # the caption mixture keeps its fine-tuned weights only when they beat the encoder read-out
    mix = conf["training"]["selection"]["semantic"]["mixture_logits"]
    head_w = rec.encoder_head.fc.weight.detach()
    assert mix["kept"] == (mix["p"] < 0.1)
    assert torch.equal(rec.semantic.logits.weight.detach(), head_w) == (not mix["kept"])
    # train's "caption" figure is the most probable caption, as evaluate's caption row reads it
    sem_m = conf["training"]["metrics"]["semantic"]
    assert sem_m["val_acc_rule"] == "most probable caption"
    if not mix["kept"]:  # then it is the read-out's class on every validation trial
        assert sem_m["val_acc"] == pytest.approx(mix["val_acc_readout"])
    x = np.zeros((2, rec.encoder.n_chans, rec.n_times), np.float32)
    [a, b] = rec.reconstruct(x)
    assert a.saliency.shape == (16, 16, 3) and a.image.shape == (16, 16, 3)
    # `evaluate --guidance W` / Reconstructor(guidance=W) overrides the stored weight
    xr = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    img = {w: Reconstructor.from_bundle(out, device="cpu", guidance=w).reconstruct(xr)[0].image
           for w in (None, 1.5, 1.0)}
    np.testing.assert_array_equal(img[None], img[1.5])
    assert np.abs(img[None].astype(int) - img[1.0].astype(int)).max() > 0
    with pytest.raises(ValueError, match="guidance_scale must be"):
        Reconstructor.from_bundle(out, device="cpu", guidance=-1.0)
    # the GAN stage alone, on an encoder without layout outputs: a clear error
    cfg2 = load_train_config(cfg_path)
    cfg2.encoder.layout = False
    with pytest.raises(ValueError, match="gan.layout = true needs an encoder"):
        train_bundle("synthetic:160,seed=3,snr=4", tmp_path / "b2", cfg2, stages=["encoder", "gan"], device="cpu",
                     seed=0)
    # guidance without caption dropout: refused before the refiner trains
    cfg3 = load_train_config(cfg_path)
    cfg3.refiner.train["p_uncond"] = 0.0
    with pytest.raises(ValueError, match="caption dropout"):
        train_bundle("synthetic:160,seed=3,snr=4", out, cfg3, stages=["refiner"], device="cpu", seed=0)


def test_layout_without_layouts_is_a_recorded_decision():
    """encoder.layout on a data set without per-trial layouts: the ridges are dropped and the
    selection says why (never silently); on an encoder that cannot hold them, a clear error."""
    from bci_app.config import EncoderSettings
    from bci_app.preprocessing import PreprocessingSpec
    from bci_app.training.encoder import train_encoder

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = (rng.standard_normal((40, 4, 40)) + y[:, None, None]).astype(np.float32)
    spec = PreprocessingSpec(sfreq=1000.0)
    cfg = EncoderSettings(layout=True, lda_init=True, n_outputs=8, epochs=1, batch_classes=2, per_class=2,
                          kwargs={"bin_ms": 10.0})
    _, _, m = train_encoder(X, y, X, y, 2, cfg, spec, layout=None, progress=False)
    assert m["selection"]["layout"] == {"kept": False, "reason": "the data set has no per-trial object layouts"}
    assert m["layout"] is None and m["selection"]["lda"]["val_acc"] == 1.0
    with pytest.raises(ValueError, match="binned_linear encoder with lda_init"):
        train_encoder(X, y, X, y, 2, EncoderSettings(layout=True, lda_init=False, n_outputs=8), spec)


def test_shipped_bundle_matches_its_recipe():
    """The shipped demo bundle is what `configs/demo.toml` makes: the recipe it records is the
    file's, its refiner samples with the file's defaults, and its record says every
    component was trained on the training split's images."""
    import tomllib
    from pathlib import Path

    from bci_app.models.bundle import read_bundle_config, resolve_bundle_path

    recipe = tomllib.loads((Path(__file__).parents[2] / "configs" / "demo.toml").read_text())
    bundle = resolve_bundle_path("demo")
    recorded = read_bundle_config(bundle)["training"]["config"]

    def within(sub, full, where):  # every setting of the recipe, as recorded (defaults may be added)
        if isinstance(sub, dict):
            for k, v in sub.items():
                assert k in full, f"{where}.{k} missing from the bundle"
                within(v, full[k], f"{where}.{k}")
        else:
            assert sub == full, f"{where}: recipe {sub!r}, bundle {full!r}"

    for section in ("encoder", "gan", "semantic", "refiner"):
        within(recipe[section], recorded[section], section)
    r = recipe["refiner"]
    saved = json.loads((bundle / "refiner" / "refiner_config.json").read_text())
    # the sampling defaults: the grid's choice on the validation trials (else the file's own)
    chosen = read_bundle_config(bundle)["training"].get("selection", {}).get("sampling")
    if r.get("sample_grid"):
        assert [row["setting"] for row in chosen["rows"]] == r["sample_grid"]
        expect = tuple(float(v) for v in chosen["chosen"].split(":"))
    else:
        expect = (r["sample_steps"], r["sample_strength"], r["sample_guidance"])
    assert (saved["steps"], saved["strength"], saved["guidance_scale"]) == expect
    assert saved["training"]["config"]["guidance_scale"] == r["sample_guidance"]
    # every component of the shipped bundle saw training-split images only
    comp = read_bundle_config(bundle)["training"]["component_images"]
    assert comp == dict.fromkeys(("encoder", "generator", "semantic", "refiner", "classifier", "baseline"),
                                 ["train"])


@pytest.mark.slow
def test_calibration_recipe_on_another_montage(tmp_path):
    """configs/calibration.toml on a 64-channel, 512 Hz synthetic set (epochs cut to 1): the
    EEG side is trained, the demo bundle's refiner and classifier are referenced, and the
    bundle reconstructs windows of that montage."""
    from pathlib import Path

    from bci_app.config import load_train_config
    from bci_app.models.bundle import read_bundle_config, resolve_bundle_path
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.training.recipe import train_bundle

    cfg = load_train_config(Path(__file__).parents[2] / "configs" / "calibration.toml",
                            overrides={"semantic": {"batch_size": 32}, "data": {"min_trials_per_class": 0}})
    out = train_bundle("synthetic:160,seed=3,montage=biosemi64,sfreq=512", tmp_path / "b", cfg, epochs=1,
                       device="cpu", progress=False)
    conf = read_bundle_config(out)
    demo = resolve_bundle_path("demo").resolve()
    assert conf["spec"]["sfreq"] == 512.0 and len(conf["spec"]["ch_names"]) == 64
    # referenced by name, never by an absolute path into this install
    assert conf["refiner"] == {"path": "refiner", "type": "demo", "bundle": "demo"}
    assert conf["classifier"]["bundle"] == "demo" and conf["classifier"]["path"] == "classifier"
    assert str(demo) not in json.dumps(conf)
    assert conf["training"]["pretrained"] == {"refiner": "demo", "classifier": "demo"}
    demo_record = read_bundle_config("demo")["training"].get("component_images", {})
    comp = conf["training"]["component_images"]
    assert comp["refiner"] == demo_record.get("refiner", "external")
    assert comp["classifier"] == demo_record.get("classifier", "external")
    assert {k: comp[k] for k in ("encoder", "generator", "semantic", "baseline")} == dict.fromkeys(
        ("encoder", "generator", "semantic", "baseline"), ["train"])
    assert not (out / "refiner").exists() and (out / "baseline.safetensors").is_file()
    # the prototype sharpening was judged on the validation trials' drawings, and recorded
    sharp = conf["training"]["selection"]["semantic"]["sharpening"]
    # every temperature of the recipe's grid was judged on the validation drawings, and the
    # one whose drawings show the caption most often is the candidate (ties: the milder)
    grid = {row["temperature"]: row for row in sharp["grid"]}
    assert set(grid) == {0.25, 0.1, 0.03, 1.0}
    best = max((t for t in grid if t != 1.0), key=lambda t: (grid[t]["val_drawing_shows_caption"],
                                                             grid[t]["val_drawing_acc"], t))
    assert sharp["temperature"] == best
    assert sharp["val_drawing_shows_caption"] == grid[best]["val_drawing_shows_caption"]
    assert sharp["val_drawing_shows_caption_without"] == grid[1.0]["val_drawing_shows_caption"]
    # kept only when the drawings show the caption more often (McNemar over every validation
    # trial) and are right no less often
    assert sharp["kept"] == (sharp["p"] < 0.1 and sharp["val_drawing_acc"] >= sharp["val_drawing_acc_without"])
    if sharp["kept"]:
        assert sharp["val_drawing_shows_caption"] > sharp["val_drawing_shows_caption_without"]
    from bci_app.models.bundle import load_component

    assert load_component(out, "semantic").temperature == (best if sharp["kept"] else 1.0)
    rec = Reconstructor.from_bundle(out, device="cpu")
    x = np.random.default_rng(0).standard_normal((2, 64, rec.n_times)).astype(np.float32)
    [a, _] = rec.reconstruct(x)
    assert a.image.shape == (64, 64, 3) and a.class_probs is not None and a.class_probs.shape == (40,)
    # the bundle travels: copied elsewhere it loads and reconstructs the same
    import shutil

    moved = shutil.copytree(out, tmp_path / "elsewhere" / "copied", ignore=shutil.ignore_patterns("checkpoints"))
    shutil.rmtree(out)
    [b, _] = Reconstructor.from_bundle(moved, device="cpu").reconstruct(x)
    np.testing.assert_array_equal(a.image, b.image)
    # a semantic head on other embeddings than the referenced refiner's: refused
    cfg.semantic.text_encoder = {"type": "minilm", "seq_len": 8}
    with pytest.raises(ValueError, match="referenced refiner"):
        train_bundle("synthetic:160,seed=3,montage=biosemi64,sfreq=512", tmp_path / "c", cfg, epochs=1,
                     stages=["encoder", "semantic", "refiner"], device="cpu", progress=False)


def test_sample_grid_needs_a_refiner_the_recipe_trains():
    """A sampling grid on a recipe that references another bundle's refiner is refused before
    any stage runs (its choice would have to be written into the other bundle)."""
    from bci_app.config import TrainConfig
    from bci_app.training.recipe import _check_component_settings

    cfg = TrainConfig()
    cfg.refiner.pretrained = "demo"
    cfg.refiner.sample_grid = ["4:0.5:1.25"]
    with pytest.raises(ValueError, match="references 'demo'"):
        _check_component_settings(cfg, ["encoder"])


def test_rerun_selections_record_the_settings_they_used():
    """``train --stages refiner --resume`` with a recipe whose sharpening temperature changed:
    the choices are made again with the new value, so the bundle records that value, while
    the semantic stage's own settings (it did not run) stay the bundle's."""
    from bci_app.config import TrainConfig, to_dict
    from bci_app.training.recipe import _recorded_settings

    old = to_dict(TrainConfig())
    old["semantic"].update(sample_temperature=0.25, epochs=7)
    new = TrainConfig()
    new.semantic.sample_temperature, new.semantic.epochs = 0.1, 60
    new.refiner.sample_grid = ["4:0.5:1.25"]
    rec = _recorded_settings(old, new, ["refiner"])
    assert rec["semantic"]["sample_temperature"] == 0.1 and rec["semantic"]["epochs"] == 7
    assert rec["refiner"]["sample_grid"] == ["4:0.5:1.25"]
    # a run that makes no choice (encoder only) keeps the recorded value
    assert _recorded_settings(old, new, ["encoder"])["semantic"]["sample_temperature"] == 0.25



def test_sample_temperature_one_value_or_a_grid_and_bad_values_named():
    """``[semantic] sample_temperature``: a temperature or a list of them; anything else is
    refused before any stage runs, naming the setting and what was expected."""
    from bci_app.config import TrainConfig
    from bci_app.training.recipe import _check_component_settings, sample_temperatures

    assert sample_temperatures(0.1) == [0.1] and sample_temperatures([0.25, 0.1]) == [0.25, 0.1]
    assert sample_temperatures(None) == []
    for bad in ([], [0.0], [-1.0], [0.1, "x"], True):
        with pytest.raises(ValueError, match="semantic.sample_temperature"):
            sample_temperatures(bad)
    cfg = TrainConfig()
    cfg.semantic.sample_temperature = [0.1, 0]
    with pytest.raises(ValueError, match=r"temperature > 0"):
        _check_component_settings(cfg, ["encoder"])


def test_few_trials_of_a_class_or_a_class_only_in_validation_is_an_error_or_a_recorded_decision(tmp_path):
    """A calibration session (80 trials over 40 classes: 1-2 training trials a class, "blue
    circle" in validation only) is refused before any stage runs, naming the classes and the way out;
    with ``[data] min_trials_per_class = 0`` it trains, and the bundle records the decision."""
    from bci_app.models import bundle as bundle_io
    from bci_app.training.recipe import train_bundle

    with pytest.raises(ValueError) as err:
        train_bundle("synthetic:80,seed=3", tmp_path / "refused", {}, stages=["baseline"], device="cpu",
                     progress=False)
    msg = str(err.value)
    assert "fewer than 5 training trials" in msg and "min_trials_per_class = 0" in msg
    assert "1 class(es) only in the validation split (never decodable): blue circle" in msg
    assert not (tmp_path / "refused" / "baseline.safetensors").exists()
    out = train_bundle("synthetic:80,seed=3", tmp_path / "b", {"data": {"min_trials_per_class": 0}},
                       stages=["baseline"], device="cpu", progress=False)
    rec = bundle_io.read_bundle_config(out)["training"]["selection"]["data"]
    assert rec["decision"] == "trained anyway ([data] min_trials_per_class = 0)"
    assert rec["classes_with_few_trials"] and rec["min_training_trials"] < 5
    assert rec["classes_only_in_validation"] == ["blue circle"]
