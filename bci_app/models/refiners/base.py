"""The refiner interface (:class:`Refiner`: img2img from the saliency map guided by
``prompt_embeds``), its argument checks and the local-only component loader; the
implementations and the factory are described in :mod:`bci_app.models.refiners`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bci_app.file_errors import reading
from bci_app.models.text import missing_weights_message

REFINER_CONFIG = "refiner_config.json"
REFINER_TYPES = ("demo", "sd-turbo", "lcm", "sd-turbo-random")


def check_guidance(guidance_scale: float) -> float:
    """A classifier-free guidance weight as a float (``ValueError`` unless finite and >= 0);
    what a given refiner accepts is :meth:`Refiner.validate_sampling`."""
    w = float(guidance_scale)
    if not math.isfinite(w) or w < 0:
        raise ValueError(
            f"guidance_scale must be a finite number >= 0 (<= 1: no classifier-free guidance), "
            f"got {guidance_scale!r}"
        )
    return w


class Refiner:
    """Interface of every refiner.

    Attributes
    ----------
    seq_len, dim : int
        The ``prompt_embeds`` shape it expects (``[B, seq_len, dim]``).
    resolution : int
        Side of the images it works at (the saliency map is resized to it).
    steps, strength, guidance_scale : defaults for :meth:`refine`.
    """

    kind = "base"
    seq_len: int
    dim: int
    resolution: int
    steps: int
    strength: float
    guidance_scale: float
    device: torch.device
    dtype: torch.dtype

    # ----------------------------------------------------------------- checks
    def validate_sampling(
        self, steps: int | None = None, strength: float | None = None, guidance: float | None = None
    ) -> tuple[int, float, float]:
        """Check sampling settings against this refiner; the one check every caller uses
        (:meth:`refine`, the window, the pipeline, the command line through the Reconstructor).

        ``None`` stands for the refiner's own default. Returns ``(steps, strength, guidance)``
        in force; raises ``ValueError`` naming the value and what is allowed."""
        steps = self.steps if steps is None else steps
        strength = self.strength if strength is None else strength
        guidance = self.guidance_scale if guidance is None else guidance
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
        return steps, float(strength), check_guidance(guidance)

    def _prepare(
        self,
        saliency: torch.Tensor,
        prompt_embeds: torch.Tensor,
        steps: int | None,
        strength: float | None,
        guidance: float | None,
    ) -> tuple[torch.Tensor, torch.Tensor, int, float, float]:
        steps, strength, guidance = self.validate_sampling(steps, strength, guidance)
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
        return sal, prompt_embeds.to(self.device, self.dtype), steps, strength, guidance

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


def load_component(cls, source: str, what: str, dtype: torch.dtype | None = None, **kw):
    """``cls.from_pretrained(source, **kw)`` with ``local_files_only``: a component folder on
    this machine that fails to load is named as damaged; else the weights are missing."""
    if dtype is not None:
        kw["torch_dtype"] = dtype
    local = Path(source, kw.get("subfolder", ""))
    if local.is_dir():
        with reading(local, f"the {what} in diffusers format (its config JSON and weights)"):
            return cls.from_pretrained(source, local_files_only=True, **kw)
    try:
        return cls.from_pretrained(source, local_files_only=True, **kw)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            missing_weights_message(source, what) + f" ({type(e).__name__}: {e})"
        ) from e
