"""Metrics checked against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bci_app.evaluation import metrics as M
from bci_app.evaluation import pretrained as P
from bci_app.evaluation import stats as S


# ----------------------------------------------------------------------------- N-way top-k
def test_n_way_all_classes_drawn_is_plain_top_k():
    # ways == n_classes: every draw holds all classes, so the result is the plain rank test
    probs = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    labels = np.array([0, 1, 2])
    top1 = M.n_way_top_k_per_trial(probs, labels, ways=3, k=1, draws=7, rng=1)
    np.testing.assert_array_equal(top1, [1.0, 0.0, 0.0])
    top2 = M.n_way_top_k_per_trial(probs, labels, ways=3, k=2, draws=7, rng=1)
    np.testing.assert_array_equal(top2, [1.0, 1.0, 0.0])
    assert M.n_way_top_k(probs, labels, ways=3, k=2, draws=7) == pytest.approx(2 / 3)


def test_n_way_two_way_expected_value():
    # true class 2 (0.3) is beaten by class 1 only: one random distractor out of the
    # three others -> success 2/3
    probs = np.array([[0.1, 0.4, 0.3, 0.2]])
    labels = np.array([2])
    assert M.n_way_top_k_expected(probs, labels, ways=2, k=1)[0] == pytest.approx(2 / 3)
    mc = M.n_way_top_k_per_trial(probs, labels, ways=2, k=1, draws=6000, rng=0)[0]
    assert abs(mc - 2 / 3) < 0.025
    # with 5 draws the per-trial value is a multiple of 1/5
    few = M.n_way_top_k_per_trial(probs, labels, ways=2, k=1, draws=5, rng=3)[0]
    assert few * 5 == pytest.approx(round(few * 5))


def test_n_way_three_of_five_with_k1_and_k2():
    # true class 0 scores 0.2; classes 1 and 2 beat it, 3 and 4 do not.
    # 3-way = 2 distractors out of 4 (6 pairs): top-1 only when both are {3, 4} -> 1/6;
    # top-2 fails only when both are {1, 2} -> 5/6
    probs = np.array([[0.2, 0.35, 0.3, 0.1, 0.05]])
    labels = np.array([0])
    assert M.n_way_top_k_expected(probs, labels, ways=3, k=1)[0] == pytest.approx(1 / 6)
    assert M.n_way_top_k_expected(probs, labels, ways=3, k=2)[0] == pytest.approx(5 / 6)
    k1 = M.n_way_top_k(probs, labels, ways=3, k=1, draws=6000, rng=0)
    k2 = M.n_way_top_k(probs, labels, ways=3, k=2, draws=6000, rng=0)
    assert abs(k1 - 1 / 6) < 0.02
    assert abs(k2 - 5 / 6) < 0.02


def test_n_way_averages_trials_and_draws():
    # two trials: 2/3 (as above) and a certain success (top class) -> mean 5/6
    probs = np.array([[0.1, 0.4, 0.3, 0.2], [0.7, 0.1, 0.1, 0.1]])
    labels = np.array([2, 0])
    exp = M.n_way_top_k_expected(probs, labels, ways=2, k=1)
    np.testing.assert_allclose(exp, [2 / 3, 1.0])
    acc = M.n_way_top_k(probs, labels, ways=2, k=1, draws=6000, rng=0)
    assert abs(acc - 5 / 6) < 0.015
    # same seed, same result
    assert acc == M.n_way_top_k(probs, labels, ways=2, k=1, draws=6000, rng=0)


def test_n_way_ties_count_against():
    probs = np.full((4, 10), 0.1)
    labels = np.arange(4)
    assert M.n_way_top_k(probs, labels, ways=5, k=1, draws=20) == 0.0
    np.testing.assert_array_equal(M.n_way_top_k_expected(probs, labels, ways=5, k=1), 0.0)


def test_n_way_chance_and_bad_arguments():
    assert M.n_way_chance(50, 1) == 0.02
    assert M.n_way_chance(40, 5) == 0.125
    probs = np.full((2, 4), 0.25)
    with pytest.raises(ValueError, match="ways"):
        M.n_way_top_k(probs, [0, 1], ways=5)
    with pytest.raises(ValueError, match="topk"):
        M.n_way_top_k(probs, [0, 1], ways=3, k=3)
    with pytest.raises(ValueError, match="true_labels"):
        M.n_way_top_k(probs, [0, 4], ways=3)
    with pytest.raises(ValueError, match="shape"):
        M.n_way_top_k(probs, [0, 1, 2], ways=3)


def test_n_way_random_scores_are_near_chance_and_not_significant():
    rng = np.random.default_rng(0)
    probs = rng.random((300, 40))
    labels = rng.integers(0, 40, 300)
    acc = M.n_way_top_k(probs, labels, ways=40, k=1, draws=1)
    assert abs(acc - 1 / 40) < 0.03
    assert M.n_way_permutation_p(probs, labels, ways=40, n_perm=200) > 0.05


def test_n_way_permutation_p_small_for_real_signal():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 60)
    probs = rng.random((60, 10)) * 0.5
    probs[np.arange(60), labels] += 0.6  # the true class is on top
    p = M.n_way_permutation_p(probs, labels, ways=10, n_perm=200)
    assert p == pytest.approx(1 / 201)


# ----------------------------------------------------------------------------- statistics
def test_wilson_hand_case():
    lo, hi = S.wilson_ci(8, 10)
    # z = 1.959964: centre (0.8 + z^2/20) / (1 + z^2/10), half-width as in Wilson (1927)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    lo0, hi0 = S.wilson_ci(0, 20)
    assert lo0 == 0.0 and 0.15 < hi0 < 0.18


def test_bootstrap_ci_brackets_the_mean():
    vals = np.r_[np.ones(30), np.zeros(70)]
    lo, hi = S.bootstrap_ci(vals, n_boot=2000, rng=0)
    assert lo < 0.3 < hi
    assert 0.18 < lo and hi < 0.42
    assert S.bootstrap_ci(np.full(10, 0.5)) == (0.5, 0.5)


def test_sign_flip_p_exact_hand_case():
    # 3 positive values: of the 2**3 sign patterns only all-plus reaches the observed mean
    assert S.sign_flip_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(1 / 8)
    # (3, -1, -1), observed sum 1: the 8 sign patterns sum to 1, 3, 3, 5 (with +3) and
    # -5, -3, -3, -1 (with -3); 4 of 8 reach the observed sum
    assert S.sign_flip_p(np.array([3.0, -1.0, -1.0])) == pytest.approx(4 / 8)
    assert S.sign_flip_p(np.zeros(5)) == 1.0


def test_permutation_p_value_counts():
    assert S.permutation_p_value(5.0, np.array([1.0, 2.0, 6.0, 5.0])) == pytest.approx(3 / 5)
    assert S.permutation_p_value(10.0, np.zeros(99)) == pytest.approx(0.01)


# ----------------------------------------------------------------------------- others
def test_pixel_correlation_hand_cases():
    x = np.arange(12, dtype=float).reshape(1, 2, 2, 3)
    np.testing.assert_allclose(M.pixel_correlation(x, 2 * x + 1), [1.0])
    np.testing.assert_allclose(M.pixel_correlation(x, -x), [-1.0])
    assert np.isnan(M.pixel_correlation(x, np.zeros_like(x))[0])


def test_two_way_identification_hand_case():
    seen = np.eye(3)  # centred one-hots: corr 1 with self, -0.5 with the others
    np.testing.assert_allclose(M.two_way_identification(seen, seen), [1, 1, 1])
    recon = seen[[0, 0, 2]]  # trial 1 reconstructs image 0
    # trial 1: own corr -0.5; vs seen 0 (1.0) loses, vs seen 2 (-0.5) ties -> (0 + 0.5) / 2
    np.testing.assert_allclose(M.two_way_identification(recon, seen), [1.0, 0.25, 1.0])


def test_inception_score_from_probs_hand_cases():
    same = np.tile([0.7, 0.2, 0.1], (5, 1))
    assert M.inception_score_from_probs(same)[0] == pytest.approx(1.0)
    onehot = np.eye(4)
    assert M.inception_score_from_probs(onehot)[0] == pytest.approx(4.0, rel=1e-6)
    # two images, p(y|x) = [1, 0] and [0.5, 0.5]; p(y) = [0.75, 0.25]
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    kl1 = math.log(1 / 0.75)
    kl2 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert M.inception_score_from_probs(p)[0] == pytest.approx(math.exp((kl1 + kl2) / 2), rel=1e-6)
    with pytest.raises(ValueError, match="summing to 1"):
        M.inception_score_from_probs(np.array([[0.5, 0.2]]))


def test_pretrained_metrics_unavailable_without_local_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    imgs = np.zeros((2, 32, 32, 3), np.uint8)
    res = P.inception_score(imgs, weights_dir=tmp_path)
    assert isinstance(res, P.MetricUnavailable)
    assert res.value is None and res.reason
    assert res.to_dict() == {"value": None, "available": False, "reason": res.reason}
    # the reason says where the weights were looked for and how to get them
    assert str(tmp_path) in res.reason and "weights='DEFAULT'" in res.reason
    alex = P.alexnet_two_way(imgs, imgs, weights_dir=tmp_path)
    assert isinstance(alex, P.MetricUnavailable)


def test_shuffled_pair_null_is_the_mismatched_mean():
    # score = 1 when the pair matches the same image, else 0: mismatched pairs always 0
    seen = np.arange(5)
    recon = np.arange(5)
    chance, null = S.shuffled_pair_null(seen, recon, lambda s, r: (s == r).astype(float), n_pairs=200, n_null=50)
    assert chance == 0.0 and np.all(null == 0.0)
    assert S.permutation_p_value(1.0, null) == pytest.approx(1 / 51)


def _save_random_weights(net, path, seed=0):
    import torch

    torch.manual_seed(seed)
    for p in net.parameters():  # small random weights keep the activations finite
        torch.nn.init.normal_(p, std=0.05)
    torch.save(net.state_dict(), path)


def test_pretrained_metrics_computed_from_local_torchvision_files(tmp_path, monkeypatch):
    """Checkpoints named and laid out as torchvision's load into the plain-torch networks
    (no torchvision needed) and give numbers; a corrupt file is reported as such."""
    from bci_app.evaluation.networks import AlexNet, InceptionV3

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    weights = tmp_path / "weights"
    weights.mkdir()
    _save_random_weights(AlexNet(), weights / "alexnet-owt-7be5be79.pth")
    _save_random_weights(InceptionV3(), weights / "inception_v3_google-0cc3c7bd.pth")
    rng = np.random.default_rng(0)
    seen = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    recon = seen.copy()
    recon[:2] = 255 - recon[:2]
    alex = P.alexnet_two_way(seen, recon, weights_dir=weights)
    assert set(alex) == {"alexnet2", "alexnet5"}
    for scores in alex.values():
        assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    # identical pairs are closer to their own image than to any other: two-way = 1
    same = P.alexnet_two_way(seen, seen, weights_dir=weights)
    np.testing.assert_array_equal(same["alexnet5"], np.ones(4))
    is_mean, is_std = P.inception_score(seen, weights_dir=weights, batch=2)
    assert 1.0 <= is_mean <= 4.0 and np.isfinite(is_std)

    (weights / "alexnet-owt-7be5be79.pth").write_bytes(b"not a checkpoint")
    bad = P.alexnet_two_way(seen, recon, weights_dir=weights)
    assert isinstance(bad, P.MetricUnavailable)
    assert bad.reason.startswith(f"could not load {weights / 'alexnet-owt-7be5be79.pth'}")


def test_imagenet_networks_have_torchvisions_state_dict_layout():
    """Every parameter and buffer name and shape equals torchvision 0.29.1's (recorded in
    data/imagenet_networks_keys.json from torchvision itself), so its files load strictly."""
    import json
    from pathlib import Path

    from bci_app.evaluation.networks import AlexNet, InceptionV3

    ref = json.loads((Path(__file__).parent / "data" / "imagenet_networks_keys.json").read_text())
    for name, net in (("alexnet", AlexNet()), ("inception_v3", InceptionV3(aux_logits=True))):
        got = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert got == ref[name]["state_dict"], name


def test_imagenet_networks_give_torchvisions_outputs():
    """Same weights, same input: the logits torchvision 0.29.1's own modules gave (recorded
    in the JSON file by the script named there)."""
    import json
    from pathlib import Path

    import torch

    from bci_app.evaluation.networks import AlexNet, InceptionV3

    ref = json.loads((Path(__file__).parent / "data" / "imagenet_networks_keys.json").read_text())
    for name, net, size in (("alexnet", AlexNet(), 224), ("inception_v3", InceptionV3(), 299)):
        r = ref[name]["reference_output"]
        # the reference run: torch.manual_seed(0), every parameter ~ N(0, 0.05) in the order
        # of its sorted name, buffers (BN running stats) at their init; input seed 1 randn
        torch.manual_seed(0)
        for _, p in sorted(net.named_parameters()):
            torch.nn.init.normal_(p, std=0.05)
        torch.manual_seed(1)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            out = net.eval()(x)
        np.testing.assert_allclose(out[:, :8].numpy(), np.array(r["logits_first8"]), rtol=1e-3, atol=1e-4)
        assert float(out.sum()) == pytest.approx(r["logits_sum"], rel=1e-3, abs=1e-3)
