"""Stage 3: the semantic head M_s on the frozen encoder's features, L2 (eq. 7) to the
caption embeddings of the chosen text encoder; model selection on validation loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from bci_app.config import SemanticSettings, settings
from bci_app.models.losses import semantic_l2_loss
from bci_app.models.semantic import SemanticHead
from bci_app.training.loop import FitLoop


def train_semantic(f_tr: torch.Tensor, t_tr: torch.Tensor, f_va: torch.Tensor, t_va: torch.Tensor,
                   cfg: SemanticSettings | dict[str, Any], prototypes: torch.Tensor | None = None,
                   checkpoint_dir: Path | None = None, seed: int = 0, device: str = "cpu",
                   readout: torch.nn.Linear | None = None, progress: bool = True
                   ) -> tuple[Any, dict[str, Any]]:
    """``M_s`` from features ``[N, F]`` to caption embeddings ``[N, L, D]``; returns
    ``(head, metrics)`` with the head at its best validation loss (its start included).

    ``prototypes``: class caption embeddings ``[K, L, D]`` for the prototype head (with
    ``cfg.open_set``, the candidates it is trained to choose among: the training classes');
    ``readout``: the encoder's class read-out, the start of the mixture weights when
    ``cfg.logits_from == "features"`` (row ``k`` = prototype ``k``'s class; an open-set head
    starts its query from it, :meth:`SemanticHead.init_query`)."""
    cfg = settings(SemanticSettings, cfg, "semantic.")
    loop = FitLoop("semantic", cfg.epochs, seed=seed, device=device, checkpoint_dir=checkpoint_dir,
                   monitor="val_loss", mode="min", patience=cfg.patience, progress=progress)
    L, Dm = t_tr.shape[1], t_tr.shape[2]
    K = len(prototypes) if prototypes is not None else 0
    if cfg.open_set and not K:
        raise ValueError("semantic.open_set needs candidate captions: prototypes = true and label captions")
    logits_from = cfg.logits_from if K else "hidden"
    head = SemanticHead(f_tr.shape[1], L, Dm, cfg.hidden, K, cfg.dropout, logits_from=logits_from,
                        open_set=cfg.open_set)
    if K:
        head.init_prototypes(prototypes)
    if logits_from == "features" and readout is not None:
        start = head.init_query if cfg.open_set else head.init_logits
        start(readout.weight.detach().float(), readout.bias.detach().float())
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    dl = DataLoader(TensorDataset(f_tr, t_tr), batch_size=cfg.batch_size, shuffle=True, generator=gen)
    head, opt, dl = loop.prepare(head, opt, dl)
    loop.track("data_order", gen)
    loop.select_best(head=head)

    def train_epoch(epoch: int) -> dict[str, float]:
        head.train()
        losses = []
        for fb, tb in dl:
            loss = semantic_l2_loss(head(fb), tb)
            opt.zero_grad()
            loop.accelerator.backward(loss)
            opt.step()
            losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses))}

    def validate() -> float:
        u = loop.unwrap(head)
        u.eval()
        with torch.no_grad():
            return float(semantic_l2_loss(u(f_va.to(loop.device)).float().cpu(), t_va))

    # the start is a candidate too (with a read-out start it may already be the best)
    res = loop.run(train_epoch, validate, validate_start=True)
    head = loop.unwrap(head).cpu().eval()
    hist = res.history
    return head, {"val_loss": res.best, "epochs_run": len(hist),
                  "loss_first": hist[0]["loss"] if hist else None,
                  "loss_last": hist[-1]["loss"] if hist else None}
