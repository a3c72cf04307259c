"""A long session replayed at 8x real time: memory stays flat and every marker is accounted
for (the report keeps summaries, not EEG windows and images)."""

from __future__ import annotations

import json
import threading
import time

import mne
import numpy as np
import pytest

from bci_app.acquisition.markers import LSLMarkerSource
from bci_app.acquisition.player import SessionPlayer
from bci_app.acquisition.sources import LSLSource
from bci_app.config import InferenceConfig
from bci_app.session.commands import run_headless
from bci_app.session.pipeline import Pipeline
from bci_app.session.report import SessionReport
from tests.session.test_inference import tiny_reconstructor

N_TRIALS = 800
SOA = 0.25  # 4 stimuli/s: 200 s of session, 25 s at 8x
N_CH = 32


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status; expected Linux")


def long_session(ch_names: list[str]) -> mne.io.RawArray:
    n = int((1.0 + N_TRIALS * SOA + 1.0) * 1000)
    data = np.random.default_rng(0).standard_normal((N_CH, n)).astype(np.float32) * 10e-6
    raw = mne.io.RawArray(data, mne.create_info(ch_names, 1000.0, "eeg"), verbose="error")
    onsets = 1.0 + SOA * np.arange(N_TRIALS)
    ids = [f"stim/c{i % 40:02d}_i{i % 50:02d}" for i in range(N_TRIALS)]
    raw.set_annotations(mne.Annotations(onsets, np.zeros(N_TRIALS), ids))
    return raw


@pytest.mark.slow
def test_long_replay_memory_flat_and_every_trial_accounted(tmp_path, stream_id):
    rec = tiny_reconstructor(n_chans=N_CH)
    name, sid = stream_id
    player = SessionPlayer(long_session(list(rec.spec.ch_names)), speed=8.0, name=name, source_id=sid)
    report = SessionReport()
    pipe = Pipeline(LSLSource(name=name, source_id=sid, n_channels=N_CH, sfreq=1000.0),
                    LSLMarkerSource(name=f"{name}-markers"), rec, report=report,
                    inference=InferenceConfig(queue_size=8, policy="drop_oldest", warmup=1))
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def watch() -> None:  # RSS against trials done, twice a second
        while not stop.wait(0.5):
            samples.append((pipe.n_results, rss_mb()))

    watcher = threading.Thread(target=watch, daemon=True)
    t0 = time.monotonic()
    player.open()  # the outlets exist before the pipeline looks for them
    pipe.start()
    threading.Thread(target=player.start, kwargs={"wait_for_consumers": 10.0}, daemon=True).start()
    watcher.start()
    try:
        summary = run_headless(pipe, N_TRIALS, tmp_path, timeout=90, done=player.done.is_set)
    finally:
        stop.set()
        player.stop()
    wall = time.monotonic() - t0
    assert wall < 60, f"the soak took {wall:.0f} s"
    # accounting: every marker of the session has exactly one outcome
    assert summary["trials"] == N_TRIALS
    total = summary["reconstructed"] + summary["dropped"] + sum(summary["rejected"].values())
    assert total == N_TRIALS and summary["reconstructed"] >= 0.9 * N_TRIALS, summary
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert sorted(json.loads(s)["index"] for s in lines) == list(range(N_TRIALS))
    # memory: from the first 150 trials (warm) to the end, growth far below the
    # ~56 KB per trial that keeping every 32 x 440 window would cost (> 35 MB here)
    warm = [mb for n, mb in samples if n >= 150]
    assert len(warm) >= 4, samples
    growth = max(warm) - warm[0]
    print(f"soak: {N_TRIALS} trials in {wall:.1f} s, RSS {warm[0]:.1f} MB -> {warm[-1]:.1f} MB "
          f"(max {max(warm):.1f})")
    assert growth < 12, samples
    assert not hasattr(report, "results") or not report.results  # no InferenceResult kept
