"""Dejitter: stamps re-fitted against the sample count; gaps decided once, at the source.

Unit tests on simulated stamp sequences (the bench's fault profiles), the epocher fed with
them, a real pylsl outlet on loopback that stamps bursts on arrival, and the flag.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from bci_app.acquisition import Acquisition, Epocher, LSLMarkerSource, LSLSource
from bci_app.acquisition.bench import PROFILES, simulate_stream
from bci_app.acquisition.dejitter import Dejitter, count_lost
from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import MarkerMapper
from tests.conftest import unique_stream_id

SF = 1000.0


def _dejitter(stream, sfreq=SF, **kw):
    """Feed the stream's chunks one update each; the corrected stamps of what came out."""
    dj = Dejitter(sfreq, **kw)
    out = [dj.update(stream.stamps[i0:i1]) for i0, i1 in stream.chunks]
    return dj, np.concatenate(out)


def _errors(stream, out, sfreq=SF):
    """Corrected stamp minus the true time of each sample released, in samples."""
    return (out - stream.true_times[stream.kept[: out.size]]) * sfreq


@pytest.mark.parametrize("profile", ["bursty", "jitter", "drift", "late", "chunks", "wireless"])
def test_fault_profiles_give_one_period_apart_and_no_gaps(profile):
    stream = simulate_stream(PROFILES[profile], int(60 * SF), SF, t0=100.0)
    dj, out = _dejitter(stream)
    assert out.size >= stream.kept.size - 300  # all out, but what the last packets still hold
    assert dj.samples_lost == 0 and not dj.gaps
    dt = np.diff(out) * SF
    assert dt.min() > 0 and dt.max() < 1.45  # increasing, and nothing a consumer reads as a gap
    assert count_lost(np.diff(out), SF).sum() == 0
    err = _errors(stream, out)
    assert np.abs(err[int(2 * SF) :]).max() <= 1.0  # within a sample of the truth
    assert np.median(np.abs(err)) <= 0.5
    # raw, the same stamps read as lost samples (except device-stamped clean streams)
    assert count_lost(np.diff(stream.stamps), SF).sum() > 0


@pytest.mark.parametrize("ppm", [150.0, -200.0])
def test_clock_drift_is_fitted(ppm):
    sf = 500.0
    prof = replace(PROFILES["wireless"], ppm=ppm)
    stream = simulate_stream(prof, int(600 * sf), sf, t0=50.0)  # 10 minutes: 90-120 ms of drift
    dj, out = _dejitter(stream, sf)
    assert abs(dj.clock_ppm - ppm) < 10
    err = _errors(stream, out, sf)
    assert np.abs(err[int(5 * sf) :]).max() <= 0.5
    assert dj.samples_lost == 0
    # the raw stamps drift as well: nominal-rate stamps from the first one would be 50+ samples off
    nominal = stream.stamps[0] + np.arange(stream.kept.size) / sf
    assert np.abs(nominal - stream.true_times[stream.kept]).max() * sf > 40


def test_real_gap_of_50_samples_is_counted_as_50():
    prof = replace(PROFILES["gap"], gap_every_s=10.0)
    stream = simulate_stream(prof, int(45 * SF), SF, t0=10.0)
    assert len(stream.dropped) == 4
    dj, out = _dejitter(stream)
    assert dj.samples_lost == 200
    # each gap is placed before the first sample after it, in output (received) order
    expected = [(int(np.searchsorted(stream.kept, a)), n) for a, n in stream.dropped]
    assert list(dj.gaps) == expected
    lost = count_lost(np.diff(out), SF)
    assert lost.sum() == 200  # the stamps say the same to every consumer
    assert [int(i) + 1 for i in np.nonzero(lost)[0]] == [i for i, _ in expected]
    assert np.abs(_errors(stream, out)[int(2 * SF) :]).max() <= 1.0


def test_gap_of_a_few_samples_and_late_burst_told_apart():
    """A 30 ms late burst is no gap; 3 samples really missing are 3 lost."""
    sf = 500.0
    n = int(10 * sf)
    true = 5.0 + np.arange(n) / sf
    kept = np.setdiff1d(np.arange(n), np.arange(2700, 2703))
    dj = Dejitter(sf)
    out, bursts = [], [kept[i : i + 9] for i in range(0, kept.size, 9)]
    for b, idx in enumerate(bursts):
        late = 0.03 if b == 100 else 0.0
        out.append(dj.update(np.full(idx.size, true[idx[-1]] + 2e-4 + late)))
    out = np.concatenate(out)
    assert dj.samples_lost == 3 and list(dj.gaps) == [(2700, 3)]
    assert np.abs((out - true[kept[: out.size]]) * sf).max() <= 0.5


