"""Calibration of the virtual subject: linear decodability and the block-design leak."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from bci_app.evaluation.calibration import baseline_accuracy
from bci_app.simulation import simulate_raw
from bci_app.stimuli import DemoStimulusSet


@pytest.mark.slow
def test_default_snr_gives_the_calibrated_baseline_accuracy():
    # 2000 trials, rapid design; train on 40 images per class, test on the other 10
    res = baseline_accuracy(n_trials=2000, snr=1.0, seed=0)
    assert res["n_train"] == 1600 and res["n_test"] == 400
    assert 0.30 <= res["acc"] <= 0.65, f"linear baseline accuracy {res['acc']:.3f} at snr=1.0"


def _drift_features(design: str, seed: int = 5, n_trials: int = 400):
    """Per-trial 'nuisance' features: onset time, and each channel's raw mean over the window."""
    stimuli = DemoStimulusSet()
    raw = simulate_raw(n_trials, seed=seed, design=design, stimuli=stimuli)
    data = raw.get_data()
    onsets = raw.annotations.onset
    k = np.round(onsets * raw.info["sfreq"]).astype(int)
    means = np.stack([data[:, a + 20 : a + 460].mean(axis=1) for a in k]) * 1e6  # uV
    labels = np.array([stimuli.label(d.removeprefix("stim/")) for d in raw.annotations.description])
    return onsets[:, None], means, labels


@pytest.mark.parametrize("design", ["block", "rapid"])
def test_block_design_leaks_rapid_does_not(design):
    t, drift, y = _drift_features(design)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    acc_time = cross_val_score(KNeighborsClassifier(5), t, y, cv=cv).mean()
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
    acc_drift = cross_val_score(lda, drift, y, cv=cv).mean()
    chance = 1 / 40
    if design == "block":
        assert acc_time > 10 * chance, f"trial time does not predict the class ({acc_time:.2f})"
        assert acc_drift > 6 * chance, f"drift does not predict the class ({acc_drift:.2f})"
    else:
        assert acc_time < 3 * chance, f"rapid design leaks through trial time ({acc_time:.2f})"
        assert acc_drift < 3 * chance, f"rapid design leaks through drift ({acc_drift:.2f})"
