"""Offline epoching reads a long recording chunk by chunk: it never holds the signal whole a
second time (``bci-app evaluate`` on a 2000-trial session stays within a few GB)."""

from __future__ import annotations

import tracemalloc

import mne
import numpy as np

from bci_app.datasets.sessions import default_spec
from bci_app.preprocessing import epoch_raw
from bci_app.stimuli import MarkerMapper


def test_epoch_raw_peak_memory_is_a_fraction_of_the_recording():
    sfreq, n_ch, seconds = 1000.0, 32, 400
    rng = np.random.default_rng(0)
    data = rng.standard_normal((n_ch, int(seconds * sfreq))) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info([f"E{i}" for i in range(n_ch)], sfreq, "eeg"), verbose="error")
    onsets = np.arange(1.0, seconds - 1.0, 2.0)
    raw.set_annotations(mne.Annotations(onsets, 0.5, [f"stim/c{i % 40:02d}_i00" for i in range(len(onsets))]))
    spec = default_spec(list(raw.ch_names), sfreq)
    tracemalloc.start()
    try:
        ep = epoch_raw(raw, spec, MarkerMapper())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(ep) == len(onsets) and not any(ep.reject)
    assert peak < 0.5 * data.nbytes, f"epoching took {peak / 1e6:.0f} MB for a {data.nbytes / 1e6:.0f} MB recording"
