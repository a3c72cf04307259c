"""Calibration of the virtual subject against the linear baseline decoder.

``python -m bci_app.evaluation.calibration [--trials 2000] [--snr 1.0] [--seed 0]``
simulates a rapid-design session, epochs it with the app's default pre-processing
(causal band-pass 1-40 Hz + 50 Hz notch, window 20-460 ms, per-channel z-score from
the training trials), trains :class:`~bci_app.models.baseline.LinearBaseline` on the
trials of 80 % of each class's images and tests it on the other images' trials.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from bci_app.preprocessing import PreprocessingSpec, compute_norm, epoch_raw
from bci_app.simulation.montage import standard_montage_128
from bci_app.simulation.raw import simulate_raw
from bci_app.stimuli import DemoStimulusSet, MarkerMapper


def epoch_session(raw, stimuli: DemoStimulusSet | None = None):
    """Epochs ``X [N, C, T]`` (filtered, not normalised), labels and image indices of a simulated session."""
    stimuli = stimuli if stimuli is not None else DemoStimulusSet()
    spec = PreprocessingSpec(sfreq=raw.info["sfreq"], ch_names=standard_montage_128())
    ep = epoch_raw(raw, spec, MarkerMapper()).good()
    labels = np.array([stimuli.label(s) for s in ep.stim_ids])
    index = np.array([stimuli.parse_id(s)[1] for s in ep.stim_ids])
    return ep.X, labels, index, ep.onsets


def zscore_split(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel z-score with the training trials' mean and std."""
    mean, std = compute_norm(X_train)
    mean = np.asarray(mean, dtype=np.float32)[None, :, None]
    std = np.asarray(std, dtype=np.float32)[None, :, None]
    return (X_train - mean) / std, (X_test - mean) / std


def baseline_accuracy(
    n_trials: int = 2000,
    snr: float = 1.0,
    seed: int = 0,
    test_fraction: float = 0.2,
    bin_ms: float = 40.0,
) -> dict:
    """Single-trial 40-way accuracy of the linear baseline on a simulated session (held-out images)."""
    from bci_app.models.baseline import LinearBaseline

    stimuli = DemoStimulusSet()
    t0 = time.perf_counter()
    raw = simulate_raw(n_trials, seed=seed, snr=snr, stimuli=stimuli)
    t_sim = time.perf_counter() - t0
    X, y, index, _ = epoch_session(raw, stimuli)
    del raw
    n_test_images = int(round(stimuli.n_per_class * test_fraction))
    test = index >= stimuli.n_per_class - n_test_images
    Xtr, Xte = zscore_split(X[~test], X[test])
    clf = LinearBaseline(bin_ms=bin_ms).fit(Xtr, y[~test])
    acc = clf.score(Xte, y[test])
    return {
        "acc": acc,
        "chance": 1.0 / stimuli.n_classes,
        "n_train": int((~test).sum()),
        "n_test": int(test.sum()),
        "snr": snr,
        "seed": seed,
        "simulate_s": round(t_sim, 2),
        "total_s": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--snr", type=float, nargs="+", default=[1.0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for snr in args.snr:
        print(json.dumps(baseline_accuracy(args.trials, snr=snr, seed=args.seed)), flush=True)


if __name__ == "__main__":
    main()
