"""Acquisition benchmark: 128 ch @ 1 kHz over loopback LSL with markers.

``run_acquisition_bench(args)`` (``bci-app bench --mode acquisition``) pushes a ramp
stream in 10 ms chunks plus string markers at ``args.rate`` per second for
``args.trials`` markers, runs the real acquisition thread (LSL source, marker source,
epocher with the default filters) and measures, per trial, the delay from the push of
the chunk holding the window's last sample to the Trial being available
(``emitted_time``), and the samples lost. Writes JSON to ``args.out``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np


def _pct(x: list[float], q: float) -> float | None:
    return float(np.percentile(x, q)) if x else None


def run_acquisition_bench(args) -> int:
    from pylsl import IRREGULAR_RATE, StreamInfo, StreamOutlet, cf_float32, cf_string, local_clock

    from bci_app.acquisition.acquisition import Acquisition
    from bci_app.acquisition.epocher import Epocher
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.sources import LSLSource
    from bci_app.preprocessing import PreprocessingSpec
    from bci_app.stimuli import MarkerMapper

    n_ch = int(getattr(args, "channels", 128) or 128)
    sf = float(getattr(args, "sfreq", 1000.0) or 1000.0)
    n_trials = int(getattr(args, "trials", 100) or 100)
    rate = float(getattr(args, "rate", 5.0) or 5.0)
    chunk = 10
    tag = uuid.uuid4().hex[:8]
    name, sid = f"bci-bench-eeg-{tag}", f"bci-bench-eeg-{tag}-sid"
    mname = f"bci-bench-markers-{tag}"
    ch_names = [f"EEG{i:03d}" for i in range(n_ch)]
    info = StreamInfo(name, "EEG", n_ch, sf, cf_float32, sid)
    info.set_channel_labels(ch_names)
    info.set_channel_units("volts")
    eeg = StreamOutlet(info, chunk_size=chunk)
    mk = StreamOutlet(StreamInfo(mname, "Markers", 1, IRREGULAR_RATE, cf_string, mname + "-sid"))
    spec = PreprocessingSpec(sfreq=sf, ch_names=ch_names)  # 1-40 Hz band-pass + 50 Hz notch
    trials = []
    acq = Acquisition(
        LSLSource(name, source_id=sid, ch_names=ch_names, sfreq=sf, timeout=10),
        LSLMarkerSource(mname, timeout=10),
        Epocher(spec, MarkerMapper(), buffer_seconds=10),
        on_trial=trials.append,
    )
    acq.start()
    eeg.wait_for_consumers(10)
    mk.wait_for_consumers(10)

    duration = n_trials / rate + spec.tmax + 1.0
    n_total = int(duration * sf) // chunk * chunk
    push_time = np.full(n_total // chunk, np.nan)
    rng = np.random.default_rng(0)
    block = (rng.standard_normal((chunk * 50, n_ch)) * 1e-5).astype(np.float32)
    t0 = local_clock() + 0.05
    marker_k = [int((0.5 + i / rate) * sf) for i in range(n_trials)]
    mi = 0
    stop = threading.Event()

    def pusher():
        nonlocal mi
        for c in range(n_total // chunk):
            k = c * chunk
            due = t0 + (k + chunk - 1) / sf
            wait = due - local_clock()
            if wait > 0:
                time.sleep(wait)
            while mi < n_trials and marker_k[mi] < k + chunk:
                mk.push_sample([f"stim/b{mi}"], timestamp=t0 + marker_k[mi] / sf)
                mi += 1
            x = block[(c % 50) * chunk : (c % 50 + 1) * chunk]
            eeg.push_chunk(x, timestamp=t0 + np.arange(k, k + chunk) / sf)
            push_time[c] = local_clock()
            if stop.is_set():
                break

    th = threading.Thread(target=pusher, daemon=True)
    wall0 = time.perf_counter()
    th.start()
    th.join()
    deadline = time.monotonic() + 5
    while len(trials) < n_trials and time.monotonic() < deadline:
        time.sleep(0.01)
    wall = time.perf_counter() - wall0
    stats = acq.stats
    acq.stop()
    eeg = mk = None  # pylsl destroys the outlets with their last reference

    delays = []
    for tr in trials:
        if not tr.ok:
            continue
        last = int(round((tr.onset - t0) * sf)) + spec.start_offset + spec.n_times - 1
        c = last // chunk
        if 0 <= c < push_time.size and np.isfinite(push_time[c]):
            delays.append(1000.0 * (tr.emitted_time - push_time[c]))
    receive = [t.epoch_latency_ms for t in trials if t.ok]
    result = {
        "mode": "acquisition",
        "channels": n_ch,
        "sfreq": sf,
        "chunk_samples": chunk,
        "duration_s": round(wall, 3),
        "markers_sent": n_trials,
        "trials": stats["trials"],
        "rejected": stats["rejected"],
        "samples_sent": int(n_total),
        "samples_received": int(acq.epocher.buffer.n_total),
        "samples_lost": stats["samples_lost"],
        "push_to_trial_ms": {
            "p50": _pct(delays, 50),
            "p99": _pct(delays, 99),
            "max": max(delays) if delays else None,
        },
        "receive_to_trial_ms": {"p50": _pct(receive, 50), "p99": _pct(receive, 99)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0
