from __future__ import annotations

import pytest
import torch

from bci_app.training.gan import train_gan


def _toy(n=48, R=16, F=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    feats = torch.nn.functional.one_hot(y, F).float() + 0.1 * torch.randn(n, F, generator=g)
    imgs = torch.zeros(n, 3, R, R)
    for i, c in enumerate(y.tolist()):  # class = which channel has a bright square
        imgs[i, c, 4:12, 4:12] = 1.0
    return feats, imgs


def test_gan_ssim_improves_and_shapes():
    torch.manual_seed(0)
    f, img = _toy()
    cfg = {"resolution": 16, "z_dim": 4, "base_channels": 8, "epochs": 12, "batch_size": 20,
           "lr_g": 2e-3, "lr_d": 2e-4, "betas": [0.0, 0.99], "alpha1": 0.1, "alpha2": 0.01,
           "alpha3": 5.0, "diffaugment": "color,translation,cutout", "patience": 100}
    G, D, m = train_gan(f[:40], img[:40], f[40:], img[40:], cfg, seed=0, device="cpu")
    assert m["ssim_loss_last"] < m["ssim_loss_first"]
    out = G(torch.randn(5, 4), f[:5])
    with torch.no_grad():
        out = G(torch.randn(5, 4), f[:5])
    assert out.shape == (5, 3, 16, 16) and 0 <= float(out.min()) and float(out.max()) <= 1
    assert D(out, f[:5]).shape == (5,)


def test_generator_checks_inputs_and_resolution():
    from bci_app.models.saliency_gan import SaliencyGenerator

    torch.manual_seed(0)
    G = SaliencyGenerator(z_dim=4, cond_dim=6, resolution=16, base_channels=8)
    with pytest.raises(ValueError, match=r"feats must be \[2, 6\]"):
        G(torch.randn(2, 4), torch.randn(2, 5))
    with pytest.raises(ValueError, match="power of two"):
        SaliencyGenerator(resolution=48)


def test_gan_condition_posterior_and_features():
    from bci_app.models.saliency_gan import gan_condition

    torch.manual_seed(0)
    head = torch.nn.Linear(6, 4)
    f = torch.randn(5, 6)
    assert gan_condition(f, None, "features") is f
    p = gan_condition(f, head, "posterior", temperature=0.5)
    torch.testing.assert_close(p, torch.softmax(head(f) / 0.5, -1))
    torch.testing.assert_close(p.sum(1), torch.ones(5))
    with pytest.raises(ValueError, match="encoder_head"):
        gan_condition(f, None, "posterior")
    with pytest.raises(ValueError, match="temperature"):
        gan_condition(f, head, "posterior", temperature=0.0)
    with pytest.raises(ValueError, match="condition must be one of"):
        gan_condition(f, head, "labels")


def test_layout_condition_and_generator():
    """gan_condition appends the decoded layout (clipped to the image); a generator with
    layout_dims=3 draws where the layout says, learnt in a few dozen steps."""
    from bci_app.models.losses import ssim_loss
    from bci_app.models.saliency_gan import (
        SaliencyGenerator,
        condition_settings,
        gan_condition,
        layout_map,
    )

    torch.manual_seed(0)
    f = torch.randn(6, 5)
    lay = {"outputs": [2, 3, 4], "mean": [0.5, 0.5, 0.25], "std": [0.1, 0.1, 0.05]}
    c = gan_condition(f, None, "features", layout=lay)
    torch.testing.assert_close(c[:, :5], f)
    torch.testing.assert_close(c[:, 5:], (f[:, 2:] * torch.tensor([0.1, 0.1, 0.05])
                                          + torch.tensor([0.5, 0.5, 0.25])).clamp(0, 1))
    with pytest.raises(ValueError, match="3 encoder outputs"):
        gan_condition(f, None, "features", layout={**lay, "outputs": [2, 3, 9]})
    assert condition_settings({"condition": "posterior", "layout": lay}) == ("posterior", 1.0, lay)
    assert condition_settings({"layout": True})[2] is None  # a training flag, not a read-out
    m = layout_map(torch.tensor([[0.25, 0.75, 0.2]]), 16)[0, 0]
    assert m[12, 4] > 0.9 and m[4, 12] < 0.01  # row = y, column = x
    with pytest.raises(ValueError, match="layout_dims must be 0 or 3"):
        SaliencyGenerator(cond_dim=6, layout_dims=2)
    # learn: a white disc on black where the layout says
    G = SaliencyGenerator(z_dim=2, cond_dim=4, resolution=16, base_channels=8, layout_dims=3)
    opt = torch.optim.Adam(G.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = last = None
    for _ in range(60):
        L = torch.rand(16, 3, generator=g) * torch.tensor([0.5, 0.5, 0.15]) + torch.tensor([0.25, 0.25, 0.15])
        cond = torch.cat([torch.ones(16, 1), L], 1)
        target = layout_map(L, 16).expand(-1, 3, -1, -1)
        loss = ssim_loss(G(torch.randn(16, 2, generator=g), cond), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss) if first is None else first
        last = float(loss)
    assert last < 0.5 * first, (first, last)
