"""The acquisition's counts are kept once: the acquisition thread reads each chunk's stamps
for lost samples, the recorder and the epocher get what it read, markers are mapped once,
and a bundle swap carries the same counts on."""

from __future__ import annotations

import numpy as np

from bci_app.acquisition.acquisition import Acquisition
from bci_app.acquisition.epocher import Epocher
from bci_app.acquisition.recorder import Recorder
from bci_app.preprocessing import PreprocessingSpec
from bci_app.stimuli import MarkerMapper

SF = 100.0


def _spec(**kw):
    d = dict(sfreq=SF, ch_names=["ramp", "x"], tmin=-0.05, tmax=0.2, l_freq=None, h_freq=None, notch=None)
    d.update(kw)
    return PreprocessingSpec(**d)


class Chunks:
    """An EEG source handing out a ramp in chunks of 7 samples, sample numbers in ``drop``
    missing (their stamps skip them), and markers given to :meth:`pull`."""

    def __init__(self, n: int, drop=()) -> None:
        self.idx = np.array([i for i in range(n) if i not in set(drop)])
        self.pos = 0
        self.marks: list[tuple[str, float]] = []
        self.state = "connected"

    def read(self):
        idx = self.idx[self.pos : self.pos + 7]
        self.pos += idx.size
        return np.vstack([idx.astype(float), np.zeros(idx.size)]), 100.0 + idx / SF

    def pull(self):
        out, self.marks = self.marks, []
        return out


class CountingMapper(MarkerMapper):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __call__(self, marker: str):
        self.calls += 1
        return super().__call__(marker)


def test_lost_samples_are_read_once_and_reach_recorder_epocher_and_stats(tmp_path):
    src = Chunks(600, drop=range(200, 210))
    mapper = CountingMapper()
    src.marks = [("stim/gap", 100.0 + 195 / SF), ("stim/ok", 100.0 + 400 / SF), ("other", 100.0)]
    rec = Recorder(tmp_path / "s", ["ramp", "x"], SF)
    trials, shown = [], []
    acq = Acquisition(src, src, Epocher(_spec(), mapper, buffer_seconds=5), on_trial=trials.append,
                      recorder=rec)
    acq.marker_listeners.append(shown.extend)
    while src.pos < src.idx.size:
        acq.step()
    rec.close()

    st = acq.stats
    assert st["samples_lost"] == 10 and st["gaps"] == 1 and st["unknown_markers"] == 1
    assert st["trials"] == 2 and st["rejected"] == {"gap": 1}
    assert {t.stim_id: t.reject_reason for t in trials} == {"gap": "gap", "ok": None}
    # the recorder wrote the gap the acquisition read (sample 200 follows sample 199)
    assert (tmp_path / "s" / "gaps.tsv").read_text() == "200\t10\n" and rec.samples_lost == 10
    # each marker mapped once; the listeners got them mapped
    assert mapper.calls == 3
    assert shown == [("stim/gap", "gap", 100.0 + 195 / SF), ("stim/ok", "ok", 100.0 + 400 / SF),
                     ("other", None, 100.0)]


def test_a_swapped_epocher_carries_the_counts_and_pending_markers_on():
    src = Chunks(1000, drop=range(100, 105))
    acq = Acquisition(src, src, Epocher(_spec(), MarkerMapper(), buffer_seconds=5))
    while src.pos < 300:
        acq.step()
    old = acq.epocher
    src.marks = [("stim/late", 100.0 + 500 / SF)]  # its EEG comes after the swap
    acq.step()
    assert old.n_pending == 1
    new = Epocher(_spec(tmax=0.3), MarkerMapper(), buffer_seconds=5)
    assert acq.swap_epocher(new) is old
    trials = []
    acq.on_trial = trials.append
    while src.pos < src.idx.size:
        acq.step()
    assert new.stats is old.stats and acq.stats["samples_lost"] == 5
    assert [(t.stim_id, t.index, t.ok, t.data.shape[1]) for t in trials] == [("late", 0, True, 35)]
    assert acq.stats["trials"] == 1
