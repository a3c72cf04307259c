"""Training of the demo refiner: a tiny autoencoder and a small conditional latent
diffusion model on the procedural demo images, conditioned on caption embeddings.

Two phases, both run by the one fit loop (:class:`bci_app.training.loop.FitLoop`: seeded,
checkpointed every ``checkpoint_every`` steps into ``checkpoint_dir/<phase>`` and resumed
from there, cosine learning-rate schedules):

1. :class:`~diffusers.AutoencoderTiny` (64x64x3 <-> 16x16x4) trained with L1 + MSE on the
   procedural images; the latent scaling factor is set to ``1 / std`` of the latents.
2. :class:`~diffusers.UNet2DConditionModel` (x0-prediction, cross-attention to the
   caption embeddings at the two lowest resolutions) trained as a denoiser: the noisy
   input is built, with probability ``p_degraded``, from a *degraded* copy of the target
   image (blur, low contrast, colour shifts, noise - what the saliency GAN produces) and
   otherwise from the clean image (ordinary diffusion training). At sampling time
   (img2img from the saliency map, 2-3 DDIM steps) it therefore sharpens a rough saliency
   map into the captioned shape and colour while keeping its position and size, and still
   generates the captioned object from pure noise (``strength=1``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bci_app.models.images import gaussian_blur, stimulus_tensors
from bci_app.models.refiners import DemoRefiner, check_guidance
from bci_app.training.loop import FitLoop, seed_everything

log = logging.getLogger(__name__)


@dataclass
class DemoRefinerConfig:
    """Settings of the demo refiner (architecture and training).

    The defaults fit the demo bundle's refiner budget on 2 CPU cores: about 0.4-0.5 s per
    autoencoder or UNet step at batch 32 when the cores are free, so 300 + 900 steps take
    about 9-10 minutes; a DemoRefiner saved with ``weights_dtype=torch.float16`` is ~9.5 MB.
    """

    resolution: int = 64
    latent_channels: int = 8  # 16x16x8: 6x compression keeps flat colours and edges
    ae_width: int = 32  # AutoencoderTiny keeps one width across its levels
    ae_levels: int = 3  # 2 downsamplings: 64 px -> 16x16 latents
    ae_steps: int = 300
    ae_batch_size: int = 32
    ae_lr: float = 3e-3
    unet_channels: tuple[int, ...] = (32, 64, 128)
    unet_layers_per_block: int = 1
    unet_heads: int = 4
    # UNet levels with cross-attention to the caption, counted from the lowest resolution
    # (None: all but the first, full-latent-resolution level)
    cross_attention_levels: int | None = None
    unet_steps: int = 900
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 30
    # the UNet's cosine schedule ends at lr_floor x lr, not 0: the saliency-map phase and
    # the caption-dropout phase run at the end of their schedules (the demo recipe was
    # tuned with this floor, which the move to diffusers' schedule had dropped)
    lr_floor: float = 0.1
    ema_decay: float = 0.995
    p_degraded: float = 0.7
    blur_sigma: tuple[float, float] = (0.5, 3.0)
    colour_cast: float = 0.3  # strength of the random colour cast of degraded inputs
    p_blank: float = 0.0  # share of inputs replaced by flat grey (the semantics-only case)
    # Targets drawn upright (rotation 0) instead of at the seen rotation. The EEG does not
    # carry the rotation, and an x0 denoiser sampled in 1-2 steps that must guess it
    # draws the average over rotations (a blob); with upright targets the output given
    # (saliency map, caption) is one image, which it learns to draw crisply.
    upright_targets: bool = False
    # Share of samples whose input is a real saliency map (the bundle's GAN on a training
    # trial of that image), when the caller passes such pairs: the refiner then learns what
    # the maps it will be given carry (colour, background) and what they do not (shape).
    p_saliency: float = 0.0
    # Target of those samples: "seen" (the seen image, upright if upright_targets) or
    # "decoded" (the seen object drawn upright where the map's decoded layout puts it, when
    # the caller passes the layouts). A map only says roughly where the object is; an x0
    # denoiser sampled in one call that must guess the rest draws the average over
    # positions and sizes (a blur); "decoded" makes its output one image again.
    saliency_targets: str = "seen"
    # Fraction of the UNet steps after which saliency-map samples start: first learn to
    # draw from degraded seen images, then learn to read the maps (a curriculum; 0 = mixed
    # from the start).
    saliency_after: float = 0.0
    # Caption dropout: share of samples trained with all-zero (null) embeddings, so that
    # the same UNet is also the unconditional model that classifier-free guidance needs.
    p_uncond: float = 0.0
    # Caption-dropout fine-tuning: when > 0, the main UNet steps train without dropout and
    # ``uncond_steps`` more steps follow (p_uncond dropout, saliency maps from their start,
    # a fresh cosine schedule from ``uncond_lr``, no EMA). A small UNet trained briefly
    # loses conditional quality when 15 % of all its samples are captionless; learning the
    # null caption at the end costs little of it.
    uncond_steps: int = 0
    uncond_lr: float = 3e-4
    # Fresh instances: share of the (non-map) samples drawn as new renders of the training
    # classes - new position, size, rotation and background at every step, never one of the
    # data set's images - instead of the training split's images (which are few per class).
    p_rendered: float = 0.0
    render_seed: int = 0  # step s of phase k renders from numpy default_rng([render_seed, RENDER_STREAM + k, s])
    # Share of the saliency-map samples whose caption (and target) is another training class:
    # the target is that class drawn where the map puts the object, on the map's background.
    # The map then tells where and on what, the caption what: the drawing follows the
    # caption even when the map (a blend from an unsure posterior) shows another colour.
    p_mismatch: float = 0.0
    p_focus: float = 0.3  # share of samples at the timesteps that sampling uses (steps, strength)
    emb_noise: float = 0.1  # Gaussian noise on the embeddings, x their std (robustness to M_s)
    beta_schedule: str = "squaredcos_cap_v2"
    # Sampling defaults stored with the refiner: trailing DDIM timesteps [999, 499];
    # strength 0.5 runs the last one only (one UNet call, x0-prediction) - the best SSIM and
    # class accuracy in the short trial runs, and the cheapest.
    steps: int = 2
    strength: float = 0.5
    # Classifier-free guidance weight stored as the sampling default (1: none; needs p_uncond > 0).
    guidance_scale: float = 1.0
    seed: int = 0
    checkpoint_dir: str | None = None  # phases checkpoint into <dir>/autoencoder, unet, unet_uncond
    checkpoint_every: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> DemoRefinerConfig:
        d = dict(d or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown demo refiner settings {sorted(unknown)}; known: {sorted(known)}"
            )
        for k in ("unet_channels", "blur_sigma"):
            if k in d:
                d[k] = tuple(d[k])
        cfg = cls(**d)
        if not 0.0 <= float(cfg.p_uncond) < 1.0:
            raise ValueError(f"p_uncond (caption dropout) must be in [0, 1), got {cfg.p_uncond}")
        if int(cfg.uncond_steps) < 0 or (int(cfg.uncond_steps) > 0 and float(cfg.p_uncond) <= 0):
            raise ValueError(
                f"uncond_steps must be >= 0 and needs p_uncond > 0 (the caption dropout it trains); "
                f"got uncond_steps={cfg.uncond_steps}, p_uncond={cfg.p_uncond}"
            )
        for name in ("p_rendered", "p_mismatch"):
            if not 0.0 <= float(getattr(cfg, name)) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
        if check_guidance(cfg.guidance_scale) > 1 and float(cfg.p_uncond) <= 0:
            raise ValueError(
                f"guidance_scale {cfg.guidance_scale} > 1 needs an unconditional model: train with "
                f"caption dropout, p_uncond > 0 (e.g. 0.15)"
            )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- components
def make_demo_components(cfg: DemoRefinerConfig, cross_attention_dim: int = 384):
    """Untrained ``(unet, vae, scheduler)`` of the demo refiner (seeded by the caller)."""
    from diffusers import AutoencoderTiny, DDIMScheduler, UNet2DConditionModel

    n_ae = int(cfg.ae_levels)
    vae = AutoencoderTiny(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=(cfg.ae_width,) * n_ae,
        decoder_block_out_channels=(cfg.ae_width,) * n_ae,
        # No residual blocks at full resolution (the expensive level): only the in/out convs.
        num_encoder_blocks=(0,) + (1,) * (n_ae - 1),
        num_decoder_blocks=(1,) * (n_ae - 1) + (0,),
        latent_channels=cfg.latent_channels,
    )
    factor = 2 ** (n_ae - 1)
    if cfg.resolution % factor:
        raise ValueError(
            f"resolution {cfg.resolution} is not divisible by the autoencoder's factor {factor}"
        )
    n = len(cfg.unet_channels)
    # Cross-attention only at the lowest resolutions (the cheap ones): at 16x16 latents
    # with 3 levels that is 8x8 and 4x4 (plus the mid block).
    k = n - 1 if cfg.cross_attention_levels is None else int(cfg.cross_attention_levels)
    if not 1 <= k <= n:
        raise ValueError(f"cross_attention_levels must be in 1..{n} (the UNet's levels), got {k}")
    down = ["DownBlock2D"] * (n - k) + ["CrossAttnDownBlock2D"] * k
    up = ["CrossAttnUpBlock2D"] * k + ["UpBlock2D"] * (n - k)
    unet = UNet2DConditionModel(
        sample_size=cfg.resolution // factor,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(cfg.unet_channels),
        layers_per_block=cfg.unet_layers_per_block,
        attention_head_dim=cfg.unet_heads,
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=32 if min(cfg.unet_channels) % 32 == 0 else 8,
    )
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule=cfg.beta_schedule,
        prediction_type="sample",
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=True,
    )
    return unet, vae, scheduler


# --------------------------------------------------------------------------- data
def degrade(x: torch.Tensor, generator: torch.Generator, blur_sigma=(0.5, 3.0),
            colour_cast: float = 0.3) -> torch.Tensor:
    """Saliency-map-like degradations of images in [0, 1]: blur, lower contrast, colour
    and brightness shifts (``colour_cast``: relative gain range per channel), pixel noise.
    Position and size are kept."""
    b = x.shape[0]

    def u(*shape):
        return torch.rand(*shape, generator=generator)

    sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * u(b)
    y = gaussian_blur(x, sigma)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = torch.lerp(y, mean.expand_as(y), 0.5 * u(b, 1, 1, 1))  # low contrast
    y = y * (1 + colour_cast * (u(b, 3, 1, 1) - 0.5)) + 0.5 * colour_cast * (u(b, 3, 1, 1) - 0.5)
    y = y + 0.08 * u(b, 1, 1, 1) * torch.randn(y.shape, generator=generator)
    return y.clamp(0, 1)


#: numpy seed stream of the refiner's rendered instances (far from the demo set's class ids)
RENDER_STREAM = 7_000_000


class RenderedInstances:
    """New instances of the training classes, drawn afresh at every training step.

    Step ``s`` of phase ``phase`` renders from ``numpy.random.default_rng([render_seed,
    RENDER_STREAM + phase, s])`` - a seed stream none of the stimulus set's own images
    (``[seed, class, index]``) comes from - so the instances are reproducible, resume-safe
    (no state), and never a split's image. ``stimuli`` must offer ``draw_params``,
    ``with_class``, ``render`` and ``params`` (:class:`~bci_app.stimuli.DemoStimulusSet`).
    """

    def __init__(self, stimuli: Any, classes: np.ndarray | list[int], resolution: int, render_seed: int = 0,
                 upright_targets: bool = True) -> None:
        for name in ("draw_params", "with_class", "render", "params"):
            if not hasattr(stimuli, name):
                raise ValueError(
                    f"rendered instances need a procedural stimulus set ({type(stimuli).__name__} has no "
                    f"{name}()); set p_rendered = 0 and p_mismatch = 0"
                )
        self.stimuli, self.resolution = stimuli, int(resolution)
        self.classes = np.asarray(sorted({int(c) for c in classes}), dtype=np.int64)
        if len(self.classes) == 0:
            raise ValueError("rendered instances need at least one training class")
        self.render_seed, self.upright = int(render_seed), bool(upright_targets)

    def rng(self, phase: int, step: int) -> np.random.Generator:
        return np.random.default_rng([self.render_seed, RENDER_STREAM + int(phase), int(step)])

    def _tensor(self, arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0

    def batch(self, n: int, phase: int, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(images, targets, labels)`` of ``n`` new instances of random training classes:
        the images as seen (rotated), the targets upright when ``upright_targets``."""
        rng = self.rng(phase, step)
        labels = self.classes[rng.integers(0, len(self.classes), n)]
        params = [self.stimuli.draw_params(rng, int(k)) for k in labels]
        images = [self.stimuli.render(p, self.resolution) for p in params]
        targets = [self.stimuli.render(p, self.resolution, upright=True) for p in params] if self.upright else images
        return self._tensor(images), self._tensor(targets), torch.as_tensor(labels)

    def other_class(self, labels: torch.Tensor, phase: int, step: int) -> torch.Tensor:
        """For each label, another training class drawn at random (the label itself when the
        training split holds one class)."""
        rng = self.rng(phase, step)
        rng.integers(0, 2, 1)  # a draw that decorrelates this stream from batch()'s
        out = []
        for k in labels.tolist():
            others = self.classes[self.classes != k]
            out.append(int(others[rng.integers(0, len(others))]) if len(others) else int(k))
        return torch.as_tensor(out, dtype=torch.long)

    def drawn_as(self, stim_ids: list[str], labels: torch.Tensor, layouts: np.ndarray | None) -> torch.Tensor:
        """Targets: the object of class ``labels[i]`` drawn upright where ``layouts[i]`` (or the
        stimulus's own layout) puts it, on ``stim_ids[i]``'s background."""
        imgs = []
        for i, sid in enumerate(stim_ids):
            p = self.stimuli.with_class(self.stimuli.params(sid), int(labels[i]))
            if layouts is not None:
                x, y, r = (float(v) for v in layouts[i])
                p = dataclasses.replace(p, x=x, y=y, size=r)
            imgs.append(self.stimuli.render(p, self.resolution, upright=self.upright))
        return self._tensor(imgs)

    def record(self) -> dict[str, Any]:
        """What the bundle records about these instances (``training.component_images``)."""
        return {"render_seed": self.render_seed, "seed_stream": RENDER_STREAM,
                "rule": "step s of UNet phase k renders from numpy default_rng([render_seed, seed_stream + k, s]); "
                        "the stimulus set's images come from [set seed, class, index]",
                "classes": self.classes.tolist()}


