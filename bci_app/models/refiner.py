"""The refiner: few-step diffusion img2img from the saliency map, conditioned on the
text-conditioning embeddings predicted from EEG (``prompt_embeds``).

Two implementations share one interface (:class:`Refiner`):

- :class:`DiffusersImg2ImgRefiner` - SD-Turbo / LCM class latent diffusion models through
  diffusers' :class:`~diffusers.StableDiffusionImg2ImgPipeline` (``prompt_embeds``, no text
  encoder loaded), optionally with an :class:`~diffusers.AutoencoderTiny` (TAESD) for
  fast encode/decode. Weights load from a local diffusers directory or the Hugging Face
  cache with ``local_files_only=True``.
- :class:`DemoRefiner` - the shipped demo's small conditional latent diffusion model
  (:class:`~diffusers.UNet2DConditionModel` + :class:`~diffusers.DDIMScheduler` behind a
  tiny :class:`~diffusers.AutoencoderTiny` trained on the procedural images), with
  MiniLM caption embeddings as cross-attention input. See
  :mod:`bci_app.models.demo_diffusion` for its training.

Both take the saliency map as ``[B, 3, H, W]`` in ``[0, 1]``, noise it to ``strength``
(SDEdit), denoise ``int(steps * strength)`` steps and return ``[B, 3, H', W']`` in ``[0, 1]``.

A refiner directory (``save(dir)``) is a diffusers-format pipeline directory plus
``refiner_config.json``; a refiner built from a model id saves only the reference.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bci_app.models.text import missing_weights_message

REFINER_CONFIG = "refiner_config.json"
REFINER_TYPES = ("demo", "sd-turbo", "lcm", "sd-turbo-random")


def _check_guidance(guidance_scale: float) -> float:
    w = float(guidance_scale)
    if not math.isfinite(w) or w < 0:
        raise ValueError(
            f"guidance_scale must be a finite number >= 0 (<= 1: no classifier-free guidance), "
            f"got {guidance_scale!r}"
        )
    return w


def _check_steps_strength(steps: int, strength: float) -> None:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not (0.0 < float(strength) <= 1.0):
        raise ValueError(f"strength must be in (0, 1], got {strength!r}")
    # diffusers runs int(steps * strength) denoising steps; zero would return the input.
    if int(steps * float(strength) + 1e-6) < 1:
        raise ValueError(
            f"steps * strength must be >= 1 (diffusers denoises int(steps * strength) steps), "
            f"got steps={steps}, strength={strength}: raise strength to >= {1.0 / steps:.3g} "
            f"or use more steps"
        )


class Refiner:
    """Interface of every refiner.

    Attributes
    ----------
    seq_len, dim : int
        The ``prompt_embeds`` shape it expects (``[B, seq_len, dim]``).
    resolution : int
        Side of the images it works at (the saliency map is resized to it).
    steps, strength : defaults for :meth:`refine`.
    """

    kind = "base"
    seq_len: int
    dim: int
    resolution: int
    steps: int
    strength: float
    device: torch.device
    dtype: torch.dtype

    # ----------------------------------------------------------------- checks
    def _prepare(
        self,
        saliency: torch.Tensor,
        prompt_embeds: torch.Tensor,
        steps: int | None,
        strength: float | None,
    ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
        steps = self.steps if steps is None else steps
        strength = self.strength if strength is None else strength
        _check_steps_strength(steps, strength)
        if not isinstance(saliency, torch.Tensor) or saliency.ndim != 4 or saliency.shape[1] != 3:
            shape = (
                tuple(saliency.shape)
                if isinstance(saliency, torch.Tensor)
                else type(saliency).__name__
            )
            raise ValueError(f"saliency must be a tensor [B, 3, H, W] in [0, 1], got {shape}")
        if saliency.numel() and (saliency.min() < -1e-3 or saliency.max() > 1 + 1e-3):
            raise ValueError(
                f"saliency must be in [0, 1], got values in [{saliency.min().item():.3g}, "
                f"{saliency.max().item():.3g}]; convert uint8 images with x / 255"
            )
        expected = (saliency.shape[0], self.seq_len, self.dim)
        if not isinstance(prompt_embeds, torch.Tensor) or tuple(prompt_embeds.shape) != expected:
            shape = tuple(prompt_embeds.shape) if isinstance(prompt_embeds, torch.Tensor) else None
            raise ValueError(
                f"prompt_embeds must have shape [B, L, D] = {list(expected)} for this "
                f"{self.kind} refiner, got {list(shape) if shape else shape}; the semantic head "
                f"and the refiner must use the same text encoder"
            )
        sal = saliency.to(self.device, torch.float32).clamp(0, 1)
        if sal.shape[-2:] != (self.resolution, self.resolution):
            sal = F.interpolate(
                sal,
                size=(self.resolution, self.resolution),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            ).clamp(0, 1)
        return sal, prompt_embeds.to(self.device, self.dtype), steps, float(strength)

    # ----------------------------------------------------------------- API
    def refine(
        self,
        saliency: torch.Tensor,
        prompt_embeds: torch.Tensor,
        steps: int | None = None,
        strength: float | None = None,
        generator: torch.Generator | None = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """Refine saliency maps ``[B, 3, H, W]`` in [0, 1] into images ``[B, 3, R, R]`` in [0, 1].

        ``guidance_scale`` (default: the refiner's own) is the classifier-free guidance
        weight w, as in diffusers: ``w <= 1`` runs the conditional model only; ``w > 1``
        also runs it with null embeddings and extrapolates, ``u + w * (c - u)``."""
        raise NotImplementedError

    @property
    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, directory: str | Path) -> Path:
        raise NotImplementedError

    def modules(self) -> dict[str, torch.nn.Module]:
        """The torch modules that run in :meth:`refine` (for timing floors, compile, etc.)."""
        raise NotImplementedError

    def _write_config(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / REFINER_CONFIG).write_text(json.dumps(self.config, indent=2))


# --------------------------------------------------------------------------- diffusers
def _load_component(cls, source: str, what: str, dtype: torch.dtype, **kw):
    try:
        return cls.from_pretrained(source, local_files_only=True, torch_dtype=dtype, **kw)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            missing_weights_message(source, what) + f" ({type(e).__name__}: {e})"
        ) from e


class DiffusersImg2ImgRefiner(Refiner):
    """SD-Turbo / LCM class img2img through :class:`diffusers.StableDiffusionImg2ImgPipeline`.

    Parameters
    ----------
    pipe : StableDiffusionImg2ImgPipeline
        Built without text encoder, tokenizer and safety checker (``prompt_embeds`` only).
    kind : {"sd-turbo", "lcm", "sd-turbo-random"}
    source, tiny_vae_source : str, optional
        Where the weights came from (model id or path), recorded in :attr:`config`.
    resolution : int, optional
        Working resolution; defaults to the UNet's ``sample_size * vae_scale_factor``.
    steps, strength : defaults (SD-Turbo: 2 steps at strength 0.5 -> 1 denoising step).
    guidance_scale : float, optional
        0 for SD-Turbo (no CFG); for LCM the guidance embedding when the UNet has one
        (``time_cond_proj_dim``), else 1 (no CFG: no negative embeddings are predicted).
    """

    def __init__(
        self,
        pipe,
        kind: str = "sd-turbo",
        source: str | None = None,
        tiny_vae_source: str | None = None,
        resolution: int | None = None,
        steps: int | None = None,
        strength: float | None = None,
        guidance_scale: float | None = None,
        weights: str = "pretrained",
    ):
        if kind not in ("sd-turbo", "lcm", "sd-turbo-random"):
            raise ValueError(f"kind must be 'sd-turbo', 'lcm' or 'sd-turbo-random', got {kind!r}")
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        self.kind = kind
        self.source = source
        self.tiny_vae_source = tiny_vae_source
        self.weights = weights
        unet = pipe.unet
        self.seq_len = (
            77 if getattr(pipe, "tokenizer", None) is None else int(pipe.tokenizer.model_max_length)
        )
        self.dim = int(unet.config.cross_attention_dim)
        self.resolution = int(resolution or unet.config.sample_size * pipe.vae_scale_factor)
        if kind == "lcm":
            self.steps = 4 if steps is None else steps
            self.strength = 0.5 if strength is None else strength
            default_g = 8.0 if unet.config.time_cond_proj_dim is not None else 1.0
        else:
            self.steps = 2 if steps is None else steps
            self.strength = 0.5 if strength is None else strength
            default_g = 0.0
        self.guidance_scale = self._pipe_guidance(default_g if guidance_scale is None else guidance_scale)
        _check_steps_strength(self.steps, self.strength)
        self.device = unet.device
        self.dtype = unet.dtype

    def _pipe_guidance(self, guidance_scale: float) -> float:
        w = _check_guidance(guidance_scale)
        if w > 1 and self.pipe.unet.config.time_cond_proj_dim is None:
            raise ValueError(
                f"guidance_scale={w} would need classifier-free guidance with "
                f"negative prompt embeddings, which the semantic head does not predict; use 0 "
                f"(SD-Turbo) or 1 (LCM-LoRA), or an LCM UNet with a guidance embedding"
            )
        return w

    # ------------------------------------------------------------ constructors
    @staticmethod
    def _make_pipe(unet, vae, scheduler):
        from diffusers import StableDiffusionImg2ImgPipeline

        return StableDiffusionImg2ImgPipeline(
            vae=vae,
            text_encoder=None,
            tokenizer=None,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )

    @classmethod
    def from_components(
        cls, unet, vae, scheduler, kind: str = "sd-turbo", tiny_vae=None, **kwargs
    ) -> DiffusersImg2ImgRefiner:
        """Build from diffusers components (tests, random-init benchmarks).

        For ``kind="lcm"`` the scheduler is converted to :class:`~diffusers.LCMScheduler`.
        ``tiny_vae`` (an :class:`~diffusers.AutoencoderTiny`) replaces ``vae`` for encode
        and decode.
        """
        if kind == "lcm":
            from diffusers import LCMScheduler

            if not isinstance(scheduler, LCMScheduler):
                scheduler = LCMScheduler.from_config(scheduler.config)
        pipe = cls._make_pipe(unet, tiny_vae if tiny_vae is not None else vae, scheduler)
        return cls(pipe, kind=kind, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        kind: str = "sd-turbo",
        tiny_vae: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs,
    ) -> DiffusersImg2ImgRefiner:
        """Load ``unet``, ``vae`` and ``scheduler`` of an SD-class pipeline (local directory or
        HF model id, ``local_files_only=True``), and optionally a TAESD (``tiny_vae``, e.g.
        ``"madebyollin/taesd"``)."""
        from diffusers import (
            AutoencoderKL,
            AutoencoderTiny,
            EulerDiscreteScheduler,
            LCMScheduler,
            UNet2DConditionModel,
        )

        model = str(model)
        unet = _load_component(
            UNet2DConditionModel, model, "diffusion UNet", dtype, subfolder="unet"
        )
        sched_cls = LCMScheduler if kind == "lcm" else EulerDiscreteScheduler
        try:
            scheduler = sched_cls.from_pretrained(
                model, subfolder="scheduler", local_files_only=True
            )
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                missing_weights_message(model, "scheduler config") + f" ({e})"
            ) from e
        if kind != "lcm":
            # SD-Turbo samples with trailing timesteps (its model card's 1-4 step setting).
            scheduler = EulerDiscreteScheduler.from_config(
                scheduler.config, timestep_spacing="trailing"
            )
        if tiny_vae is not None:
            vae = _load_component(AutoencoderTiny, str(tiny_vae), "tiny autoencoder (TAESD)", dtype)
        else:
            # A directory saved with a tiny VAE in place of the KL one says so in model_index.json.
            vae_cls = AutoencoderKL
            index = Path(model) / "model_index.json"
            if (
                index.is_file()
                and json.loads(index.read_text()).get("vae", [None, None])[1] == "AutoencoderTiny"
            ):
                vae_cls = AutoencoderTiny
            vae = _load_component(vae_cls, model, "VAE", dtype, subfolder="vae")
        ref = cls.from_components(
            unet,
            vae,
            scheduler,
            kind=kind,
            source=model,
            tiny_vae_source=None if tiny_vae is None else str(tiny_vae),
            **kwargs,
        )
        ref.to(device)
        return ref

    def to(
        self, device: str | torch.device, dtype: torch.dtype | None = None
    ) -> DiffusersImg2ImgRefiner:
        self.pipe.to(device, dtype) if dtype is not None else self.pipe.to(device)
        self.device = self.pipe.unet.device
        self.dtype = self.pipe.unet.dtype
        return self

    # ------------------------------------------------------------ API
    @torch.no_grad()
    def refine(
        self, saliency, prompt_embeds, steps=None, strength=None, generator=None, guidance_scale=None
    ) -> torch.Tensor:
        sal, emb, steps, strength = self._prepare(saliency, prompt_embeds, steps, strength)
        w = self.guidance_scale if guidance_scale is None else self._pipe_guidance(guidance_scale)
        out = self.pipe(
            prompt_embeds=emb,
            image=sal.to(self.dtype),
            strength=strength,
            num_inference_steps=steps,
            guidance_scale=w,
            generator=generator,
            output_type="pt",
        ).images
        return out.float().clamp(0, 1)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.pipe.unet, "vae": self.pipe.vae}

    @property
    def config(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "model": self.source,
            "tiny_vae": self.tiny_vae_source,
            "resolution": self.resolution,
            "steps": self.steps,
            "strength": self.strength,
            "guidance_scale": self.guidance_scale,
            "seq_len": self.seq_len,
            "dim": self.dim,
            "weights": self.weights,
        }

    def save(self, directory: str | Path, copy_weights: bool | None = None) -> Path:
        """Save a reference (``refiner_config.json`` naming the model id / path) or, with
        ``copy_weights`` (default when the model has no source), a diffusers-format pipeline."""
        directory = Path(directory)
        if copy_weights is None:
            copy_weights = self.source is None
        if copy_weights:
            self.pipe.save_pretrained(directory)
        cfg = self.config
        if copy_weights:
            cfg["model"] = "."
            cfg["tiny_vae"] = None  # the saved pipeline's vae already is the tiny one if used
        directory.mkdir(parents=True, exist_ok=True)
        (directory / REFINER_CONFIG).write_text(json.dumps(cfg, indent=2))
        return directory


# --------------------------------------------------------------------------- SD-Turbo architecture
def sd_turbo_unet_config(resolution: int = 512) -> dict[str, Any]:
    """SD-Turbo's UNet (the SD 2.1 architecture, 865 M parameters)."""
    if resolution % 8:
        raise ValueError(f"resolution must be a multiple of 8, got {resolution}")
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
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_head_dim=(5, 10, 20, 20),
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
) -> DiffusersImg2ImgRefiner:
    """SD-Turbo's real architecture (UNet, VAE, TAESD) built from config with random
    weights, for latency benchmarks when the weights are absent (``weights="random-init"``)."""
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        EulerDiscreteScheduler,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**sd_turbo_unet_config(resolution))
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


