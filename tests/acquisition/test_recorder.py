"""Recorder: FIF in chunks; a SIGKILLed recording loses at most the last second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import mne
import numpy as np
import pytest

from bci_app.acquisition.recorder import Recorder, finalize_session, read_session

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from bci_app.acquisition.recorder import Recorder
    sf = 1000.0
    rec = Recorder(sys.argv[1], ["ramp", "b", "c", "d"], sf, chunk_seconds=1.0)
    k = 0
    t0 = 100.0
    while True:
        ks = np.arange(k, k + 20)
        x = np.vstack([ks, np.sin(ks), np.cos(ks), -ks]).astype(float)
        rec.write(x, t0 + ks / sf)
        if k % 500 == 0:
            rec.add_markers([(f"stim/m{k}", t0 + (k + 3) / sf)])
        k += 20
        print(k, flush=True)
        time.sleep(0.004)
    """
)


def test_kill9_loses_at_most_one_second(tmp_path):
    session = tmp_path / "sess"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(session)], stdout=subprocess.PIPE, text=True
    )
    written = 0
    deadline = time.monotonic() + 30
    try:
        while written < 3500 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            written = int(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # anything printed after our last read was written too; drain it
    for line in proc.stdout.read().split():
        written = int(line)
    assert written >= 3500, "the recording child did not get going"
    assert not (session / "session_raw.fif").exists()
    raw = read_session(session)
    assert written - raw.n_times <= 1000  # at most 1 s lost
    ramp = raw.get_data(picks="ramp")[0]
    np.testing.assert_array_equal(ramp, np.arange(raw.n_times))
    onsets = np.round(raw.annotations.onset * 1000).astype(int)
    expect = [k + 3 for k in range(0, raw.n_times - 3, 500)]
    assert list(onsets) == expect
    assert list(raw.annotations.description) == [f"stim/m{k - 3}" for k in expect]
    # finalize the killed session into one FIF that MNE reads directly
    out = finalize_session(session)
    again = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert again.n_times == raw.n_times and len(again.annotations) == len(expect)


def test_close_writes_session_fif_with_markers_and_gaps(tmp_path):
    rec = Recorder(tmp_path / "s", ["a", "b"], 100.0, chunk_seconds=0.5)
    ts = 10.0 + np.arange(0, 120) / 100.0
    keep = np.r_[0:60, 70:120]  # 10 samples lost
    rec.add_markers([("stim/x", 10.2), ("late", 11.15)])
    rec.write(np.vstack([keep, keep]).astype(float), ts[keep])
    rec.add_markers([("stim/y", 10.5004)])
    path = rec.close()
    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    assert raw.n_times == 110
    ann = sorted(
        zip(
            np.round(raw.annotations.onset * 100).astype(int),
            raw.annotations.description,
            strict=True,
        )
    )
    # 11.15 s -> sample 115 in time = recorded index 105 after the 10-sample gap
    assert ann == [(20, "stim/x"), (50, "stim/y"), (60, "BAD boundary"), (60, "EDGE boundary"), (105, "late")]
    # the loss is a join between samples 59 and 60 (as MNE marks joins), never a stretch
    # of the valid samples after it; the lost count travels in the annotations' extras
    assert set(raw.annotations.duration) == {0.0}
    joins = [ex for d, ex in zip(raw.annotations.description, raw.annotations.extras, strict=True)
             if "boundary" in d]
    assert joins == [{"samples_lost": 10}, {"samples_lost": 10}]
    from bci_app.preprocessing.epochs import discontinuities

    assert discontinuities(raw) == [(60, 10)]
    np.testing.assert_array_equal(raw.get_data(picks="a")[0], keep)  # every recorded sample, as sent
    assert not (tmp_path / "s" / "chunks").exists()
    with pytest.raises(ValueError, match="already holds a recorded session"):
        Recorder(tmp_path / "s", ["a"], 100.0)


def test_for_source_with_a_photodiode_writes_the_sensor_as_misc(tmp_path):
    """The live pipeline with ``--photodiode`` delivers the bundle's channels and then the
    sensor; ``--record`` and the window's Record box both record through
    ``Recorder.for_source(..., photodiode=...)``: the sensor is ``misc`` (never EEG, even when
    the stream's metadata calls it EEG), named in session.json; the other types are kept."""
    from types import SimpleNamespace

    src = SimpleNamespace(ch_names=["Fz", "VEOG", "PD"], sfreq=100.0, ch_types=["EEG", "EOG", "EEG"],
                          ch_units=["microvolts", "microvolts", "microvolts"])
    rec = Recorder.for_source(tmp_path / "s", src, photodiode="PD")
    rec.write(np.zeros((3, 50)), 10.0 + np.arange(50) / 100.0)
    raw = mne.io.read_raw_fif(rec.close(), verbose="error")
    assert raw.get_channel_types() == ["eeg", "eog", "misc"]
    meta = json.loads((tmp_path / "s" / "session.json").read_text())
    assert meta["photodiode"] == "PD" and meta["ch_types"] == ["eeg", "eog", "misc"]
    plain = Recorder.for_source(tmp_path / "t", src)  # without it: the metadata's types as they are
    plain.write(np.zeros((3, 50)), 10.0 + np.arange(50) / 100.0)
    assert mne.io.read_raw_fif(plain.close(), verbose="error").get_channel_types() == ["eeg", "eog", "eeg"]
    assert "photodiode" not in json.loads((tmp_path / "t" / "session.json").read_text())
