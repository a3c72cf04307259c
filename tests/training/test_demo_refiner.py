"""The demo refiner: a small latent diffusion model trained on the procedural images."""

from __future__ import annotations

import math

import pytest
import torch

from bci_app.models.refiners import DemoRefiner, build_refiner, load_refiner
from bci_app.stimuli import DemoStimulusSet
from bci_app.training.demo_refiner import (
    DemoRefinerConfig,
    degrade,
    make_demo_components,
    stimulus_tensors,
    train_demo_refiner,
)


class ToyTextEncoder:
    """Deterministic caption embeddings [N, 6, 32] (the MiniLM one is tested in test_text)."""

    seq_len, dim, name, kind = 6, 32, "toy", "toy"

    def encode(self, captions, batch_size=64):
        out = []
        for c in captions:
            g = torch.Generator().manual_seed(
                sum(ord(ch) * (i + 1) for i, ch in enumerate(c)) % (2**31)
            )
            out.append(torch.randn(self.seq_len, self.dim, generator=g))
        return torch.stack(out)

    def config(self):
        return {"type": "toy", "seq_len": self.seq_len, "dim": self.dim}


def tiny_cfg(**kw):
    base = dict(
        resolution=16,
        ae_width=16,
        ae_levels=2,
        ae_steps=6,
        ae_batch_size=8,
        unet_channels=(32, 32),
        unet_heads=2,
        unet_steps=40,
        batch_size=8,
        lr=2e-3,
        warmup_steps=2,
        ema_decay=0.0,
        steps=2,
        strength=1.0,
        seed=0,
    )
    base.update(kw)
    return DemoRefinerConfig(**base)


@pytest.fixture(scope="module")
def stimuli():
    return DemoStimulusSet(seed=0, n_per_class=2, size=16)


@pytest.fixture(scope="module")
def trained(stimuli):
    return train_demo_refiner(stimuli, ToyTextEncoder(), tiny_cfg(), progress=False)


def test_training_reduces_the_denoising_loss(trained):
    ex = trained.extra
    assert ex["n_images"] == 80
    assert ex["unet_loss_last"] < 0.7 * ex["unet_loss_first"], ex
    assert trained.latent_scale > 0 and trained.vae.config.scaling_factor == trained.latent_scale


