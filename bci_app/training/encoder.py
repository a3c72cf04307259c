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

#: the layout ridges are kept when their mean validation R^2 reaches this
LAYOUT_MIN_R2 = 0.1


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


#: an extra term is kept only when its gain over the plain read-out is this unlikely by chance
#: (one-sided exact McNemar test on the trials where the two decide differently): with a few
#: dozen validation trials, "higher" alone is a coin flip that can leave a decoder below its
#: linear baseline on new data
SELECT_P = 0.1


def gain_p(right_with: np.ndarray, right_without: np.ndarray) -> float:
    """One-sided exact McNemar p-value that ``with`` is right more often than ``without`` on the
    same trials (binomial test on the discordant pairs; 1.0 when it is not ahead)."""
    from scipy.stats import binomtest

    a, b = np.asarray(right_with, bool), np.asarray(right_without, bool)
    wins, losses = int((a & ~b).sum()), int((~a & b).sum())
    if wins <= losses:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue)


@torch.no_grad()
def head_right(encoder: torch.nn.Module, head: torch.nn.Module, X: np.ndarray | torch.Tensor,
               y: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per trial, whether ``head(encoder(X))`` decides ``y``."""
    head.eval()
    return (head(encode(encoder, X)).argmax(1) == torch.as_tensor(np.asarray(y))).numpy()


def _pooled_right(enc: BinnedLinearEncoder, head: ClassifierHead, X_tr: np.ndarray, y_tr: np.ndarray,
                  X_va: np.ndarray, y_va: np.ndarray, attributes: dict[str, list[int]] | None,
                  folds: int = 5, seed: int = 0) -> np.ndarray:
    """Right/wrong of the LDA start (with ``attributes`` or not) on every validation trial and,
    out of fold, on every training trial (``folds``-fold cross-fitting): the decision data."""
    import copy

    out = []
    order = np.random.default_rng(seed).permutation(len(y_tr))
    for k in range(folds):
        held = order[k::folds]
        fit = np.setdiff1d(order, held)
        e, h = copy.deepcopy(enc), copy.deepcopy(head)
        e.fit_lda(X_tr[fit], y_tr[fit], h, attributes=attributes)
        out.append(head_right(e, h, X_tr[held], y_tr[held]))
    enc.fit_lda(X_tr, y_tr, head, attributes=attributes)
    out.append(head_right(enc, head, X_va, y_va))
    return np.concatenate(out)


@torch.no_grad()
def head_accuracy(encoder: torch.nn.Module, head: torch.nn.Module, X: np.ndarray | torch.Tensor,
                  y: np.ndarray | torch.Tensor) -> float:
    """Top-1 accuracy of ``head(encoder(X))`` against ``y`` (the decoder's class read-out)."""
    head.eval()
    pred = head(encode(encoder, X)).argmax(1)
    return float((pred == torch.as_tensor(np.asarray(y))).float().mean())


def select_lda_start(enc: BinnedLinearEncoder, head: ClassifierHead, X_tr: np.ndarray, y_tr: np.ndarray,
                     X_va: np.ndarray, y_va: np.ndarray, cfg: EncoderSettings,
                     attributes: dict[str, list[int]] | None = None,
                     layout: tuple[np.ndarray, np.ndarray, tuple[str, ...]] | None = None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The closed-form start of the binned-linear encoder, each extra term chosen on validation.

    The plain shrinkage-LDA read-out (the linear baseline's decoder) is fitted first; the
    attribute LDAs (``cfg.attributes``) are kept only when they raise validation accuracy over
    it, the layout ridges (``cfg.layout``) only when they decode the layout on validation
    trials (mean R^2 >= :data:`LAYOUT_MIN_R2`; they do not change the class scores). Returns
    ``(lda_info, selection)``: the kept start's :meth:`~BinnedLinearEncoder.fit_lda` record and,
    per term, whether it was kept and the validation figures that decided it.
    """
    selection: dict[str, Any] = {}
    enc.fit_lda(X_tr, y_tr, head)
    plain = head_accuracy(enc, head, X_va, y_va)
    selection["lda"] = {"val_acc": plain, "rule": "plain shrinkage LDA: the floor every extra term must beat"}
    log.info("encoder: plain LDA start val acc %.3f", plain)
    use_attr = None
    if cfg.attributes and attributes:
        # decided on the validation trials plus 5-fold out-of-fold predictions of the training
        # trials (a few dozen validation trials alone make "higher" a coin flip)
        r_plain = _pooled_right(enc, head, X_tr, y_tr, X_va, y_va, None)
        r_attr = _pooled_right(enc, head, X_tr, y_tr, X_va, y_va, attributes)
        with_attr = float(r_attr[-len(y_va):].mean())
        p = gain_p(r_attr, r_plain)
        kept = p < SELECT_P
        selection["attributes"] = {
            "kept": bool(kept), "val_acc": with_attr, "lda_val_acc": plain,
            "pooled_acc": float(r_attr.mean()), "pooled_lda_acc": float(r_plain.mean()), "n_pooled": int(len(r_attr)),
            "p": round(p, 4), "names": sorted(attributes),
            "rule": f"kept when better than the plain LDA on validation + 5-fold out-of-fold training trials, "
                    f"one-sided exact McNemar p < {SELECT_P}"}
        log.info("encoder: attribute LDAs pooled acc %.3f vs plain %.3f (p %.3g): %s", r_attr.mean(),
                 r_plain.mean(), p, "kept" if kept else "dropped")
        use_attr = attributes if kept else None
    elif cfg.attributes:
        selection["attributes"] = {"kept": False, "reason": "the data set defines no class attributes"}
    lay_tr = lay_names = None
    if cfg.layout and layout is not None:
        info = enc.fit_lda(X_tr, y_tr, head, attributes=use_attr, layout=layout[0],
                           layout_names=tuple(layout[2]))
        lay = info["layout"]
        pred = encode(enc, X_va)[:, lay["outputs"]].double().numpy()
        t_va = (np.asarray(layout[1], dtype=np.float64) - np.asarray(lay["mean"])) / np.asarray(lay["std"])
        r2 = 1 - ((pred - t_va) ** 2).mean(0) / np.clip(t_va.var(0), 1e-12, None)
        kept = float(r2.mean()) >= LAYOUT_MIN_R2
        selection["layout"] = {"kept": bool(kept), "val_r2": [round(float(v), 4) for v in r2],
                               "min_mean_r2": LAYOUT_MIN_R2, "names": list(lay["names"])}
        log.info("encoder: layout ridges val R^2 %s: %s", np.round(r2, 3).tolist(), "kept" if kept else "dropped")
        if kept:
            lay_tr, lay_names = layout[0], tuple(layout[2])
    elif cfg.layout:
        selection["layout"] = {"kept": False, "reason": "the data set has no per-trial object layouts"}
    info = enc.fit_lda(X_tr, y_tr, head, attributes=use_attr, layout=lay_tr, layout_names=lay_names)
    log.info("encoder: LDA start, train acc %.3f", info["train_acc"])
    return info, selection


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
    if cfg.layout and (cfg.name != "binned_linear" or not cfg.lda_init):
        raise ValueError(
            "encoder.layout needs the binned_linear encoder with lda_init = true (its ridge "
            "outputs start from the closed form); set encoder.layout = false"
        )
    loop = FitLoop("encoder", cfg.epochs, seed=seed, device=device, checkpoint_dir=checkpoint_dir,
                   monitor="val_acc", mode="max", patience=cfg.patience, progress=progress)
    n_chans, n_times = X_tr.shape[1], X_tr.shape[2]
    enc = build_encoder(cfg.name, n_chans, cfg.n_outputs, n_times, spec.sfreq, **cfg.kwargs)
    head = ClassifierHead(cfg.n_outputs, n_classes)
    lda_info = None
    selection: dict[str, Any] = {}
    if isinstance(enc, BinnedLinearEncoder):
        if cfg.lda_init:
            if cfg.attributes and not attributes:
                log.warning("encoder: attributes requested but the data set defines none; class LDA only")
            lda_info, selection = select_lda_start(enc, head, X_tr, y_tr, X_va, y_va, cfg,
                                                   attributes=attributes, layout=layout)
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
    start_state = None
    if lda_info is not None:  # the LDA start, restored when fine-tuning does not clearly beat it
        import copy

        start_state = (copy.deepcopy(enc.state_dict()), copy.deepcopy(head.state_dict()),
                       head_right(enc, head, X_va, y_va))
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
    if lda_info is not None:
        r_tuned = head_right(enc, head, X_va, y_va)
        p = gain_p(r_tuned, start_state[2])
        kept = p < SELECT_P
        if not kept:
            enc.load_state_dict(start_state[0])
            head.load_state_dict(start_state[1])
        selection["triplet"] = {
            "kept": bool(kept), "start_val_acc": float(start_state[2].mean()), "tuned_val_acc": float(r_tuned.mean()),
            "p": round(p, 4), "epochs_run": len(res.history),
            "rule": f"the fine-tuned encoder (its best validation epoch) kept over the LDA start when it is right "
                    f"more often on validation, one-sided exact McNemar p < {SELECT_P}; else the LDA start",
        }
        res.best = float(r_tuned.mean()) if kept else float(start_state[2].mean())
    if lay is not None:  # how well the kept encoder decodes the layout on validation trials
        pred = encode(enc, Xva_t)[:, lay_idx].double()
        t_va = (torch.as_tensor(layout[1]).double() - lay_mu.double()) / lay_sd.double()
        r2 = 1 - ((pred - t_va) ** 2).mean(0) / t_va.var(0, unbiased=False).clamp_min(1e-12)
        lay = {**lay, "val_r2": [round(float(v), 4) for v in r2]}
        log.info("encoder: layout val R^2 %s", dict(zip(lay["names"], lay["val_r2"], strict=True)))
    hist = res.history
    return enc, head, {"val_acc": res.best, "epochs_run": len(hist), "lda_init": lda_info, "layout": lay,
                       "selection": selection,
                       "loss_first": hist[0]["loss"] if hist else None,
                       "loss_last": hist[-1]["loss"] if hist else None}
