"""A recorded session streamed like a wireless amplifier into the live pipeline (issue 21,
acceptance 1): bursts of 9 samples stamped on arrival, a clock 150 ppm fast, jitter, late
bursts (``bench.PROFILES["wireless"]``), markers at the true times of their samples, over
real loopback LSL. The live pipeline with the demo bundle reads it with dejitter (the
default): no false gap, no sample counted lost, every trial reconstructed, and the drawings'
top-1 within 5 points of the same trials reconstructed offline from the file (evaluate's
loading path, the live worker's per-trial seeds). A second reader of the same stream with
``dejitter=False`` rejects trials as false gaps: the fix is what helps."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_recorded_session_streamed_like_a_wireless_amplifier_into_live(tmp_path):
    from pylsl import IRREGULAR_RATE, StreamInfo, StreamOutlet, cf_float32, cf_string, local_clock

    from bci_app.acquisition.acquisition import Acquisition
    from bci_app.acquisition.bench import PROFILES, simulate_stream
    from bci_app.acquisition.epocher import Epocher
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.sources import LSLSource
    from bci_app.datasets import load_spec
    from bci_app.evaluation.runner import run_reconstructor, trial_seeds
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.preprocessing import PreprocessingSpec, normalise
    from bci_app.session.pipeline import Pipeline
    from bci_app.simulation import simulate_raw
    from bci_app.stimuli import MarkerMapper

    rec = Reconstructor.from_bundle("demo", device="cpu")
    sf = float(rec.spec.sfreq)
    n_trials = 48
    raw = simulate_raw(n_trials, seed=21, on=0.5, snr=2.0)  # the demo cap, 1 kHz, the demo set
    assert list(raw.ch_names) == list(rec.spec.ch_names) and raw.info["sfreq"] == sf
    fif = tmp_path / "session_raw.fif"
    raw.save(fif, verbose="error")
    data = raw.get_data().astype(np.float32)
    onsets = np.round(raw.annotations.onset * sf).astype(int)
    ids = [d.split("/", 1)[1] for d in raw.annotations.description]

    # ---- offline: the file through evaluate's loading path, the live worker's seeds
    raw_spec = PreprocessingSpec.from_dict({**rec.spec.to_dict(), "norm_mean": None, "norm_std": None})
    ds = load_spec(f"session:{fif}", preprocessing=raw_spec)
    assert ds.stim_ids == ids
    X = normalise(np.asarray(ds.X, np.float32), rec.spec).astype(np.float32)
    off = run_reconstructor(rec, X, trial_seeds(ids, onsets, int(getattr(rec, "seed", 0))))  # as the worker seeds
    labels = np.asarray(ds.labels)
    offline_right = off.class_probs.argmax(1) == labels

    # ---- live: the same samples as a wireless amplifier sends them
    tag = uuid.uuid4().hex[:8]
    name, mname = f"wl-eeg-{tag}", f"wl-mk-{tag}"
    info = StreamInfo(name, "EEG", data.shape[0], sf, cf_float32, name + "-sid")
    info.set_channel_labels(list(raw.ch_names))
    info.set_channel_units("volts")
    eeg = StreamOutlet(info, chunk_size=0)
    mk = StreamOutlet(StreamInfo(mname, "Markers", 1, IRREGULAR_RATE, cf_string, mname + "-sid"))
    pipe = Pipeline(LSLSource(name, source_id=name + "-sid", ch_names=list(raw.ch_names), sfreq=sf, timeout=10),
                    LSLMarkerSource(mname, timeout=10), rec)
    pipe.worker.warmup_n = 1
    results = []
    pipe.on_result(results.append)
    raw_trials = []  # a second reader without dejitter, acquisition only
    plain = Acquisition(
        LSLSource(name, source_id=name + "-sid", ch_names=list(raw.ch_names), sfreq=sf, timeout=10,
                  dejitter=False),
        LSLMarkerSource(mname, timeout=10), Epocher(rec.spec, MarkerMapper(), buffer_seconds=10),
        on_trial=raw_trials.append, name="bci-test-no-dejitter")
    pipe.start()
    plain.start()
    try:
        assert eeg.wait_for_consumers(10) and mk.wait_for_consumers(10)
        t0 = local_clock() + 0.3
        stream = simulate_stream(PROFILES["wireless"], data.shape[1], sf, t0=t0, seed=3)
        assert not stream.dropped and stream.kept.size == data.shape[1]
        marker_t = [float(stream.true_times[k]) for k in onsets]
        wall0 = time.perf_counter()

        def wait_until(t: float) -> None:
            delay = wall0 + (t - t0) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

        def amplifier() -> None:
            mi = 0
            for c, (i0, i1) in enumerate(stream.chunks):
                while mi < len(marker_t) and marker_t[mi] <= stream.arrivals[c]:
                    mk.push_sample([f"stim/{ids[mi]}"], timestamp=marker_t[mi])
                    mi += 1
                wait_until(stream.arrivals[c])
                eeg.push_chunk(np.ascontiguousarray(data[:, stream.kept[i0:i1]].T),
                               timestamp=stream.stamps[i0:i1])

        pusher = threading.Thread(target=amplifier, daemon=True)
        pusher.start()
        pusher.join(data.shape[1] / sf + 30)
        deadline = time.monotonic() + 30
        while (len(results) < n_trials or len(raw_trials) < n_trials) and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = pipe.stats()
        plain_lost = plain.stats["samples_lost"]
    finally:
        pipe.stop()
        plain.stop()

    assert len(results) == n_trials, stats
    assert stats["samples_lost"] == 0 and stats["rejected"] == 0 and stats["dropped"] == 0, stats
    by_id = {}
    for r in results:
        assert r.outcome == "reconstructed", (r.outcome, r.reason)
        assert r.trial.onset_sample == onsets[ids.index(r.trial.stim_id)]  # on the marker's sample
        by_id[r.trial.stim_id] = int(np.argmax(r.reconstruction.class_probs))
    live_right = np.array([by_id[s] == lab for s, lab in zip(ids, labels, strict=True)])
    assert offline_right.mean() > 3 / 40  # the session carries signal
    assert abs(live_right.mean() - offline_right.mean()) <= 0.05, (live_right.mean(), offline_right.mean())
    # without dejitter the arrival stamps look like lost samples: false gaps come back
    false_gaps = sum(t.reject_reason == "gap" for t in raw_trials)
    assert false_gaps >= n_trials // 4 and plain_lost > 100, (false_gaps, plain_lost)
