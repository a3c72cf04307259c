"""The linear baseline decoder (shrinkage LDA on time-binned channels)."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.evaluation.calibration import epoch_session, zscore_split
from bci_app.models.baseline import LinearBaseline
from bci_app.simulation import simulate_raw
from bci_app.stimuli import DemoStimulusSet


@pytest.fixture(scope="module")
def session():
    """480 trials of a rapid session (12 images per class), epoched like the app does.

    9 training trials per class is a quarter of the calibration session, so the
    evoked responses are doubled (snr=2) to keep the test quick and its margin wide.
    """
    stimuli = DemoStimulusSet(n_per_class=12)
    raw = simulate_raw(480, seed=11, stimuli=stimuli, snr=2.0)
    X, y, index, _ = epoch_session(raw, stimuli)
    test = index >= 9  # held-out images
    Xtr, Xte = zscore_split(X[~test], X[test])
    return Xtr, y[~test], Xte, y[test]


def test_above_chance_on_simulated_data(session):
    Xtr, ytr, Xte, yte = session
    clf = LinearBaseline().fit(Xtr, ytr)
    acc = clf.score(Xte, yte)
    assert acc > 0.15, f"40-way accuracy {acc:.3f} is not above chance (0.025)"
    proba = clf.predict_proba(Xte)
    assert proba.shape == (len(yte), 40)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(Xte))


def test_at_chance_with_shuffled_labels(session):
    Xtr, ytr, Xte, yte = session
    rng = np.random.default_rng(0)
    clf = LinearBaseline().fit(Xtr, rng.permutation(ytr))
    acc = clf.score(Xte, yte)
    # chance is 1/40; 120 test trials -> mean 3 correct, sd ~1.7
    assert acc < 0.08, f"accuracy {acc:.3f} with shuffled labels: the baseline leaks"


def test_features_and_errors():
    X = np.arange(4 * 3 * 100, dtype=np.float32).reshape(4, 3, 100)
    clf = LinearBaseline(bin_ms=40.0, sfreq=1000.0)
    F = clf.features(X)
    assert F.shape == (4, 3 * 2)
    np.testing.assert_allclose(
        F[0, 0], X[0, 0, :40].mean()
    )  # 40 ms bins; the last 20 samples are dropped
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(X)
    with pytest.raises(ValueError, match="n_trials, n_channels, n_times"):
        clf.features(X[0])
    with pytest.raises(ValueError, match="bin_ms"):
        LinearBaseline(bin_ms=0)
    y = np.array([0, 1, 0, 1])
    clf.fit(X, y)
    with pytest.raises(ValueError, match="fitted on"):
        clf.predict(X[:, :2])


def test_matches_scikit_learn_and_round_trips(session, tmp_path):
    """The saved decoder is the fitted one: scikit-learn's LDA scores, through a file."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    Xtr, ytr, Xte, yte = session
    clf = LinearBaseline(bin_ms=40.0, sfreq=1000.0).fit(Xtr, ytr)
    F_tr, F_te = clf.features(Xtr), clf.features(Xte)
    mu, sd = F_tr.mean(0), F_tr.std(0) + 1e-12
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit((F_tr - mu) / sd, ytr)
    np.testing.assert_array_equal(clf.predict(Xte), lda.predict((F_te - mu) / sd))
    np.testing.assert_allclose(clf.predict_proba(Xte), lda.predict_proba((F_te - mu) / sd), rtol=1e-6, atol=1e-9)
    path = clf.save(tmp_path / "bundle")
    assert path.name == "baseline.safetensors"
    loaded = LinearBaseline.load(tmp_path / "bundle")
    np.testing.assert_array_equal(loaded.decision_function(Xte), clf.decision_function(Xte))
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    assert loaded.settings() == clf.settings() and loaded.score(Xte, yte) == clf.score(Xte, yte)
    with pytest.raises(ValueError, match="fitted on"):
        loaded.predict(Xte[:, :, :200])


def test_load_names_the_missing_file_and_binary_case(tmp_path):
    with pytest.raises(FileNotFoundError, match="baseline.safetensors"):
        LinearBaseline.load(tmp_path)
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = rng.standard_normal((40, 2, 80)) + y[:, None, None]
    clf = LinearBaseline().fit(X, y)
    clf.save(tmp_path)
    loaded = LinearBaseline.load(tmp_path)
    assert loaded.predict_proba(X).shape == (40, 2)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    assert clf.score(X, y) > 0.9