# --------------------------------------------------------------------------- demo
class DemoRefiner(Refiner):
    """Small conditional latent diffusion model of the demo bundle.

    ``unet`` (:class:`~diffusers.UNet2DConditionModel`, x0-prediction) denoises the latents
    of a tiny :class:`~diffusers.AutoencoderTiny` with caption embeddings (MiniLM,
    ``[B, seq_len, 384]``) as cross-attention input; ``scheduler`` is a
    :class:`~diffusers.DDIMScheduler` with trailing timesteps. img2img as in diffusers:
    encode the saliency map, add noise to the first of the last ``int(steps*strength)``
    timesteps, denoise, decode. ``guidance_scale`` > 1: classifier-free guidance against
    the all-zero (null) embeddings, which a UNet trained with caption dropout
    (``DemoRefinerConfig.p_uncond``) has learnt as "no caption"; the two predictions run
    as one batch of 2 per UNet call.

    ``trace=True`` runs the UNet and the autoencoder through traced graphs
    (:class:`~bci_app.models.traced.TracedCall`: one per input shape, checked against the
    eager call when recorded), which removes most of diffusers' Python overhead per call
    on CPU; :meth:`from_pretrained` turns it on, :meth:`set_trace` switches it.
    """

    kind = "demo"

    def __init__(
        self,
        unet,
        vae,
        scheduler,
        resolution: int = 64,
        steps: int = 2,
        strength: float = 0.5,
        seq_len: int = 16,
        text_encoder: dict | None = None,
        extra: dict | None = None,
        guidance_scale: float = 1.0,
        trace: bool = False,
    ):
        from bci_app.models.traced import TracedCall

        self.unet = unet.eval()
        self.guidance_scale = _check_guidance(guidance_scale)
        self.vae = vae.eval()
        self.scheduler = scheduler
        self.resolution = int(resolution)
        self.steps = int(steps)
        self.strength = float(strength)
        _check_steps_strength(self.steps, self.strength)
        self.seq_len = int(seq_len)
        self.dim = int(unet.config.cross_attention_dim)
        self.text_encoder = dict(text_encoder or {"type": "minilm", "seq_len": self.seq_len})
        self.extra = dict(extra or {})
        self.device = unet.device
        self.dtype = unet.dtype
        self._unet_call = TracedCall(
            self.unet, lambda m, z, t, e: m(z, t, encoder_hidden_states=e, return_dict=False)[0],
            "demo UNet", trace)
        self._encode_call = TracedCall(self.vae, lambda m, x: m.encode(x, return_dict=False)[0],
                                       "demo autoencoder (encode)", trace)
        self._decode_call = TracedCall(self.vae, lambda m, z: m.decode(z, return_dict=False)[0],
                                       "demo autoencoder (decode)", trace)

    def _calls(self) -> tuple:
        return self._unet_call, self._encode_call, self._decode_call

    def set_trace(self, enabled: bool) -> DemoRefiner:
        """Run the UNet and autoencoder through traced graphs (``True``) or eagerly."""
        for call in self._calls():
            call.enabled = bool(enabled)
        return self

    @property
    def trace_stats(self) -> dict[str, dict[str, int]]:
        """Traced and eager calls so far, per model (what a benchmark measured)."""
        return {c.name: c.stats for c in self._calls()}

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> DemoRefiner:
        self.unet.to(device=device, dtype=dtype)
        self.vae.to(device=device, dtype=dtype)
        self.device = self.unet.device
        self.dtype = self.unet.dtype
        for call in self._calls():
            call.clear()
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, R, R]`` in [0, 1] -> scaled latents."""
        return self._encode_call(images.to(self.dtype) * 2 - 1) * self.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [0, 1]."""
        return ((self._decode_call(latents / self.latent_scale).float() + 1) / 2).clamp(0, 1)

    def timesteps(self, steps: int, strength: float) -> torch.Tensor:
        self.scheduler.set_timesteps(steps, device=self.device)
        n = min(int(steps * strength + 1e-6), steps)
        return self.scheduler.timesteps[steps - n :]

    @torch.no_grad()
    def refine(
        self, saliency, prompt_embeds, steps=None, strength=None, generator=None, guidance_scale=None
    ) -> torch.Tensor:
        sal, emb, steps, strength = self._prepare(saliency, prompt_embeds, steps, strength)
        w = self.guidance_scale if guidance_scale is None else _check_guidance(guidance_scale)
        timesteps = self.timesteps(steps, strength)
        z0 = self.encode(sal)
        noise = torch.randn(
            z0.shape, generator=generator, device=generator.device if generator else None
        )
        z = self.scheduler.add_noise(z0, noise.to(z0.device, z0.dtype), timesteps[:1])
        if w > 1:  # the null (all-zero) embeddings: the caption dropped in training (p_uncond)
            emb = torch.cat([emb, torch.zeros_like(emb)])
        for t in timesteps:
            if w > 1:  # one batched call: conditional and unconditional x0 predictions
                cond, uncond = self._unet_call(torch.cat([z, z]), t, emb).chunk(2)
                pred = uncond + w * (cond - uncond)
            else:
                pred = self._unet_call(z, t, emb)
            z = self.scheduler.step(pred, t, z, generator=generator).prev_sample
        return self.decode(z)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.unet, "vae": self.vae}

    @property
    def config(self) -> dict[str, Any]:
        return {
            "type": "demo",
            "model": ".",
            "resolution": self.resolution,
            "steps": self.steps,
            "strength": self.strength,
            "guidance_scale": self.guidance_scale,
            "seq_len": self.seq_len,
            "dim": self.dim,
            "text_encoder": self.text_encoder,
            "weights": "trained",
            **({"training": self.extra} if self.extra else {}),
        }

    def save(self, directory: str | Path, weights_dtype: torch.dtype | None = None) -> Path:
        """Write a diffusers-format pipeline directory (``model_index.json``, ``unet/``,
        ``vae/``, ``scheduler/``, safetensors) plus ``refiner_config.json``.

        ``weights_dtype=torch.float16`` halves the size on disk (the demo bundle's 30 MB
        budget); :meth:`from_pretrained` loads it back in float32 (or the dtype asked for).
        """
        import copy

        directory = Path(directory)
        unet, vae = self.unet, self.vae
        if weights_dtype is not None and weights_dtype != self.dtype:
            unet, vae = copy.deepcopy(unet).to(weights_dtype), copy.deepcopy(vae).to(weights_dtype)
        pipe = DiffusersImg2ImgRefiner._make_pipe(unet, vae, self.scheduler)
        pipe.save_pretrained(directory)
        self._write_config(directory)
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        trace: bool = True,
    ) -> DemoRefiner:
        """Load what :meth:`save` wrote; ``trace``: run it through traced graphs (inference)."""
        from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel

        directory = Path(directory)
        cfg_path = directory / REFINER_CONFIG
        if not cfg_path.is_file():
            raise FileNotFoundError(
                f"no demo refiner at {str(directory)!r}: {REFINER_CONFIG} is missing; train one with "
                f"`bci-app train --stages refiner` or bci_app.models.demo_diffusion.train_demo_refiner"
            )
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("type") != "demo":
            raise ValueError(f"{cfg_path} describes a {cfg.get('type')!r} refiner, expected 'demo'")
        unet = _load_component(
            UNet2DConditionModel, str(directory), "demo UNet", dtype, subfolder="unet"
        )
        vae = _load_component(
            AutoencoderTiny, str(directory), "demo autoencoder", dtype, subfolder="vae"
        )
        scheduler = DDIMScheduler.from_pretrained(str(directory), subfolder="scheduler")
        ref = cls(
            unet,
            vae,
            scheduler,
            resolution=cfg["resolution"],
            steps=cfg["steps"],
            strength=cfg["strength"],
            seq_len=cfg["seq_len"],
            text_encoder=cfg.get("text_encoder"),
            extra=cfg.get("training"),
            guidance_scale=float(cfg.get("guidance_scale", 1.0)),  # bundles before guidance: 1
            trace=trace,
        )
        return ref.to(device)


