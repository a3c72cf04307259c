from __future__ import annotations

import pytest
import torch

from bci_app.models.semantic import SemanticHead
from bci_app.training.semantic import train_semantic


@pytest.mark.parametrize("prototypes", [False, True])
def test_semantic_loss_decreases_and_predicts_class(prototypes):
    torch.manual_seed(0)
    K, L, D = 4, 3, 8
    class_emb = torch.randn(K, L, D)
    y = torch.arange(K).repeat(20)
    f = torch.nn.functional.one_hot(y, 6).float() + 0.2 * torch.randn(len(y), 6)
    cfg = {"hidden": 32, "dropout": 0.0, "epochs": 40, "batch_size": 16, "lr": 3e-3,
           "weight_decay": 0.0, "patience": 100}
    head, m = train_semantic(f[:60], class_emb[y[:60]], f[60:], class_emb[y[60:]], cfg,
                             class_emb if prototypes else None, seed=0, device="cpu")
    assert m["loss_last"] < 0.5 * m["loss_first"]
    pred = head(f[60:])
    assert pred.shape == (20, L, D)
    nearest = ((pred[:, None] - class_emb[None]) ** 2).flatten(2).mean(2).argmin(1)
    assert (nearest == y[60:]).float().mean() > 0.8


def test_semantic_head_checks():
    torch.manual_seed(0)
    head = SemanticHead(6, seq_len=3, embed_dim=8, hidden=16, n_prototypes=4)
    with pytest.raises(ValueError, match=r"\(4, 3, 8\)"):
        head.init_prototypes(torch.zeros(4, 3, 7))
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        head(torch.zeros(2, 5))


def test_semantic_logits_from_features_start_at_the_encoder_readout():
    """logits_from='features' + a read-out start: the head picks the class the read-out picks."""
    torch.manual_seed(0)
    K, L, D, Fd = 5, 3, 8, 7
    class_emb = torch.randn(K, L, D)
    readout = torch.nn.Linear(Fd, K)
    f = torch.randn(40, Fd) * 3
    head = SemanticHead(Fd, L, D, hidden=16, n_prototypes=K, logits_from="features").eval()
    head.init_prototypes(class_emb)
    head.init_logits(readout.weight.detach(), readout.bias.detach())
    with torch.no_grad():
        w = head.mixture_weights(f)
        torch.testing.assert_close(w, torch.softmax(readout(f), -1))
        nearest = ((head(f)[:, None] - class_emb[None]) ** 2).flatten(2).mean(2).argmin(1)
    assert (nearest == readout(f).argmax(1)).float().mean() > 0.9
    with pytest.raises(RuntimeError, match="logits_from='features'"):
        SemanticHead(Fd, L, D, n_prototypes=K).init_logits(readout.weight, readout.bias)
    with pytest.raises(ValueError, match="logits_from"):
        SemanticHead(Fd, L, D, n_prototypes=K, logits_from="nope")
    # train_semantic keeps the start as a candidate: the result is no worse on validation
    y = readout(f).argmax(1).detach()
    cfg = {"hidden": 16, "dropout": 0.0, "epochs": 3, "batch_size": 8, "lr": 1e-3,
           "weight_decay": 0.0, "patience": 100, "logits_from": "features"}
    trained, m = train_semantic(f[:30], class_emb[y[:30]], f[30:], class_emb[y[30:]], cfg, class_emb,
                                seed=0, readout=readout)
    assert trained.logits_from == "features"
    with torch.no_grad():
        start_loss = ((head(f[30:]) - class_emb[y[30:]]) ** 2).mean().item()
    assert m["val_loss"] <= start_loss + 1e-6


def test_open_set_query_starts_at_the_readout_and_composes_new_captions():
    """init_query: the open-set head's cosine logits choose what the read-out chooses (keys of
    unequal norms, which centring alone would reorder); a caption added afterwards scores what
    the read-out's scores say about it: one composed of two training captions minus a third
    gets their scores' combination."""
    torch.manual_seed(0)
    K, L, D, Fd = 6, 4, 8, 20
    protos = torch.randn(K, L, D) * torch.rand(K, 1, 1) * 3
    W, b = torch.randn(K, Fd), torch.randn(K)
    head = SemanticHead(Fd, L, D, hidden=16, n_prototypes=K, logits_from="features", open_set=True).eval()
    head.init_prototypes(protos)
    head.init_query(W, b)
    f = torch.randn(500, Fd)
    with torch.no_grad():
        assert torch.equal(head.mixture_weights(f).argmax(1), (f @ W.T + b).argmax(1))
        # "blue ring" = "blue circle" + "green ring" - "green circle", as an attribute code composes
        new = protos[0] + protos[1] - protos[2]
        head.set_candidates(torch.cat([protos, new[None]]))
        cos = head._logits(f, None) / head.log_scale.exp()
        q = head.query(f)
        centred = head.prototypes - head.centre
        expected = (centred[-1] @ q.T) / (centred[-1].norm() * q.norm(dim=1))
        torch.testing.assert_close(cos[:, -1], expected)
        # the new caption's score follows the composed read-out scores (up to each trial's scale)
        composed = f @ (W[0] + W[1] - W[2]) + b[0] + b[1] - b[2]
        assert torch.corrcoef(torch.stack([cos[:, -1], composed]))[0, 1] > 0.5
    with pytest.raises(RuntimeError, match="open-set head"):
        SemanticHead(Fd, L, D, n_prototypes=K, logits_from="features").init_query(W, b)
    with pytest.raises(ValueError, match="one row per candidate"):
        head.init_query(W, b)  # 7 candidates now, a read-out of 6 rows