def test_backlog_at_start_does_not_bend_the_fit():
    """The first second arrives at once (a driver catching up): once samples come on time,
    the fit starts again from them instead of taking the backlog for a fast clock."""
    sf = 500.0
    stream = simulate_stream(PROFILES["bursty"], int(30 * sf), sf, t0=20.0)
    stamps = stream.stamps.copy()
    stamps[: int(sf)] = np.maximum(stamps[: int(sf)], 20.0 + 1.2)  # all held up until 1.2 s
    dj = Dejitter(sf)
    out = np.concatenate([dj.update(stamps[i0:i1]) for i0, i1 in stream.chunks])
    assert dj.samples_lost == 0 and dj.n_refits >= 1
    assert abs(dj.clock_ppm) < 20
    assert np.all(np.diff(out) > 0) and count_lost(np.diff(out), sf).sum() == 0
    err = _errors(stream, out, sf)
    assert np.abs(err[int(4 * sf) :]).max() <= 0.5


def test_counter_decides_gaps_without_holding():
    sf = 250.0
    counts = np.concatenate([np.arange(0, 1000), np.arange(1050, 2000)]) + 7  # 50 lost
    true = 3.0 + np.arange(2000) / sf  # true time of sample number c - 7
    rng = np.random.default_rng(0)
    dj = Dejitter(sf)
    outs = []
    for i in range(0, counts.size, 4):
        c = counts[i : i + 4]
        arrival = true[c[-1] - 7] + rng.exponential(2e-3)
        got = dj.update(np.full(c.size, arrival), counts=c)
        assert got.size == c.size  # nothing held
        outs.append(got)
    out = np.concatenate(outs)
    assert dj.samples_lost == 50 and list(dj.gaps) == [(1000, 50)]
    assert count_lost(np.diff(out), sf).sum() == 50
    assert np.abs((out - true[counts - 7]) * sf).max() <= 1.0
    with pytest.raises(ValueError, match="counts must increase"):
        dj.update(np.array([100.0]), counts=np.array([5]))


def test_restart_counts_the_junction_and_process_keeps_data_with_stamps():
    sf = 100.0
    dj = Dejitter(sf)
    data = np.arange(300, dtype=float)[None]
    out_d, out_t = dj.process(data[:, :200], 10.0 + np.arange(200) / sf)
    dj.restart()  # the stream was lost; it comes back 50 samples later
    d2, t2 = dj.process(data[:, 200:], 10.0 + np.arange(250, 350) / sf)
    np.testing.assert_array_equal(np.concatenate([out_d, d2], axis=1), data)
    assert dj.samples_lost == 50 and list(dj.gaps) == [(200, 50)]
    np.testing.assert_allclose(np.concatenate([out_t, t2]), 10.0 + np.r_[0:200, 250:350] / sf)


def test_held_samples_come_out_with_their_data_in_order():
    sf = 1000.0
    stream = simulate_stream(PROFILES["gap"], int(12 * sf), sf, t0=1.0)
    dj = Dejitter(sf)
    got_d, got_t = [], []
    for i0, i1 in stream.chunks:
        d, t = dj.process(stream.kept[None, i0:i1].astype(float), stream.stamps[i0:i1])
        assert d.shape[1] == t.size
        got_d.append(d)
        got_t.append(t)
    d = np.concatenate(got_d, axis=1)[0]
    np.testing.assert_array_equal(d, stream.kept[: d.size])
    assert dj.samples_lost == sum(n for _, n in stream.dropped)


def test_epocher_aligned_with_dejitter_and_gap_rejects_without():
    """The epocher reads the dejittered stamps: windows on the true sample, no false gap;
    raw arrival stamps reject (nearly) everything as a gap."""
    spec = PreprocessingSpec(
        sfreq=SF, ch_names=["n", "x"], tmin=0.0, tmax=0.1, l_freq=None, h_freq=None, notch=None
    )
    prof = replace(PROFILES["gap"], gap_every_s=6.0)
    stream = simulate_stream(prof, int(20 * SF), SF, t0=1000.0)
    marks = [int((0.5 + 0.25 * i) * SF) + i % 9 for i in range(70)]
    results = {}
    for on in (True, False):
        ep = Epocher(spec, MarkerMapper(), buffer_seconds=5, clock=lambda: 0.0)
        ep.push_markers([(f"stim/{k}", float(stream.true_times[k])) for k in marks])
        dj = Dejitter(SF) if on else None
        trials = []
        for i0, i1 in stream.chunks:
            x = np.vstack([stream.kept[i0:i1], np.zeros(i1 - i0)]).astype(float)
            ts = stream.stamps[i0:i1]
            if dj is not None:
                x, ts = dj.process(x, ts)
            if ts.size:
                trials += ep.push_data(x, ts, arrival=0.0)
        results[on] = (trials, ep)
    trials, ep = results[True]
    assert ep.samples_lost == sum(n for _, n in stream.dropped) == 150
    for tr in trials:
        k = int(tr.stim_id)
        touches = any(a - spec.n_times <= k < a + n for a, n in stream.dropped)
        assert (tr.reject_reason == "gap") == touches, (k, tr.reject_reason)
        if tr.ok:
            assert tr.data[0, 0] == k  # the window starts on the marker's sample
    trials, ep = results[False]
    assert sum(t.reject_reason == "gap" for t in trials) > 50 and ep.samples_lost > 1000


