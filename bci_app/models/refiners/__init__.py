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
  :mod:`bci_app.training.demo_refiner` for its training.

Both take the saliency map as ``[B, 3, H, W]`` in ``[0, 1]``, noise it to ``strength``
(SDEdit), denoise ``int(steps * strength)`` steps and return ``[B, 3, H', W']`` in ``[0, 1]``.

A refiner directory (``save(dir)``) is a diffusers-format pipeline directory plus
``refiner_config.json``; a refiner built from a model id saves only the reference.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bci_app.file_errors import reading
from bci_app.models.refiners.base import (
    REFINER_CONFIG,
    REFINER_TYPES,
    Refiner,
    check_guidance,
)
from bci_app.models.refiners.demo import DemoRefiner
from bci_app.models.refiners.diffusers_img2img import DiffusersImg2ImgRefiner
from bci_app.models.refiners.sd_turbo import (
    build_sd_turbo_random,
    sd_turbo_scheduler_config,
    sd_turbo_unet_config,
    sd_turbo_vae_config,
)

__all__ = [
    "REFINER_CONFIG", "REFINER_TYPES", "DemoRefiner", "DiffusersImg2ImgRefiner", "Refiner",
    "build_refiner", "build_sd_turbo_random", "check_guidance",
    "load_refiner", "sd_turbo_scheduler_config", "sd_turbo_unet_config", "sd_turbo_vae_config",
]


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
        with reading(Path(model) / REFINER_CONFIG, "the refiner's JSON config"):
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
        ref.steps, ref.strength, _ = ref.validate_sampling(**overrides)
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
