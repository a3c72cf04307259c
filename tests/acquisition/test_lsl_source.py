"""LSL EEG + marker sources, acquisition thread: exact samples, loss and recovery, checks."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.acquisition import Acquisition, Epocher, LSLMarkerSource, LSLSource
from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import MarkerMapper
from tests.acquisition.lsl_helpers import RampOutlet, marker_outlet
from tests.conftest import unique_stream_id

SF = 500.0
CH = ["ramp"] + [f"ch{i}" for i in range(1, 8)]


def _raw_spec():
    # no filters, no normalisation: the ramp channel comes through untouched
    return PreprocessingSpec(
        sfreq=SF, ch_names=CH, tmin=-0.1, tmax=0.2, l_freq=None, h_freq=None, notch=None
    )


def test_marker_lands_on_exact_sample(stream_id, wait):
    name, sid = stream_id
    mname, msid = unique_stream_id("mk")
    eeg = RampOutlet(name, sid, sfreq=SF).start()
    mk = marker_outlet(mname, msid)
    spec = _raw_spec()
    trials = []
    acq = Acquisition(
        LSLSource(name, source_id=sid, n_channels=8, sfreq=SF, timeout=5),
        LSLMarkerSource(mname, source_id=msid, timeout=5),
        Epocher(spec, MarkerMapper(), buffer_seconds=5),
        on_trial=trials.append,
    )
    try:
        acq.start()
        assert mk.wait_for_consumers(5)
        wait(lambda: acq.epocher.buffer.n_total > 0, 5, what="EEG samples")
        targets = []
        for j in range(3):
            k = eeg.k + 150  # in the future: the marker arrives before its EEG
            targets.append(k)
            mk.push_sample([f"stim/s{j}"], timestamp=eeg.time_of(k) + 0.4 / SF)
            wait(lambda j=j: len(trials) > j, 5, what=f"trial {j}")
        # a marker in the past (its EEG already received)
        k = eeg.k - 200
        targets.append(k)
        mk.push_sample(["stim/past"], timestamp=eeg.time_of(k) - 0.4 / SF)
        wait(lambda: len(trials) == 4, 5, what="trial for a past marker")
    finally:
        acq.stop()
        eeg.stop()
    off = -spec.start_offset  # the onset sample's column in the window
    for tr, k in zip(trials, targets, strict=True):
        assert tr.ok
        assert tr.data[0, off] == k  # 0 samples error
        np.testing.assert_array_equal(tr.data[0], np.arange(k - off, k - off + spec.n_times))
        assert tr.emitted_time >= tr.last_sample_time
    assert [t.stim_id for t in trials] == ["s0", "s1", "s2", "past"]
    assert acq.stats["samples_lost"] == 0
    assert acq.stats["trials"] == 4


def test_stream_killed_and_restarted_is_recovered(stream_id, wait):
    name, sid = stream_id
    mname, msid = unique_stream_id("mk")
    eeg = RampOutlet(name, sid, sfreq=SF).start()
    mk = marker_outlet(mname, msid)
    spec = _raw_spec()
    trials = []
    states = set()
    acq = Acquisition(
        LSLSource(name, source_id=sid, n_channels=8, sfreq=SF, timeout=5),
        LSLMarkerSource(mname, source_id=msid, timeout=5),
        Epocher(spec, MarkerMapper(), buffer_seconds=20),
        on_trial=trials.append,
    )
    try:
        acq.start()
        wait(lambda: acq.epocher.buffer.n_total > 100, 5, what="EEG before the loss")
        eeg.stop(delete=True)  # the amplifier's outlet disappears
        wait(
            lambda: states.add(acq.state) or acq.state in ("lost", "reconnecting"),
            10,
            what="state lost",
        )
        assert acq.running
        k_restart = eeg.k + int(0.6 * SF)  # 0.6 s of samples never sent
        eeg2 = RampOutlet(name, sid, sfreq=SF, t0=eeg.t0, k0=k_restart).start()
        try:
            wait(lambda: acq.state == "connected", 15, what="reconnection")
            n0 = acq.epocher.buffer.n_total
            wait(lambda: acq.epocher.buffer.n_total > n0 + 200, 5, what="EEG after reconnection")
            k = eeg2.k + 100
            mk.push_sample(["stim/after"], timestamp=eeg2.time_of(k))
            wait(lambda: len(trials) == 1, 5, what="trial after reconnection")
        finally:
            acq.stop()
            eeg2.stop()
    finally:
        eeg.stop()
    ramp, _ = acq.epocher.buffer.latest(acq.epocher.buffer.capacity)
    got = ramp[0]
    missing = int((np.diff(got) - 1).sum())  # samples absent from what was received
    assert missing >= int(0.6 * SF)
    assert acq.stats["samples_lost"] == missing
    assert trials[0].ok and trials[0].data[0, -spec.start_offset] == k
    assert acq.source.n_reconnects == 1


def test_wrong_channel_count_is_a_clear_error(stream_id):
    name, sid = stream_id
    eeg = RampOutlet(name, sid, n_channels=8, sfreq=SF)
    try:
        src = LSLSource(name, source_id=sid, n_channels=128, sfreq=1000.0, timeout=5)
        with pytest.raises(
            ValueError,
            match=r"has 8 channels but 128 are expected and a sampling rate of 500.0 Hz but 1000.0 Hz",
        ):
            src.connect()
    finally:
        eeg.stop()


def test_missing_stream_is_a_clear_error():
    name, sid = unique_stream_id("nothing")
    with pytest.raises(RuntimeError, match=f"no LSL stream name='{name}'.*found within 0.5 s"):
        LSLSource(name, source_id=sid, timeout=0.5).connect()
