"""Inference over all stages: EEG window -> encoder -> G -> M_s -> refiner.

    rec = Reconstructor.from_bundle("demo")           # or a bundle directory
    rec.check_compatible(ch_names, sfreq, n_times)    # ValueError naming both sides
    rec.warmup()
    [r] = rec.reconstruct(x, seeds=[trial_seed(stim_id, onset_sample)])  # x: [C, T] or [B, C, T]
    r.saliency, r.image, r.times_ms, r.class_probs

``x`` is what the epocher produces for ``rec.spec`` (filtered and normalised with the
bundle's per-channel statistics). Per-stage times are wall-clock milliseconds, with
``torch.cuda.synchronize()`` around each stage on CUDA so they measure the GPU work.

Randomness is per trial: each trial's seed (:func:`trial_seed` of its stimulus id and
onset sample, or by default a hash of its window) seeds one generator that draws the
generator latents and the refiner's noise, so a trial gives the same image alone or in
any batch (live batches of 1, ``evaluate`` batches of 32).

The ablation rows of ``bci-app evaluate`` are switches of :meth:`Reconstructor.reconstruct`:
``saliency=False`` (the refiner starts from grey), ``semantics="none"`` (zero, i.e.
unconditional, embeddings), ``refine=False`` (the saliency map is the image).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bci_app.models import bundle as bundle_io
from bci_app.models.device import DTYPES, resolve_device, resolve_dtype  # noqa: F401

log = logging.getLogger(__name__)

SEMANTICS = ("eeg", "none")


def trial_seed(stim_id: str | None, onset_sample: int | None, base_seed: int = 0) -> int:
    """A stable 63-bit seed for one trial from its stimulus id and onset sample.

    The same trial gets the same seed in ``live``, ``replay`` and ``evaluate`` (and in
    every process: blake2b, not Python's salted ``hash``); ``base_seed`` selects another
    set of draws.
    """
    key = f"{int(base_seed)}|{'' if stim_id is None else stim_id}|{'' if onset_sample is None else int(onset_sample)}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def window_seed(x: np.ndarray, base_seed: int = 0) -> int:
    """A stable 63-bit seed from the bytes of one float32 window (the default when a caller
    passes no per-trial seeds: the same window gives the same image in any batch)."""
    h = hashlib.blake2b(np.ascontiguousarray(x, dtype=np.float32).tobytes(), digest_size=8,
                        key=int(base_seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") >> 1


@dataclass
class Reconstruction:
    """One reconstructed trial."""

    saliency: np.ndarray  # uint8 [H, W, 3]
    image: np.ndarray  # uint8 [H', W', 3]
    times_ms: dict[str, float] = field(default_factory=dict)  # encoder, saliency, semantic, refiner
    class_probs: np.ndarray | None = None  # the bundle's image classifier on `image`
    eeg_class_probs: np.ndarray | None = None  # the encoder's read-out (diagnostics)
    caption_probs: np.ndarray | None = None  # the semantic head's caption mixture (diagnostics)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[B, 3, H, W]`` in [0, 1] -> ``uint8 [B, H, W, 3]``."""
    return (x.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class Reconstructor:
    """Runs a bundle's stages on a device. Build with :meth:`from_bundle`."""

    def __init__(self, config: dict[str, Any], components: dict[str, torch.nn.Module],
                 refiner=None, classifier=None, bundle_dir: Path | None = None,
                 device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
                 steps: int | None = None, strength: float | None = None, seed: int = 0,
                 guidance: float | None = None, batch_invariant: bool = True) -> None:
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
        if refiner is not None:  # the overrides (None: the refiner's default), checked before any work
            refiner.validate_sampling(steps, strength, guidance)
        self.steps, self.strength, self.guidance = steps, strength, guidance
        self.seed = int(seed)
        self.batch_invariant = bool(batch_invariant)
        self.classes = list(config.get("classes", []))
        from bci_app.models.saliency_gan import condition_settings

        self._gan_settings = condition_settings(config.get("gan"))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_bundle(cls, path: str | Path = "demo", device: str | torch.device = "auto",
                    dtype: str | torch.dtype = "auto", steps: int | None = None,
                    strength: float | None = None, load_refiner: bool = True,
                    seed: int = 0, guidance: float | None = None,
                    batch_invariant: bool = True) -> Reconstructor:
        """Load a bundle directory (``"demo"``: the shipped one) onto ``device``
        (``batch_invariant``: see :meth:`reconstruct`)."""
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

            refiner = build_refiner({k: v for k, v in rcfg.items() if k != "bundle"}, device=dev, dtype=dt,
                                    base_dir=bundle_io.component_base(p, rcfg, "refiner"))
        classifier = _load_classifier(p, config, dev)
        return cls(config, comps, refiner, classifier, p, dev, dt, steps, strength, seed, guidance,
                   batch_invariant)

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
    def reconstruct(self, x: np.ndarray | torch.Tensor, z: torch.Tensor | None = None, *,
                    seeds: Sequence[int] | None = None, saliency: bool = True,
                    semantics: str = "eeg", refine: bool = True) -> list[Reconstruction]:
        """Reconstruct windows ``x`` (``[C, T]`` or ``[B, C, T]``, normalised).

        Parameters
        ----------
        z : Tensor [B, z_dim], optional
            Fixes the generator latents (default: drawn from each trial's seed).
        seeds : sequence of B ints, optional
            One seed per trial (:func:`trial_seed`); each seeds one ``torch.Generator``
            that draws the trial's latents and then the refiner's noise, so the output
            does not depend on the batch. Default: :func:`window_seed` of each window
            with this Reconstructor's ``seed``.
        saliency : bool
            ``False`` starts the refiner from a grey image instead of the saliency map
            (the "semantics only" ablation).
        semantics : {"eeg", "none"}
            ``"none"`` gives the refiner zero (unconditional) embeddings instead of
            ``M_s(x)`` (the "saliency only" ablation).
        refine : bool
            ``False`` returns the saliency map as the image (no refiner).

        With ``batch_invariant`` (the default) every trial runs through its own forward
        pass, so its image is bit-identical alone or inside any batch (CPU and GPU
        kernels round differently for different batch sizes); ``batch_invariant=False``
        runs one batched pass (more throughput, images equal up to float rounding).
        """
        if semantics not in SEMANTICS:
            raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
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
        if refine and self.refiner is None and (not saliency or semantics != "eeg"):
            raise RuntimeError(
                f"saliency={saliency}, semantics={semantics!r} switch the refiner's inputs, but bundle "
                f"{self.bundle_dir} has no refiner (or it was not loaded); use a bundle with a refiner"
            )
        if seeds is None:
            xs = x.detach().cpu().float().numpy()
            seeds = [window_seed(xs[i], self.seed) for i in range(B)]
        elif len(seeds) != B:
            raise ValueError(f"seeds must hold one int per trial: got {len(seeds)} for a batch of {B}")
        if z is not None and (z.ndim != 2 or z.shape[0] != B):
            raise ValueError(f"z must be [B, z_dim] with B = {B}, got {tuple(z.shape)}")
        switches = {"saliency": saliency, "semantics": semantics, "refine": refine}
        if self.batch_invariant and B > 1:  # one forward pass per trial: same bits as batch 1
            return [r for i in range(B)
                    for r in self._forward(x[i : i + 1], None if z is None else z[i : i + 1], [seeds[i]], **switches)]
        return self._forward(x, z, seeds, **switches)

    def _forward(self, x: torch.Tensor, z: torch.Tensor | None, seeds: Sequence[int], *,
                 saliency: bool, semantics: str, refine: bool) -> list[Reconstruction]:
        """All stages on one batch (checked by :meth:`reconstruct`)."""
        B = x.shape[0]
        gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
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
            z = torch.cat([torch.randn(1, self.generator.z_dim, generator=g) for g in gens])
        sal = self.generator(z.to(self.device, self.dtype), self._gan_condition(feats))
        self._sync()
        t2 = time.perf_counter()
        times["saliency"] = (t2 - t1) * 1e3
        emb, mix = self.semantic.embed(feats)
        if semantics == "none":
            emb = torch.zeros_like(emb)
        self._sync()
        t3 = time.perf_counter()
        times["semantic"] = (t3 - t2) * 1e3
        if refine and self.refiner is not None:
            start = sal if saliency else torch.full_like(sal, 0.5)
            img = self.refiner.refine(start, emb, generator=gens, **self.refine_settings())
        else:
            img = sal
        self._sync()
        t4 = time.perf_counter()
        times["refiner"] = (t4 - t3) * 1e3
        # the classifier reads the image as the refiner made it, before it becomes uint8
        probs = self._classify(img.float().clamp(0, 1)) if self.classifier is not None else None
        sal_u8, img_u8 = _to_uint8(sal), _to_uint8(img)
        return [
            Reconstruction(
                saliency=sal_u8[i], image=img_u8[i], times_ms=dict(times),
                class_probs=None if probs is None else probs[i],
                eeg_class_probs=None if eeg_probs is None else eeg_probs[i].cpu().numpy(),
                caption_probs=None if mix is None else mix[i].float().cpu().numpy(),
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
        return self._classify(torch.as_tensor(images).permute(0, 3, 1, 2).float().div(255))

    def _classify(self, x: torch.Tensor) -> np.ndarray:
        """The classifier's probabilities ``[N, K]`` of float images ``x`` ``[N, 3, H, W]`` in [0, 1]."""
        clf = self.classifier
        if hasattr(clf, "predict_proba"):
            return np.asarray(clf.predict_proba(x))
        with torch.no_grad():
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
    path = bundle_io.component_base(p, info, "classifier") / info.get("path", "classifier")
    return ic.ImageClassifier.load(path, device=device)
