"""``bci-app record``: calibration sessions from real LSL streams, BrainFlow's synthetic
board and the virtual subject, stopped by --trials, --seconds, the presentation or Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

import mne
import numpy as np
import pylsl
import pytest

from bci_app.cli import main
from bci_app.datasets import load_spec
from bci_app.simulation import SubjectModel, resolve_montage


def _raw(directory):
    return mne.io.read_raw_fif(directory / "session_raw.fif", preload=True, verbose="error")


class MicrovoltAmplifier:
    """A plain pylsl EEG outlet like an amplifier's LSL app: microvolts declared per channel,
    an EOG and a counter channel besides the EEG, and a marker outlet stamped on samples."""

    def __init__(self, name: str, sfreq: float = 250.0, chunk: int = 5) -> None:
        self.name, self.sfreq, self.chunk = name, sfreq, chunk
        self.ch_names = ["Fz", "Cz", "Pz", "Oz", "HEOG", "counter"]
        units = ["microvolts"] * 5 + ["none"]
        types = ["EEG"] * 4 + ["EOG", "MISC"]
        info = pylsl.StreamInfo(name, "EEG", 6, sfreq, pylsl.cf_float32, f"{name}-sid")
        chans = info.desc().append_child("channels")
        for label, unit, kind in zip(self.ch_names, units, types, strict=True):
            c = chans.append_child("channel")
            c.append_child_value("label", label)
            c.append_child_value("unit", unit)
            c.append_child_value("type", kind)
        self.outlet = pylsl.StreamOutlet(info, chunk)
        mk = pylsl.StreamInfo(f"{name}-markers", "Markers", 1, 0, pylsl.cf_string, f"{name}-mk")
        self.markers = pylsl.StreamOutlet(mk)
        self.rng = np.random.default_rng(0)
        self.k = 0
        self.marked: dict[int, str] = {}  # sample number -> marker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def value(self, ks: np.ndarray) -> np.ndarray:
        """Microvolts of samples ``ks`` (deterministic), counter = sample number."""
        x = np.sin(np.outer(ks, [0.01, 0.02, 0.03, 0.04, 0.05]) * 2 * np.pi) * [10, 20, 30, 40, 90]
        return np.c_[x, ks].astype(np.float32)

    def start(self, every: int, first: int, markers: list[str]) -> MicrovoltAmplifier:
        """Stream now; place the markers every ``every`` samples from ``first`` samples after
        a consumer subscribes to both outlets (markers sent to nobody are lost)."""
        self._every, self._first, self._plan_markers = every, first, markers
        self.plan: dict[int, str] = {}
        self.t0 = pylsl.local_clock()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.t0 + (self.k + self.chunk) / self.sfreq - pylsl.local_clock()
            if wait > 0 and self._stop.wait(wait):
                break
            ks = np.arange(self.k, self.k + self.chunk)
            ts = self.t0 + ks / self.sfreq
            if not self.plan and self.markers.have_consumers() and self.outlet.have_consumers():
                start = self.k + self._first
                self.plan = {start + i * self._every: m for i, m in enumerate(self._plan_markers)}
            for k in ks:
                if int(k) in self.plan:  # the presenter stamps the flip; a little after sample k
                    self.markers.push_sample([self.plan[int(k)]], float(ts[k - self.k]) + 0.3 / self.sfreq)
                    self.marked[int(k)] = self.plan[int(k)]
            self.outlet.push_chunk(self.value(ks), ts.tolist())
            self.k += self.chunk

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_record_real_lsl_stream_in_microvolts(tmp_path, stream_id, capsys):
    name, _ = stream_id
    amp = MicrovoltAmplifier(name)
    markers = [f"stim/c{i:02d}_i00" for i in range(5)] + ["pause"] + ["stim/c09_i09"]
    amp.start(every=60, first=150, markers=markers)
    try:
        rc = main(["record", "--source", f"lsl:{name}", "--markers", f"{name}-markers",
                   "--trials", "6", "--seconds", "60", "--tail", "0.5", "--marker-pattern", r"^stim/(?P<id>.+)$",
                   "--out", str(tmp_path / "calib")])
    finally:
        amp.stop()
    assert rc == 0
    out = capsys.readouterr().out
    assert "6/6 trials" in out and "samples" in out and "0 lost" in out
    raw = _raw(tmp_path / "calib")
    assert raw.ch_names == amp.ch_names and raw.info["sfreq"] == 250.0
    data = raw.get_data()
    ks = data[5].astype(np.int64)  # the counter: every sample, in order, none lost
    np.testing.assert_array_equal(np.diff(ks), 1)
    # microvolts declared in the metadata -> volts in the file; the counter is not scaled
    np.testing.assert_allclose(data[:5], amp.value(ks)[:, :5].T * 1e-6, rtol=1e-5, atol=1e-12)
    # every marker sits on the sample it was stamped for; the 6th trial is "c09_i09"
    onsets = raw.annotations.onset * raw.info["sfreq"]
    on_k = {int(ks[int(round(o))]): d for o, d in zip(onsets, raw.annotations.description,
                                                      strict=True)}
    assert on_k == {k: m for k, m in amp.marked.items() if k in on_k}
    assert list(on_k.values()) == markers
    # the window after the last trial is there (--tail)
    assert ks[-1] >= max(amp.marked) + 0.5 * 250 - 1


def test_record_virtual_subject_any_cap(tmp_path, capsys):
    out = tmp_path / "cap64"
    rc = main(["record", "--source", "virtual", "--montage", "biosemi64", "--sfreq", "512",
               "--trials", "12", "--on", "0.25", "--snr", "8", "--seed", "3", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "64 channels at 512 Hz" in printed and "12/12 trials" in printed
    assert f"bci-app train --data session:{out}" in printed
    ds = load_spec(f"session:{out}")
    assert len(ds) == 12 and ds.X.shape[1] == 64 and ds.spec.sfreq == 512.0
    # the responses are in the recording at the markers' samples (volts, not microvolts)
    raw = _raw(out)
    name, chs = resolve_montage("biosemi64")
    model = SubjectModel(snr=8.0, sfreq=512.0, ch_names=chs, montage=name)
    data, L = raw.get_data(), model.n_times
    r = []
    for onset, desc in zip(raw.annotations.onset, raw.annotations.description, strict=True):
        k = int(round(onset * 512))
        win = data[:, k : k + L] - data[:, k : k + L].mean(axis=1, keepdims=True)
        ev = model.evoked(desc.removeprefix("stim/"))
        r.append(np.corrcoef(win.ravel(), (ev - ev.mean(axis=1, keepdims=True)).ravel())[0, 1])
    assert min(r) > 0.25 and np.median(r) > 0.4, r
    assert 1e-6 < np.median(data.std(axis=1)) < 1e-4


def test_record_brainflow_synthetic_board(tmp_path, capsys):
    out = tmp_path / "bf"
    rc = main(["record", "--source", "brainflow:SYNTHETIC_BOARD", "--seconds", "3",
               "--out", str(out)])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    raw = _raw(out)
    sfreq = raw.info["sfreq"]
    assert sfreq == 250.0 and len(raw.ch_names) >= 8
    assert 1.5 * sfreq < raw.n_times < 4 * sfreq
    eeg = raw.get_data(picks="eeg")
    assert np.isfinite(eeg).all() and np.median(eeg.std(axis=1)) < 1e-3  # microvolts -> volts


def test_record_stops_on_ctrl_c_and_keeps_the_session(tmp_path):
    out = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bci_app.cli", "record", "--source", "virtual", "--montage",
         "standard_1020:Fz,Cz,Pz,O1,Oz,O2", "--sfreq", "250", "--trials", "1000", "--on", "0.2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            # stdout is a pipe: a status line per 10 % of the 1000 trials (the first at 100)
            m = re.search(r" (\d+) markers", line)
            if m and int(m.group(1)) >= 5:
                break
        else:
            pytest.fail(f"no markers recorded within 60 s: {lines}")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "interrupted: wrote" in rest
    raw = _raw(out)
    assert raw.ch_names == ["Fz", "Cz", "Pz", "O1", "Oz", "O2"] and raw.info["sfreq"] == 250.0
    assert len(raw.annotations) >= 5


def test_record_bad_input_is_a_clear_error_and_loses_nothing(tmp_path, capsys):
    out = tmp_path / "s"
    out.mkdir()
    (out / "session.json").write_text("{}")
    assert main(["record", "--source", "virtual", "--trials", "3", "--out", str(out)]) == 2
    assert "already holds a recorded session" in capsys.readouterr().err
    assert (out / "session.json").read_text() == "{}"
    assert main(["record", "--source", "virtual", "--out", str(tmp_path / "a")]) == 2
    assert "needs --trials N or --seconds S" in capsys.readouterr().err
    assert main(["record", "--source", "lsl:x", "--montage", "biosemi64",
                 "--out", str(tmp_path / "b")]) == 2
    assert "--montage/--sfreq describe the virtual subject" in capsys.readouterr().err
    assert main(["record", "--source", "virtual:biosemi32", "--montage", "biosemi64",
                 "--trials", "2", "--out", str(tmp_path / "c")]) == 2
    assert "both name a montage" in capsys.readouterr().err
    assert main(["record", "--source", "lsl:x", "--images", str(tmp_path),
                 "--out", str(tmp_path / "d")]) == 2
    assert "--images is for --present" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["record", "--source", "virtual", "--trials", "2", "--marker-pattern", "stim/(.+)",
              "--out", str(tmp_path / "e")])
    assert "has no named group 'id'" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcde")


@pytest.mark.gui
def test_record_with_presenter_window(tmp_path, qtbot, monkeypatch, capsys):
    """--present: the presenter window (offscreen Qt) shows the stimuli and sends the
    markers; the virtual subject sees them; the recording ends with the presentation."""
    import bci_app.ui.qt

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(bci_app.ui.qt, "has_display", lambda: True)
    out = tmp_path / "shown"
    rc = main(["record", "--source", "virtual:biosemi32", "--sfreq", "256", "--present",
               "--windowed", "--trials", "6", "--on", "0.2", "--out", str(out)])
    assert rc == 0
    assert "6/6 trials" in capsys.readouterr().out
    ds = load_spec(f"session:{out}")
    assert len(ds) == 6 and ds.X.shape[1] == 32


def test_record_present_needs_a_display(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert main(["record", "--source", "virtual", "--present", "--trials", "2",
                 "--out", str(tmp_path / "p")]) == 2
    assert "--present needs a display" in capsys.readouterr().err


def test_record_keeps_channel_types_and_units_of_the_metadata(tmp_path, stream_id):
    """Issue 21 (6c): EOG typed EOG in the stream's metadata is EOG in the FIF (not EEG); a
    channel whose unit is not a voltage ("none": a counter) has no unit there."""
    from mne.io.constants import FIFF

    name, _ = stream_id
    amp = MicrovoltAmplifier(name)
    amp.start(every=60, first=100, markers=["stim/c00_i00", "stim/c01_i01"])
    try:
        rc = main(["record", "--source", f"lsl:{name}", "--markers", f"{name}-markers",
                   "--trials", "2", "--seconds", "60", "--tail", "0.3",
                   "--out", str(tmp_path / "typed")])
    finally:
        amp.stop()
    assert rc == 0
    raw = _raw(tmp_path / "typed")
    assert raw.get_channel_types() == ["eeg"] * 4 + ["eog", "misc"]
    units = [ch["unit"] for ch in raw.info["chs"]]
    assert units == [FIFF.FIFF_UNIT_V] * 5 + [FIFF.FIFF_UNIT_NONE]
    meta = __import__("json").loads((tmp_path / "typed" / "session.json").read_text())
    assert meta["ch_types"] == ["eeg"] * 4 + ["eog", "misc"]
    assert meta["units"] == ["microvolts"] * 5 + ["none"]
    # a session: spec picks the EEG channels only (EOG and the counter are left out)
    ds = load_spec(f"session:{tmp_path / 'typed'}")
    assert list(ds.spec.ch_names) == ["Fz", "Cz", "Pz", "Oz"]


def test_record_trigger_channel_missing_names_the_channels(tmp_path, stream_id, capsys):
    name, _ = stream_id
    amp = MicrovoltAmplifier(name)
    amp.start(every=60, first=100, markers=["stim/c00_i00"])
    try:
        rc = main(["record", "--source", f"lsl:{name}",
                   "--seconds", "1", "--trigger-channel", "STI 014",
                   "--out", str(tmp_path / "t")])
    finally:
        amp.stop()
    assert rc == 2
    err = capsys.readouterr().err
    assert "trigger channel 'STI 014' is not in the stream" in err and "HEOG, counter" in err


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_record_ends_on_sigterm_and_keeps_the_session(tmp_path, sig):
    """Issue 21 (6b): SIGTERM (a service manager, a closed ssh session) stops a recording as
    Ctrl-C does: every sample flushed, session_raw.fif written with its markers."""
    out = tmp_path / "terminated"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bci_app.cli", "record", "--source", "virtual", "--montage",
         "standard_1020:Fz,Cz,Pz,O1,Oz,O2", "--sfreq", "250", "--trials", "1000", "--on", "0.2",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 90
        marks = out / "markers.tsv"
        while time.monotonic() < deadline:  # wait for a few markers on disk
            if marks.exists() and len(marks.read_text().splitlines()) >= 5:
                break
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        else:
            pytest.fail("no 5 markers recorded within 90 s")
        proc.send_signal(getattr(signal, sig))
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert "interrupted: wrote" in rest
    raw = _raw(out)
    assert len(raw.annotations) >= 5
    assert not (out / "chunks").exists()  # finalized


def test_record_with_trigger_channel_counts_codes_and_reads_back_once(tmp_path, stream_id):
    """``record --trigger-channel STI --event-map MAP --trials N``: the codes of the stream's
    stim channel are the trials (no marker stream); the FIF keeps the channel as STIM and
    its codes as markers, and reading it back with the trigger channel gives each trial once."""
    from bci_app.acquisition.player import SessionPlayer
    from bci_app.simulation import simulate_raw

    raw = simulate_raw(5, seed=2, on=0.5, start=3.0, montage="standard_1020:Fz,Cz,Pz,O1,Oz,O2",
                       sfreq=250.0)
    sf = raw.info["sfreq"]
    desc = [d.split("/", 1)[1] for d in raw.annotations.description]
    trig = np.zeros((1, raw.n_times))
    codes = {s: 30 + i for i, s in enumerate(dict.fromkeys(desc))}
    for t, s in zip(raw.annotations.onset, desc, strict=True):
        k = int(round(t * sf))
        trig[0, k:k + 5] = codes[s]
    raw.add_channels([mne.io.RawArray(trig, mne.create_info(["STI"], sf, "stim"), verbose="error")],
                     force_update_info=True)
    raw.set_annotations(None)
    emap = tmp_path / "map.tsv"
    emap.write_text("marker\tstimulus\n" + "".join(f"{c}\t{s}\n" for s, c in codes.items()))
    name, sid = stream_id
    player = SessionPlayer(raw, name=name, source_id=sid)

    def start() -> None:
        player.open()
        player._eeg.wait_for_consumers(30.0)
        player.start(wait_for_consumers=None)
    threading.Thread(target=start, daemon=True).start()
    out = tmp_path / "trig"
    try:
        rc = main(["record", "--source", f"lsl:{name}", "--trigger-channel", "STI", "--event-map",
                   str(emap), "--trials", "5", "--tail", "0.8", "--seconds", "60", "--out", str(out)])
    finally:
        player.stop()
    assert rc == 0
    got = _raw(out)
    assert got.get_channel_types()[-1] == "stim"
    assert list(got.annotations.description) == [str(codes[s]) for s in desc]
    ds = load_spec(f"session:{out},trigger=STI", event_map=emap)
    assert ds.stim_ids == desc
