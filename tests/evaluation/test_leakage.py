"""The block-design probe: trips on a block design, stays quiet on a randomised one."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.evaluation.leakage import block_design_probe, prestimulus_drift


def _session(design: str, n_trials: int = 240, seed: int = 3):
    from bci_app.simulation import simulate_raw

    raw = simulate_raw(n_trials, seed=seed, design=design)
    ann = raw.annotations
    ids = [d.split("/", 1)[1] for d in ann.description]
    labels = np.array([int(s[1:3]) for s in ids])  # demo ids are "cKK_iNN"
    onsets = np.asarray(ann.onset)
    # split by image: a quarter of the images shown go to test
    uniq = sorted(set(ids))
    rng = np.random.default_rng(0)
    test_ids = set(rng.choice(uniq, size=len(uniq) // 4, replace=False).tolist())
    test = np.array([s in test_ids for s in ids])
    sfreq = raw.info["sfreq"]
    drift = prestimulus_drift(raw.get_data(), np.round(onsets * sfreq).astype(int), sfreq)
    return dict(labels=labels, ids=ids, onsets=onsets, test=test, drift=drift)


@pytest.fixture(scope="module")
def block_session():
    return _session("block")


@pytest.fixture(scope="module")
def rapid_session():
    return _session("rapid")


def test_probe_flags_simulated_block_design(block_session):
    s = block_session
    r = block_design_probe(s["labels"], ~s["test"], s["test"], onsets=s["onsets"], stim_ids=s["ids"])
    assert r.flagged
    assert r.acc > 0.5 and r.chance < 0.06 and r.p < 0.01
    assert "LEAKAGE" in r.message and r.features == ["onset_time"]
    # the drift alone (no time) also gives the block design away
    d = block_design_probe(s["labels"], ~s["test"], s["test"], drift=s["drift"], stim_ids=s["ids"])
    assert d.flagged and d.acc > 0.3


def test_probe_passes_simulated_rapid_design(rapid_session):
    s = rapid_session
    r = block_design_probe(
        s["labels"], ~s["test"], s["test"], onsets=s["onsets"], drift=s["drift"], stim_ids=s["ids"]
    )
    assert not r.flagged
    assert r.p > 0.01 and r.acc < 0.15
    assert "no design leakage" in r.message
    assert set(r.to_dict()) >= {"acc", "chance", "p", "flagged"}


def test_probe_on_plain_arrays_hand_cases():
    # 4 classes shown in blocks of 10, every 3rd trial held out
    labels = np.repeat(np.arange(4), 10)
    idx = np.arange(40)
    test = idx % 3 == 0
    r = block_design_probe(labels, ~test, test, trial_index=idx, n_perm=300)
    # each test trial's nearest train trial in time is in the same block, except where a
    # trial 30 (class 3): 29 (class 2) and 31 are equally near, the tie goes to 29
    assert r.acc == pytest.approx(13 / 14)
    assert r.flagged and r.features == ["trial_index"]
    # the same labels in a random order: nothing to find
    rng = np.random.default_rng(5)
    shuffled = rng.permutation(labels)
    q = block_design_probe(shuffled, ~test, test, trial_index=idx, n_perm=300)
    assert not q.flagged


def test_probe_neighbours_stay_within_groups():
    # two subjects, each saw the classes in the opposite order; without groups the
    # nearest trial index could come from the other subject
    labels = np.r_[np.repeat([0, 1], 10), np.repeat([1, 0], 10)]
    idx = np.r_[np.arange(20), np.arange(20)]
    groups = np.repeat([0, 1], 20)
    test = np.zeros(40, bool)
    test[[5, 15, 25, 35]] = True
    r = block_design_probe(labels, ~test, test, trial_index=idx, groups=groups, n_perm=50)
    assert r.acc == 1.0


def test_probe_argument_errors():
    labels = np.arange(10) % 2
    test = np.arange(10) >= 8
    with pytest.raises(ValueError, match="onsets, trial_index or drift"):
        block_design_probe(labels, ~test, test)
    with pytest.raises(ValueError, match="'a'"):  # the one split check names the image
        block_design_probe(labels, ~test, test, trial_index=np.arange(10), stim_ids=["a"] * 10)
    groups = np.r_[np.zeros(8), np.ones(2)]
    with pytest.raises(ValueError, match="no train trials"):
        block_design_probe(labels, ~test, test, trial_index=np.arange(10), groups=groups)


def test_prestimulus_drift_hand_case():
    data = np.array([[0.0, 1, 2, 3, 4, 5, 6, 7]])
    out = prestimulus_drift(data, np.array([4, 1]), sfreq=2.0, window_s=1.0)  # 2 samples
    np.testing.assert_allclose(out[:, 0], [(2 + 3) / 2, 0.0])
    with pytest.raises(ValueError, match="no pre-stimulus"):
        prestimulus_drift(data, np.array([0]), sfreq=2.0)