def test_wireless_amplifier_over_loopback_lsl(wait):
    """A pylsl outlet fed like a wireless amplifier: bursts of 9 pushed without a time stamp
    (liblsl stamps them on arrival), at wall-clock pace from a clock 150 ppm fast, every
    25th burst 30 ms late (the next ones queue behind it), one real loss of 54 samples (6
    bursts); markers on a second outlet at the true time of known samples. Read with
    dejitter: no false gap, 54 samples lost, windows on the true sample; without: false gaps."""
    from pylsl import StreamInfo, StreamOutlet, cf_float32, local_clock

    from tests.acquisition.lsl_helpers import marker_outlet

    sf = 500.0
    name, sid = unique_stream_id("dj-eeg")
    mname, msid = unique_stream_id("dj-mk")
    info = StreamInfo(name, "EEG", 2, sf, cf_float32, sid)
    info.set_channel_labels(["n", "x"])
    eeg = StreamOutlet(info, chunk_size=0)
    mk = marker_outlet(mname, msid)
    spec = PreprocessingSpec(
        sfreq=sf, ch_names=["n", "x"], tmin=0.0, tmax=0.2, l_freq=None, h_freq=None, notch=None
    )
    trials = {True: [], False: []}
    acqs = {
        on: Acquisition(
            LSLSource(name, source_id=sid, n_channels=2, sfreq=sf, timeout=5, dejitter=on),
            LSLMarkerSource(mname, source_id=msid, timeout=5),
            Epocher(spec, MarkerMapper(), buffer_seconds=10),
            on_trial=trials[on].append,
        )
        for on in (True, False)
    }
    n = int(8 * sf)
    lost = set(range(9 * 222, 9 * 228))  # 54 samples from 3.996 s on
    marks = [int((0.6 + 0.37 * i) * sf) for i in range(19)]
    stop = threading.Event()
    true = np.zeros(n)

    def amplifier():
        ready = 0.0
        mi = 0
        for b in range(n // 9):
            idx = [i for i in range(9 * b, 9 * b + 9) if i not in lost]
            due = true[9 * b + 8] + (0.03 if b % 25 == 24 else 0.0)
            ready = max(ready, due)
            while mi < len(marks) and true[marks[mi]] <= ready:
                mk.push_sample([f"stim/{marks[mi]}"], timestamp=float(true[marks[mi]]))
                mi += 1
            wait_s = ready - local_clock()
            if wait_s > 0 and stop.wait(wait_s):
                return
            for i in idx:  # stamped by liblsl as they are pushed: on arrival
                eeg.push_sample([float(i), 0.0])

    for acq in acqs.values():
        acq.start()
    pusher = threading.Thread(target=amplifier, daemon=True)
    try:
        assert eeg.wait_for_consumers(5) and mk.wait_for_consumers(5)
        true[:] = local_clock() + 0.2 + np.arange(n) / sf / (1 + 150e-6)  # when each is taken
        pusher.start()
        pusher.join(15)
        wait(lambda: all(len(t) == len(marks) for t in trials.values()), 5, what="all trials")
    finally:
        stop.set()
        for acq in acqs.values():
            acq.stop()
    # the windows [k, k + n_times) that hold the gap or border on it
    touching = {k for k in marks if any(k - 1 <= i <= k + spec.n_times for i in lost)}
    on_trials = trials[True]
    assert acqs[True].stats["samples_lost"] == 54
    for tr in on_trials:
        k = int(tr.stim_id)
        if k in touching:
            assert tr.reject_reason == "gap"
        else:
            assert tr.ok, (k, tr.reject_reason)
            assert abs(tr.data[0, 0] - k) <= 1  # within a sample of the truth
    off_trials = trials[False]
    false_gaps = sum(
        t.reject_reason == "gap" and int(t.stim_id) not in touching for t in off_trials
    )
    assert false_gaps >= len(marks) // 2
    assert acqs[False].stats["samples_lost"] > 1000


def test_no_dejitter_flag_reaches_the_sources():
    from bci_app.cli import build_parser
    from bci_app.session.wiring import open_sources, source_options

    parser = build_parser()
    for argv in (
        ["live", "--source", "lsl:Amp"],
        ["record", "--source", "lsl:Amp", "--out", "x"],
        ["replay", "session_dir"],
    ):
        assert parser.parse_args(argv).no_dejitter is False
        assert parser.parse_args([*argv, "--no-dejitter"]).no_dejitter is True
    args = parser.parse_args(["live", "--source", "lsl:Amp", "--no-dejitter"])
    opts = source_options(args)
    assert opts["dejitter"] is False
    src, _ = open_sources("lsl:Amp", None, **opts)
    assert src.dejitter is False
    src, _ = open_sources(
        "lsl:Amp", None, **source_options(parser.parse_args(["live", "--source", "lsl"]))
    )
    assert src.dejitter is True
    assert (
        parser.parse_args(
            [
                "bench",
                "--mode",
                "acquisition",
                "--profiles",
                "gap",
                "--speed",
                "2",
                "--out",
                "x.json",
            ]
        ).profiles
        == "gap"
    )
