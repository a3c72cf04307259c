"""Stage 2: the saliency GAN G(z, f) and D(A(y), f) on the frozen encoder's features:
hinge losses (eqs. 2-3), DiffAugment, mode seeking (eq. 4), SSIM to the seen image
(eq. 5), weighted as eq. (6): ``alpha1 * L_adv + alpha2 * L_ms + alpha3 * L_ssim``; model
selection on validation SSIM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from bci_app.config import GanSettings, settings
from bci_app.models.diffaugment import diff_augment
from bci_app.models.losses import hinge_d_loss, hinge_g_loss, mode_seeking_loss, ssim, ssim_loss
from bci_app.models.saliency_gan import SaliencyDiscriminator, SaliencyGenerator
from bci_app.training.loop import FitLoop


def train_gan(f_tr: torch.Tensor, img_tr: torch.Tensor, f_va: torch.Tensor, img_va: torch.Tensor,
              cfg: GanSettings | dict[str, Any], checkpoint_dir: Path | None = None, seed: int = 0,
              device: str = "cpu", layout_dims: int = 0, progress: bool = True
              ) -> tuple[Any, Any, dict[str, Any]]:
    """Train on precomputed conditions ``f [N, F]`` and images ``[N, 3, R, R]`` in [0, 1];
    returns ``(G, D, metrics)`` with G at its best validation SSIM (``layout_dims``: see
    :class:`SaliencyGenerator`)."""
    cfg = settings(GanSettings, cfg, "gan.")
    loop = FitLoop("gan", cfg.epochs, seed=seed, device=device, checkpoint_dir=checkpoint_dir,
                   monitor="val_ssim", mode="max", patience=cfg.patience, progress=progress)
    R = cfg.resolution
    G = SaliencyGenerator(cfg.z_dim, f_tr.shape[1], R, cfg.base_channels, layout_dims)
    D = SaliencyDiscriminator(f_tr.shape[1], R, cfg.base_channels)
    betas = tuple(cfg.betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas)
    gen = torch.Generator().manual_seed(seed)
    dl = DataLoader(TensorDataset(f_tr, img_tr), batch_size=cfg.batch_size, shuffle=True,
                    drop_last=len(f_tr) > cfg.batch_size, generator=gen)
    G, D, opt_g, opt_d, dl = loop.prepare(G, D, opt_g, opt_d, dl)
    loop.track("data_order", gen)
    loop.select_best(generator=G)
    a1, a2, a3, policy = cfg.alpha1, cfg.alpha2, cfg.alpha3, cfg.diffaugment
    z_va = torch.randn(len(f_va), cfg.z_dim, generator=torch.Generator().manual_seed(seed + 1))

    def train_epoch(epoch: int) -> dict[str, float]:
        G.train()
        D.train()
        ld, lg, ls = [], [], []
        for fb, yb in dl:
            z = torch.randn(len(fb), cfg.z_dim, device=fb.device)
            with torch.no_grad():
                fake = G(z, fb)
            d_loss = hinge_d_loss(D(diff_augment(yb, policy), fb), D(diff_augment(fake, policy), fb))
            opt_d.zero_grad()
            loop.accelerator.backward(d_loss)
            opt_d.step()
            z1 = torch.randn(len(fb), cfg.z_dim, device=fb.device)
            z2 = torch.randn(len(fb), cfg.z_dim, device=fb.device)
            fake1, fake2 = G(z1, fb), G(z2, fb)
            l_ssim = ssim_loss(fake1, yb)
            g_loss = (a1 * hinge_g_loss(D(diff_augment(fake1, policy), fb))
                      + a2 * mode_seeking_loss(fake1, fake2, z1, z2) + a3 * l_ssim)
            opt_g.zero_grad()
            loop.accelerator.backward(g_loss)
            opt_g.step()
            ld.append(float(d_loss.detach()))
            lg.append(float(g_loss.detach()))
            ls.append(float(l_ssim.detach()))
        return {"d_loss": float(np.mean(ld)), "g_loss": float(np.mean(lg)), "ssim_loss": float(np.mean(ls))}

    def validate() -> float:
        uG = loop.unwrap(G)
        uG.eval()
        with torch.no_grad():
            return float(ssim(uG(z_va.to(loop.device), f_va.to(loop.device)).float().cpu(), img_va))

    res = loop.run(train_epoch, validate)
    G, D = loop.unwrap(G).cpu().eval(), loop.unwrap(D).cpu().eval()
    hist = res.history
    return G, D, {"val_ssim": res.best, "epochs_run": len(hist),
                  "ssim_loss_first": hist[0]["ssim_loss"] if hist else None,
                  "ssim_loss_last": hist[-1]["ssim_loss"] if hist else None}
