"""Streams made elsewhere: microvolts with channel metadata, extra channels in any order,
higher and lower rates, no units; all over real LSL on loopback (plain pylsl outlets)."""

from __future__ import annotations

import logging
import time

import mne
import numpy as np
import pytest
from pylsl import local_clock

from bci_app.acquisition import Epocher, LSLSource
from bci_app.preprocessing import CausalResampler, PreprocessingSpec, epoch_raw
from bci_app.stimuli import MarkerMapper
from tests.acquisition.lsl_helpers import eeg_outlet
from tests.conftest import unique_stream_id

EEG = ["Fz", "Cz", "Pz", "Oz", "C3", "C4", "P3", "P4"]
# the amplifier's order: EOG and a trigger among the EEG, some names in other case
THIRD = ["EOG1", "cz", "FZ", "P4", "TRIGGER", "Oz", "c3", "Pz", "EOG2", "C4", "P3"]


def _eeg(n, sf, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sf
    x = rng.standard_normal((len(EEG), n)) * 1e-5 + 2e-5 * np.sin(2 * np.pi * 10 * t)
    return x.astype(np.float32)  # what goes over the wire


def _push(outlet, data, ts, chunk=25):
    for s in range(0, data.shape[1], chunk):
        outlet.push_chunk(
            np.ascontiguousarray(data[:, s : s + chunk].T), timestamp=ts[s : s + chunk]
        )


def _collect(source, n_expected, timeout=20.0):
    parts, stamps, got = [], [], 0
    deadline = time.monotonic() + timeout
    while got < n_expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"received {got} of {n_expected} samples within {timeout} s")
        x, t = source.read()
        if t.size:
            parts.append(x)
            stamps.append(t)
            got += t.size
        else:
            time.sleep(0.005)
    return np.concatenate(parts, axis=1), np.concatenate(stamps)


def _third_party_data(x):
    rng = np.random.default_rng(1)
    n = x.shape[1]
    rows, units = [], []
    for i, name in enumerate(THIRD):
        if name.startswith("EOG"):
            rows.append(rng.standard_normal(n) * 80.0)
            units.append("microvolts")
        elif name == "TRIGGER":
            rows.append((np.arange(n) % 100 == 0).astype(float))
            units.append("none")
        else:
            rows.append(x[[e.lower() for e in EEG].index(name.lower())] * 1e6)
            units.append(("microvolts", "uV", "\u00b5V")[i % 3])
    return np.vstack(rows).astype(np.float32), units


def _connect(*sources):
    for s in sources:
        s.connect()


def test_microvolt_stream_with_extra_channels_gives_the_same_epochs(tmp_path):
    sf, n = 250.0, 3000
    x = _eeg(n, sf)
    third, units = _third_party_data(x)
    (n1, s1), (n2, s2) = unique_stream_id("clean"), unique_stream_id("amp")
    clean_out = eeg_outlet(n1, s1, EEG, sf, units="volts")
    amp_out = eeg_outlet(n2, s2, THIRD, sf, units=units, stype="ExG")
    clean = LSLSource(n1, ch_names=EEG, sfreq=sf, timeout=5)
    amp = LSLSource(n2, ch_names=EEG, sfreq=sf, timeout=5)
    _connect(clean, amp)
    try:
        assert clean_out.wait_for_consumers(5) and amp_out.wait_for_consumers(5)
        ts = local_clock() + np.arange(n) / sf
        _push(clean_out, x, ts)
        _push(amp_out, third, ts)
        xc, tc = _collect(clean, n)
        xa, ta = _collect(amp, n)
    finally:
        clean.disconnect()
        amp.disconnect()
    assert amp.ch_names == EEG and amp.sfreq == sf and amp.delay == 0
    assert amp.stream_ch_names == THIRD and amp.units_warning is None
    np.testing.assert_allclose(ta, tc, atol=1e-4)
    np.testing.assert_allclose(xa, x.astype(np.float64), rtol=1e-6, atol=1e-12)

    spec = PreprocessingSpec(sfreq=sf, ch_names=EEG, tmin=-0.1, tmax=0.5)  # 1-40 Hz + notch
    onsets = np.arange(400, 2600, 300)

    def live_epochs(data, stamps):
        ep = Epocher(spec, MarkerMapper(), buffer_seconds=15, clock=lambda: 0.0)
        trials = ep.push_markers([(f"stim/k{k}", stamps[k] + 0.2 / sf) for k in onsets])
        for s in range(0, data.shape[1], 37):
            trials += ep.push_data(data[:, s : s + 37], stamps[s : s + 37])
        return trials

    tr_clean, tr_amp = live_epochs(xc, tc), live_epochs(xa, ta)
    # the FIF path offline: the clean data as a recording with annotations
    raw = mne.io.RawArray(x.astype(np.float64), mne.create_info(EEG, sf, "eeg"), verbose="error")
    raw.set_annotations(mne.Annotations((onsets + 0.2) / sf, 0, [f"stim/k{k}" for k in onsets]))
    fname = tmp_path / "session_raw.fif"
    raw.save(fname, verbose="error")
    offline = epoch_raw(
        mne.io.read_raw_fif(fname, preload=True, verbose="error"), spec, MarkerMapper()
    )

    assert [t.onset_sample for t in tr_amp] == [t.onset_sample for t in tr_clean] == list(onsets)
    assert list(offline.onset_samples) == list(onsets)
    assert all(t.ok for t in tr_amp + tr_clean)
    X_amp, X_clean = np.stack([t.data for t in tr_amp]), np.stack([t.data for t in tr_clean])
    scale = np.abs(X_clean).max()
    np.testing.assert_allclose(X_amp, X_clean, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(X_amp, offline.X, rtol=1e-5, atol=1e-6 * scale)


def test_higher_rate_is_resampled_causally_and_the_delay_reported(caplog):
    sf_in, sf_out, n = 1000.0, 500.0, 4000
    x = _eeg(n, sf_in, seed=2)
    third, units = _third_party_data(x)
    name, sid = unique_stream_id("fast")
    out = eeg_outlet(name, sid, THIRD, sf_in, units=units)
    src = LSLSource(name, ch_names=EEG, sfreq=sf_out, timeout=5)
    with caplog.at_level(logging.WARNING, logger="bci_app.acquisition"):
        src.connect()
    ts = local_clock() + np.arange(n) / sf_in
    expect, t_expect = CausalResampler(sf_in, sf_out, len(EEG)).process(x.astype(np.float64), ts)
    try:
        assert out.wait_for_consumers(5)
        _push(out, third, ts)
        y, t = _collect(src, expect.shape[1])
    finally:
        src.disconnect()
    assert src.sfreq == sf_out and src.stream_sfreq == sf_in
    assert src.delay == pytest.approx(0.020)
    assert "1000 Hz -> 500 Hz (causal polyphase) adds 20.0 ms of delay" in caplog.text
    np.testing.assert_allclose(t, t_expect, atol=1e-4)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-11)