def test_sample_temperature_sharpens_the_mixture_and_is_saved(tmp_path):
    from bci_app.models.bundle import ConfigModule
    from bci_app.models.semantic import SemanticHead

    torch.manual_seed(0)
    head = SemanticHead(6, seq_len=2, embed_dim=4, hidden=8, n_prototypes=3).eval()
    head.init_prototypes(torch.randn(3, 2, 4))
    f = torch.randn(5, 6)
    w1 = head.mixture_weights(f)
    head.set_temperature(0.1)
    w2 = head.mixture_weights(f)
    assert torch.equal(w1.argmax(1), w2.argmax(1)) and bool((w2.max(1).values >= w1.max(1).values).all())
    head.save_pretrained(tmp_path / "h")
    back = ConfigModule.from_pretrained(tmp_path / "h").eval()
    assert back.temperature == 0.1
    torch.testing.assert_close(back(f), head(f))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        head.set_temperature(0.0)


def test_open_set_head_learns_and_takes_new_candidates(tmp_path):
    """The open-set head trains by eq. (7) among the training captions; afterwards any caption
    can be a candidate: a feature pointing at an unseen caption's direction picks it, and the
    head is saved and loaded with its new candidates."""
    from bci_app.models.bundle import ConfigModule

    torch.manual_seed(0)
    K, L, D, Fd = 6, 3, 8, 6
    class_emb = torch.randn(K, L, D)
    y = torch.arange(4).repeat(20)  # classes 4 and 5 never trained on
    f = torch.nn.functional.one_hot(y, Fd).float() + 0.2 * torch.randn(len(y), Fd)
    cfg = {"hidden": 32, "dropout": 0.0, "epochs": 60, "batch_size": 16, "lr": 1e-2, "weight_decay": 0.0,
           "patience": 100, "open_set": True, "logits_from": "features"}
    head, m = train_semantic(f[:60], class_emb[y[:60]], f[60:], class_emb[y[60:]], cfg, class_emb[:4], seed=0)
    assert head.open_set and head.n_prototypes == 4 and m["loss_last"] < 0.5 * m["loss_first"]
    with torch.no_grad():
        assert (head.mixture_weights(f[60:]).argmax(1) == y[60:]).float().mean() > 0.8
        out = head(f[60:])
        torch.testing.assert_close(out, (head.mixture_weights(f[60:]) @ head.prototypes).view(20, L, D))
        # a new caption whose centred embedding is where the head's read-out points: chosen
        q = head.query(f[60:61])
        new = (head.centre + q[0] / q.norm()).view(1, L, D)
        head.set_candidates(torch.cat([class_emb, new]))
        assert head.n_prototypes == K + 1 and head.mixture_weights(f[60:61]).argmax(1).item() == K
    head.save_pretrained(tmp_path / "h")
    back = ConfigModule.from_pretrained(tmp_path / "h").eval()
    assert back.config["open_set"] is True and back.n_prototypes == K + 1
    torch.testing.assert_close(back(f), head.eval()(f))
    with pytest.raises(RuntimeError, match="open-set head"):
        SemanticHead(Fd, L, D, n_prototypes=K).set_candidates(class_emb)
    with pytest.raises(ValueError, match=r"\[K >= 1, 3, 8\]"):
        head.set_candidates(torch.zeros(2, 3, 7))
    with pytest.raises(ValueError, match="open_set needs n_prototypes"):
        SemanticHead(Fd, L, D, n_prototypes=0, open_set=True)
    with pytest.raises(ValueError, match="open_set needs candidate captions"):
        train_semantic(f[:60], class_emb[y[:60]], f[60:], class_emb[y[60:]], cfg, None, seed=0)


def test_the_demo_bundle_head_is_the_closed_mixture():
    """The shipped head loads as before (no open_set in its config) and computes the closed
    mixture: softmax of its read-out over its learned prototypes plus the residual."""
    from bci_app.models.bundle import load_component, read_bundle_config

    head = load_component("demo", "semantic")
    assert not head.open_set and "open_set" not in read_bundle_config("demo")["components"]["semantic"]["kwargs"]
    f = torch.randn(4, head.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = f if head.logits_from == "features" else head.trunk(f)
        w = torch.softmax(head.logits(x) / head.temperature, -1)
        expected = (w @ head.prototypes + head.residual(head.trunk(f))).view(4, head.seq_len, head.embed_dim)
        torch.testing.assert_close(head(f), expected)
