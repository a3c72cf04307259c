from __future__ import annotations

import mne
import numpy as np
import pytest

from bci_app.preprocessing import (
    CausalFilter,
    PreprocessingSpec,
    compute_norm,
    epoch_array,
    epoch_raw,
    normalise,
)
from bci_app.stimuli import MarkerMapper


def _spec(**kw):
    base = dict(sfreq=250.0, ch_names=["a", "b", "c"], tmin=0.0, tmax=0.2)
    base.update(kw)
    return PreprocessingSpec(**base)


def test_spec_roundtrip_and_n_times():
    spec = PreprocessingSpec(
        ch_names=[f"c{i}" for i in range(4)], norm_mean=[0] * 4, norm_std=[1] * 4
    )
    assert spec.n_times == 440
    again = PreprocessingSpec.from_dict(spec.to_dict())
    assert again == spec
    with pytest.raises(ValueError, match="unknown PreprocessingSpec keys"):
        PreprocessingSpec.from_dict({"sfreq": 1.0, "bogus": 2})
    with pytest.raises(ValueError, match="3 values but the spec has 4 channels"):
        PreprocessingSpec(ch_names=list("abcd"), norm_mean=[0, 0, 0], norm_std=[1, 1, 1])


def test_causal_filter_chunks_equal_whole():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2000)) + 5.0
    spec = _spec(l_freq=1.0, h_freq=40.0, notch=50.0)
    whole = CausalFilter(spec).process(x)
    f = CausalFilter(spec)
    parts = [f.process(x[:, i : i + 37]) for i in range(0, 2000, 37)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-10, atol=1e-12)
    # causal: changing the future does not change the past
    y = x.copy()
    y[:, 1500:] += 100
    np.testing.assert_allclose(CausalFilter(spec).process(y)[:, :1500], whole[:, :1500])
    # the band-pass removes the DC offset
    assert abs(whole[:, 1000:].mean()) < 0.1


def test_causal_filter_nan_does_not_poison_state():
    spec = _spec()
    x = np.random.default_rng(1).standard_normal((3, 1000))
    x[1, 100] = np.nan
    y = CausalFilter(spec).process(x)
    assert np.isfinite(y).all()


def test_normalise_and_compute_norm():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 3, 50)) * np.array([1.0, 2.0, 3.0])[:, None] + 7
    mean, std = compute_norm(X)
    spec = _spec(norm_mean=mean, norm_std=std)
    Z = normalise(X, spec)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z.mean(axis=(0, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(Z.std(axis=(0, 2)), 1, atol=1e-4)


def test_epoch_array_window_arithmetic_and_rejects():
    spec = _spec(l_freq=None, h_freq=None, notch=None, tmin=-0.02, tmax=0.1)  # 30 samples
    n = 1000
    ramp = np.tile(np.arange(n, dtype=float), (3, 1))
    ramp[2, 600] = np.nan
    ep = epoch_array(
        ramp,
        [100, 590, 2, 990, 300],
        ["stim/a", "stim/b", "stim/c", "stim/d", "junk"],
        spec,
        MarkerMapper(),
    )
    assert ep.stim_ids == ["a", "b", "c", "d"]
    assert ep.n_unknown == 1
    assert ep.reject == [None, "nan", "incomplete_window", "incomplete_window"]
    assert ep.X.shape == (4, 3, 30)
    np.testing.assert_array_equal(ep.X[0, 0], np.arange(95, 125))
    assert len(ep.good()) == 1


def test_epoch_raw_uses_nearest_sample_and_gap_annotations():
    sfreq = 100.0
    n = 500
    data = np.tile(np.arange(n, dtype=float), (2, 1))
    raw = mne.io.RawArray(data, mne.create_info(["x", "y"], sfreq, "eeg"), verbose="error")
    # 1.234 s -> nearest sample 123; 2.006 s -> 201 (2.005 would be a tie)
    raw.set_annotations(
        mne.Annotations(
            [1.234, 2.006, 3.0, 3.1], [0, 0, 0.05, 0], ["stim/p", "stim/q", "BAD_gap", "stim/r"]
        )
    )
    spec = PreprocessingSpec(
        sfreq=sfreq, ch_names=["y", "x"], tmin=0.0, tmax=0.2, l_freq=None, h_freq=None, notch=None
    )
    ep = epoch_raw(raw, spec, MarkerMapper())
    assert list(ep.onset_samples) == [123, 201, 310]
    assert ep.X[0, 0, 0] == 123
    assert ep.reject == [None, None, None]
    spec2 = PreprocessingSpec(**{**spec.to_dict(), "tmin": -0.2})
    ep2 = epoch_raw(raw, spec2, MarkerMapper())
    assert ep2.reject == [None, None, "gap"]
    with pytest.raises(ValueError, match="recording sampled at 100.0 Hz but the spec expects 250"):
        epoch_raw(raw, PreprocessingSpec(sfreq=250.0, ch_names=["x"]), MarkerMapper())
    with pytest.raises(ValueError, match="lacks 1 channel"):
        epoch_raw(raw, PreprocessingSpec(sfreq=100.0, ch_names=["x", "zz"]), MarkerMapper())
