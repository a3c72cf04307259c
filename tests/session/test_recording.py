"""Recording toggled while a real LSL stream runs: the swap is thread-safe, the old
recording is finalised off the caller's thread, and every sample lands in exactly one file."""

from __future__ import annotations

import threading
import time

import mne
import numpy as np

from bci_app.acquisition.recorder import Recorder
from bci_app.acquisition.sources import LSLSource
from bci_app.session.pipeline import Pipeline
from tests.conftest import wait_until
from tests.session.test_inference import tiny_reconstructor
from tests.ui.conftest import LoopbackEEG


def test_toggling_record_20_times_keeps_every_sample_exactly_once(tmp_path, stream_id):
    rec = tiny_reconstructor()
    name, sid = stream_id
    eeg = LoopbackEEG(name, sid, rec.spec.ch_names, counter=True).start()
    pipe = Pipeline(LSLSource(name=name, source_id=sid, n_channels=128, sfreq=1000.0), None, rec)
    pipe.worker.warmup_n = 0
    closed: list[tuple[object, str | None, str]] = []

    def on_closed(path, error):
        closed.append((path, error, threading.current_thread().name))

    dirs = [tmp_path / f"rec{i:02d}" for i in range(20)]
    swap_ms = []
    try:
        pipe.start()
        for d in dirs:  # each toggle replaces the recorder while acquisition writes
            r = Recorder(d, list(pipe.raw_source.ch_names), 1000.0)
            t0 = time.perf_counter()
            pipe.set_recorder(r, on_closed=on_closed)
            swap_ms.append(1000 * (time.perf_counter() - t0))
            wait_until(lambda r=r: r.n_samples >= 30, timeout=10, what=f"samples in {d.name}")
        t0 = time.perf_counter()
        pipe.set_recorder(None, on_closed=on_closed)  # Record off
        swap_ms.append(1000 * (time.perf_counter() - t0))
        assert pipe.wait_recordings(60)
    finally:
        pipe.stop()
        eeg.stop()
    assert not pipe.acquisition.error and pipe.acquisition.recorder_error is None
    # finalising (session_raw.fif of every recording) ran on its own threads, not the caller's
    assert len(closed) == 20 and all(err is None for _, err, _ in closed)
    assert {thread for _, _, thread in closed} == {"recording-finalise"}
    # the toggle itself never waits for a file (median: the 2 shared cores stall any one call)
    assert np.median(swap_ms) < 20, swap_ms
    counters = []
    for d in dirs:
        raw = mne.io.read_raw_fif(d / "session_raw.fif", preload=True, verbose="error")
        assert raw.ch_names == list(rec.spec.ch_names)
        counters.append(raw.get_data(picks=[0])[0])
    k = np.concatenate(counters)
    # consecutive files continue where the previous one stopped: nothing lost, nothing twice
    np.testing.assert_array_equal(k, k[0] + np.arange(k.size))
    assert k.size >= 20 * 30


def test_record_from_start_holds_the_first_sample_and_every_trial(tmp_path, stream_id):
    """Issue 21 (6a): a recorder given to ``Pipeline.start`` is in place before the first
    read, so the file starts with the first sample the session receives and holds the marker
    of every trial it saw (>= N markers for N trials), while markers flow from the start."""
    from collections import Counter

    import pylsl

    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.stimuli import DemoStimulusSet

    rec = tiny_reconstructor()
    name, sid = stream_id
    eeg = LoopbackEEG(name, sid, rec.spec.ch_names, counter=True).start()
    mk_info = pylsl.StreamInfo(f"{name}-mk", "Markers", 1, 0, pylsl.cf_string, f"{sid}-mk")
    mk_out = pylsl.StreamOutlet(mk_info)
    ids = DemoStimulusSet().stim_ids
    stop = threading.Event()

    def present() -> None:  # a presenter already running when the session starts
        i = 0
        while not stop.wait(0.25):
            mk_out.push_sample([f"stim/{ids[i % len(ids)]}"], pylsl.local_clock())
            i += 1
    threading.Thread(target=present, daemon=True).start()
    pipe = Pipeline(LSLSource(name=name, source_id=sid, n_channels=128, sfreq=1000.0),
                    LSLMarkerSource(name=f"{name}-mk"), rec)
    pipe.worker.warmup_n = 0
    first_seen: list[float] = []
    pipe.on_eeg(lambda data, ts: first_seen.append(float(data[0, 0])) if not first_seen else None)
    results = []
    pipe.on_result(results.append)
    d = tmp_path / "rec"
    try:
        pipe.start(record=lambda src: Recorder.for_source(d, src))
        assert pipe.wait_results(8, 60)
    finally:
        pipe.stop()
        stop.set()
        eeg.stop()
    raw = mne.io.read_raw_fif(d / "session_raw.fif", preload=True, verbose="error")
    k = raw.get_data(picks=[0])[0]
    assert k[0] == first_seen[0]  # the very first sample the session read
    np.testing.assert_array_equal(k, k[0] + np.arange(k.size))
    recorded = [m for m in raw.annotations.description if not m.startswith("BAD")]
    seen = Counter(r.trial.marker for r in results)
    assert len(recorded) >= len(results) >= 8
    assert not seen - Counter(recorded), "trials of the session missing from the recording"
