"""Causal polyphase down-sampling: chunk-invariant, time-stamped at its own position."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.preprocessing import CausalResampler


def _signal(sf, seconds, t0=100.0):
    t = np.arange(int(sf * seconds)) / sf
    x = np.vstack([np.sin(2 * np.pi * 7 * t), np.cos(2 * np.pi * 13 * t + 0.3)])
    return x, t0 + t


def _truth(ts, t0=100.0):
    t = ts - t0
    return np.vstack([np.sin(2 * np.pi * 7 * t), np.cos(2 * np.pi * 13 * t + 0.3)])


@pytest.mark.parametrize(("sf_in", "sf_out"), [(1000, 500), (2048, 1000), (512, 256), (1000, 250)])
def test_chunks_equal_whole_and_samples_sit_at_their_timestamps(sf_in, sf_out):
    x, ts = _signal(sf_in, 3.0)
    whole, t_whole = CausalResampler(sf_in, sf_out, 2).process(x, ts)
    r = CausalResampler(sf_in, sf_out, 2)
    rng = np.random.default_rng(0)
    parts, stamps, s = [], [], 0
    while s < x.shape[1]:
        c = int(rng.integers(1, 60))
        y, t = r.process(x[:, s : s + c], ts[s : s + c])
        parts.append(y)
        stamps.append(t)
        s += c
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    np.testing.assert_array_equal(np.concatenate(stamps), t_whole)
    # one output per 1 / sf_out, stamped where its content is (the delay is latency only)
    np.testing.assert_allclose(np.diff(t_whole), 1.0 / sf_out, rtol=1e-6)
    settled = t_whole > ts[0] + 0.2
    np.testing.assert_allclose(whole[:, settled], _truth(t_whole[settled]), atol=2e-3)
    # what is still missing is the delay's worth of input
    assert ts[-1] - t_whole[-1] == pytest.approx(r.delay, abs=1.0 / sf_out + 1.0 / sf_in)


def test_delay_and_rates():
    assert CausalResampler(1000, 500, 1).delay == pytest.approx(0.020)
    assert CausalResampler(2048, 1000, 1).delay == pytest.approx(0.010)
    same = CausalResampler(500, 500, 3)
    assert same.delay == 0 and same.is_identity
    x = np.ones((3, 4))
    np.testing.assert_array_equal(same.process(x, np.arange(4.0))[0], x)
    with pytest.raises(ValueError, match="cannot up-sample 250 Hz to 500 Hz"):
        CausalResampler(250, 500, 1)
    with pytest.raises(ValueError, match=r"expected \(2, n_samples\)"):
        CausalResampler(1000, 500, 2).process(np.zeros((3, 5)))
