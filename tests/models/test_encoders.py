from __future__ import annotations

import numpy as np
import pytest
import torch

from bci_app.models.encoders import ENCODERS, build_encoder
from bci_app.models.losses import triplet_loss


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_shapes_and_bad_input(name):
    torch.manual_seed(0)
    enc = build_encoder(name, n_chans=8, n_outputs=6, n_times=100, sfreq=250.0)
    out = enc(torch.randn(3, 8, 100))
    assert out.shape == (3, 6) and torch.isfinite(out).all()
    assert enc.config["n_chans"] == 8 and enc.config["n_outputs"] == 6
    with pytest.raises(ValueError, match=r"\(batch, 8, 100\)"):
        enc(torch.randn(3, 7, 100))


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="allowed"):
        build_encoder("transformer", 8, 6, 100)


def _toy_trials(n_per_class, n_classes=4, seed=0, C=8, T=60):
    rng = np.random.default_rng(seed)
    patterns = np.random.default_rng(123).standard_normal((n_classes, C, T)) * 0.6
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = patterns[y] + rng.standard_normal((len(y), C, T))
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)


@pytest.mark.parametrize("name", ["shallow", "binned_linear"])
def test_triplet_trained_encoder_separates_held_out_classes(name):
    from bci_app.training.encoder import centroid_accuracy

    torch.manual_seed(0)
    Xtr, ytr = _toy_trials(30, seed=0)
    Xte, yte = _toy_trials(15, seed=1)
    enc = build_encoder(name, 8, 8, 60, sfreq=100.0)
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    for _ in range(60):
        enc.train()
        idx = torch.randperm(len(ytr))[:48]
        loss = triplet_loss(enc(Xtr[idx]), ytr[idx], margin=0.2, mining="batch_hard")
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        acc = centroid_accuracy(enc(Xtr), ytr, enc(Xte), yte)
    assert acc > 0.6  # chance is 0.25


def test_whitening_is_fitted_from_data():
    enc = build_encoder("binned_linear", 4, 3, 40, sfreq=100.0)
    X = np.random.default_rng(0).standard_normal((50, 4, 40))
    X[:, 1] += 3 * X[:, 0]  # correlated channels
    enc.fit_whitening(X, np.zeros(50, dtype=int))
    W = enc.whitening.numpy()
    assert not np.allclose(W, np.eye(4))
    white = np.einsum("dc,nct->ndt", W, X).transpose(0, 2, 1).reshape(-1, 4)
    assert np.allclose(np.cov(white.T), np.eye(4), atol=0.25)


def test_lda_start_reproduces_the_linear_baseline():
    """fit_lda makes the encoder + head decide exactly as LinearBaseline (same bins, same LDA)."""
    from bci_app.models.baseline import LinearBaseline
    from bci_app.models.encoders import BinnedLinearEncoder, ClassifierHead

    rng = np.random.default_rng(0)
    n_cls, C, T = 5, 8, 120
    templates = rng.standard_normal((n_cls, C, T)).astype(np.float32)
    y = np.repeat(np.arange(n_cls), 30)
    X = templates[y] * 0.4 + rng.standard_normal((len(y), C, T)).astype(np.float32)
    test = np.arange(len(y)) % 5 == 0
    enc = BinnedLinearEncoder(C, 16, T, sfreq=1000.0, bin_ms=40.0, dropout=0.0).eval()
    head = ClassifierHead(16, n_cls).eval()
    info = enc.fit_lda(X[~test], y[~test], head)
    base = LinearBaseline(bin_ms=40.0).fit(X[~test], y[~test])
    with torch.no_grad():
        pred = head(enc(torch.as_tensor(X[test]))).argmax(1).numpy()
    np.testing.assert_array_equal(pred, base.predict(X[test]))
    assert info["train_acc"] > 1.5 / n_cls
    with pytest.raises(ValueError, match=r"n_outputs >= 5 \(5 classes"):
        BinnedLinearEncoder(C, 3, T, sfreq=1000.0, bin_ms=40.0).fit_lda(X, y)


def test_lda_start_on_a_subset_of_classes_in_any_order():
    """A session that holds some of the classes (ids 7, 2, 11 of 12, in that order of first
    appearance): the head's outputs are indexed by class id, so its rows for the present
    classes carry the LDA and the absent classes are never chosen; validation through the
    head equals the baseline's decisions (the bug: rows written in the order of the classes
    present, so the head read class 2's scores as class 0's)."""
    from bci_app.models.baseline import LinearBaseline
    from bci_app.models.encoders import ABSENT_CLASS_LOGIT, BinnedLinearEncoder, ClassifierHead

    rng = np.random.default_rng(5)
    C, T, n_head = 8, 120, 12
    present = np.array([7, 2, 11])
    templates = {k: rng.standard_normal((C, T)).astype(np.float32) for k in present}
    y = rng.permutation(np.repeat(present, 40))
    X = np.stack([templates[k] for k in y]) * 0.5 + rng.standard_normal((len(y), C, T)).astype(np.float32)
    test = np.arange(len(y)) % 4 == 0
    enc = BinnedLinearEncoder(C, 16, T, sfreq=1000.0, bin_ms=40.0, dropout=0.0).eval()
    head = ClassifierHead(16, n_head).eval()
    enc.fit_lda(X[~test], y[~test], head)
    with torch.no_grad():
        logits = head(enc(torch.as_tensor(X[test])))
    pred = logits.argmax(1).numpy()
    base = LinearBaseline(bin_ms=40.0).fit(X[~test], y[~test])
    np.testing.assert_array_equal(pred, base.predict(X[test]))
    assert set(pred) <= set(present.tolist())
    assert (pred == y[test]).mean() > 0.8
    absent = np.setdiff1d(np.arange(n_head), present)
    assert torch.all(logits[:, absent] < ABSENT_CLASS_LOGIT / 2)
    with pytest.raises(ValueError, match=r"ids in \[0, 5\)"):
        enc.fit_lda(X, y, ClassifierHead(16, 5))


