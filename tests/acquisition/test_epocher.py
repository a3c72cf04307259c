"""The epocher on its own: window arithmetic, marker/EEG order, rejects, ring buffer."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.acquisition.epocher import Epocher
from bci_app.acquisition.ring_buffer import RingBuffer
from bci_app.preprocessing import PreprocessingSpec, epoch_array
from bci_app.stimuli import MarkerMapper

SF = 100.0


def _spec(**kw):
    d = dict(
        sfreq=SF, ch_names=["ramp", "x"], tmin=-0.05, tmax=0.2, l_freq=None, h_freq=None, notch=None
    )
    d.update(kw)
    return PreprocessingSpec(**d)


def _feed(ep, n0, n1, t0=100.0, chunk=7, drop=()):
    trials = []
    for s in range(n0, n1, chunk):
        idx = np.array([i for i in range(s, min(n1, s + chunk)) if i not in drop])
        if idx.size == 0:
            continue
        data = np.vstack([idx.astype(float), np.sin(idx / 3.0)])
        trials += ep.push_data(data, t0 + idx / SF, arrival=float(s))
    return trials


def test_ring_buffer_keeps_last_samples():
    rb = RingBuffer(1, 10)
    for s in range(0, 35, 4):
        idx = np.arange(s, min(35, s + 4))
        rb.append(idx[None].astype(float), idx.astype(float), 0.0)
    assert rb.n_total == 35 and rb.first_index == 25
    d, ts, _, _ = rb.get(25, 35)
    np.testing.assert_array_equal(d[0], np.arange(25, 35))
    with pytest.raises(ValueError, match="not in the buffer"):
        rb.get(20, 30)


@pytest.mark.parametrize("marker_first", [True, False])
def test_marker_lands_on_its_sample(marker_first):
    ep = Epocher(_spec(), MarkerMapper(), buffer_seconds=5)
    k = 137
    t_m = 100.0 + k / SF + 0.3 / SF  # jitter below half a sample
    trials = ep.push_markers([("stim/a", t_m)]) if marker_first else []
    trials += _feed(ep, 0, 300)
    if not marker_first:
        trials += ep.push_markers([("stim/a", t_m)])
    assert len(trials) == 1
    tr = trials[0]
    assert tr.ok and tr.stim_id == "a" and tr.onset_sample == k
    np.testing.assert_array_equal(tr.data[0], np.arange(k - 5, k + 20))
    # emitted as soon as the window's last sample (k+19) arrived: chunk starting at 154
    if marker_first:
        assert tr.last_sample_time == 154.0


def test_live_equals_offline_with_filters():
    spec = _spec(l_freq=1.0, h_freq=30.0, notch=None, tmin=0.0, tmax=0.3)
    rng = np.random.default_rng(0)
    n = 2000
    x = rng.standard_normal((2, n))
    ts = 50.0 + np.arange(n) / SF
    onsets = [300, 700, 1234]
    ep = Epocher(spec, MarkerMapper(), buffer_seconds=5)
    ep.push_markers([(f"stim/{k}", ts[k]) for k in onsets])
    trials = []
    for s in range(0, n, 13):
        trials += ep.push_data(x[:, s : s + 13], ts[s : s + 13])
    off = epoch_array(x, onsets, [f"stim/{k}" for k in onsets], spec, MarkerMapper())
    assert [t.onset_sample for t in trials] == onsets
    np.testing.assert_allclose(np.stack([t.data for t in trials]), off.X, rtol=1e-5, atol=1e-6)


def test_rejects_gap_nan_and_incomplete():
    ep = Epocher(_spec(), MarkerMapper(), buffer_seconds=5)
    nan_at = 420
    trials = _feed(ep, 0, 250, drop=set(range(200, 210)))  # 10 samples lost
    assert ep.samples_lost == 10
    data = np.vstack([np.arange(250, 600.0), np.zeros(350)])
    data[1, nan_at - 250] = np.nan
    trials += ep.push_data(data, 100.0 + np.arange(250, 600) / SF)
    trials += ep.push_markers(
        [
            ("stim/gap", 100.0 + 195 / SF),
            ("stim/nan", 100.0 + 410 / SF),
            ("stim/ok", 100.0 + 500 / SF),
            ("other", 100.0 + 510 / SF),
        ]
    )
    trials += _feed(ep, 600, 1000)
    by_id = {t.stim_id: t.reject_reason for t in trials}
    assert by_id == {"gap": "gap", "nan": "nan", "ok": None}
    assert ep.unknown_markers == 1
    # a marker older than the buffer (5 s) -> incomplete_window
    late = ep.push_markers([("stim/late", 100.0 + 10 / SF)])
    assert [t.reject_reason for t in late] == ["incomplete_window"]
    assert ep.rejected == {"gap": 1, "nan": 1, "incomplete_window": 1}


def test_wrong_chunk_shape_is_clear():
    ep = Epocher(_spec(), MarkerMapper())
    with pytest.raises(ValueError, match=r"shape \(3, 5\); expected \(2, n_samples\)"):
        ep.push_data(np.zeros((3, 5)), np.arange(5.0))