def test_demo_refiner_save_load_identical_outputs(trained, tmp_path):
    trained.save(tmp_path / "refiner")
    for loaded in (
        DemoRefiner.from_pretrained(tmp_path / "refiner"),
        load_refiner(tmp_path / "refiner"),
        build_refiner({"type": "demo", "model": "refiner"}, base_dir=tmp_path),
    ):
        assert isinstance(loaded, DemoRefiner) and loaded.config["steps"] == 2
        sal = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1))
        emb = ToyTextEncoder().encode(["an image of a red star"] * 3)
        a = trained.refine(sal, emb, generator=torch.Generator().manual_seed(0))
        b = loaded.refine(sal, emb, generator=torch.Generator().manual_seed(0))
        assert a.shape == (3, 3, 16, 16) and 0 <= a.min() and a.max() <= 1
        assert torch.equal(a, b)
    # the directory is a diffusers pipeline too
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(
        tmp_path / "refiner",
        local_files_only=True,
        text_encoder=None,
        tokenizer=None,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    assert pipe.unet.config.cross_attention_dim == 32


def test_half_precision_save_is_smaller_and_close(trained, tmp_path):
    trained.save(tmp_path / "fp32")
    trained.save(tmp_path / "fp16", weights_dtype=torch.float16)
    size = {
        k: (tmp_path / k / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
        for k in ("fp32", "fp16")
    }
    assert size["fp16"] < 0.6 * size["fp32"]
    loaded = DemoRefiner.from_pretrained(tmp_path / "fp16")
    assert loaded.dtype == torch.float32
    sal = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    emb = ToyTextEncoder().encode(["an image of a red star"] * 2)
    a = trained.refine(sal, emb, generator=torch.Generator().manual_seed(0))
    b = loaded.refine(sal, emb, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=0, atol=2e-2)


def test_demo_refiner_img2img_counts_steps_and_checks(trained):
    calls = []
    h = trained.unet.register_forward_pre_hook(lambda m, a: calls.append(a[1]))
    try:
        sal = torch.rand(1, 3, 16, 16)
        emb = ToyTextEncoder().encode(["an image of a red star"])
        trained.refine(sal, emb, steps=3, strength=0.67)
    finally:
        h.remove()
    assert len(calls) == 2  # int(3 * 0.67) steps, the last two of the trailing schedule
    assert [int(t) for t in calls] == [int(t) for t in trained.timesteps(3, 1.0)[1:]]
    with pytest.raises(ValueError, match="steps \\* strength"):
        trained.refine(sal, emb, steps=3, strength=0.3)
    with pytest.raises(ValueError, match="prompt_embeds"):
        trained.refine(sal, torch.zeros(1, 16, 384))


def test_checkpoints_resume_to_the_same_model(stimuli, tmp_path, monkeypatch):
    from bci_app.training.loop import FitLoop, read_progress

    cfg = tiny_cfg(
        ae_steps=4, unet_steps=4, checkpoint_every=2, checkpoint_dir=str(tmp_path / "ck")
    )
    full = train_demo_refiner(
        stimuli, ToyTextEncoder(), tiny_cfg(ae_steps=4, unet_steps=4), progress=False
    )

    class Killed(Exception):
        pass

    real_save = FitLoop.save_checkpoint

    def save_then_die(self):
        path = real_save(self)
        if path is not None and path.name == "unet":
            raise Killed  # the process dies right after the UNet's first checkpoint (step 2)
        return path

    monkeypatch.setattr(FitLoop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train_demo_refiner(stimuli, ToyTextEncoder(), cfg, progress=False)
    monkeypatch.setattr(FitLoop, "save_checkpoint", real_save)
    assert read_progress(tmp_path / "ck" / "unet")["units_done"] == 2
    # accelerate's state (safetensors weights, optimiser, scheduler) + the loop's own state
    names = {p.name for p in (tmp_path / "ck" / "unet").iterdir()}
    assert {"model.safetensors", "loop_state.json", "loop_tensors.safetensors"} <= names
    resumed = train_demo_refiner(stimuli, ToyTextEncoder(), cfg, progress=False)
    for (k, a), b in zip(
        full.unet.state_dict().items(), resumed.unet.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=k, rtol=0, atol=0)


def test_degrade_keeps_position():
    stim = DemoStimulusSet(seed=0, n_per_class=1, size=64)
    x, _ = stimulus_tensors(stim, 64)
    y = degrade(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1

    def centroid(img):  # of the distance to the background colour (corner pixel)
        d = (img - img[:, :, :1, :1]).abs().sum(1)
        w = (d > 0.5 * d.amax((1, 2), keepdim=True)).float()  # the shape, not the noise
        w = w / w.sum((1, 2), keepdim=True)
        r = torch.arange(img.shape[-1], dtype=torch.float32)
        return torch.stack([(w.sum(2) * r).sum(1), (w.sum(1) * r).sum(1)], 1)

    assert (centroid(x) - centroid(y)).abs().median() < 3.0


def test_components_follow_the_config():
    unet, vae, sched = make_demo_components(DemoRefinerConfig(), cross_attention_dim=384)
    assert unet.config.sample_size == 16 and unet.config.cross_attention_dim == 384
    assert sched.config.prediction_type == "sample"
    assert sum(p.numel() for p in unet.parameters()) < 6e6
    with pytest.raises(ValueError, match="unknown demo refiner settings"):
        DemoRefinerConfig.from_dict({"unet_step": 3})


@pytest.mark.slow
def test_upright_targets_and_blank_inputs_train(stimuli):
    """upright_targets: the denoiser learns rotation-0 images (AE sees both sets); p_blank and
    colour_cast are accepted and the loss still falls."""
    up, _ = stimulus_tensors(stimuli, 16, upright=True)
    x, _ = stimulus_tensors(stimuli, 16)
    assert up.shape == x.shape and not torch.equal(up, x)
    ref = train_demo_refiner(stimuli, ToyTextEncoder(),
                             tiny_cfg(upright_targets=True, p_blank=0.3, colour_cast=1.0), progress=False)
    assert ref.extra["n_images"] == len(x)
    assert ref.extra["unet_loss_last"] < ref.extra["unet_loss_first"]
    with pytest.raises(ValueError, match="cannot draw upright"):
        class NoUpright:
            stim_ids = ["a"]
        stimulus_tensors(NoUpright(), 16, upright=True)


@pytest.mark.slow
def test_saliency_pairs_are_used_and_checked(stimuli):
    """p_saliency: real saliency maps (any resolution) stand in for degraded inputs."""
    ids = list(stimuli.stim_ids)[:6]
    maps = torch.rand(6, 3, 8, 8)
    ref = train_demo_refiner(stimuli, ToyTextEncoder(), tiny_cfg(upright_targets=True, p_saliency=0.5),
                             progress=False, saliency_maps=(maps, ids))
    assert ref.extra["unet_loss_last"] < ref.extra["unet_loss_first"]
    with pytest.raises(ValueError, match="not in the stimulus set"):
        train_demo_refiner(stimuli, ToyTextEncoder(), tiny_cfg(p_saliency=0.5), progress=False,
                           saliency_maps=(maps, ["c99_i99"] * 6))


@pytest.mark.slow
def test_decoded_layout_targets(stimuli):
    """saliency_targets="decoded": each map's target is its object drawn at the map's decoded
    layout; without layouts, or with an unknown setting, a clear error."""
    ids = list(stimuli.stim_ids)[:6]
    maps = torch.rand(6, 3, 8, 8)
    layouts = [(0.3, 0.7, 0.2)] * 6
    cfg = tiny_cfg(upright_targets=True, p_saliency=0.8, saliency_targets="decoded")
    ref = train_demo_refiner(stimuli, ToyTextEncoder(), cfg, progress=False,
                             saliency_maps=(maps, ids, layouts))
    assert ref.extra["unet_loss_last"] < ref.extra["unet_loss_first"]
    with pytest.raises(ValueError, match="decoded layouts"):
        train_demo_refiner(stimuli, ToyTextEncoder(), cfg, progress=False, saliency_maps=(maps, ids))
    # maps only in the second half (a curriculum); out-of-range fractions are refused
    ref2 = train_demo_refiner(stimuli, ToyTextEncoder(), tiny_cfg(upright_targets=True, p_saliency=0.8,
                              saliency_targets="decoded", saliency_after=0.5), progress=False,
                              saliency_maps=(maps, ids, layouts))
    assert ref2.extra["unet_loss_last"] < ref2.extra["unet_loss_first"]
    with pytest.raises(ValueError, match="saliency_after must be in"):
        train_demo_refiner(stimuli, ToyTextEncoder(), tiny_cfg(p_saliency=0.5, saliency_after=1.0),
                           progress=False, saliency_maps=(maps, ids, layouts))
    with pytest.raises(ValueError, match="saliency_targets must be"):
        train_demo_refiner(stimuli, ToyTextEncoder(), tiny_cfg(saliency_targets="seen_or_not"), progress=False)


def test_map_targets_shape_is_checked(stimuli):
    from bci_app.training.demo_refiner import train_unet

    cfg = tiny_cfg(p_saliency=0.5, unet_steps=2)
    images, labels = stimulus_tensors(stimuli, 16)
    unet, vae, sched = make_demo_components(cfg, cross_attention_dim=32)
    ref = DemoRefiner(unet, vae, sched, resolution=16, steps=2, strength=1.0, seq_len=6)
    emb = ToyTextEncoder().encode([stimuli.caption(k) for k in range(40)])
    bad = (torch.rand(3, 3, 8, 8), torch.tensor([0, 1, 2]), torch.rand(3, 3, 8, 8))
    with pytest.raises(ValueError, match="map targets must be"):
        train_unet(ref, images, labels, emb, cfg, progress=False, saliency_pairs=bad)


@pytest.mark.slow
def test_caption_dropout_trains_null_embeddings(stimuli):
    """p_uncond: that share of the UNet's training batches gets exactly-zero embeddings
    (the unconditional model classifier-free guidance needs); p_uncond = 0 gets none."""
    import bci_app.training.demo_refiner as dd

    seen = {}
    for p in (0.0, 0.5):
        cfg = tiny_cfg(unet_steps=30, p_uncond=p)
        unet, vae, sched = make_demo_components(cfg, cross_attention_dim=32)
        ref = DemoRefiner(unet, vae, sched, resolution=16, seq_len=6)
        rows = []

        def record(m, a, kw, rows=rows):
            rows.append(kw["encoder_hidden_states"].flatten(1).abs().sum(1))

        h = unet.register_forward_pre_hook(record, with_kwargs=True)
        try:
            images, labels = stimulus_tensors(stimuli, 16)
            losses = dd.train_unet(ref, images, labels, ToyTextEncoder().encode(
                [stimuli.caption(k) for k in range(40)]), cfg, progress=False)
        finally:
            h.remove()
        norms = torch.cat(rows)
        seen[p] = float((norms == 0).float().mean())
        assert len(losses) == 30 and all(torch.isfinite(torch.tensor(losses)))
    assert seen[0.0] == 0.0
    assert 0.35 < seen[0.5] < 0.65, seen  # 240 samples: binomial sd 0.03


def test_caption_dropout_fine_tune_phase(stimuli, tmp_path, monkeypatch):
    """uncond_steps > 0: the main steps see no null captions, then a fine-tune phase of
    uncond_steps sees p_uncond of them; each phase keeps its own checkpoint and a rerun
    resumes both instead of training again."""
    import bci_app.training.demo_refiner as dd

    zero_share = []
    real = dd.train_unet

    def spy(refiner, *a, **kw):  # records the null-caption share of every training batch
        def hook(m, args, kwargs):
            emb = kwargs["encoder_hidden_states"]
            zero_share.append(float((emb.flatten(1).abs().sum(1) == 0).float().mean()))

        h = refiner.unet.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            return real(refiner, *a, **kw)
        finally:
            h.remove()

    monkeypatch.setattr(dd, "train_unet", spy)
    cfg = tiny_cfg(unet_steps=12, uncond_steps=12, p_uncond=0.5, checkpoint_dir=str(tmp_path / "ck"),
                   checkpoint_every=4)
    ref = train_demo_refiner(stimuli, ToyTextEncoder(), cfg, progress=False)
    assert len(zero_share) == 24
    assert sum(zero_share[:12]) == 0.0
    assert 0.3 < sum(zero_share[12:]) / 12 < 0.7, zero_share  # 96 samples: sd 0.05
    assert (tmp_path / "ck" / "unet" / "loop_state.json").is_file()
    assert (tmp_path / "ck" / "unet_uncond" / "loop_state.json").is_file()
    assert ref.extra["unet_uncond_loss_last"] is not None
    # resumed from both checkpoints: no training step runs again, same weights
    zero_share.clear()
    again = train_demo_refiner(stimuli, ToyTextEncoder(), cfg, progress=False)
    assert zero_share == []
    for (k, v), (_, v2) in zip(ref.unet.state_dict().items(), again.unet.state_dict().items(), strict=True):
        torch.testing.assert_close(v, v2, msg=k)
    with pytest.raises(ValueError, match="uncond_steps"):
        DemoRefinerConfig.from_dict({"uncond_steps": 10})


def test_guidance_scale_is_classifier_free_guidance(trained, tmp_path):
    sal = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    emb = ToyTextEncoder().encode(["an image of a red star", "an image of a blue ring"])

    def run(**kw):
        return trained.refine(sal, emb, generator=torch.Generator().manual_seed(0), **kw)

    base = run()
    assert trained.guidance_scale == 1.0
    torch.testing.assert_close(run(guidance_scale=0.0), base)  # <= 1: conditional only
    guided = run(guidance_scale=2.0)
    assert (guided - base).abs().max() > 1e-3
    # with null embeddings the conditional and unconditional predictions coincide
    zeros = torch.zeros_like(emb)
    torch.testing.assert_close(
        trained.refine(sal, zeros, generator=torch.Generator().manual_seed(0), guidance_scale=3.0),
        trained.refine(sal, zeros, generator=torch.Generator().manual_seed(0)),
        rtol=0, atol=1e-5,
    )
    # one UNet call per step, a batch of 2B
    batches = []
    h = trained.unet.register_forward_pre_hook(lambda m, a: batches.append(a[0].shape[0]))
    try:
        run(guidance_scale=2.0, steps=2, strength=0.5)
    finally:
        h.remove()
    assert batches == [4]
    # the default is stored with the refiner
    trained.guidance_scale = 2.0
    try:
        trained.save(tmp_path / "g")
        loaded = DemoRefiner.from_pretrained(tmp_path / "g")
        assert loaded.guidance_scale == 2.0
        torch.testing.assert_close(
            loaded.refine(sal, emb, generator=torch.Generator().manual_seed(0)), guided
        )
    finally:
        trained.guidance_scale = 1.0
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="guidance_scale must be"):
            run(guidance_scale=bad)


def test_guidance_settings_are_checked():
    with pytest.raises(ValueError, match="p_uncond"):
        DemoRefinerConfig.from_dict({"p_uncond": 1.0})
    with pytest.raises(ValueError, match="caption dropout"):
        DemoRefinerConfig.from_dict({"guidance_scale": 1.5})
    assert DemoRefinerConfig.from_dict({"guidance_scale": 1.5, "p_uncond": 0.1}).guidance_scale == 1.5
    with pytest.raises(ValueError, match="guidance_scale must be"):
        DemoRefinerConfig.from_dict({"guidance_scale": float("nan"), "p_uncond": 0.1})


def test_floored_cosine_warms_up_and_ends_at_the_floor():
    from bci_app.training.demo_refiner import floored_cosine

    f = floored_cosine(warmup_steps=10, total_steps=100, floor=0.1)
    assert f(0) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0.0))))  # 1/10 of the way up
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 9 / 100)))
    assert f(50) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert f(100) == pytest.approx(0.1) and f(150) == pytest.approx(0.1)  # never below the floor
    assert floored_cosine(0, 100, 0.0)(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr_floor"):
        floored_cosine(10, 100, 1.5)


def test_rendered_instances_are_new_and_reproducible():
    """The refiner's fresh instances: reproducible from (render seed, phase, step), of the
    training classes only, and none of them equals any image of the 2,000-image demo set
    (so no validation or test image)."""
    import numpy as np

    from bci_app.training.demo_refiner import RenderedInstances

    full = DemoStimulusSet()
    train_classes = [3, 17, 22]
    r = RenderedInstances(full, train_classes, resolution=64, render_seed=0)
    known = {full.image(s).tobytes() for s in full.stim_ids}
    known |= {full.image_upright(s).tobytes() for s in full.stim_ids}
    labels_seen = set()
    for step in range(12):
        imgs, tgts, labels = r.batch(16, phase=0, step=step)
        labels_seen |= set(labels.tolist())
        for x in (imgs, tgts):
            u8 = (x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
            assert not any(a.tobytes() in known for a in u8)
    assert labels_seen == set(train_classes)
    a, _, la = r.batch(8, phase=1, step=5)
    b, _, lb = RenderedInstances(full, train_classes, 64, render_seed=0).batch(8, phase=1, step=5)
    assert torch.equal(a, b) and torch.equal(la, lb)
    c, _, _ = r.batch(8, phase=1, step=6)
    assert not torch.equal(a, c)  # fresh parameters every step
    other = r.other_class(torch.tensor([3, 17, 22, 3]), 0, 0)
    assert all(o != k and o in train_classes for o, k in zip(other.tolist(), [3, 17, 22, 3], strict=True))
    # a mismatched target: class 17's object on c03_i00's background, where the layout says
    sid = full.make_id(3, 0)
    [t] = r.drawn_as([sid], torch.tensor([17]), np.array([[0.3, 0.6, 0.2]]))
    want = full.render(full.with_class(full.params(sid), 17).__class__(
        **{**full.with_class(full.params(sid), 17).__dict__, "x": 0.3, "y": 0.6, "size": 0.2}), 64, upright=True)
    assert torch.equal(t, torch.from_numpy(want).permute(2, 0, 1).float() / 255.0)
    assert r.record()["classes"] == train_classes
    with pytest.raises(ValueError, match="procedural stimulus set"):
        RenderedInstances(object(), [0], 16)


def test_rendered_and_mismatched_samples_train(stimuli):
    """p_rendered (fresh instances) and p_mismatch (another class's caption on a map) train,
    are recorded, and are refused where they cannot work."""
    ids = list(stimuli.stim_ids)[:6]
    maps = torch.rand(6, 3, 8, 8)
    layouts = [(0.3, 0.7, 0.2)] * 6
    cfg = tiny_cfg(upright_targets=True, p_saliency=0.8, saliency_targets="decoded", p_rendered=1.0,
                   p_mismatch=0.5, unet_steps=30)
    ref = train_demo_refiner(stimuli, ToyTextEncoder(), cfg, progress=False, saliency_maps=(maps, ids, layouts))
    assert ref.extra["unet_loss_last"] < ref.extra["unet_loss_first"]
    assert ref.extra["rendered_instances"]["render_seed"] == 0
    with pytest.raises(ValueError, match="p_rendered must be in"):
        DemoRefinerConfig.from_dict({"p_rendered": 1.5})


def test_cross_attention_levels_are_configurable():
    """cross_attention_levels: how many UNet levels (from the lowest) attend to the caption."""
    unet, _, _ = make_demo_components(tiny_cfg(unet_channels=(32, 32, 32), cross_attention_levels=3), 32)
    assert list(unet.config.down_block_types) == ["CrossAttnDownBlock2D"] * 3
    unet, _, _ = make_demo_components(tiny_cfg(unet_channels=(32, 32, 32)), 32)  # default: all but the first
    assert list(unet.config.down_block_types) == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert list(unet.config.up_block_types) == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    with pytest.raises(ValueError, match="cross_attention_levels must be in 1..2"):
        make_demo_components(tiny_cfg(cross_attention_levels=0), 32)
