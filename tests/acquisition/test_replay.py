"""Replay over LSL reproduces offline epochs; mne-lsl's PlayerLSL feeds the epocher."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from bci_app.acquisition import Acquisition, Epocher, LSLMarkerSource, LSLSource, SessionPlayer
from bci_app.preprocessing import PreprocessingSpec, epoch_raw
from bci_app.simulation import simulate_raw
from bci_app.stimuli import MarkerMapper
from tests.acquisition.lsl_helpers import player_process


def _handmade_raw(n_trials=8, sfreq=500.0, n_ch=16, seed=0, first=1.5):
    rng = np.random.default_rng(seed)
    n = int((first + 0.5 * n_trials + 1.0) * sfreq)
    x = rng.standard_normal((n_ch, n)) * 1e-5
    x[0] = np.arange(n)  # ramp
    raw = mne.io.RawArray(
        x, mne.create_info([f"e{i}" for i in range(n_ch)], sfreq, "eeg"), verbose="error"
    )
    onsets = first + 0.5 * np.arange(n_trials) + rng.uniform(0, 0.01, n_trials)
    raw.set_annotations(
        mne.Annotations(onsets, 0, [f"stim/c{i % 3}_i{i}" for i in range(n_trials)])
    )
    return raw


def _replay_and_epoch(raw, spec, name, sid, wait, speed):
    trials = []
    player = SessionPlayer(raw, speed=speed, name=name, source_id=sid)
    acq = Acquisition(
        LSLSource(
            name, source_id=sid, n_channels=len(raw.ch_names), sfreq=raw.info["sfreq"], timeout=5
        ),
        LSLMarkerSource(f"{name}-markers", timeout=5),
        Epocher(spec, MarkerMapper(), buffer_seconds=5),
        on_trial=trials.append,
    )
    try:
        player.open()  # outlets first so the sources can resolve them
        acq.start()
        player.start(wait_for_consumers=5)
        assert player.wait(60)
        wait(
            lambda: acq.epocher.buffer.n_total == player.n_times and acq.epocher.n_pending == 0,
            10,
            what="all samples and trials",
        )
    finally:
        acq.stop()
        player.stop()
    return trials, acq


@pytest.mark.parametrize("source", ["handmade", "simulate_raw"])
def test_replay_reproduces_offline_epochs(source, stream_id, wait):
    if source == "simulate_raw":
        raw = simulate_raw(10, seed=3)
        speed = 4.0
    else:
        raw = _handmade_raw()
        speed = 2.0
    spec = PreprocessingSpec(
        sfreq=raw.info["sfreq"], ch_names=list(raw.ch_names)
    )  # 1-40 Hz + notch
    offline = epoch_raw(raw, spec, MarkerMapper())
    trials, acq = _replay_and_epoch(raw, spec, *stream_id, wait, speed)
    assert len(trials) == len(offline) > 0
    assert [t.stim_id for t in trials] == offline.stim_ids
    diffs = np.array([t.onset_sample for t in trials]) - offline.onset_samples
    assert np.abs(diffs).max() <= 1
    assert [t.reject_reason for t in trials] == offline.reject
    good = [i for i, r in enumerate(offline.reject) if r is None]
    assert good
    X = np.stack([trials[i].data for i in good])
    np.testing.assert_allclose(X, offline.X[good], rtol=1e-4, atol=1e-4 * np.abs(offline.X).max())
    assert acq.stats["samples_lost"] == 0


@pytest.mark.parametrize("encoding", ["one-hot", "string"])
def test_mne_lsl_player_annotations_feed_epocher(encoding, stream_id, tmp_path, wait):
    """mne-lsl's PlayerLSL (its own liblsl, in its own process) publishes type ``eeg``:
    the name finds it with the source's default type ``EEG``."""
    name, sid = stream_id
    # the player streams as soon as it starts: the first marker comes after 5 s, time
    # enough for the inlets to subscribe
    raw2 = _handmade_raw(n_trials=6, sfreq=250.0, n_ch=8, first=5.0)
    fname = tmp_path / "play_raw.fif"
    raw2.save(fname, verbose="error")
    spec = PreprocessingSpec(sfreq=250.0, ch_names=list(raw2.ch_names), tmin=0.0, tmax=0.3)
    trials = []
    with player_process(fname, name, sid, encoding):
        acq = Acquisition(
            LSLSource(name, ch_names=list(raw2.ch_names), sfreq=250.0, timeout=5),
            LSLMarkerSource(f"{name}-annotations", timeout=5),
            Epocher(spec, MarkerMapper(), buffer_seconds=5),
            on_trial=trials.append,
        )
        try:
            acq.start()
            assert acq.source._sinfo.type() == "eeg"  # found by name, whatever its type
            assert acq.markers.encoding == encoding
            wait(lambda: len(trials) == 6, 20, what="6 trials from PlayerLSL")
        finally:
            acq.stop()
    assert [t.stim_id for t in trials] == [f"c{i % 3}_i{i}" for i in range(6)]
    assert all(t.ok for t in trials)
    assert acq.stats["unknown_markers"] == 0