# --------------------------------------------------------------------------- training
def _phase_dir(cfg: DemoRefinerConfig, phase: str) -> Path | None:
    return Path(cfg.checkpoint_dir) / phase if cfg.checkpoint_dir else None


def train_autoencoder(
    vae, images: torch.Tensor, cfg: DemoRefinerConfig, progress: bool = True, device: str = "cpu"
) -> list[float]:
    """Train the tiny autoencoder on ``images [N, 3, R, R]`` in [0, 1] (L1 + MSE, cosine
    learning rate); sets its scaling factor. Checkpoints in ``<checkpoint_dir>/autoencoder``."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    loop = FitLoop("refiner autoencoder", cfg.ae_steps, device=device,
                   checkpoint_dir=_phase_dir(cfg, "autoencoder"), checkpoint_every=cfg.checkpoint_every,
                   unit="step", progress=progress)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, 0, max(1, cfg.ae_steps))
    vae, opt, sched = loop.prepare(vae, opt, sched)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    loop.track("data_order", g)

    def train_step(step: int) -> dict[str, float]:
        idx = torch.randint(0, len(images), (cfg.ae_batch_size,), generator=g)
        x = images[idx].to(loop.device) * 2 - 1
        rec = vae.decode(vae.encode(x).latents).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        opt.zero_grad(set_to_none=True)
        loop.accelerator.backward(loss)
        opt.step()
        sched.step()
        return {"loss": float(loss.detach())}

    res = loop.run(train_step)
    vae = loop.unwrap(vae).eval()
    with torch.no_grad():
        lat = torch.cat(
            [
                vae.encode(images[i : i + 256].to(loop.device) * 2 - 1).latents
                for i in range(0, len(images), 256)
            ]
        )
    scale = float(1.0 / lat.std().clamp_min(1e-6))
    vae.register_to_config(scaling_factor=scale)
    vae.scaling_factor = scale
    return [h["loss"] for h in res.history]


def floored_cosine(warmup_steps: int, total_steps: int, floor: float):
    """LR multiplier per step: linear warm-up to 1 over ``warmup_steps``, times a cosine
    over ``total_steps`` that goes from 1 down to ``floor`` (for ``LambdaLR``)."""
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"lr_floor must be in [0, 1], got {floor}")
    total = max(1, int(total_steps))

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, int(warmup_steps)))
        cos = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        return warm * (floor + (1.0 - floor) * cos)

    return factor


def train_unet(
    refiner: DemoRefiner,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_embeds: torch.Tensor,
    cfg: DemoRefinerConfig,
    progress: bool = True,
    device: str = "cpu",
    targets: torch.Tensor | None = None,
    saliency_pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    phase: str = "unet",
    rendered: RenderedInstances | None = None,
    stim_ids: list[str] | None = None,
    saliency_layouts: np.ndarray | None = None,
) -> list[float]:
    """Train ``refiner.unet`` as an x0 denoiser (see the module docstring). Returns losses.

    ``targets`` (default ``images``): what the denoiser must output for each image; the
    degraded inputs are made from ``images``. ``saliency_pairs`` = ``(maps [M, 3, r, r],
    image_index [M])`` or ``(maps, image_index, map_targets [M, 3, R, R])``: real saliency
    maps and the image each was decoded from (and what to output for each map; default
    that image's target), used as the input of a ``cfg.p_saliency`` share of the samples.
    ``phase`` names the progress bar and the checkpoint directory (``<checkpoint_dir>/<phase>``).
    ``rendered``: new instances of the training classes for ``cfg.p_rendered`` of the samples
    and the targets of ``cfg.p_mismatch`` of the map samples (which also need ``stim_ids``, the
    stimulus of each image, and ``saliency_layouts``, each map's decoded layout, or None).
    Learning rate: linear warm-up over ``warmup_steps``, then a cosine from ``lr`` down to
    ``lr_floor * lr`` (:func:`floored_cosine`)."""
    targets = images if targets is None else targets
    if targets.shape != images.shape:
        raise ValueError(f"targets {tuple(targets.shape)} must match images {tuple(images.shape)}")
    if not 0.0 <= cfg.saliency_after < 1.0:
        raise ValueError(f"saliency_after must be in [0, 1), got {cfg.saliency_after}")
    from diffusers.training_utils import EMAModel

    loop = FitLoop(f"refiner {phase.replace('_', ' ')}", cfg.unet_steps, device=device,
                   checkpoint_dir=_phase_dir(cfg, phase), checkpoint_every=cfg.checkpoint_every,
                   unit="step", progress=progress)
    dev = loop.device
    unet, sched = refiner.unet, refiner.scheduler
    unet.train()
    refiner.vae.to(dev).eval().requires_grad_(False)
    with torch.no_grad():
        clean_lat = torch.cat(
            [refiner.encode(targets[i : i + 256].to(dev)) for i in range(0, len(targets), 256)]
        )
    class_embeds = class_embeds.to(dev)
    emb_std = float(class_embeds.std())
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=1e-4)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(
        opt, floored_cosine(cfg.warmup_steps, cfg.unet_steps, cfg.lr_floor))
    unet, opt, lr_sched = loop.prepare(unet, opt, lr_sched)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay) if cfg.ema_decay > 0 else None
    if ema is not None:
        loop.track("ema", ema)
    g = torch.Generator().manual_seed(cfg.seed + 2)
    loop.track("data_order", g)
    n_train = sched.config.num_train_timesteps
    focus = refiner.timesteps(cfg.steps, cfg.strength).cpu().long()
    sal_maps, sal_idx, sal_lat = _saliency_inputs(refiner, saliency_pairs, images, targets, cfg, dev)
    sal_from = int(round(cfg.saliency_after * cfg.unet_steps))
    alphas = sched.alphas_cumprod.to(dev)
    if (cfg.p_rendered > 0 or cfg.p_mismatch > 0) and rendered is None:
        raise ValueError("p_rendered / p_mismatch > 0 need rendered instances (a procedural stimulus set)")
    mismatch = cfg.p_mismatch > 0 and sal_maps is not None
    if mismatch and (stim_ids is None or len(stim_ids) != len(images)):
        raise ValueError("p_mismatch needs the stimulus id of every training image (stim_ids)")
    phase_id = {"unet": 0, "unet_uncond": 1}.get(phase, 2)

    def train_step(step: int) -> dict[str, float]:
        b = cfg.batch_size
        idx = torch.randint(0, len(images), (b,), generator=g)
        t = torch.randint(0, n_train, (b,), generator=g)
        if cfg.p_focus > 0:
            pick = torch.rand(b, generator=g) < cfg.p_focus
            t = torch.where(pick, focus[torch.randint(0, len(focus), (b,), generator=g)], t)
        use_deg = torch.rand(b, generator=g) < cfg.p_degraded
        noise = torch.randn(clean_lat[:b].shape, generator=g)
        seen = images[idx]
        lab = labels[idx]
        target = clean_lat[idx.to(dev)]
        if cfg.p_rendered > 0:  # new instances of the training classes instead of the split's images
            fresh = torch.rand(b, generator=g) < cfg.p_rendered
            if bool(fresh.any()):
                r_img, r_tgt, r_lab = rendered.batch(int(fresh.sum()), phase_id, step)
                seen, lab = seen.clone(), lab.clone()
                seen[fresh], lab[fresh] = r_img, r_lab
                with torch.no_grad():
                    target = target.clone()
                    target[fresh.to(dev)] = refiner.encode(r_tgt.to(dev))
        deg = degrade(seen, g, cfg.blur_sigma, cfg.colour_cast)
        use_sal = j = None
        if sal_maps is not None:
            use_sal = (torch.rand(b, generator=g) < cfg.p_saliency) & (step >= sal_from)
            j = torch.randint(0, len(sal_maps), (b,), generator=g)
            lab = torch.where(use_sal, labels[sal_idx[j]], lab)
            sal_target = sal_lat[j.to(dev)] if sal_lat is not None else clean_lat[sal_idx[j].to(dev)]
            target = torch.where(use_sal.to(dev)[:, None, None, None], sal_target, target)
            deg = torch.where(use_sal[:, None, None, None], sal_maps[j], deg)
            use_deg = use_deg | use_sal
            if mismatch:  # another class's caption: drawn where the map puts the object
                swap = use_sal & (torch.rand(b, generator=g) < cfg.p_mismatch)
                if bool(swap.any()):
                    rows = torch.nonzero(swap).flatten()
                    new_lab = rendered.other_class(lab[rows], phase_id, step)
                    lay = None if saliency_layouts is None else saliency_layouts[j[rows].numpy()]
                    imgs = rendered.drawn_as([stim_ids[int(sal_idx[j[r]])] for r in rows], new_lab, lay)
                    lab = lab.clone()
                    lab[rows] = new_lab
                    with torch.no_grad():
                        target = target.clone()
                        target[rows.to(dev)] = refiner.encode(imgs.to(dev))
        if cfg.p_blank > 0:
            blank = torch.rand(b, generator=g) < cfg.p_blank
            deg = torch.where(blank[:, None, None, None], torch.full_like(deg, 0.5), deg)
        emb_noise = torch.randn((b, *class_embeds.shape[1:]), generator=g)
        # drawn only when used: configs without caption dropout keep their batches
        keep_caption = (torch.rand(b, generator=g) >= cfg.p_uncond) if cfg.p_uncond > 0 else None
        with torch.no_grad():
            base = torch.where(use_deg.to(dev)[:, None, None, None], refiner.encode(deg.to(dev)), target)
        t = t.to(dev)
        a = alphas[t][:, None, None, None]
        zt = a.sqrt() * base + (1 - a).sqrt() * noise.to(dev)
        emb = class_embeds[lab.to(dev)]
        emb = emb + cfg.emb_noise * emb_std * emb_noise.to(dev) * (emb != 0)
        if keep_caption is not None:  # the null embedding: exactly zero
            emb = emb * keep_caption.to(dev, emb.dtype)[:, None, None]
        loss = F.mse_loss(unet(zt, t, encoder_hidden_states=emb).sample, target)
        opt.zero_grad(set_to_none=True)
        loop.accelerator.backward(loss)
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        if ema is not None:
            ema.step(unet.parameters())
        return {"loss": float(loss.detach())}

    losses = [h["loss"] for h in loop.run(train_step).history]
    unet = loop.unwrap(unet)
    if ema is not None and losses:
        ema.copy_to(unet.parameters())
    unet.eval()
    return losses


def _saliency_inputs(refiner: DemoRefiner, pairs: tuple | None, images: torch.Tensor, targets: torch.Tensor,
                     cfg: DemoRefinerConfig, dev: torch.device
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Checked ``(maps at the image resolution, image index, target latents or None)`` of
    ``saliency_pairs`` (all None when the config uses no maps)."""
    if pairs is None or cfg.p_saliency <= 0 or not len(pairs[0]):
        return None, None, None
    sal_maps, sal_idx = pairs[0], torch.as_tensor(pairs[1], dtype=torch.long)
    sal_lat = None
    if len(pairs) > 2 and pairs[2] is not None:
        map_targets = pairs[2]
        if tuple(map_targets.shape) != (len(sal_maps), *targets.shape[1:]):
            raise ValueError(
                f"saliency_pairs: map targets must be [{len(sal_maps)}, {', '.join(map(str, targets.shape[1:]))}], "
                f"got {tuple(map_targets.shape)}"
            )
        with torch.no_grad():
            sal_lat = torch.cat([refiner.encode(map_targets[i : i + 256].float().to(dev))
                                 for i in range(0, len(map_targets), 256)])
    if len(sal_maps) != len(sal_idx) or int(sal_idx.max()) >= len(images) or int(sal_idx.min()) < 0:
        raise ValueError(
            f"saliency_pairs: {len(sal_maps)} maps need as many image indices in [0, {len(images)}); "
            f"got {len(sal_idx)} in [{int(sal_idx.min())}, {int(sal_idx.max())}]"
        )
    sal_maps = sal_maps.float().clamp(0, 1)
    if sal_maps.shape[-1] != images.shape[-1]:
        sal_maps = F.interpolate(sal_maps, size=images.shape[-2:], mode="bilinear",
                                 antialias=True, align_corners=False).clamp(0, 1)
    return sal_maps, sal_idx, sal_lat


def train_demo_refiner(
    stimuli,
    text_encoder,
    cfg: DemoRefinerConfig | dict | None = None,
    progress: bool = True,
    device: str = "cpu",
    saliency_maps: tuple[torch.Tensor, list[str]] | None = None,
) -> DemoRefiner:
    """Train the demo refiner on a stimulus set's images and label captions.

    Parameters
    ----------
    stimuli : DemoStimulusSet (or anything with ``stim_ids``, ``image``, ``label``, ``caption``)
    text_encoder : TextEncoder
        Gives the caption embeddings ``[n_classes, L, D]`` used as cross-attention input;
        the semantic head must be trained against the same encoder.
    cfg : DemoRefinerConfig or dict
    device : str
    saliency_maps : (maps ``[M, 3, r, r]`` in [0, 1], stimulus ids ``[M]``[, layouts ``[M, 3]``]), optional
        Real saliency maps (the GAN on training trials), the stimulus each trial showed and
        the layout (x, y, size) the map was decoded to; used for ``cfg.p_saliency`` of the
        samples (the layouts for ``cfg.saliency_targets = "decoded"``).

    Returns
    -------
    DemoRefiner
        Trained, in eval mode, on ``device``; ``refiner.extra`` holds the config, final
        losses and wall times.
    """
    cfg = cfg if isinstance(cfg, DemoRefinerConfig) else DemoRefinerConfig.from_dict(cfg)
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    images, labels = stimulus_tensors(stimuli, cfg.resolution)
    targets = stimulus_tensors(stimuli, cfg.resolution, upright=True)[0] if cfg.upright_targets else images
    n_classes = int(getattr(stimuli, "n_classes", None) or int(labels.max()) + 1)
    captions = [stimuli.caption(k) for k in range(n_classes)]
    class_embeds = text_encoder.encode(captions).float()
    unet, vae, scheduler = make_demo_components(cfg, cross_attention_dim=int(text_encoder.dim))
    ae_images = torch.cat([images, targets]) if cfg.upright_targets else images
    ae_losses = train_autoencoder(vae, ae_images, cfg, progress=progress, device=device)
    t_ae = time.perf_counter() - t0
    refiner = DemoRefiner(
        unet.to(device),
        vae.to(device),
        scheduler,
        resolution=cfg.resolution,
        steps=cfg.steps,
        strength=cfg.strength,
        guidance_scale=cfg.guidance_scale,
        seq_len=int(text_encoder.seq_len),
        text_encoder=text_encoder.config() if hasattr(text_encoder, "config") else None,
    )
    pairs = None
    if cfg.saliency_targets not in ("seen", "decoded"):
        raise ValueError(f"saliency_targets must be 'seen' or 'decoded', got {cfg.saliency_targets!r}")
    if saliency_maps is not None:
        maps, sids = saliency_maps[0], saliency_maps[1]
        layouts = saliency_maps[2] if len(saliency_maps) > 2 else None
        where = {sid: i for i, sid in enumerate(stimuli.stim_ids)}
        missing = [s for s in sids if s not in where]
        if missing:
            raise ValueError(f"saliency maps of {len(missing)} stimuli not in the stimulus set (e.g. {missing[0]!r})")
        map_targets = None
        if cfg.saliency_targets == "decoded":
            if layouts is None or not hasattr(stimuli, "image_at"):
                raise ValueError(
                    "saliency_targets = 'decoded' needs the maps' decoded layouts (a GAN conditioned "
                    "on the encoder's layout, gan.layout = true) and a stimulus set that can draw an "
                    "object at a layout (image_at)"
                )
            layouts = np.asarray(layouts, dtype=np.float64)
            imgs = np.stack([stimuli.image_at(s, lay, cfg.resolution, upright=cfg.upright_targets)
                             for s, lay in zip(sids, layouts, strict=True)])
            map_targets = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
        pairs = (maps, torch.tensor([where[s] for s in sids], dtype=torch.long), map_targets)
    rendered = None
    if cfg.p_rendered > 0 or cfg.p_mismatch > 0:
        rendered = RenderedInstances(stimuli, np.unique(labels.numpy()), cfg.resolution, cfg.render_seed,
                                     upright_targets=cfg.upright_targets)
    sal_layouts = None
    if saliency_maps is not None and len(saliency_maps) > 2 and saliency_maps[2] is not None:
        sal_layouts = np.asarray(saliency_maps[2], dtype=np.float64)
    extra_args = {"rendered": rendered, "stim_ids": list(stimuli.stim_ids), "saliency_layouts": sal_layouts}
    main_cfg = replace(cfg, p_uncond=0.0) if cfg.uncond_steps > 0 else cfg
    losses = train_unet(
        refiner, images, labels, class_embeds, main_cfg, progress=progress, device=device,
        targets=targets, saliency_pairs=pairs, **extra_args,
    )
    uncond_losses: list[float] = []
    if cfg.uncond_steps > 0:
        ft_cfg = replace(cfg, unet_steps=cfg.uncond_steps, lr=cfg.uncond_lr, ema_decay=0.0,
                         saliency_after=0.0, seed=cfg.seed + 7)
        uncond_losses = train_unet(
            refiner, images, labels, class_embeds, ft_cfg, progress=progress, device=device,
            targets=targets, saliency_pairs=pairs, phase="unet_uncond", **extra_args,
        )
    refiner.unet.requires_grad_(False)
    refiner.extra = {
        "config": cfg.to_dict(),
        "autoencoder_loss_last": float(np.mean(ae_losses[-20:])) if ae_losses else None,
        "unet_loss_first": float(np.mean(losses[:20])) if losses else None,
        "unet_loss_last": float(np.mean(losses[-20:])) if losses else None,
        "unet_uncond_loss_last": float(np.mean(uncond_losses[-20:])) if uncond_losses else None,
        "train_seconds": {
            "autoencoder": round(t_ae, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "n_images": len(images),
        "rendered_instances": rendered.record() if rendered is not None else None,
    }
    return refiner
