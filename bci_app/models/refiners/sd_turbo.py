"""SD-Turbo's architecture (the SD 2.1 UNet, its VAE, the Euler-ancestral scheduler) from
config, with random weights: timing benchmarks and tests without downloads."""

from __future__ import annotations

from typing import Any

import torch

from bci_app.models.refiners.diffusers_img2img import DiffusersImg2ImgRefiner


def sd_turbo_unet_config(resolution: int = 512, tiny: bool = False) -> dict[str, Any]:
    """SD-Turbo's UNet (the SD 2.1 architecture, 865 M parameters).

    ``tiny=True``: the same block layout, attention and conditioning with narrow channels
    (32-64), for CPU dry runs of the GPU benchmark and for tests."""
    if resolution % 8:
        raise ValueError(f"resolution must be a multiple of 8, got {resolution}")
    widths = (32, 64, 64, 64) if tiny else (320, 640, 1280, 1280)
    heads = (1, 2, 2, 2) if tiny else (5, 10, 20, 20)
    return dict(
        sample_size=resolution // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=(
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        block_out_channels=widths,
        layers_per_block=2,
        attention_head_dim=heads,
        cross_attention_dim=1024,
        use_linear_projection=True,
        flip_sin_to_cos=True,
        freq_shift=0,
        norm_num_groups=32,
        act_fn="silu",
    )


def sd_turbo_vae_config(resolution: int = 512) -> dict[str, Any]:
    """SD 2.x's AutoencoderKL (8x downsampling, 4 latent channels)."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=resolution,
        scaling_factor=0.18215,
    )


def sd_turbo_scheduler_config() -> dict[str, Any]:
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
        steps_offset=1,
    )


def build_sd_turbo_random(
    resolution: int = 512,
    tiny_vae: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    steps: int = 1,
    strength: float = 1.0,
    tiny: bool = False,
) -> DiffusersImg2ImgRefiner:
    """SD-Turbo's real architecture (UNet, VAE, TAESD) built from config with random
    weights, for latency benchmarks when the weights are absent (``weights="random-init"``);
    ``tiny``: narrow channels (:func:`sd_turbo_unet_config`), for dry runs on a CPU."""
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        EulerDiscreteScheduler,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**sd_turbo_unet_config(resolution, tiny=tiny))
    vae = AutoencoderTiny() if tiny_vae else AutoencoderKL(**sd_turbo_vae_config(resolution))
    scheduler = EulerDiscreteScheduler(**sd_turbo_scheduler_config())
    ref = DiffusersImg2ImgRefiner.from_components(
        unet,
        vae,
        scheduler,
        kind="sd-turbo-random",
        resolution=resolution,
        steps=steps,
        strength=strength,
        weights="random-init",
        source=None,
        tiny_vae_source="random-init" if tiny_vae else None,
    )
    return ref.to(device, dtype)
