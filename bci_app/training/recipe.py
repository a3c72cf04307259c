"""``bci-app train``: the training stages of the NeuroImagen method.

Stages, in order (``--stages`` picks a subset; the others are loaded from the bundle):

1. ``encoder``  f_theta with the triplet loss (eq. 1, online mining), optionally plus a
   cross-entropy read-out (``ce_weight``); early stopping on validation accuracy.
2. ``gan``      G(z, f) and D(A(y), f) on the frozen encoder's features: hinge losses
   (eqs. 2-3), DiffAugment, mode seeking (eq. 4), SSIM to the seen image (eq. 5),
   weighted as eq. (6): ``alpha1 * L_adv + alpha2 * L_ms + alpha3 * L_ssim``; model
   selection on validation SSIM.
3. ``semantic`` M_s on the frozen encoder's features, L2 (eq. 7) to the caption
   embeddings of the chosen text encoder; model selection on validation loss.
4. ``refiner``  the demo refiner (``bci_app.training.demo_refiner``) or a reference to a
   pretrained diffusers model; then the demo image classifier when available.

Every stage is seeded, shows tqdm progress, checkpoints into ``BUNDLE/checkpoints`` each
epoch (``--resume`` continues from there and skips finished stages), and uses only the
training split for fitting and the validation split for selection (never test). The
loops use Hugging Face ``accelerate.Accelerator``, so ``accelerate launch -m bci_app.cli
train ...`` runs them data-parallel on several GPUs or machines.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bci_app.models import bundle as bundle_io
from bci_app.models.device import resolve_device
from bci_app.models.diffaugment import diff_augment
from bci_app.models.encoders import BinnedLinearEncoder, ClassifierHead, build_encoder
from bci_app.models.losses import (
    hinge_d_loss,
    hinge_g_loss,
    mode_seeking_loss,
    semantic_l2_loss,
    ssim,
    ssim_loss,
    triplet_loss,
)
from bci_app.models.saliency_gan import (
    SaliencyDiscriminator,
    SaliencyGenerator,
    condition_settings,
    gan_condition,
)
from bci_app.models.semantic import SemanticHead

log = logging.getLogger(__name__)

STAGES = ("encoder", "gan", "semantic", "refiner")

DEFAULT_CONFIG: dict[str, Any] = {
    "train": {"seed": 0, "data": "synthetic:2000", "keep_checkpoints": True, "device": "auto"},
    "data": {"split_seed": 0, "test_frac": 0.2, "val_frac": 0.1},
    "encoder": {
        "name": "binned_linear", "n_outputs": 64, "kwargs": {},
        "epochs": 60, "batch_classes": 16, "per_class": 4, "lr": 1e-3, "weight_decay": 1e-2,
        "margin": 0.2, "mining": "batch_hard", "ce_weight": 1.0, "patience": 12, "lda_init": False,
        "attributes": False,
        "layout": False, "layout_weight": 1.0,  # regress the object's x, y, size (demo set)
    },
    "gan": {
        "resolution": 64, "z_dim": 32, "base_channels": 32, "epochs": 20, "batch_size": 64,
        "lr_g": 2e-4, "lr_d": 2e-4, "betas": [0.0, 0.99], "alpha1": 1.0, "alpha2": 0.1,
        "alpha3": 5.0, "diffaugment": "color,translation,cutout", "patience": 8,
        "condition": "features", "temperature": 1.0,  # see saliency_gan.gan_condition
        "layout": False,  # + the encoder's decoded object layout, drawn as a map (saliency_gan)
    },
    "semantic": {
        "text_encoder": {"type": "minilm", "seq_len": 16}, "captions": "label",
        "hidden": 256, "prototypes": True, "dropout": 0.1, "epochs": 60, "batch_size": 128,
        "lr": 1e-3, "weight_decay": 1e-2, "patience": 12,
        # "features": mixture weights read from the EEG feature, started from the encoder's
        # class read-out (needs label captions and prototypes); "hidden": from the MLP
        "logits_from": "hidden",
        "sample_temperature": None,  # mixture temperature at sampling (SemanticHead.set_temperature)
    },
    "refiner": {"type": "demo", "train": {}},
    "classifier": {"train": True},
}


# ----------------------------------------------------------------------------- config
_FREE_FORM = {"refiner", "classifier", "encoder.kwargs", "semantic.text_encoder"}

def _merge(base: dict[str, Any], over: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k not in base:
            raise ValueError(f"unknown training setting {where}{k!r}; allowed: {', '.join(sorted(base))}")
        path = f"{where}{k}"
        if isinstance(base[k], dict) and isinstance(v, dict) and path in _FREE_FORM:
            out[k] = {**base[k], **v}  # passed through to another component's own config
        elif isinstance(base[k], dict) and isinstance(v, dict):
            out[k] = _merge(base[k], v, f"{path}.")
        else:
            out[k] = v
    return out


def load_train_config(path: str | Path | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Defaults, then the TOML file's tables (``[train]``, ``[data]``, ``[encoder]``,
    ``[gan]``, ``[semantic]``, ``[refiner]``, ``[classifier]``; other tables such as the app's
    ``[epoch]`` are ignored here), then ``overrides``."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist; expected a TOML file")
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        cfg = _merge(cfg, {k: v for k, v in data.items() if k in DEFAULT_CONFIG})
    if overrides:
        cfg = _merge(cfg, overrides)
    return cfg


def _accelerator(device: str):
    from accelerate import Accelerator

    return Accelerator(cpu=not device.startswith("cuda"))


def _progress(iterable, desc: str, accelerator, total: int | None = None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not accelerator.is_local_main_process,
                dynamic_ncols=True, leave=False)


class PKBatchSampler:
    """Batches of ``P`` classes x ``K`` trials (so every anchor has positives), seeded per epoch."""

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.by_class = {c: np.nonzero(self.labels == c)[0] for c in np.unique(self.labels)}
        self.p, self.k, self.seed, self.epoch = min(p, len(self.by_class)), k, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, len(self.labels) // (self.p * self.k))

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        classes = np.array(sorted(self.by_class))
        for _ in range(len(self)):
            chosen = rng.choice(classes, size=self.p, replace=False)
            idx = []
            for c in chosen:
                pool = self.by_class[c]
                idx.extend(rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist())
            yield idx


# ----------------------------------------------------------------------------- checkpoints
def _ckpt_path(out: Path, stage: str) -> Path:
    return out / "checkpoints" / f"{stage}.pt"


def _save_ckpt(out: Path, stage: str, state: dict[str, Any]) -> None:
    p = _ckpt_path(out, stage)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(p)


def _load_ckpt(out: Path, stage: str) -> dict[str, Any] | None:
    p = _ckpt_path(out, stage)
    if not p.is_file():
        return None
    return torch.load(p, map_location="cpu", weights_only=False)


class EarlyStopper:
    def __init__(self, patience: int, mode: str = "max") -> None:
        self.patience, self.mode = patience, mode
        self.best: float | None = None
        self.bad = 0

    def step(self, value: float) -> bool:
        """True when ``value`` is a new best."""
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
        return better

    @property
    def stop(self) -> bool:
        return self.bad >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "bad": self.bad}

    def load(self, s: dict) -> None:
        self.best, self.bad = s["best"], s["bad"]


# ----------------------------------------------------------------------------- stage 1
@torch.no_grad()
def encode(encoder: torch.nn.Module, X: np.ndarray | torch.Tensor, batch_size: int = 256,
           device: str | torch.device = "cpu") -> torch.Tensor:
    """Features ``[N, n_outputs]`` of ``X [N, C, T]`` (eval mode, CPU result)."""
    encoder.eval()
    X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
    outs = [encoder(X[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(X), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, encoder.n_outputs)


def centroid_accuracy(train_f: torch.Tensor, train_y: torch.Tensor, f: torch.Tensor, y: torch.Tensor) -> float:
    """Nearest class centroid (cosine) accuracy: how well an embedding separates classes."""
    classes = torch.unique(train_y)
    cent = torch.stack([F.normalize(train_f[train_y == c], dim=1).mean(0) for c in classes])
    pred = classes[(F.normalize(f, dim=1) @ F.normalize(cent, dim=1).t()).argmax(1)]
    return float((pred == y).float().mean())


def train_encoder(X_tr, y_tr, X_va, y_va, n_classes: int, cfg: dict, spec, out: Path | None = None,
                  seed: int = 0, device: str = "cpu", resume: bool = False,
                  attributes: dict[str, list[int]] | None = None,
                  layout: tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None = None,
                  ) -> tuple[Any, Any, dict]:
    """Stage 1. Returns ``(encoder, head, metrics)`` (best on validation).

    ``attributes``: the data set's class attributes, used by the LDA start when
    ``cfg["attributes"]`` is true (see :meth:`BinnedLinearEncoder.fit_lda`).
    ``layout``: ``(train targets [N, K], validation targets [M, K], names)``, the objects'
    positions and sizes, used when ``cfg["layout"]`` is true: K outputs of ``f_theta``
    start as ridge regressions of them, stay out of the triplet loss (they vary within a
    class) and keep an MSE term (``layout_weight``) while the encoder trains;
    ``metrics["layout"]`` says which outputs and how to map them back to image units."""
    from accelerate.utils import set_seed

    want_layout = bool(cfg.get("layout"))
    if want_layout and (layout is None or cfg["name"] != "binned_linear" or not cfg.get("lda_init")):
        raise ValueError(
            "encoder.layout needs per-trial object layouts (the demo stimulus set has them; "
            f"this data set {'has none' if layout is None else 'has them'}) and the binned_linear "
            "encoder with lda_init = true; set encoder.layout = false"
        )
    set_seed(seed)
    n_chans, n_times = X_tr.shape[1], X_tr.shape[2]
    enc = build_encoder(cfg["name"], n_chans, int(cfg["n_outputs"]), n_times, spec.sfreq, **cfg.get("kwargs", {}))
    head = ClassifierHead(int(cfg["n_outputs"]), n_classes)
    lda_info = None
    if isinstance(enc, BinnedLinearEncoder):
        if cfg.get("lda_init"):
            use = attributes if cfg.get("attributes") else None
            if cfg.get("attributes") and not attributes:
                log.warning("encoder: attributes requested but the data set defines none; class LDA only")
            lay_tr, lay_names = (layout[0], tuple(layout[2])) if want_layout else (None, None)
            lda_info = enc.fit_lda(X_tr, y_tr, head, attributes=use, layout=lay_tr, layout_names=lay_names)
            log.info("encoder: shrinkage-LDA start, train acc %.3f", lda_info["train_acc"])
        else:
            enc.fit_whitening(X_tr, y_tr)
    lay = lda_info.get("layout") if lda_info else None
    keep = torch.ones(int(cfg["n_outputs"]), dtype=torch.bool)  # outputs in the triplet loss
    if lay is not None:
        lay_idx = torch.as_tensor(lay["outputs"])
        keep[lay_idx] = False
        lay_mu, lay_sd = torch.as_tensor(lay["mean"]).float(), torch.as_tensor(lay["std"]).float()
        lay_t = ((torch.as_tensor(layout[0]).float() - lay_mu) / lay_sd)
    else:
        lay_t = torch.zeros(len(y_tr), 0)
    lay_w = float(cfg.get("layout_weight", 1.0))
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    acc = _accelerator(device)
    sampler = PKBatchSampler(y_tr, int(cfg["batch_classes"]), int(cfg["per_class"]), seed)
    ds = TensorDataset(torch.as_tensor(X_tr), torch.as_tensor(y_tr), lay_t)
    dl = DataLoader(ds, batch_sampler=sampler)
    enc, head, opt, dl = acc.prepare(enc, head, opt, dl)
    stopper = EarlyStopper(int(cfg["patience"]), "max")
    start, best_state, history = 0, None, []
    ck = _load_ckpt(out, "encoder") if (out is not None and resume) else None
    if ck is not None:
        acc.unwrap_model(enc).load_state_dict(ck["encoder"])
        acc.unwrap_model(head).load_state_dict(ck["head"])
        opt.load_state_dict(ck["opt"])
        stopper.load(ck["stopper"])
        start, best_state, history = ck["epoch"] + 1, ck["best"], ck["history"]
        torch.set_rng_state(ck["rng"])
    Xva_t, yva_t = torch.as_tensor(X_va), torch.as_tensor(y_va)
    ce_w = float(cfg["ce_weight"])
    if lda_info is not None and ck is None:
        # the closed-form start is a candidate too: selection on validation may keep it
        u_enc, u_head = acc.unwrap_model(enc), acc.unwrap_model(head)
        f_va = encode(u_enc, Xva_t, device=acc.device)
        init_acc = float((u_head(f_va.to(acc.device)).argmax(1).cpu() == yva_t).float().mean())
        lda_info["val_acc"] = init_acc
        if stopper.step(init_acc):
            best_state = {"encoder": copy.deepcopy(u_enc.state_dict()), "head": copy.deepcopy(u_head.state_dict())}
        log.info("encoder: LDA start val acc %.3f", init_acc)
    bar = _progress(range(start, int(cfg["epochs"])), "encoder", acc, total=int(cfg["epochs"]) - start)
    for epoch in bar:
        if stopper.stop:
            break
        sampler.set_epoch(epoch)
        enc.train()
        head.train()
        tl = []
        for xb, yb, lb in dl:
            emb = enc(xb)
            loss = triplet_loss(emb[:, keep.to(emb.device)], yb, float(cfg["margin"]), cfg["mining"])
            if ce_w:
                loss = loss + ce_w * F.cross_entropy(head(emb), yb)
            if lay is not None and lay_w:
                loss = loss + lay_w * F.mse_loss(emb[:, lay_idx.to(emb.device)], lb)
            opt.zero_grad()
            acc.backward(loss)
            opt.step()
            tl.append(float(loss.detach()))
        u_enc, u_head = acc.unwrap_model(enc), acc.unwrap_model(head)
        f_va = encode(u_enc, Xva_t, device=acc.device)
        if ce_w:
            val_acc = float((u_head(f_va.to(acc.device)).argmax(1).cpu() == yva_t).float().mean())
        else:
            f_tr = encode(u_enc, X_tr, device=acc.device)
            val_acc = centroid_accuracy(f_tr, torch.as_tensor(y_tr), f_va, yva_t)
        history.append({"epoch": epoch, "loss": float(np.mean(tl)), "val_acc": val_acc})
        if stopper.step(val_acc):
            best_state = {"encoder": copy.deepcopy(u_enc.state_dict()), "head": copy.deepcopy(u_head.state_dict())}
        bar.set_postfix(loss=f"{np.mean(tl):.3f}", val_acc=f"{val_acc:.3f}", best=f"{stopper.best:.3f}")
        if out is not None and acc.is_main_process:
            _save_ckpt(out, "encoder", {
                "encoder": u_enc.state_dict(), "head": u_head.state_dict(), "opt": opt.state_dict(),
                "stopper": stopper.state(), "epoch": epoch, "best": best_state, "history": history,
                "rng": torch.get_rng_state(),
            })
    enc, head = acc.unwrap_model(enc).cpu(), acc.unwrap_model(head).cpu()
    if best_state is not None:
        enc.load_state_dict(best_state["encoder"])
        head.load_state_dict(best_state["head"])
    enc.eval()
    head.eval()
    if lay is not None:  # how well the kept encoder decodes the layout on validation trials
        pred = encode(enc, Xva_t)[:, lay_idx].double()
        t_va = (torch.as_tensor(layout[1]).double() - lay_mu.double()) / lay_sd.double()
        r2 = 1 - ((pred - t_va) ** 2).mean(0) / t_va.var(0, unbiased=False).clamp_min(1e-12)
        lay = {**lay, "val_r2": [round(float(v), 4) for v in r2]}
        log.info("encoder: layout val R^2 %s", dict(zip(lay["names"], lay["val_r2"])))
    return enc, head, {"val_acc": stopper.best, "epochs_run": len(history), "lda_init": lda_info, "layout": lay,
                       "loss_first": history[0]["loss"] if history else None,
                       "loss_last": history[-1]["loss"] if history else None}


# ----------------------------------------------------------------------------- stage 2
def train_gan(f_tr, img_tr, f_va, img_va, cfg: dict, out: Path | None = None, seed: int = 0,
              device: str = "cpu", resume: bool = False, layout_dims: int = 0) -> tuple[Any, Any, dict]:
    """Stage 2 on precomputed conditions ``f [N, F]`` and images ``[N, 3, R, R]`` in [0, 1]
    (``layout_dims``: see :class:`SaliencyGenerator`)."""
    from accelerate.utils import set_seed

    set_seed(seed)
    R = int(cfg["resolution"])
    G = SaliencyGenerator(int(cfg["z_dim"]), f_tr.shape[1], R, int(cfg["base_channels"]), layout_dims)
    D = SaliencyDiscriminator(f_tr.shape[1], R, int(cfg["base_channels"]))
    betas = tuple(cfg["betas"])
    opt_g = torch.optim.Adam(G.parameters(), lr=float(cfg["lr_g"]), betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=float(cfg["lr_d"]), betas=betas)
    acc = _accelerator(device)
    gen = torch.Generator().manual_seed(seed)
    dl = DataLoader(TensorDataset(f_tr, img_tr), batch_size=int(cfg["batch_size"]), shuffle=True,
                    drop_last=len(f_tr) > int(cfg["batch_size"]), generator=gen)
    G, D, opt_g, opt_d, dl = acc.prepare(G, D, opt_g, opt_d, dl)
    stopper = EarlyStopper(int(cfg["patience"]), "max")
    start, best_state, history = 0, None, []
    ck = _load_ckpt(out, "gan") if (out is not None and resume) else None
    if ck is not None:
        acc.unwrap_model(G).load_state_dict(ck["G"])
        acc.unwrap_model(D).load_state_dict(ck["D"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        stopper.load(ck["stopper"])
        start, best_state, history = ck["epoch"] + 1, ck["best"], ck["history"]
        torch.set_rng_state(ck["rng"])
        gen.set_state(ck["gen"])
    a1, a2, a3 = float(cfg["alpha1"]), float(cfg["alpha2"]), float(cfg["alpha3"])
    policy = cfg["diffaugment"]
    z_va = torch.randn(len(f_va), int(cfg["z_dim"]), generator=torch.Generator().manual_seed(seed + 1))
    bar = _progress(range(start, int(cfg["epochs"])), "gan", acc, total=int(cfg["epochs"]) - start)
    for epoch in bar:
        if stopper.stop:
            break
        G.train()
        D.train()
        ld, lg, ls = [], [], []
        for fb, yb in dl:
            zdim = int(cfg["z_dim"])
            z = torch.randn(len(fb), zdim, device=fb.device)
            with torch.no_grad():
                fake = G(z, fb)
            d_loss = hinge_d_loss(D(diff_augment(yb, policy), fb), D(diff_augment(fake, policy), fb))
            opt_d.zero_grad()
            acc.backward(d_loss)
            opt_d.step()
            z1 = torch.randn(len(fb), zdim, device=fb.device)
            z2 = torch.randn(len(fb), zdim, device=fb.device)
            fake1, fake2 = G(z1, fb), G(z2, fb)
            l_adv = hinge_g_loss(D(diff_augment(fake1, policy), fb))
            l_ms = mode_seeking_loss(fake1, fake2, z1, z2)
            l_ssim = ssim_loss(fake1, yb)
            g_loss = a1 * l_adv + a2 * l_ms + a3 * l_ssim
            opt_g.zero_grad()
            acc.backward(g_loss)
            opt_g.step()
            ld.append(float(d_loss.detach()))
            lg.append(float(g_loss.detach()))
            ls.append(float(l_ssim.detach()))
        uG = acc.unwrap_model(G)
        uG.eval()
        with torch.no_grad():
            val_ssim = float(ssim(uG(z_va.to(acc.device), f_va.to(acc.device)).float().cpu(), img_va))
        history.append({"epoch": epoch, "d_loss": float(np.mean(ld)), "g_loss": float(np.mean(lg)),
                        "ssim_loss": float(np.mean(ls)), "val_ssim": val_ssim})
        if stopper.step(val_ssim):
            best_state = copy.deepcopy(uG.state_dict())
        bar.set_postfix(d=f"{np.mean(ld):.2f}", g=f"{np.mean(lg):.2f}", val_ssim=f"{val_ssim:.3f}")
        if out is not None and acc.is_main_process:
            _save_ckpt(out, "gan", {
                "G": uG.state_dict(), "D": acc.unwrap_model(D).state_dict(), "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(), "stopper": stopper.state(), "epoch": epoch, "best": best_state,
                "history": history, "rng": torch.get_rng_state(), "gen": gen.get_state(),
            })
    G, D = acc.unwrap_model(G).cpu(), acc.unwrap_model(D).cpu()
    if best_state is not None:
        G.load_state_dict(best_state)
    G.eval()
    D.eval()
    return G, D, {"val_ssim": stopper.best, "epochs_run": len(history),
                  "ssim_loss_first": history[0]["ssim_loss"] if history else None,
                  "ssim_loss_last": history[-1]["ssim_loss"] if history else None}


# ----------------------------------------------------------------------------- stage 3
def train_semantic(f_tr, t_tr, f_va, t_va, cfg: dict, prototypes: torch.Tensor | None = None,
                   out: Path | None = None, seed: int = 0, device: str = "cpu",
                   resume: bool = False, readout: torch.nn.Linear | None = None) -> tuple[Any, dict]:
    """Stage 3: ``M_s`` from features ``[N, F]`` to caption embeddings ``[N, L, D]`` (eq. 7).

    ``readout``: the encoder's class read-out, the start of the mixture weights when
    ``cfg["logits_from"] == "features"`` (prototype ``k`` = class ``k``'s caption)."""
    from accelerate.utils import set_seed

    set_seed(seed)
    L, Dm = t_tr.shape[1], t_tr.shape[2]
    K = len(prototypes) if prototypes is not None else 0
    logits_from = str(cfg.get("logits_from", "hidden")) if K else "hidden"
    head = SemanticHead(f_tr.shape[1], L, Dm, int(cfg["hidden"]), K, float(cfg["dropout"]),
                        logits_from=logits_from)
    if K:
        head.init_prototypes(prototypes)
    if logits_from == "features" and readout is not None:
        head.init_logits(readout.weight.detach().float(), readout.bias.detach().float())
    opt = torch.optim.AdamW(head.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    acc = _accelerator(device)
    gen = torch.Generator().manual_seed(seed)
    dl = DataLoader(TensorDataset(f_tr, t_tr), batch_size=int(cfg["batch_size"]), shuffle=True, generator=gen)
    head, opt, dl = acc.prepare(head, opt, dl)
    stopper = EarlyStopper(int(cfg["patience"]), "min")
    start, best_state, history = 0, None, []
    ck = _load_ckpt(out, "semantic") if (out is not None and resume) else None
    if ck is not None:
        acc.unwrap_model(head).load_state_dict(ck["head"])
        opt.load_state_dict(ck["opt"])
        stopper.load(ck["stopper"])
        start, best_state, history = ck["epoch"] + 1, ck["best"], ck["history"]
        torch.set_rng_state(ck["rng"])
        gen.set_state(ck["gen"])
    else:  # the start is a candidate too (with a read-out start it may already be the best)
        u = acc.unwrap_model(head).eval()
        with torch.no_grad():
            val0 = float(semantic_l2_loss(u(f_va.to(acc.device)).float().cpu(), t_va))
        stopper.step(val0)
        best_state = copy.deepcopy(u.state_dict())
    bar = _progress(range(start, int(cfg["epochs"])), "semantic", acc, total=int(cfg["epochs"]) - start)
    for epoch in bar:
        if stopper.stop:
            break
        head.train()
        tl = []
        for fb, tb in dl:
            loss = semantic_l2_loss(head(fb), tb)
            opt.zero_grad()
            acc.backward(loss)
            opt.step()
            tl.append(float(loss.detach()))
        u = acc.unwrap_model(head)
        u.eval()
        with torch.no_grad():
            val = float(semantic_l2_loss(u(f_va.to(acc.device)).float().cpu(), t_va))
        history.append({"epoch": epoch, "loss": float(np.mean(tl)), "val_loss": val})
        if stopper.step(val):
            best_state = copy.deepcopy(u.state_dict())
        bar.set_postfix(loss=f"{np.mean(tl):.4f}", val=f"{val:.4f}")
        if out is not None and acc.is_main_process:
            _save_ckpt(out, "semantic", {
                "head": u.state_dict(), "opt": opt.state_dict(), "stopper": stopper.state(),
                "epoch": epoch, "best": best_state, "history": history,
                "rng": torch.get_rng_state(), "gen": gen.get_state(),
            })
    head = acc.unwrap_model(head).cpu()
    if best_state is not None:
        head.load_state_dict(best_state)
    head.eval()
    return head, {"val_loss": stopper.best, "epochs_run": len(history),
                  "loss_first": history[0]["loss"] if history else None,
                  "loss_last": history[-1]["loss"] if history else None}


def caption_targets(ds, idx: np.ndarray, text_encoder, captions: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Caption embeddings of the trials ``idx`` and, for label captions, the class ones."""
    if captions == "label":
        class_emb = text_encoder.encode([ds.label_caption(k) for k in range(ds.n_classes)]).float()
        return class_emb[torch.as_tensor(ds.labels[idx])], class_emb
    caps = [ds.caption(int(i)) for i in idx]
    return text_encoder.encode(caps).float(), None


def load_free_captions(path: str | Path) -> dict[str, str]:
    """Free captions: JSON ``{stim_id: caption}`` or TSV lines ``stim_id<TAB>caption``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file {path} does not exist; expected JSON {{stim_id: caption}} or TSV")
    text = path.read_text()
    if path.suffix == ".json":
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a JSON object {{stim_id: caption}}")
        return {str(k): str(v) for k, v in d.items()}
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if "\t" not in line:
                raise ValueError(f"{path}:{n}: expected 'stim_id<TAB>caption'")
            k, v = line.split("\t", 1)
            out[k.strip()] = v.strip()
    return out


# ----------------------------------------------------------------------------- driver
def _images_tensor(ds, idx: np.ndarray, size: int) -> torch.Tensor:
    imgs = ds.images(idx, size)
    return torch.as_tensor(imgs).permute(0, 3, 1, 2).float() / 255.0


def train_bundle(
    data: str,
    out: str | Path,
    config: dict[str, Any] | str | Path | None = None,
    images_dir: str | Path | None = None,
    stages: list[str] | tuple[str, ...] = STAGES,
    epochs: int | None = None,
    device: str = "auto",
    seed: int | None = None,
    resume: bool = False,
) -> Path:
    """Train the requested stages into the bundle directory ``out`` (see module docstring)."""
    from bci_app.preprocessing import PreprocessingSpec, compute_norm, normalise

    cfg = config if isinstance(config, dict) else load_train_config(config)
    cfg = copy.deepcopy(cfg)
    stages = [s.strip() for s in stages if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; allowed: {', '.join(STAGES)}")
    if seed is not None:
        cfg["train"]["seed"] = int(seed)
    if data:
        cfg["train"]["data"] = data
    if epochs is not None:
        for s in ("encoder", "gan", "semantic"):
            cfg[s]["epochs"] = int(epochs)
    seed = int(cfg["train"]["seed"])
    device = str(resolve_device(device if device not in (None, "auto") else cfg["train"].get("device")))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if (out / bundle_io.CONFIG_NAME).is_file():
        existing = bundle_io.read_bundle_config(out)
    done = set(existing.get("training", {}).get("stages_done", [])) if existing else set()
    t_all = time.perf_counter()
    times: dict[str, float] = dict(existing.get("training", {}).get("times_s", {}))
    metrics: dict[str, Any] = dict(existing.get("training", {}).get("metrics", {}))

    from bci_app.datasets.loaders import load_spec

    dcfg = cfg["data"]
    t0 = time.perf_counter()
    ds = load_spec(cfg["train"]["data"], images_dir=images_dir, split_seed=int(dcfg["split_seed"]),
                   test_frac=float(dcfg["test_frac"]), val_frac=float(dcfg["val_frac"]))
    times["data"] = round(time.perf_counter() - t0, 1)
    log.info("data: %s", ds.summary())
    tr, va = ds.splits["train"], ds.splits["val"]
    if len(va) == 0:
        raise ValueError(f"{ds.source}: the validation split is empty; use more trials or a larger val_frac")
    spec = ds.spec
    if existing.get("spec", {}).get("norm_mean") is not None and "encoder" not in stages:
        spec = PreprocessingSpec.from_dict(existing["spec"])  # the trained encoder's normalisation
    else:
        mean, std = compute_norm(ds.X[tr])
        spec = PreprocessingSpec.from_dict({**spec.to_dict(), "norm_mean": mean.tolist(), "norm_std": std.tolist()})
    X = normalise(ds.X, spec)
    y = ds.labels
    components: dict[str, Any] = {}

    base_config = {
        **{k: v for k, v in existing.items() if k not in ("format", "version")},
        "spec": spec.to_dict(),
        "n_times": int(X.shape[2]),
        "classes": list(ds.class_names),
        "training": {
            "data": cfg["train"]["data"], "seed": seed, "config": cfg, "images": str(images_dir) if images_dir else None,
            "data_summary": ds.summary(), "stages_done": sorted(done), "times_s": times, "metrics": metrics,
            # which images each split held: evaluate keeps test trials to images never trained on
            "split_images": {
                name: sorted({str(ds.stim_ids[i]) for i in idx}) for name, idx in ds.splits.items()
            },
        },
    }

    def save(new_done: str | None = None) -> None:
        if new_done:
            done.add(new_done)
        base_config["training"]["stages_done"] = [s for s in STAGES if s in done]
        bundle_io.save_bundle(out, base_config, components)

    def need(name: str) -> Any:
        try:
            return bundle_io.load_component(out, name)
        except (FileNotFoundError, KeyError) as e:
            raise RuntimeError(
                f"stage needs the {name!r} component, which {out} does not have ({e}); "
                f"train the earlier stages first (--stages encoder,...)"
            ) from None

    def component(name: str) -> Any:  # trained in this run, else from the bundle
        return components[name] if name in components else need(name)

    def generator_condition(gan_cfg: dict, idx: np.ndarray | slice = slice(None)) -> torch.Tensor:
        cond, temp, layout = condition_settings(gan_cfg)
        head = component("encoder_head") if cond == "posterior" else None
        with torch.no_grad():
            return gan_condition(feats[idx], head, cond, temp, layout)

    # --- encoder
    if "encoder" in stages and not (resume and "encoder" in done):
        t0 = time.perf_counter()
        layout = None
        if cfg["encoder"].get("layout") and ds.layout is not None:
            from bci_app.stimuli import DemoStimulusSet

            layout = (ds.layout[tr], ds.layout[va], DemoStimulusSet.LAYOUT_NAMES)
        enc, head, m = train_encoder(X[tr], y[tr], X[va], y[va], ds.n_classes, cfg["encoder"], spec,
                                     out, seed, device, resume, attributes=ds.class_attributes,
                                     layout=layout)
        times["encoder"] = round(time.perf_counter() - t0, 1)
        metrics["encoder"] = m
        components.update(encoder=enc, encoder_head=head)
        base_config["encoder"] = {"layout": m.get("layout")}
        save("encoder")
    else:
        enc = need("encoder")
    feats = encode(enc, X)

    # --- gan
    if "gan" in stages and not (resume and "gan" in done):
        t0 = time.perf_counter()
        R = int(cfg["gan"]["resolution"])
        cond, temp, _ = condition_settings(cfg["gan"])
        layout = None
        if cfg["gan"].get("layout"):
            layout = (base_config.get("encoder") or {}).get("layout")
            if layout is None:
                raise ValueError(
                    "gan.layout = true needs an encoder trained with encoder.layout = true "
                    "(its layout outputs); retrain the encoder stage or set gan.layout = false"
                )
        gan_settings = {"condition": cond, "temperature": temp, "layout": layout}
        gfeats = generator_condition(gan_settings)
        G, D, m = train_gan(gfeats[tr], _images_tensor(ds, tr, R), gfeats[va], _images_tensor(ds, va, R),
                            cfg["gan"], out, seed + 1, device, resume, layout_dims=3 if layout else 0)
        times["gan"] = round(time.perf_counter() - t0, 1)
        metrics["gan"] = m
        components.update(generator=G, discriminator=D)
        base_config["gan"] = {"resolution": R, "z_dim": int(cfg["gan"]["z_dim"]), **gan_settings}
        save("gan")

    # --- semantic
    scfg = cfg["semantic"]
    if "semantic" in stages and not (resume and "semantic" in done):
        from bci_app.models.text import build_text_encoder

        t0 = time.perf_counter()
        te = build_text_encoder(scfg["text_encoder"])
        if scfg["captions"] != "label":
            ds.captions_by_id = load_free_captions(scfg["captions"])
        t_tr, class_emb = caption_targets(ds, tr, te, scfg["captions"])
        t_va, _ = caption_targets(ds, va, te, scfg["captions"])
        protos = class_emb if (class_emb is not None and scfg["prototypes"]) else None
        readout = None
        if scfg.get("logits_from") == "features" and protos is not None:
            readout = component("encoder_head").fc
        head, m = train_semantic(feats[tr], t_tr, feats[va], t_va, scfg, protos, out, seed + 2, device, resume,
                                 readout=readout)
        if scfg.get("sample_temperature") is not None:
            if head.n_prototypes == 0:
                raise ValueError("semantic.sample_temperature needs the prototype head (prototypes = true)")
            head.set_temperature(float(scfg["sample_temperature"]))
            m["sample_temperature"] = float(scfg["sample_temperature"])
        if class_emb is not None:
            with torch.no_grad():
                pred = head(feats[va])
                d = ((pred[:, None] - class_emb[None]) ** 2).flatten(2).mean(2)
                m["val_acc"] = float((d.argmin(1).numpy() == y[va]).mean())
        times["semantic"] = round(time.perf_counter() - t0, 1)
        metrics["semantic"] = m
        components["semantic"] = head
        base_config["semantic"] = {
            "text_encoder": te.config() if hasattr(te, "config") else dict(scfg["text_encoder"]),
            "captions": scfg["captions"], "seq_len": int(t_tr.shape[1]), "dim": int(t_tr.shape[2]),
        }
        save("semantic")

    # --- refiner (+ demo image classifier)
    rcfg = cfg["refiner"]
    if "refiner" in stages and not (resume and "refiner" in done):
        t0 = time.perf_counter()
        sal_pairs = None
        if float(dict(rcfg.get("train", {})).get("p_saliency", 0) or 0) > 0:
            sal_pairs = _training_saliency_maps(component("generator"), generator_condition(base_config.get("gan"), tr),
                                                [str(ds.stim_ids[i]) for i in tr], seed)
        base_config["refiner"] = _train_or_reference_refiner(rcfg, out, base_config, device, resume, sal_pairs)
        times["refiner"] = round(time.perf_counter() - t0, 1)
        if cfg["classifier"].get("train", True):
            t0 = time.perf_counter()
            info = _train_classifier(cfg["classifier"], out, device)
            if info is not None:
                base_config["classifier"] = info
                times["classifier"] = round(time.perf_counter() - t0, 1)
        save("refiner")
    times["total"] = round(time.perf_counter() - t_all, 1)
    save()
    if not cfg["train"].get("keep_checkpoints", True) and all(s in done for s in STAGES):
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return out


@torch.no_grad()
def _training_saliency_maps(G, cond: torch.Tensor, stim_ids: list[str], seed: int
                            ) -> tuple[torch.Tensor, list[str], np.ndarray | None]:
    """The GAN's maps for the training trials (``cond``: their generator conditions), i.e.
    what the refiner will be given, with the stimulus id of each trial and, for a generator
    conditioned on a layout, the decoded layout (x, y, size) it drew; seeded latents."""
    z = torch.randn(len(cond), G.z_dim, generator=torch.Generator().manual_seed(seed + 3))
    G.eval()
    maps = torch.cat([G(z[i : i + 256], cond[i : i + 256]) for i in range(0, len(cond), 256)])
    k = int(getattr(G, "layout_dims", 0))
    return maps, stim_ids, (cond[:, -k:].double().numpy() if k else None)


def _train_or_reference_refiner(rcfg: dict, out: Path, bundle_cfg: dict, device: str, resume: bool,
                                saliency_maps: tuple[torch.Tensor, list[str]] | None = None) -> dict:
    kind = rcfg.get("type", "demo")
    if kind != "demo":
        # a pretrained diffusers model: store the reference only (loaded with local_files_only)
        return {k: v for k, v in rcfg.items() if k != "train"}
    from bci_app.models.text import build_text_encoder
    from bci_app.stimuli import DemoStimulusSet
    from bci_app.training.demo_refiner import train_demo_refiner

    sem = bundle_cfg.get("semantic", {})
    te = build_text_encoder(sem.get("text_encoder") or {"type": "minilm", "seq_len": 16})
    tcfg = dict(rcfg.get("train", {}))
    tcfg.setdefault("checkpoint_dir", str(out / "checkpoints" / "refiner"))
    if not resume:
        shutil.rmtree(out / "checkpoints" / "refiner", ignore_errors=True)
    save_dtype = {"float16": torch.float16, "float32": None, None: None}[rcfg.get("save_dtype")]
    if rcfg.get("sample_guidance") is not None:  # checked by DemoRefinerConfig before training
        tcfg["guidance_scale"] = rcfg["sample_guidance"]
    refiner = train_demo_refiner(DemoStimulusSet(), te, tcfg, progress=True, device=device,
                                 saliency_maps=saliency_maps)
    # sampling defaults may differ from the timesteps training focused on (chosen on validation)
    if rcfg.get("sample_steps") is not None or rcfg.get("sample_strength") is not None:
        from bci_app.models.refiners import check_steps_strength

        steps = int(rcfg.get("sample_steps", refiner.steps))
        strength = float(rcfg.get("sample_strength", refiner.strength))
        check_steps_strength(steps, strength)
        refiner.steps, refiner.strength = steps, strength
    refiner.save(out / "refiner", weights_dtype=save_dtype)  # fp16 on disk halves the bundle size
    return {"path": "refiner", "type": "demo"}


def _train_classifier(ccfg: dict, out: Path, device: str) -> dict | None:
    """The demo image classifier (judges reconstructions), when its trainer is available."""
    try:
        from bci_app.models import image_classifier as ic
    except ImportError:
        log.warning("bci_app.models.image_classifier not available: bundle has no image classifier")
        return None
    from bci_app.stimuli import DemoStimulusSet

    kwargs = {k: v for k, v in ccfg.items() if k != "train"}
    clf, metrics = ic.train_image_classifier(DemoStimulusSet(), kwargs or None, progress=True, device=device)
    clf.save(out / "classifier", extra=metrics)
    return {"path": "classifier", "metrics": metrics}


def run_train(args) -> int:
    """Entry point of ``bci-app train`` (argparse namespace from ``bci_app.cli``)."""
    stages = [s for s in str(args.stages).split(",") if s.strip()]
    out = train_bundle(
        data=args.data, out=args.out, config=args.config, images_dir=args.images, stages=stages,
        epochs=args.epochs, device=args.device, seed=args.seed, resume=bool(args.resume),
    )
    cfg = bundle_io.read_bundle_config(out)
    print(json.dumps({"bundle": str(out), "metrics": cfg["training"]["metrics"],
                      "times_s": cfg["training"]["times_s"]}, indent=2))
    return 0
