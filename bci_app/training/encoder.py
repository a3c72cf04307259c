"""Stage 1: the EEG encoder f_theta, trained with the triplet loss (eq. 1, online mining),
optionally plus a cross-entropy read-out (``ce_weight``) and, for the demo set, ridge
outputs of the object's layout; model selection on validation accuracy."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from bci_app.config import EncoderSettings, settings
from bci_app.models.encoders import BinnedLinearEncoder, ClassifierHead, build_encoder
from bci_app.models.losses import triplet_loss
from bci_app.training.data import PKBatchSampler
from bci_app.training.loop import FitLoop

log = logging.getLogger(__name__)


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


def train_encoder(X_tr: np.ndarray, y_tr: np.ndarray, X_va: np.ndarray, y_va: np.ndarray, n_classes: int,
                  cfg: EncoderSettings | dict[str, Any], spec: Any, checkpoint_dir: Path | None = None,
                  seed: int = 0, device: str = "cpu",
                  attributes: dict[str, list[int]] | None = None,
                  layout: tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None = None,
                  progress: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """Train f_theta and its class read-out; returns ``(encoder, head, metrics)`` (best on validation).

    ``attributes``: the data set's class attributes, used by the LDA start when
    ``cfg.attributes`` is true (see :meth:`BinnedLinearEncoder.fit_lda`).
    ``layout``: ``(train targets [N, K], validation targets [M, K], names)``, the objects'
    positions and sizes, used when ``cfg.layout`` is true: K outputs of ``f_theta``
    start as ridge regressions of them, stay out of the triplet loss (they vary within a
    class) and keep an MSE term (``layout_weight``) while the encoder trains;
    ``metrics["layout"]`` says which outputs and how to map them back to image units.
    ``checkpoint_dir``: checkpoints of this stage (resumed from when present).
    """
    cfg = settings(EncoderSettings, cfg, "encoder.")
    if cfg.layout and (layout is None or cfg.name != "binned_linear" or not cfg.lda_init):
        raise ValueError(
            "encoder.layout needs per-trial object layouts (the demo stimulus set has them; "
            f"this data set {'has none' if layout is None else 'has them'}) and the binned_linear "
            "encoder with lda_init = true; set encoder.layout = false"
        )
    loop = FitLoop("encoder", cfg.epochs, seed=seed, device=device, checkpoint_dir=checkpoint_dir,
                   monitor="val_acc", mode="max", patience=cfg.patience, progress=progress)
    n_chans, n_times = X_tr.shape[1], X_tr.shape[2]
    enc = build_encoder(cfg.name, n_chans, cfg.n_outputs, n_times, spec.sfreq, **cfg.kwargs)
    head = ClassifierHead(cfg.n_outputs, n_classes)
    lda_info = None
    if isinstance(enc, BinnedLinearEncoder):
        if cfg.lda_init:
            if cfg.attributes and not attributes:
                log.warning("encoder: attributes requested but the data set defines none; class LDA only")
            lay_tr, lay_names = (layout[0], tuple(layout[2])) if cfg.layout else (None, None)
            lda_info = enc.fit_lda(X_tr, y_tr, head, attributes=attributes if cfg.attributes else None,
                                   layout=lay_tr, layout_names=lay_names)
            log.info("encoder: shrinkage-LDA start, train acc %.3f", lda_info["train_acc"])
        else:
            enc.fit_whitening(X_tr, y_tr)
    lay = lda_info.get("layout") if lda_info else None
    keep = torch.ones(cfg.n_outputs, dtype=torch.bool)  # outputs in the triplet loss
    if lay is not None:
        lay_idx = torch.as_tensor(lay["outputs"])
        keep[lay_idx] = False
        lay_mu, lay_sd = torch.as_tensor(lay["mean"]).float(), torch.as_tensor(lay["std"]).float()
        lay_t = (torch.as_tensor(layout[0]).float() - lay_mu) / lay_sd
    else:
        lay_t = torch.zeros(len(y_tr), 0)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    sampler = PKBatchSampler(y_tr, cfg.batch_classes, cfg.per_class, seed)
    dl = DataLoader(TensorDataset(torch.as_tensor(X_tr), torch.as_tensor(y_tr), lay_t), batch_sampler=sampler)
    enc, head, opt, dl = loop.prepare(enc, head, opt, dl)
    loop.select_best(encoder=enc, head=head)
    Xva_t, yva_t = torch.as_tensor(X_va), torch.as_tensor(y_va)

    def train_epoch(epoch: int) -> dict[str, float]:
        sampler.set_epoch(epoch)
        enc.train()
        head.train()
        losses = []
        for xb, yb, lb in dl:
            emb = enc(xb)
            loss = triplet_loss(emb[:, keep.to(emb.device)], yb, cfg.margin, cfg.mining)
            if cfg.ce_weight:
                loss = loss + cfg.ce_weight * F.cross_entropy(head(emb), yb)
            if lay is not None and cfg.layout_weight:
                loss = loss + cfg.layout_weight * F.mse_loss(emb[:, lay_idx.to(emb.device)], lb)
            opt.zero_grad()
            loop.accelerator.backward(loss)
            opt.step()
            losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}

    def validate() -> float:
        u_enc, u_head = loop.unwrap(enc), loop.unwrap(head)
        f_va = encode(u_enc, Xva_t, device=loop.device)
        if cfg.ce_weight:
            u_head.eval()
            with torch.no_grad():
                return float((u_head(f_va.to(loop.device)).argmax(1).cpu() == yva_t).float().mean())
        f_tr = encode(u_enc, X_tr, device=loop.device)
        return centroid_accuracy(f_tr, torch.as_tensor(y_tr), f_va, yva_t)

    # the closed-form start is a candidate too: selection on validation may keep it
    res = loop.run(train_epoch, validate, validate_start=lda_info is not None)
    if lda_info is not None:
        lda_info["val_acc"] = res.start_value
        log.info("encoder: LDA start val acc %s", res.start_value)
    enc, head = loop.unwrap(enc).cpu().eval(), loop.unwrap(head).cpu().eval()
    if lay is not None:  # how well the kept encoder decodes the layout on validation trials
        pred = encode(enc, Xva_t)[:, lay_idx].double()
        t_va = (torch.as_tensor(layout[1]).double() - lay_mu.double()) / lay_sd.double()
        r2 = 1 - ((pred - t_va) ** 2).mean(0) / t_va.var(0, unbiased=False).clamp_min(1e-12)
        lay = {**lay, "val_r2": [round(float(v), 4) for v in r2]}
        log.info("encoder: layout val R^2 %s", dict(zip(lay["names"], lay["val_r2"], strict=True)))
    hist = res.history
    return enc, head, {"val_acc": res.best, "epochs_run": len(hist), "lda_init": lda_info, "layout": lay,
                       "loss_first": hist[0]["loss"] if hist else None,
                       "loss_last": hist[-1]["loss"] if hist else None}
