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


def _read_for(src, seconds):
    import time

    parts, stamps = [], []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        x, t = src.read()
        if t.size:
            parts.append(x)
            stamps.append(t)
        time.sleep(0.02)
    return np.concatenate(parts, axis=1), np.concatenate(stamps)


def test_board_channel_names_picking_units_and_resampling():
    from brainflow.board_shim import BoardShim

    whole = BrainFlowSource("synthetic")
    whole.connect()
    try:
        x_all, _ = _read_for(whole, 0.6)
    finally:
        whole.disconnect()
    assert whole.ch_names == BoardShim.get_eeg_names(-1)  # Fz, C3, Cz, ... from the board
    assert whole.sfreq == 250.0 and whole.delay == 0
    # BrainFlow's microvolts come out as volts: EEG-sized amplitudes
    assert 1e-7 < np.median(np.std(x_all, axis=1)) < 1e-3

    src = BrainFlowSource("synthetic", ch_names=["oz", "Cz", "FZ"], sfreq=125.0)
    src.connect()
    try:
        x, t = _read_for(src, 1.0)
    finally:
        src.disconnect()
    assert src.ch_names == ["oz", "Cz", "FZ"] and src.sfreq == 125.0
    assert src.delay == pytest.approx(20 / 250)  # 10 zero crossings at the input rate
    assert x.shape[0] == 3 and x.shape[1] > 50
    # one sample per 8 ms (the board's stamps are regularised with a slowly following anchor)
    np.testing.assert_allclose(np.diff(t), 1 / 125.0, atol=1e-3)
    assert 1e-7 < np.median(np.std(x, axis=1)) < 1e-3


def test_board_missing_channel_and_lower_rate_are_clear():
    with pytest.raises(ValueError, match=r"lacks 1 channel\(s\) the model needs: T7;.*Fz, C3, Cz"):
        BrainFlowSource("synthetic", ch_names=["Cz", "T7"]).connect()
    with pytest.raises(ValueError, match=r"250.0 Hz but 500.0 Hz is expected \(a lower rate"):
        BrainFlowSource("synthetic", ch_names=["Cz"], sfreq=500.0).connect()


def test_board_parameters_from_config_and_flags(tmp_path):
    from bci_app.acquisition.brainflow_source import input_params
    from bci_app.session.wiring import open_sources, source_options

    p = input_params({"timeout": "5", "master_board": "synthetic", "serial_port": "/dev/ttyUSB0"})
    assert (p.timeout, p.master_board, p.serial_port) == (5, -1, "/dev/ttyUSB0")
    with pytest.raises(ValueError, match="unknown BrainFlow board parameter 'baud'; allowed: "):
        BrainFlowSource("synthetic", {"baud": "9600"})
    with pytest.raises(ValueError, match="ip_port='abc': expected an integer"):
        input_params({"ip_port": "abc"})

    cfg = tmp_path / "lab.toml"
    cfg.write_text('[acquisition]\nbrainflow_params = {timeout = 3, other_info = "lab"}\n')

    class Args:
        config = str(cfg)
        source = "brainflow:synthetic"
        board_param = ["timeout=7"]
        units = None

    opts = source_options(Args())
    assert opts["board_params"] == {"timeout": "7", "other_info": "lab"}  # flags over config
    assert opts["ch_names"] is None and opts["sfreq"] is None
    source, markers = open_sources(Args.source, None, **opts)
    assert markers is source and source.params == {"timeout": "7", "other_info": "lab"}
    source.connect()
    try:
        x, _ = _read_for(source, 0.3)
    finally:
        source.disconnect()
    assert x.shape[0] == 16

    Args.source = "lsl:amp"
    with pytest.raises(ValueError, match="board parameters apply to --source brainflow:BOARD only"):
        source_options(Args())
    with pytest.raises(ValueError, match=r"--board-param 'timeout': expected KEY=VALUE"):
        Args.board_param = ["timeout"]
        source_options(Args())
