"""The BrainFlow synthetic board: markers from insert_marker land on their exact sample."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.acquisition import Acquisition, BrainFlowSource, Epocher
from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import MarkerMapper


def test_synthetic_board_marker_on_exact_sample(wait):
    src = BrainFlowSource(
        "synthetic",
        extra_rows=("package_num", "marker"),
        marker_table={1: "stim/one", 2: "stim/two", 3: "stim/three"},
    )
    src.connect()
    names = src.ch_names
    spec = PreprocessingSpec(
        sfreq=src.sfreq, ch_names=names, tmin=-0.1, tmax=0.3, l_freq=None, h_freq=None, notch=None
    )
    trials = []
    acq = Acquisition(
        src, src, Epocher(spec, MarkerMapper(), buffer_seconds=5), on_trial=trials.append
    )
    try:
        acq.start()
        wait(lambda: acq.epocher.buffer.n_total > 50, 5, what="board samples")
        for j, v in enumerate((1, 2, 3)):
            src.insert_marker(v)
            wait(lambda j=j: len(trials) > j, 5, what=f"trial {j}")
    finally:
        acq.stop()
    assert [t.stim_id for t in trials] == ["one", "two", "three"]
    col = -spec.start_offset
    mrow, prow = names.index("marker"), names.index("package_num")
    for tr, v in zip(trials, (1, 2, 3), strict=True):
        assert tr.ok
        marker_row = tr.data[mrow]
        assert marker_row[col] == v  # the marker is on the onset sample: 0 samples error
        assert np.count_nonzero(marker_row) == 1
        # no sample lost inside the window (8-bit package counter)
        assert set(np.diff(tr.data[prow]) % 256) == {1}
    assert acq.stats["samples_lost"] == 0
    # timestamps are on the LSL clock: the window ended moments ago
    assert abs(trials[-1].emitted_time - trials[-1].onset - 0.3) < 0.5


def test_unknown_board_and_wrong_shape_are_clear():
    with pytest.raises(ValueError, match="unknown BrainFlow board 'nope'"):
        BrainFlowSource("nope")
    with pytest.raises(ValueError, match=r"has 16 channels but 128 are expected"):
        BrainFlowSource("synthetic", n_channels=128, sfreq=250.0).connect()
