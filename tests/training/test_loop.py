"""The one fit loop: early stopping with best-weight selection, and checkpoint/resume
through accelerate that gives the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from bci_app.training.loop import FitLoop, read_progress


class Killed(Exception):
    pass


def _fit(ckdir, epochs=6, kill_after=None):
    """A small regression with dropout (global RNG), shuffled batches (a tracked generator)
    and a diffusers cosine schedule: every kind of state a resume must restore."""
    from diffusers.optimization import get_cosine_schedule_with_warmup

    loop = FitLoop("toy", epochs, seed=3, device="cpu", checkpoint_dir=ckdir, monitor="val_loss",
                   mode="min", progress=False)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, generator=g)
    y = X @ torch.arange(5.0) + 0.1 * torch.randn(64, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = get_cosine_schedule_with_warmup(opt, 2, epochs * 4)
    model, opt, sched = loop.prepare(model, opt, sched)
    order = torch.Generator().manual_seed(1)
    loop.track("order", order)
    loop.select_best(model=model)

    def train_epoch(epoch):
        model.train()
        perm = torch.randperm(64, generator=order)
        losses = []
        for i in range(0, 64, 16):
            b = perm[i : i + 16]
            loss = ((model(X[b]).squeeze(1) - y[b]) ** 2).mean()
            opt.zero_grad()
            loop.accelerator.backward(loss)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        if kill_after is not None and epoch == kill_after:
            raise Killed  # the process dies in the middle of an epoch
        return {"loss": sum(losses) / len(losses)}

    def validate():
        model.eval()
        with torch.no_grad():
            return float(((model(X).squeeze(1) - y) ** 2).mean())

    res = loop.run(train_epoch, validate)
    return loop.unwrap(model), res


def test_resume_gives_the_uninterrupted_weights(tmp_path):
    full, res_full = _fit(tmp_path / "a")
    with pytest.raises(Killed):
        _fit(tmp_path / "b", kill_after=3)
    assert read_progress(tmp_path / "b")["units_done"] == 3  # the last checkpoint: after epoch 2
    resumed, res = _fit(tmp_path / "b")
    assert res.resumed_from == 3 and res.units_done == 6
    assert res.history == res_full.history and res.best == res_full.best
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # accelerate's files (weights as safetensors) and the loop's own state: JSON + safetensors
    names = {p.name for p in (tmp_path / "b").iterdir()}
    assert {"model.safetensors", "loop_state.json", "loop_tensors.safetensors"} <= names
    assert not (tmp_path / "b.tmp").exists() and not (tmp_path / "b.old").exists()
    # a finished stage resumed again trains nothing and keeps its result
    again, res2 = _fit(tmp_path / "b")
    assert res2.resumed_from == 6 and res2.history == res.history
    for a, b in zip(again.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_early_stopping_restores_the_best_weights():
    values = iter([0.2, 0.5, 0.4, 0.3, 0.9, 1.0])
    loop = FitLoop("scripted", 6, seed=0, monitor="acc", mode="max", patience=2, progress=False)
    model = loop.prepare(torch.nn.Linear(2, 1))
    loop.select_best(model=model)
    seen = []

    def train_epoch(epoch):
        with torch.no_grad():
            model.weight.add_(1.0)
        seen.append(model.weight.detach().clone())
        return {}

    res = loop.run(train_epoch, lambda: next(values))
    # 0.5 at epoch 1, then two epochs without improvement: stop before epoch 4
    assert res.units_done == 4 and res.best == 0.5 and [h["acc"] for h in res.history] == [0.2, 0.5, 0.4, 0.3]
    assert torch.equal(model.weight, seen[1])


def test_start_is_a_candidate_and_bad_settings_are_errors():
    loop = FitLoop("start", 2, seed=0, monitor="loss", mode="min", progress=False)
    model = loop.prepare(torch.nn.Linear(2, 1))
    loop.select_best(model=model)
    start = model.weight.detach().clone()

    def worse(epoch):
        with torch.no_grad():
            model.weight.add_(1.0)
        return {}

    values = iter([0.1, 0.2, 0.3])
    res = loop.run(worse, lambda: next(values), validate_start=True)
    assert res.start_value == 0.1 and res.best == 0.1 and torch.equal(model.weight, start)
    with pytest.raises(ValueError, match="units must be >= 0"):
        FitLoop("x", -1)
    with pytest.raises(ValueError, match="checkpoint_every"):
        FitLoop("x", 1, checkpoint_every=0)
    with pytest.raises(ValueError, match="mode must be"):
        FitLoop("x", 1, mode="best")