# --------------------------------------------------------------------------- factory
def _resolve(ref: str | None, base_dir: str | Path | None) -> str | None:
    """A relative path that exists under ``base_dir`` (the bundle) wins over an HF id."""
    if ref is None:
        return None
    if base_dir is not None and not Path(ref).is_absolute():
        cand = Path(base_dir) / ref
        if cand.exists():
            return str(cand)
    return str(ref)


def build_refiner(
    cfg: dict[str, Any],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    base_dir: str | Path | None = None,
) -> Refiner:
    """Build a refiner from a config dict.

    ``cfg["type"]``:

    - ``"demo"``: ``cfg["model"]`` (or ``"path"``) is a directory saved by
      :meth:`DemoRefiner.save` (relative to ``base_dir``).
    - ``"sd-turbo"`` / ``"lcm"``: ``cfg["model"]`` is a local diffusers directory or an HF
      model id (``local_files_only=True``); optional ``"tiny_vae"`` (e.g.
      ``"madebyollin/taesd"``), ``"steps"``, ``"strength"``, ``"guidance_scale"``,
      ``"resolution"``.
    - ``"sd-turbo-random"``: SD-Turbo's architecture with random weights
      (``"resolution"``, ``"tiny_vae"`` bool).
    - no ``"type"`` but ``"path"``/``"model"``: read ``refiner_config.json`` there.
    """
    cfg = dict(cfg)
    kind = cfg.get("type")
    model = _resolve(cfg.get("model") or cfg.get("path"), base_dir)
    if kind is None:
        if model is None or not (Path(model) / REFINER_CONFIG).is_file():
            raise ValueError(
                f"refiner config needs 'type' (one of {REFINER_TYPES}) or a 'path' to a directory with "
                f"{REFINER_CONFIG}; got {cfg}"
            )
        saved = json.loads((Path(model) / REFINER_CONFIG).read_text())
        saved_model = saved.get("model")
        inner = model if saved_model in (None, ".") else _resolve(saved_model, model)
        return build_refiner(
            {
                **saved,
                **{k: v for k, v in cfg.items() if k not in ("path", "model")},
                "model": inner,
            },
            device,
            dtype,
        )
    if kind not in REFINER_TYPES:
        raise ValueError(f"unknown refiner type {kind!r}; expected one of {REFINER_TYPES}")
    overrides = {k: cfg[k] for k in ("steps", "strength") if cfg.get(k) is not None}
    if kind == "demo":
        if model is None:
            raise ValueError("refiner type 'demo' needs 'model' (the refiner directory)")
        ref = DemoRefiner.from_pretrained(model, device=device, dtype=dtype)
        for k, v in overrides.items():
            setattr(ref, k, v)
        _check_steps_strength(ref.steps, ref.strength)
        return ref
    if kind == "sd-turbo-random":
        return build_sd_turbo_random(
            resolution=int(cfg.get("resolution") or 512),
            tiny_vae=bool(cfg.get("tiny_vae", True)),
            device=device,
            dtype=dtype,
            **overrides,
        )
    if model is None:
        raise ValueError(
            f"refiner type {kind!r} needs 'model' (a local diffusers directory or HF model id)"
        )
    tiny = cfg.get("tiny_vae")
    return DiffusersImg2ImgRefiner.from_pretrained(
        model,
        kind=kind,
        tiny_vae=_resolve(tiny, base_dir) if isinstance(tiny, str) else None,
        device=device,
        dtype=dtype,
        resolution=cfg.get("resolution"),
        guidance_scale=cfg.get("guidance_scale"),
        **overrides,
    )


def load_refiner(
    directory: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Refiner:
    """Load what :meth:`Refiner.save` wrote (a demo refiner, a diffusers pipeline or a reference)."""
    return build_refiner({"path": str(directory)}, device=device, dtype=dtype)
