"""The refiner runs through the real diffusers img2img pipeline with tiny components."""

from __future__ import annotations

import pytest
import torch

from bci_app.models.refiners import (
    DiffusersImg2ImgRefiner,
    build_refiner,
    load_refiner,
    sd_turbo_scheduler_config,
    sd_turbo_unet_config,
    sd_turbo_vae_config,
)


def get_dummy_components(time_cond_proj_dim=None):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=32,
        time_cond_proj_dim=time_cond_proj_dim,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    scheduler = EulerDiscreteScheduler(**sd_turbo_scheduler_config())
    return unet, vae, scheduler


def tiny_taesd():
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(
        encoder_block_out_channels=(16, 16),
        decoder_block_out_channels=(16, 16),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
    )


def inputs(b=2, size=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g), torch.randn(b, 77, 32, generator=g)


class UNetCalls:
    """Records the UNet's forward calls (the number of denoising steps, embeddings seen)."""

    def __init__(self, unet):
        self.shapes = []
        self.handle = unet.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.shapes.append(tuple(kwargs["encoder_hidden_states"].shape))


def test_sd_turbo_refiner_uses_the_img2img_pipeline_with_prompt_embeds():
    from diffusers import StableDiffusionImg2ImgPipeline

    ref = DiffusersImg2ImgRefiner.from_components(
        *get_dummy_components(), kind="sd-turbo", source=None
    )
    assert isinstance(ref.pipe, StableDiffusionImg2ImgPipeline)
    assert (ref.seq_len, ref.dim, ref.resolution, ref.guidance_scale) == (77, 32, 32, 0.0)
    calls = UNetCalls(ref.pipe.unet)
    sal, emb = inputs()
    out = ref.refine(sal, emb, steps=4, strength=0.5, generator=torch.Generator().manual_seed(0))
    # int(4 * 0.5) = 2 denoising steps, no classifier-free guidance (batch stays 2)
    assert calls.shapes == [(2, 77, 32)] * 2
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    again = ref.refine(sal, emb, steps=4, strength=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    other = ref.refine(
        sal, emb.flip(0), steps=4, strength=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert not torch.allclose(out, other)  # the embeddings reach the UNet


def test_refiner_checks_its_inputs():
    ref = DiffusersImg2ImgRefiner.from_components(*get_dummy_components())
    sal, emb = inputs()
    with pytest.raises(ValueError, match="steps \\* strength"):
        ref.refine(sal, emb, steps=2, strength=0.4)
    with pytest.raises(ValueError, match="prompt_embeds must have shape"):
        ref.refine(sal, emb[:, :10])
    with pytest.raises(ValueError, match="prompt_embeds must have shape"):
        ref.refine(sal, emb[:1])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ref.refine(sal * 255, emb)
    with pytest.raises(ValueError, match="saliency must be a tensor"):
        ref.refine(sal[:, :1], emb)
    with pytest.raises(ValueError, match="strength"):
        ref.refine(sal, emb, strength=1.5)
    with pytest.raises(ValueError, match="guidance_scale"):
        DiffusersImg2ImgRefiner.from_components(*get_dummy_components(), guidance_scale=7.5)
    # a per-call override is held to the same rule (no negative prompt embeddings here)
    with pytest.raises(ValueError, match="negative prompt embeddings"):
        ref.refine(sal, emb, guidance_scale=2.0)
    with pytest.raises(ValueError, match="guidance_scale must be"):
        ref.refine(sal, emb, guidance_scale=-1.0)


def test_validate_sampling_gives_the_values_in_force_or_names_the_bad_one():
    """One check for every caller (refine, the window, the pipeline, the Reconstructor):
    None is the refiner's default; a value this refiner cannot run is a ValueError."""
    ref = DiffusersImg2ImgRefiner.from_components(*get_dummy_components(), steps=4, strength=0.5)
    assert ref.validate_sampling() == (4, 0.5, 0.0)
    assert ref.validate_sampling(2, 1.0, 1.0) == (2, 1.0, 1.0)
    for bad, match in (((0, None, None), "steps must be an integer >= 1"),
                       ((None, 1.5, None), r"strength must be in \(0, 1\]"),
                       ((1, 0.4, None), r"steps \* strength must be >= 1"),
                       ((None, None, float("nan")), "guidance_scale must be a finite number"),
                       ((None, None, 2.0), "negative prompt embeddings")):
        with pytest.raises(ValueError, match=match):
            ref.validate_sampling(*bad)
    lcm = DiffusersImg2ImgRefiner.from_components(*get_dummy_components(time_cond_proj_dim=32), kind="lcm")
    assert lcm.validate_sampling(guidance=2.0) == (4, 0.5, 2.0)  # a guidance embedding: allowed


def test_tiny_autoencoder_replaces_the_vae():
    from diffusers import AutoencoderTiny

    unet, vae, sched = get_dummy_components()
    ref = DiffusersImg2ImgRefiner.from_components(unet, vae, sched, tiny_vae=tiny_taesd())
    assert isinstance(ref.pipe.vae, AutoencoderTiny)
    sal, emb = inputs(b=1)
    out = ref.refine(sal, emb, steps=1, strength=1.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 32, 32)


def test_lcm_variant_uses_lcm_scheduler_and_guidance_embedding():
    from diffusers import LCMScheduler

    ref = DiffusersImg2ImgRefiner.from_components(
        *get_dummy_components(time_cond_proj_dim=32), kind="lcm"
    )
    assert isinstance(ref.pipe.scheduler, LCMScheduler)
    assert ref.guidance_scale == 8.0 and (ref.steps, ref.strength) == (4, 0.5)
    calls = UNetCalls(ref.pipe.unet)
    sal, emb = inputs()
    out = ref.refine(sal, emb, generator=torch.Generator().manual_seed(0))
    assert len(calls.shapes) == 2 and calls.shapes[0] == (2, 77, 32)
    assert out.shape == (2, 3, 32, 32)
    # without a guidance embedding the LCM refiner runs without CFG
    plain = DiffusersImg2ImgRefiner.from_components(*get_dummy_components(), kind="lcm")
    assert plain.guidance_scale == 1.0


def test_saved_pipeline_loads_back_identically(tmp_path):
    ref = DiffusersImg2ImgRefiner.from_components(*get_dummy_components(), tiny_vae=tiny_taesd())
    ref.save(tmp_path / "refiner")
    assert (tmp_path / "refiner" / "model_index.json").is_file()
    loaded = load_refiner(tmp_path / "refiner")
    assert isinstance(loaded, DiffusersImg2ImgRefiner) and loaded.kind == "sd-turbo"
    sal, emb = inputs()
    a = ref.refine(sal, emb, generator=torch.Generator().manual_seed(3))
    b = loaded.refine(sal, emb, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_absent_weights_error_names_model_id_and_location(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from bci_app.models.text import hf_cache_dir

    with pytest.raises(FileNotFoundError) as e:
        build_refiner({"type": "sd-turbo", "model": "no-such-org/no-such-turbo"})
    msg = str(e.value)
    assert "no-such-org/no-such-turbo" in msg
    assert hf_cache_dir() in msg and "hf download no-such-org/no-such-turbo" in msg
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        build_refiner({"type": "lcm", "model": str(tmp_path / "no-such-dir")})


def test_build_refiner_rejects_bad_configs(tmp_path):
    with pytest.raises(ValueError, match="unknown refiner type"):
        build_refiner({"type": "dalle"})
    with pytest.raises(ValueError, match="needs 'model'"):
        build_refiner({"type": "sd-turbo"})
    with pytest.raises(ValueError, match="refiner_config.json"):
        build_refiner({"path": str(tmp_path)})


def test_sd_turbo_architecture_matches_sd21():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cfg = sd_turbo_unet_config(512)
    assert cfg["cross_attention_dim"] == 1024 and tuple(cfg["attention_head_dim"]) == (
        5,
        10,
        20,
        20,
    )
    assert cfg["sample_size"] == 64 and cfg["use_linear_projection"]
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg)
        vae = AutoencoderKL(**sd_turbo_vae_config(512))
    n_unet = sum(p.numel() for p in unet.parameters())
    n_vae = sum(p.numel() for p in vae.parameters())
    assert 860e6 < n_unet < 870e6  # SD 2.1 / SD-Turbo UNet: 865.9 M
    assert 83e6 < n_vae < 84e6  # SD VAE: 83.7 M
