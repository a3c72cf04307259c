from __future__ import annotations

import pytest
import torch

from bci_app.models.diffaugment import diff_augment
from bci_app.models.losses import (
    hinge_d_loss,
    hinge_g_loss,
    mode_seeking_loss,
    semantic_l2_loss,
    ssim,
    ssim_loss,
    triplet_loss,
)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
def test_triplet_loss_decreases(mining):
    torch.manual_seed(0)
    y = torch.arange(4).repeat_interleave(8)
    x = torch.randn(32, 10) + torch.nn.functional.one_hot(y, 10).float() * 0.5
    net = torch.nn.Linear(10, 6)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = triplet_loss(net(x), y, margin=0.3, mining=mining)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    # semi-hard mining keeps picking the hardest remaining negatives: slower, still monotone-ish
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_triplet_zero_when_separated_and_errors():
    emb = torch.tensor([[1.0, 0], [1.0, 0.01], [-1.0, 0], [-1.0, 0.01]])
    y = torch.tensor([0, 0, 1, 1])
    assert float(triplet_loss(emb, y, margin=0.5)) == 0.0
    assert float(triplet_loss(emb, torch.tensor([0, 1, 2, 3]))) == 0.0  # no positives
    with pytest.raises(ValueError, match="mining"):
        triplet_loss(emb, y, mining="hardest")


def test_hinge_losses_values():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.0])
    assert float(hinge_d_loss(real, fake)) == pytest.approx(0.5 + 0.5)
    assert float(hinge_g_loss(fake)) == pytest.approx(1.0)


def test_ssim_identity_and_loss_decreases():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 16)
    assert float(ssim(target, target)) == pytest.approx(1.0, abs=1e-5)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    opt = torch.optim.Adam([x], lr=0.05)
    losses = []
    for _ in range(30):
        loss = ssim_loss(x, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="same shape"):
        ssim(target, target[:, :, :8])


def test_mode_seeking_rewards_diverse_outputs():
    z1, z2 = torch.zeros(2, 4), torch.ones(2, 4)
    same = mode_seeking_loss(torch.zeros(2, 3), torch.zeros(2, 3) + 0.01, z1, z2)
    diverse = mode_seeking_loss(torch.zeros(2, 3), torch.ones(2, 3), z1, z2)
    assert float(diverse) < float(same)


def test_semantic_loss_shape_check():
    with pytest.raises(ValueError, match="differ"):
        semantic_l2_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4, 4))


def test_diffaugment_differentiable_and_policy_check():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, "color,translation,cutout")
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ""), x)
    with pytest.raises(ValueError, match="allowed"):
        diff_augment(x, "rotate")