def test_lower_rate_is_an_error_naming_both():
    name, sid = unique_stream_id("slow")
    out = eeg_outlet(name, sid, EEG, 250.0)
    try:
        with pytest.raises(ValueError, match=r"250.0 Hz but 500.0 Hz is expected \(a lower rate"):
            LSLSource(name, ch_names=EEG, sfreq=500.0, timeout=5).connect()
    finally:
        del out


def test_missing_channel_is_an_error_naming_it():
    name, sid = unique_stream_id("nooz")
    out = eeg_outlet(name, sid, [c for c in THIRD if c != "Oz"], 250.0)
    src = LSLSource(name, ch_names=EEG, sfreq=250.0, timeout=5)
    try:
        with pytest.raises(
            ValueError, match=rf"EEG stream '{name}' lacks 1 channel\(s\) the model needs: Oz;"
        ):
            src.connect()
        assert src._inlet is None and src.state == "disconnected"
    finally:
        del out


def test_implausible_amplitudes_without_units_warn_once(caplog):
    sf, n = 250.0, 1000
    x = _eeg(n, sf, seed=3)
    name, sid = unique_stream_id("nounits")
    out = eeg_outlet(name, sid, EEG, sf)  # microvolts, but the metadata does not say so
    src = LSLSource(name, ch_names=EEG, sfreq=sf, timeout=5)
    fixed_name, fixed_sid = unique_stream_id("nounits-uv")
    fixed_out = eeg_outlet(fixed_name, fixed_sid, EEG, sf)
    fixed = LSLSource(fixed_name, ch_names=EEG, sfreq=sf, units="uV", timeout=5)
    _connect(src, fixed)
    try:
        assert out.wait_for_consumers(5) and fixed_out.wait_for_consumers(5)
        ts = local_clock() + np.arange(n) / sf
        with caplog.at_level(logging.WARNING, logger="bci_app.acquisition"):
            _push(out, x * 1e6, ts)
            _push(fixed_out, x * 1e6, ts)
            got, _ = _collect(src, n)
            got_fixed, _ = _collect(fixed, n)
    finally:
        src.disconnect()
        fixed.disconnect()
    warnings = [
        r.getMessage() for r in caplog.records if "declares no channel units" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert f"EEG stream '{name}' declares no channel units" in warnings[0]
    assert "pass --units uV" in warnings[0] and src.units_warning == warnings[0]
    np.testing.assert_allclose(got, x * 1e6, rtol=1e-6)  # read as volts, as told
    np.testing.assert_allclose(got_fixed, x, rtol=1e-6)  # --units uV: volts inside the app
    assert fixed.units_warning is None


def test_stream_without_labels(caplog):
    from pylsl import StreamInfo, StreamOutlet, cf_float32

    name, sid = unique_stream_id("nolabels")
    out = StreamOutlet(StreamInfo(name, "EEG", 3, 250.0, cf_float32, sid))
    try:
        with caplog.at_level(logging.WARNING, logger="bci_app.acquisition"):
            same = LSLSource(name, ch_names=["Fz", "Cz", "Pz"], sfreq=250.0, timeout=5)
            same.connect()
            same.disconnect()
        assert same.ch_names == ["Fz", "Cz", "Pz"]
        assert "has no channel labels; taking its 3 channels as Fz, Cz, Pz... in order" in caplog.text
        as_is = LSLSource(name, timeout=5)
        as_is.connect()
        as_is.disconnect()
        assert as_is.ch_names == ["EEG000", "EEG001", "EEG002"]
        with pytest.raises(ValueError, match="has no channel labels .* and 3 channels, so the 2"):
            LSLSource(name, ch_names=["Fz", "Cz"], sfreq=250.0, timeout=5).connect()
    finally:
        del out
    with pytest.raises(ValueError, match="units='microvolts'; expected one of uV, mV, V"):
        LSLSource(name, units="microvolts")
