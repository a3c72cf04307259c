"""The live virtual subject over real loopback LSL streams."""

from __future__ import annotations

import time
import uuid

import mne
import numpy as np
import pytest
from mne_lsl.lsl import StreamInfo, StreamInlet, StreamOutlet, local_clock, resolve_streams

from bci_app.acquisition.virtual_subject import VirtualSubject
from bci_app.simulation import SubjectModel, standard_montage_128


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


class _Reader:
    """Pulls everything from an EEG inlet (copies: mne-lsl reuses its buffers)."""

    def __init__(self, name: str) -> None:
        found = resolve_streams(timeout=10, name=name)
        assert found, f"stream {name!r} not found"
        self.sinfo = found[0]
        self.inlet = StreamInlet(found[0])
        self.inlet.open_stream(timeout=10)
        self.data: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []

    def pull(self) -> None:
        d, t = self.inlet.pull_chunk(timeout=0.05, max_samples=10_000)
        if len(t):
            self.data.append(np.array(d))
            self.ts.append(np.array(t))

    def until(self, t_end: float, timeout: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
        _wait(
            lambda: (self.pull(), bool(self.ts) and self.ts[-1][-1] >= t_end)[1],
            timeout,
            "EEG samples",
        )
        return np.concatenate(self.data).T, np.concatenate(self.ts)

    def close(self) -> None:
        self.inlet.close_stream()


@pytest.fixture
def marker_outlet():
    name = _unique("test-vs-markers")
    outlet = StreamOutlet(StreamInfo(name, "Markers", 1, 0.0, "string", _unique("src")))
    yield name, outlet
    del outlet


def test_stream_looks_like_a_128_channel_amplifier():
    name = _unique("test-vs-eeg")
    vs = VirtualSubject(name=name, source_id=_unique("src"), seed=1)
    with vs:
        reader = _Reader(name)
        sinfo = reader.inlet.get_sinfo()
        assert sinfo.n_channels == 128 and sinfo.sfreq == 1000.0
        assert sinfo.stype == "EEG" and sinfo.source_id == vs.source_id
        assert sinfo.dtype == np.float32
        assert sinfo.get_channel_names() == standard_montage_128()
        assert set(sinfo.get_channel_types()) == {"eeg"}
        info = sinfo.get_channel_info()
        assert info.get_montage() is not None  # electrode positions travel with the stream
        data, ts = reader.until(local_clock() + 0.5)
        reader.close()
    vs.check()
    assert not vs.running
    assert data.shape[0] == 128 and data.shape[1] == len(ts) > 400
    np.testing.assert_allclose(np.diff(ts), 1e-3, atol=1e-7)  # no jitter, no gap
    assert np.isfinite(data).all()
    assert 2e-6 < np.median(data.std(axis=1)) < 200e-6


def test_evoked_response_appears_at_marker_time(marker_outlet):
    mname, outlet = marker_outlet
    name = _unique("test-vs-eeg")
    stim = "c12_i03"
    snr = 8.0
    vs = VirtualSubject(name=name, source_id=_unique("src"), markers_name=mname, snr=snr, seed=2)
    n_markers, soa = 16, 0.3
    with vs:
        vs.wait_for_markers(timeout=15)
        reader = _Reader(name)
        reader.until(local_clock())  # data are flowing
        times = []
        for i in range(n_markers):
            # presenters stamp the (future) flip time; it reaches the subject in time
            t = local_clock() + 1.0
            outlet.push_sample([f"stim/{stim}"], t)
            times.append(t)
            _wait(lambda i=i: vs.stats["markers"] > i, 5.0, f"marker {i}")
            time.sleep(
                soa
            )  # the stimulus-onset asynchrony of this session, not a wait on a condition
        data, ts = reader.until(times[-1] + 1.0)
        reader.close()
    vs.check()
    assert vs.stats["markers"] == n_markers and vs.stats["markers_late"] == 0

    expected = SubjectModel(snr=snr).evoked(stim)
    L = expected.shape[1]

    def average(lag: int) -> np.ndarray:
        eps = []
        for t in times:
            k = int(np.searchsorted(ts, t - 0.0005)) + lag
            ep = data[:, k : k + L]
            eps.append(ep - ep.mean(axis=1, keepdims=True))
        return np.mean(eps, axis=0)

    def corr(lag: int) -> float:
        e = expected - expected.mean(axis=1, keepdims=True)
        return float(np.corrcoef(average(lag).ravel(), e.ravel())[0, 1])

    r0 = corr(0)
    assert r0 > 0.6, (
        f"average of {n_markers} trials does not look like the evoked response (r={r0:.2f})"
    )
    lags = range(-30, 31, 3)
    best = max(lags, key=corr)
    assert abs(best) <= 6, f"evoked response found {best} ms away from the marker"
    assert corr(150) < r0 - 0.3


def test_late_markers_are_counted_and_scheduled_now(marker_outlet, caplog):
    mname, outlet = marker_outlet
    vs = VirtualSubject(name=_unique("test-vs-eeg"), source_id=_unique("src"), markers_name=mname)
    with vs:
        vs.wait_for_markers(timeout=15)
        t_late = local_clock() - 1.0
        outlet.push_sample(["stim/c00_i00"], t_late)
        outlet.push_sample(["not-a-stimulus"], local_clock())
        _wait(lambda: vs.stats["markers"] >= 2, 5.0, "markers")
    vs.check()
    assert vs.stats["markers_late"] == 1
    assert vs.stats["markers_unknown"] == 1
    ((_, sid, k),) = vs.events
    assert sid == "c00_i00"
    assert k > round((t_late - vs.t0) * vs.sfreq) + 900  # moved to "now", about 1 s later
    assert "after its sample was sent" in caplog.text


def test_injected_nan_burst_and_gap():
    name = _unique("test-vs-eeg")
    vs = VirtualSubject(name=name, source_id=_unique("src"))
    with vs:
        reader = _Reader(name)
        reader.until(local_clock())
        vs.inject_nan(0.05)
        vs.inject_gap(0.2)
        data, ts = reader.until(local_clock() + 0.6)
        reader.close()
    vs.check()
    nan_cols = ~np.isfinite(data).all(axis=0)
    assert 45 <= nan_cols.sum() <= 55
    assert np.isnan(data[:, nan_cols]).all()
    jumps = np.diff(ts)
    assert np.isclose(jumps.max(), 0.201, atol=2e-3), (
        f"largest step {jumps.max():.4f} s, expected a 0.2 s gap"
    )
    assert vs.stats["samples_skipped"] == 200
    with pytest.raises(ValueError, match="seconds"):
        vs.inject_gap(0)


def test_any_cap_rate_and_units_are_described_like_an_amplifier():
    """biosemi64 at 512 Hz in microvolts: labels, units and positions in the LSL description."""
    import pylsl

    name = _unique("test-vs-eeg64")
    vs = VirtualSubject(name=name, source_id=_unique("src"), seed=3, montage="biosemi64",
                        sfreq=512.0, units="uV", chunk_size=16)
    with vs:
        found = pylsl.resolve_byprop("name", name, timeout=10)
        assert found
        inlet = pylsl.StreamInlet(found[0])
        full = inlet.info(timeout=10)
        chans, ch = [], full.desc().child("channels").child("channel")
        while not ch.empty():
            chans.append((ch.child_value("label"), ch.child_value("unit"), ch.child_value("type")))
            ch = ch.next_sibling()
        reader = _Reader(name)
        sinfo = reader.inlet.get_sinfo()
        data, ts = reader.until(local_clock() + 0.5)
        reader.close()
        inlet.close_stream()
    vs.check()
    assert full.channel_count() == 64 and full.nominal_srate() == 512.0
    assert [c[0] for c in chans] == vs.ch_names == mne.channels.make_standard_montage(
        "biosemi64").ch_names
    assert {c[1] for c in chans} == {"microvolts"} and {c[2] for c in chans} == {"eeg"}
    assert sinfo.get_channel_info().get_montage() is not None  # mne-lsl reads the positions
    np.testing.assert_allclose(np.diff(ts), 1 / 512.0, atol=1e-7)
    assert 2.0 < np.median(data.std(axis=1)) < 200.0  # microvolts, not volts


def test_subject_changes_no_process_wide_state():
    """BLAS threads are the live session's business (session/realtime.py), not the subject's."""
    from threadpoolctl import threadpool_info

    def blas() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas()
    vs = VirtualSubject(name=_unique("test-vs-eeg"), source_id=_unique("src"))
    with vs:
        _wait(lambda: vs.stats["samples_pushed"] > 100, 10.0, "samples")
        during = blas()
    assert during == before
    with pytest.raises(ValueError, match=r"units must be one of"):
        VirtualSubject(units="furlongs")
    with pytest.raises(ValueError, match=r"unknown montage 'cap7'"):
        VirtualSubject(montage="cap7")
