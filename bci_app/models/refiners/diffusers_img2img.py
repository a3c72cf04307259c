"""SD-Turbo / LCM class img2img through diffusers' ``StableDiffusionImg2ImgPipeline``
(``prompt_embeds``, no text encoder), with weights from a local diffusers directory or the
Hugging Face cache (``local_files_only=True``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bci_app.file_errors import reading
from bci_app.models.refiners.base import (
    REFINER_CONFIG,
    Refiner,
    load_component,
)


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
        self.compiled: str | None = None
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
        self.guidance_scale = default_g if guidance_scale is None else guidance_scale
        self.steps, self.strength, self.guidance_scale = self.validate_sampling()
        self.device = unet.device
        self.dtype = unet.dtype

    def validate_sampling(
        self, steps: int | None = None, strength: float | None = None, guidance: float | None = None
    ) -> tuple[int, float, float]:
        steps, strength, w = super().validate_sampling(steps, strength, guidance)
        if w > 1 and self.pipe.unet.config.time_cond_proj_dim is None:
            raise ValueError(
                f"guidance_scale={w} would need classifier-free guidance with "
                f"negative prompt embeddings, which the semantic head does not predict; use 0 "
                f"(SD-Turbo) or 1 (LCM-LoRA), or an LCM UNet with a guidance embedding"
            )
        return steps, strength, w

    def compile(self, mode: str = "reduce-overhead") -> DiffusersImg2ImgRefiner:
        """Compile the UNet with ``torch.compile`` (``"reduce-overhead"`` replays CUDA graphs on
        a GPU); the first calls of each input shape are slow while it compiles."""
        modes = ("default", "reduce-overhead", "max-autotune")
        if mode not in modes:
            raise ValueError(f"compile mode must be one of {modes}, got {mode!r}")
        self.pipe.unet = torch.compile(self.pipe.unet, mode=mode)
        self.compiled = mode
        return self

    # ------------------------------------------------------------ constructors
    @staticmethod
    def make_pipe(unet, vae, scheduler):
        """diffusers' img2img pipeline around these modules, without a text encoder (the
        caller passes caption embeddings); the demo refiner builds its own with it too."""
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
        pipe = cls.make_pipe(unet, tiny_vae if tiny_vae is not None else vae, scheduler)
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
        unet = load_component(
            UNet2DConditionModel, model, "diffusion UNet", dtype, subfolder="unet"
        )
        sched_cls = LCMScheduler if kind == "lcm" else EulerDiscreteScheduler
        scheduler = load_component(sched_cls, model, "scheduler config", subfolder="scheduler")
        if kind != "lcm":
            # SD-Turbo samples with trailing timesteps (its model card's 1-4 step setting).
            scheduler = EulerDiscreteScheduler.from_config(
                scheduler.config, timestep_spacing="trailing"
            )
        if tiny_vae is not None:
            vae = load_component(AutoencoderTiny, str(tiny_vae), "tiny autoencoder (TAESD)", dtype)
        else:
            # A directory saved with a tiny VAE in place of the KL one says so in model_index.json.
            vae_cls = AutoencoderKL
            index = Path(model) / "model_index.json"
            if index.is_file():
                with reading(index, "diffusers' model_index.json (JSON)"):
                    if json.loads(index.read_text()).get("vae", [None, None])[1] == "AutoencoderTiny":
                        vae_cls = AutoencoderTiny
            vae = load_component(vae_cls, model, "VAE", dtype, subfolder="vae")
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
        sal, emb, steps, strength, w = self._prepare(
            saliency, prompt_embeds, steps, strength, guidance_scale
        )
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