def test_lda_start_with_attributes_adds_attribute_scores():
    """Attribute LDAs (e.g. shape, colour) take the next outputs; the head adds each class's
    attribute scores, and with shared attributes this decides better than a flat LDA."""
    from bci_app.models.baseline import LinearBaseline
    from bci_app.models.encoders import BinnedLinearEncoder, ClassifierHead

    rng = np.random.default_rng(1)
    n_a, n_b, C, T = 4, 3, 16, 80
    n_cls = n_a * n_b
    attrs = {"a": [k // n_b for k in range(n_cls)], "b": [k % n_b for k in range(n_cls)]}
    ta = rng.standard_normal((n_a, C, T)).astype(np.float32)
    tb = rng.standard_normal((n_b, C, T)).astype(np.float32)
    y = np.repeat(np.arange(n_cls), 12)
    X = (0.25 * (ta[y // n_b] + tb[y % n_b]) + rng.standard_normal((len(y), C, T))).astype(np.float32)
    yt = np.repeat(np.arange(n_cls), 30)
    Xt = (0.25 * (ta[yt // n_b] + tb[yt % n_b]) + rng.standard_normal((len(yt), C, T))).astype(np.float32)
    enc = BinnedLinearEncoder(C, 24, T, sfreq=1000.0, bin_ms=40.0, dropout=0.0).eval()
    head = ClassifierHead(24, n_cls).eval()
    info = enc.fit_lda(X, y, head, attributes=attrs)
    assert info["outputs_used"] == n_cls + n_a + n_b and info["attributes"] == ["a", "b"]
    W = head.fc.weight.detach().numpy()
    k = 7  # class 7 = (a=2, b=1): its own score + a's value 2 + b's value 1
    np.testing.assert_array_equal(np.flatnonzero(W[k]), [k, n_cls + 2, n_cls + n_a + 1])
    assert np.all(W[:, info["outputs_used"]:] == 0)
    with torch.no_grad():
        acc = (head(enc(torch.as_tensor(Xt))).argmax(1).numpy() == yt).mean()
    flat = LinearBaseline(bin_ms=40.0).fit(X, y).score(Xt, yt)
    assert acc > flat + 0.05, (acc, flat)
    with pytest.raises(ValueError, match=r"n_outputs >= 19"):
        BinnedLinearEncoder(C, 16, T, sfreq=1000.0, bin_ms=40.0).fit_lda(X, y, attributes=attrs)
    with pytest.raises(ValueError, match="one value per class"):
        enc.fit_lda(X, y, attributes={"a": [0, 1]})


def test_lda_start_with_layout_regresses_position():
    """layout targets (e.g. object x, y) take K outputs after the LDA scores as ridge
    regressions; the class head ignores them; they predict held-out layouts."""
    from bci_app.models.encoders import BinnedLinearEncoder, ClassifierHead

    rng = np.random.default_rng(2)
    n_cls, C, T = 4, 16, 80
    tc = rng.standard_normal((n_cls, C, T)).astype(np.float32)
    tx = rng.standard_normal((C, T)).astype(np.float32)  # a pattern whose size codes x

    def make(n):
        y = np.repeat(np.arange(n_cls), n)
        lay = np.stack([rng.uniform(0.2, 0.8, len(y)), rng.uniform(0.2, 0.8, len(y))], 1)
        X = 0.3 * tc[y] + 2.0 * (lay[:, :1, None] - 0.5) * tx + rng.standard_normal((len(y), C, T))
        return X.astype(np.float32), y, lay

    X, y, lay = make(40)
    Xt, yt, layt = make(30)
    enc = BinnedLinearEncoder(C, 12, T, sfreq=1000.0, bin_ms=40.0, dropout=0.0).eval()
    head = ClassifierHead(12, n_cls).eval()
    info = enc.fit_lda(X, y, head, layout=lay, layout_names=("x", "y"))
    li = info["layout"]
    assert li["outputs"] == [n_cls, n_cls + 1] and li["names"] == ["x", "y"]
    assert info["outputs_used"] == n_cls + 2
    assert np.all(head.fc.weight.detach().numpy()[:, li["outputs"]] == 0)  # not class evidence
    with torch.no_grad():
        out = enc(torch.as_tensor(Xt)).numpy()[:, li["outputs"]]
    pred = out * np.array(li["std"]) + np.array(li["mean"])
    r_x = np.corrcoef(pred[:, 0], layt[:, 0])[0, 1]
    r_y = np.corrcoef(pred[:, 1], layt[:, 1])[0, 1]
    assert r_x > 0.7 and abs(r_y) < 0.3, (r_x, r_y)  # x is in the signal, y is not
    with pytest.raises(ValueError, match="layout must be finite"):
        enc.fit_lda(X, y, layout=lay[:10])
    with pytest.raises(ValueError, match="layout_names must name 2"):
        enc.fit_lda(X, y, layout=lay, layout_names=("x",))
