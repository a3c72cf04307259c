"""The demo bundle's refiner: a small conditional latent diffusion model
(:class:`~diffusers.UNet2DConditionModel` + :class:`~diffusers.DDIMScheduler` behind a tiny
:class:`~diffusers.AutoencoderTiny`) with MiniLM caption embeddings as cross-attention
input. Its training is in :mod:`bci_app.training.demo_refiner`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from bci_app.file_errors import reading
from bci_app.models.refiners.base import (
    REFINER_CONFIG,
    Refiner,
    load_component,
)
from bci_app.models.refiners.diffusers_img2img import DiffusersImg2ImgRefiner


class DemoRefiner(Refiner):
    """Small conditional latent diffusion model of the demo bundle.

    ``unet`` (:class:`~diffusers.UNet2DConditionModel`, x0-prediction) denoises the latents
    of a tiny :class:`~diffusers.AutoencoderTiny` with caption embeddings (MiniLM,
    ``[B, seq_len, 384]``) as cross-attention input; ``scheduler`` is a
    :class:`~diffusers.DDIMScheduler` with trailing timesteps. :meth:`refine` is the img2img
    loop of diffusers' ``StableDiffusionImg2ImgPipeline`` written out again (its
    ``get_timesteps``, ``prepare_latents`` and guidance steps), so that the UNet and the
    autoencoder can run through traced calls: encode the saliency map, add noise to the
    first of the last ``int(steps*strength)`` timesteps, denoise, decode.
    ``guidance_scale`` > 1: classifier-free guidance against
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
        self.vae = vae.eval()
        self.scheduler = scheduler
        self.resolution = int(resolution)
        self.steps, self.strength, self.guidance_scale = int(steps), float(strength), guidance_scale
        self.steps, self.strength, self.guidance_scale = self.validate_sampling()
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
        for model in (self.unet, self.vae):  # no dtype cast when it is already that dtype
            # (diffusers warns about keep-in-fp32 modules on every cast with `to`)
            model.to(device=device, **({} if dtype in (None, model.dtype) else {"dtype": dtype}))
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
        sal, emb, steps, strength, w = self._prepare(
            saliency, prompt_embeds, steps, strength, guidance_scale
        )
        timesteps = self.timesteps(steps, strength)
        z0 = self.encode(sal)
        noise = randn_tensor(z0.shape, generator=generator, device=torch.device("cpu"))  # one generator per trial, or one
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
        pipe = DiffusersImg2ImgRefiner.make_pipe(unet, vae, self.scheduler)
        pipe.save_pretrained(directory)
        _drop_derived_vae_key(directory / "vae" / "config.json")
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
                f"`bci-app train --stages refiner` or bci_app.training.demo_refiner.train_demo_refiner"
            )
        with reading(cfg_path, "the refiner's JSON config"):
            cfg = json.loads(cfg_path.read_text())
        if cfg.get("type") != "demo":
            raise ValueError(f"{cfg_path} describes a {cfg.get('type')!r} refiner, expected 'demo'")
        unet = load_component(
            UNet2DConditionModel, str(directory), "demo UNet", dtype, subfolder="unet"
        )
        with _ignore_derived_vae_key():  # files saved before save() dropped it
            vae = load_component(
                AutoencoderTiny, str(directory), "demo autoencoder", dtype, subfolder="vae"
            )
        scheduler = load_component(DDIMScheduler, str(directory), "demo scheduler config",
                                   subfolder="scheduler")
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


# AutoencoderTiny registers ``block_out_channels`` (a copy of ``decoder_block_out_channels``,
# for pipelines' scale factor) in its config, so ``save_pretrained`` writes a key that its own
# ``__init__`` does not take, and every load warns "The config attributes {'block_out_channels':
# ...} were passed to AutoencoderTiny, but are not expected and will be ignored". The key is
# derived (``__init__`` registers it again), so it is not written, and ignored when read.
_DERIVED_VAE_KEY = "block_out_channels"


def _drop_derived_vae_key(config_json: Path) -> None:
    """Rewrite the autoencoder's ``config.json`` without the derived key."""
    if not config_json.is_file():
        return
    cfg = json.loads(config_json.read_text())
    if cfg.pop(_DERIVED_VAE_KEY, None) is not None:
        config_json.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


class _DerivedKeyFilter:
    """Drops diffusers' "not expected" warning when the derived key is all it names."""

    @staticmethod
    def filter(record: Any) -> bool:
        msg = record.getMessage()
        return not (msg.startswith("The config attributes {'" + _DERIVED_VAE_KEY + "': ")
                    and "} were passed to AutoencoderTiny" in msg and msg.count("':") == 1)


class _ignore_derived_vae_key:  # noqa: N801 - used as a context manager
    """While loading an autoencoder saved with the derived key: no warning about it."""

    def __enter__(self) -> None:
        import logging

        self._logger = logging.getLogger("diffusers.configuration_utils")
        self._logger.addFilter(_DerivedKeyFilter)

    def __exit__(self, *exc: Any) -> None:
        self._logger.removeFilter(_DerivedKeyFilter)
