"""Inference over all stages: EEG window -> encoder -> G -> M_s -> refiner.

    rec = Reconstructor.from_bundle("demo")           # or a bundle directory
    rec.check_compatible(ch_names, sfreq, n_times)    # ValueError naming both sides
    rec.warmup()
    [r] = rec.reconstruct(x)                          # x: [C, T] or [B, C, T], normalised
    r.saliency, r.image, r.times_ms, r.class_probs

``x`` is what the epocher produces for ``rec.spec`` (filtered and normalised with the
bundle's per-channel statistics). Per-stage times are wall-clock milliseconds, with
``torch.cuda.synchronize()`` around each stage on CUDA so they measure the GPU work.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bci_app.models import bundle as bundle_io
from bci_app.models.device import DTYPES, resolve_device, resolve_dtype  # noqa: F401

log = logging.getLogger(__name__)



@dataclass
class Reconstruction:
    """One reconstructed trial."""

    saliency: np.ndarray  # uint8 [H, W, 3]
    image: np.ndarray  # uint8 [H', W', 3]
    times_ms: dict[str, float] = field(default_factory=dict)  # encoder, saliency, semantic, refiner
    class_probs: np.ndarray | None = None  # the bundle's image classifier on `image`
    eeg_class_probs: np.ndarray | None = None  # the encoder's read-out (diagnostics)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [0, 1] -> ``uint8 [B, H, W, 3]``."""
    return (x.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class Reconstructor:
    """Runs a bundle's stages on a device. Build with :meth:`from_bundle`."""

    def __init__(self, config: dict[str, Any], components: dict[str, torch.nn.Module],
                 refiner=None, classifier=None, bundle_dir: Path | None = None,
                 device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
                 steps: int | None = None, strength: float | None = None, seed: int = 0,
                 guidance: float | None = None) -> None:
        from bci_app.preprocessing import PreprocessingSpec

        for name in ("encoder", "generator", "semantic"):
            if name not in components:
                raise ValueError(
                    f"bundle {bundle_dir} lacks the {name!r} component (has: {sorted(components)}); "
                    "train it with `bci-app train --stages ...`"
                )
        self.config = config
        self.bundle_dir = bundle_dir
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.spec = PreprocessingSpec.from_dict(config["spec"])
        self.n_times = int(config.get("n_times") or self.spec.n_times)
        self.encoder = components["encoder"].to(self.device, self.dtype).eval()
        self.generator = components["generator"].to(self.device, self.dtype).eval()
        self.semantic = components["semantic"].to(self.device, self.dtype).eval()
        head = components.get("encoder_head")
        self.encoder_head = head.to(self.device, self.dtype).eval() if head is not None else None
        self.refiner = refiner
        self.classifier = classifier
        self.steps, self.strength = steps, strength
        from bci_app.models.refiners import check_guidance

        # classifier-free guidance weight (None: the refiner's default); checked before any work
        self.guidance = None if guidance is None else check_guidance(guidance)
        self.seed = int(seed)
        self.classes = list(config.get("classes", []))
        from bci_app.models.saliency_gan import condition_settings

        self._gan_settings = condition_settings(config.get("gan"))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(cls, path: str | Path = "demo", device: str | torch.device = "auto",
                    dtype: str | torch.dtype = "auto", steps: int | None = None,
                    strength: float | None = None, load_refiner: bool = True,
                    seed: int = 0, guidance: float | None = None) -> Reconstructor:
        """Load a bundle directory (``"demo"``: the shipped one) onto ``device``."""
        p = bundle_io.resolve_bundle_path(path)
        config = bundle_io.read_bundle_config(p)
        names = [n for n in config.get("components", {}) if n != "discriminator"]
        comps = {n: bundle_io.load_component(p, n, config) for n in names}
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        refiner = None
        rcfg = config.get("refiner")
        if load_refiner and rcfg:
            from bci_app.models.refiners import build_refiner

            refiner = build_refiner(dict(rcfg), device=dev, dtype=dt, base_dir=p)
        classifier = _load_classifier(p, config, dev)
        return cls(config, comps, refiner, classifier, p, dev, dt, steps, strength, seed, guidance)

    # ------------------------------------------------------------------ checks
    def check_compatible(self, ch_names: list[str] | None = None, sfreq: float | None = None,
                         n_times: int | None = None) -> None:
        """``ValueError`` naming the stream's and the bundle's values when they differ."""
        bundle_io.check_compatible(self.config, ch_names, sfreq, n_times, where=f"bundle {self.bundle_dir}")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------------ inference
    def warmup(self, n: int = 2) -> None:
        x = np.zeros((1, len(self.spec.ch_names) or self.encoder.n_chans, self.n_times), np.float32)
        for _ in range(max(0, n)):
            self.reconstruct(x)

    @torch.no_grad()
    def reconstruct(self, x: np.ndarray | torch.Tensor, z: torch.Tensor | None = None,
                    use_saliency: bool = True) -> list[Reconstruction]:
        """Reconstruct windows ``x`` (``[C, T]`` or ``[B, C, T]``, normalised).

        ``z`` fixes the generator latents (default: seeded by ``seed``, so the same input
        gives the same output). ``use_saliency=False`` starts the refiner from a grey
        image instead of the saliency map (the "semantics only" ablation).
        """
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if x.ndim == 2:
            x = x[None]
        c, t = self.encoder.n_chans, self.encoder.n_times
        if x.ndim != 3 or x.shape[1] != c or x.shape[2] != t:
            raise ValueError(
                f"x must be [B, {c}, {t}] or [{c}, {t}] (channels x samples of the bundle's window); "
                f"got {tuple(x.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf; reject such windows before reconstruction")
        B = x.shape[0]
        times: dict[str, float] = {}
        self._sync()
        t0 = time.perf_counter()
        x = x.to(self.device, self.dtype)
        feats = self.encoder(x)
        eeg_probs = torch.softmax(self.encoder_head(feats).float(), -1) if self.encoder_head is not None else None
        self._sync()
        t1 = time.perf_counter()
        times["encoder"] = (t1 - t0) * 1e3
        if z is None:
            g = torch.Generator().manual_seed(self.seed)
            z = torch.randn(B, self.generator.z_dim, generator=g)
        sal = self.generator(z.to(self.device, self.dtype), self._gan_condition(feats))
        self._sync()
        t2 = time.perf_counter()
        times["saliency"] = (t2 - t1) * 1e3
        emb = self.semantic(feats)
        self._sync()
        t3 = time.perf_counter()
        times["semantic"] = (t3 - t2) * 1e3
        if self.refiner is not None:
            start = sal if use_saliency else torch.full_like(sal, 0.5)
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            kwargs = self.refine_settings()
            try:
                img = self.refiner.refine(start, emb, generator=gen, **kwargs)
            except TypeError:  # a refiner without a generator argument
                img = self.refiner.refine(start, emb, **kwargs)
        else:
            img = sal
        self._sync()
        t4 = time.perf_counter()
        times["refiner"] = (t4 - t3) * 1e3
        sal_u8, img_u8 = _to_uint8(sal), _to_uint8(img)
        probs = self.classify_images(img_u8) if self.classifier is not None else None
        return [
            Reconstruction(
                saliency=sal_u8[i], image=img_u8[i], times_ms=dict(times),
                class_probs=None if probs is None else probs[i],
                eeg_class_probs=None if eeg_probs is None else eeg_probs[i].cpu().numpy(),
            )
            for i in range(B)
        ]

    def refine_settings(self) -> dict[str, Any]:
        """The sampling overrides this Reconstructor passes to ``refiner.refine`` (None:
        the refiner's own default)."""
        kw: dict[str, Any] = {"steps": self.steps, "strength": self.strength}
        if self.guidance is not None:
            kw["guidance_scale"] = self.guidance
        return kw

    def _gan_condition(self, feats: torch.Tensor) -> torch.Tensor:
        """What the bundle's generator is conditioned on (see ``saliency_gan.gan_condition``)."""
        from bci_app.models.saliency_gan import gan_condition

        return gan_condition(feats, self.encoder_head, *self._gan_settings)

    def classify_images(self, images: np.ndarray) -> np.ndarray | None:
        """The bundle's image classifier: ``uint8 [N, H, W, 3]`` -> probabilities ``[N, K]``
        (``None`` if the bundle has no classifier)."""
        if self.classifier is None:
            return None
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N, H, W, 3]; got {images.dtype} {images.shape}")
        clf = self.classifier
        if hasattr(clf, "predict_proba"):
            return np.asarray(clf.predict_proba(images))
        with torch.no_grad():
            x = torch.as_tensor(images).permute(0, 3, 1, 2).float().div(255)
            return torch.softmax(clf(x).float(), -1).cpu().numpy()


def _load_classifier(p: Path, config: dict, device: torch.device):
    info = config.get("classifier")
    if not info:
        return None
    try:
        from bci_app.models import image_classifier as ic
    except ImportError:
        log.warning("bundle %s has a classifier but bci_app.models.image_classifier is missing", p)
        return None
    path = p / info.get("path", "classifier")
    return ic.ImageClassifier.load(path, device=device)
