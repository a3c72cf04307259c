"""TracedCall: a diffusers UNet replayed from traced graphs gives the eager numbers, one graph
per input signature, and falls back to eager (logged) when tracing fails or disagrees."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers import UNet2DConditionModel

from bci_app.models import traced as traced_mod
from bci_app.models.traced import TracedCall


def unet_call(m, z, t, e):
    return m(z, t, encoder_hidden_states=e, return_dict=False)[0]


@pytest.fixture
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
        attention_head_dim=4, norm_num_groups=8,
    ).eval()


def inputs(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 8, 8, generator=g), torch.tensor(499), torch.randn(batch, 5, 16, generator=g)


@torch.no_grad()
def test_traced_graphs_match_eager_per_signature(unet):
    call = TracedCall(unet, unet_call, "tiny UNet")
    for batch in (1, 2, 1, 2, 2):
        x = inputs(batch, seed=batch)
        torch.testing.assert_close(call(*x), unet_call(unet, *x), rtol=0, atol=1e-6)
    # another timestep value replays the same graph (t is an input, not a constant)
    z, _, e = inputs(2)
    torch.testing.assert_close(call(z, torch.tensor(249), e), unet_call(unet, z, torch.tensor(249), e),
                               rtol=0, atol=1e-6)
    assert call.stats["graphs"] == 2 and call.stats["fallbacks"] == 0
    assert call.stats["traced_calls"] == 4  # the first call of each signature is eager (the check)
    # the graphs use the module's own weights: an in-place change is seen at once
    unet.conv_out.bias.add_(0.5)
    torch.testing.assert_close(call(z, torch.tensor(249), e), unet_call(unet, z, torch.tensor(249), e),
                               rtol=0, atol=1e-6)


def test_training_autograd_and_disabled_run_eagerly(unet):
    x = inputs(1)
    call = TracedCall(unet, unet_call, "tiny UNet")
    call(*x)  # autograd on: eager
    with torch.no_grad():
        TracedCall(unet, unet_call, enabled=False)(*x)
        unet.train()
        call(*x)
        unet.eval()
    assert call.stats == {"traced_calls": 0, "eager_calls": 2, "graphs": 0, "fallbacks": 0}


@torch.no_grad()
def test_failed_trace_falls_back_to_eager(unet, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("tracer unavailable")

    monkeypatch.setattr(traced_mod.torch.jit, "trace", broken)
    call = TracedCall(unet, unet_call, "tiny UNet")
    x = inputs(2)
    with caplog.at_level(logging.WARNING, logger="bci_app.models.traced"):
        out1, out2 = call(*x), call(*x)
    torch.testing.assert_close(out1, unet_call(unet, *x), rtol=0, atol=0)
    torch.testing.assert_close(out2, out1, rtol=0, atol=0)
    assert call.stats["fallbacks"] == 1 and call.stats["traced_calls"] == 0
    assert sum("tracing for inputs" in r.message and "tracer unavailable" in r.message
               for r in caplog.records) == 1  # logged once, not per call


@torch.no_grad()
def test_disagreeing_graph_is_not_used(unet, monkeypatch, caplog):
    real = torch.jit.trace

    def off_by_one(module, example, **k):
        graph = real(module, example, **k)
        return lambda *a: graph(*a) + 1.0

    monkeypatch.setattr(traced_mod.torch.jit, "trace", off_by_one)
    call = TracedCall(unet, unet_call, "tiny UNet")
    x = inputs(1)
    with caplog.at_level(logging.WARNING, logger="bci_app.models.traced"):
        for _ in range(2):
            torch.testing.assert_close(call(*x), unet_call(unet, *x), rtol=0, atol=0)
    assert call.stats["fallbacks"] == 1 and call.stats["graphs"] == 0
    assert any("disagrees with the eager call" in r.message for r in caplog.records)
