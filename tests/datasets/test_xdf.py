"""``session:FILE.xdf``: an XDF written here gives the same epochs as the same data in FIF;
the public example files of xdf-modules (tests/datasets/data/README.md) load."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from bci_app.acquisition.recorder import Recorder
from bci_app.datasets import load_spec, read_recording
from bci_app.datasets.xdf import read_raw_xdf
from bci_app.preprocessing import marker_sample
from bci_app.preprocessing.epochs import BOUNDARY_DESCRIPTIONS, LOST_KEY, epoch_raw, is_marker
from bci_app.simulation import simulate_raw
from tests.datasets.xdf_writer import XDFStream, write_xdf

T0 = 5000.0  # LSL time of the first sample on the recording machine
OFFSET = 123.25  # amplifier clock is this far behind the recording machine's clock
DATA = Path(__file__).parent / "data"  # xdf-modules/example-files (MIT): minimal, empty_streams, clock_resets


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A simulated session: data (V), channel names, sfreq, marker strings and true times."""
    raw = simulate_raw(30, seed=4, montage="biosemi32", sfreq=500.0)
    data = raw.get_data()
    sfreq = raw.info["sfreq"]
    ts = T0 + np.arange(data.shape[1]) / sfreq
    markers = list(raw.annotations.description)
    # markers stamped a little off their sample, as a presenter's clock would
    t_mk = T0 + raw.annotations.onset + 0.2 / sfreq
    return {"data": data, "ch_names": list(raw.ch_names), "sfreq": sfreq, "ts": ts,
            "markers": markers, "t_mk": t_mk, "tmp": tmp_path_factory.mktemp("xdf")}


def record_fif(rec, directory):
    r = Recorder(directory, rec["ch_names"], rec["sfreq"])
    step = 37
    n = rec["ts"].size
    for a in range(0, n, step):
        b = min(n, a + step)
        r.add_markers([(m, t) for m, t in zip(rec["markers"], rec["t_mk"], strict=True)
                       if rec["ts"][a] - 0.5 / rec["sfreq"] <= t < rec["ts"][min(b, n - 1)]])
        r.write(rec["data"][:, a:b], rec["ts"][a:b])
    r.add_markers([(m, t) for m, t in zip(rec["markers"], rec["t_mk"], strict=True)
                   if t >= rec["ts"][-1]])
    r.close()
    return directory


def xdf_streams(rec, *, markers=True, marker_strings=None, eeg_name="BioSemi", unit="microvolts"):
    """EEG in microvolts, shuffled channels plus an EOG channel, clock offset applied."""
    rng = np.random.default_rng(0)
    order = rng.permutation(len(rec["ch_names"]))
    eog = rng.normal(0, 50, rec["ts"].size)
    uv = np.vstack([rec["data"][order] * 1e6, eog]).T.astype(np.float32)
    chans = [{"label": rec["ch_names"][i], "unit": unit, "type": "EEG"} for i in order]
    chans.append({"label": "HEOG", "unit": unit, "type": "EOG"})
    offs = [(float(rec["ts"][0] + s), OFFSET) for s in np.arange(0, rec["ts"][-1] - rec["ts"][0], 5.0)]
    streams = [XDFStream(eeg_name, "EEG", rec["sfreq"], uv, rec["ts"] - OFFSET, chans,
                         clock_offsets=offs)]
    if markers:
        strings = marker_strings or rec["markers"]
        streams.append(XDFStream("PsychoPy", "Markers", 0.0, list(strings), rec["t_mk"]))
    return streams


def test_xdf_gives_the_same_epochs_as_fif(recording):
    fif_dir = record_fif(recording, recording["tmp"] / "fif")
    path = write_xdf(recording["tmp"] / "rec.xdf", xdf_streams(recording))
    fif = load_spec(f"session:{fif_dir}")
    # the XDF's EEG channels, picked by name in the FIF's order (EOG left out)
    xdf = load_spec(f"session:{path}", preprocessing=fif.spec)
    assert len(fif) == 30 and xdf.stim_ids == fif.stim_ids
    np.testing.assert_allclose(xdf.X, fif.X, rtol=1e-5, atol=1e-11)
    assert np.abs(fif.X).max() > 1e-6  # volts, microvolt-sized signals: units applied
    # without a spec: the EEG-typed channels at the stream's rate, in the stream's order
    own = load_spec(f"session:{path}")
    assert own.spec.sfreq == 500.0 and "HEOG" not in own.spec.ch_names
    assert sorted(own.spec.ch_names) == sorted(recording["ch_names"])
    raw = read_recording(path)
    assert "BioSemi" in raw.info["description"] and "PsychoPy" in raw.info["description"]


def test_xdf_clock_offset_is_applied(recording):
    """Without its clock offsets the EEG would sit OFFSET s away from the markers."""
    streams = xdf_streams(recording)
    path = write_xdf(recording["tmp"] / "offset.xdf", streams)
    raw = read_recording(path)
    ann = [o for o, d in zip(raw.annotations.onset, raw.annotations.description, strict=True)
           if d.startswith("stim/")]
    expected = np.ceil((recording["t_mk"] - recording["ts"][0]) * 500.0 - 0.5 - 1e-6) / 500.0
    np.testing.assert_allclose(ann, expected, atol=1e-9)
    streams[0].clock_offsets = []
    bare = read_recording(write_xdf(recording["tmp"] / "nooffset.xdf", streams))
    assert not [d for d in bare.annotations.description if d.startswith("stim/")]


def test_xdf_stream_choice_units_and_marker_pattern(recording):
    tmp = recording["tmp"]
    renamed = [m.replace("stim/", "img:") for m in recording["markers"]]
    two = xdf_streams(recording, marker_strings=renamed)
    two += xdf_streams(recording, markers=False, eeg_name="Second amp")
    path = write_xdf(tmp / "two.xdf", two)
    with pytest.raises(ValueError, match=r"2 candidate EEG streams .*eeg=NAME"):
        load_spec(f"session:{path}")
    with pytest.raises(ValueError, match="no usable trial"):
        load_spec(f"session:{path},eeg=biosemi")  # markers "img:..." do not map by default
    ds = load_spec(f"session:{path},eeg=biosemi", marker_pattern=r"^img:(?P<id>.+)$")
    assert len(ds) == 30 and ds.stim_ids[0] == recording["markers"][0].removeprefix("stim/")
    with pytest.raises(ValueError, match=r"no stream named 'nope' for the marker.*PsychoPy"):
        load_spec(f"session:{path},eeg=biosemi,markers=nope")
    # units= overrides the channel metadata: the same file read as volts is 1e6 times larger
    as_v = load_spec(f"session:{path},eeg=biosemi,units=V", marker_pattern=r"^img:(?P<id>.+)$")
    np.testing.assert_allclose(as_v.X, ds.X * 1e6, rtol=1e-5)
    bad = write_xdf(tmp / "furlongs.xdf", xdf_streams(recording, unit="furlongs"))
    with pytest.raises(ValueError, match=r"channel .*unit .furlongs. is not a voltage unit; expected one of V, mV"):
        load_spec(f"session:{bad}")


def test_xdf_without_marker_stream_is_a_clear_error(recording):
    path = write_xdf(recording["tmp"] / "nomarkers.xdf", xdf_streams(recording, markers=False))
    with pytest.raises(ValueError, match=r"no marker stream with samples found \(streams: "
                                         r"'BioSemi' \(type 'EEG'.*expected a stream of type Markers"):
        load_spec(f"session:{path}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_spec(f"session:{recording['tmp'] / 'missing.xdf'}")
    junk = recording["tmp"] / "junk.xdf"
    junk.write_bytes(b"not an xdf file")
    with pytest.raises(ValueError, match="could not be read as XDF"):
        load_spec(f"session:{junk}")


def test_marker_pattern_needs_an_id_group(recording, tmp_path):
    raw = simulate_raw(4, seed=1)
    raw.save(tmp_path / "s_raw.fif", verbose="error")
    with pytest.raises(ValueError, match=r"has no named group 'id'.*\(\?P<id>"):
        load_spec(f"session:{tmp_path}", marker_pattern=r"^stim/(.+)$")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        load_spec(f"session:{tmp_path}", marker_pattern=r"^stim/(?P<id>.+$")
    with pytest.raises(ValueError, match="applies to recorded sessions"):
        load_spec("synthetic:4", marker_pattern=r"^stim/(?P<id>.+)$")
    with pytest.raises(ValueError, match=r"apply to XDF files only"):
        load_spec(f"session:{tmp_path},markers=PsychoPy")


def test_xdf_replays_through_the_live_pipeline(tmp_path):
    """``bci-app replay FILE.xdf`` streams the XDF's EEG (volts) and markers into the live
    pipeline with the demo bundle (128 channels, 1 kHz); a marker pattern maps its markers."""
    import json

    from bci_app.cli import main

    raw = simulate_raw(6, seed=9, on=0.6)
    data, sfreq = raw.get_data(), raw.info["sfreq"]
    ts = 100.0 + np.arange(data.shape[1]) / sfreq
    chans = [{"label": c, "unit": "uV", "type": "EEG"} for c in raw.ch_names]
    eeg = XDFStream("amp", "EEG", sfreq, (data * 1e6).T.astype(np.float32), ts - OFFSET, chans,
                    clock_offsets=[(100.0, OFFSET), (110.0, OFFSET)])
    marks = [d.replace("stim/", "img:") for d in raw.annotations.description]
    mk = XDFStream("PsychoPy", "Markers", 0.0, marks, 100.0 + raw.annotations.onset)
    path = write_xdf(tmp_path / "session.xdf", [eeg, mk])
    out = tmp_path / "out"
    rc = main(["replay", str(path), "--headless", "--speed", "2", "--out", str(out),
               "--marker-pattern", r"^img:(?P<id>.+)$"])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["trials"] == 6 and report["reconstructed"] == 6, report


def test_xdf_trains_a_bundle_for_its_montage(recording, tmp_path):
    """``bci-app train --data session:FILE.xdf`` with its own markers and a 32-channel cap."""
    import json

    from bci_app.cli import main

    renamed = [m.replace("stim/", "img:") for m in recording["markers"]]
    path = write_xdf(tmp_path / "calib.xdf", xdf_streams(recording, marker_strings=renamed))
    bundle = tmp_path / "bundle"
    cfg = tmp_path / "few.toml"  # 30 trials of 40 classes: train anyway (recorded in the bundle)
    cfg.write_text("[data]\nmin_trials_per_class = 0\n")
    rc = main(["train", "--data", f"session:{path}", "--out", str(bundle), "--stages", "encoder",
               "--epochs", "1", "--device", "cpu", "--marker-pattern", r"^img:(?P<id>.+)$",
               "--config", str(cfg)])
    assert rc == 0
    cfg = json.loads((bundle / "config.json").read_text())
    assert sorted(cfg["spec"]["ch_names"]) == sorted(recording["ch_names"])  # no HEOG
    assert cfg["spec"]["sfreq"] == 500.0
    assert cfg["training"]["data_summary"]["n"] == 30


# ---------------------------------------------------------------- discontinuities, streams
LOST_S = 274.0  # a stretch without samples, as in xdf-modules' clock_resets.xdf


def clock_reset_streams(rec, join_after: int, lost_s: float = LOST_S):
    """The recording's EEG from a computer whose clock is reset: samples stop at ``J``
    (``join_after`` samples after marker 15's sample), come back ``lost_s`` later, and the
    stream's clock restarts near 1 s (its clock offsets change with it, so pyxdf maps both
    segments back to the recording machine's clock). Returns the EEG stream, ``J`` and the
    marker times on the recording machine's clock."""
    sf = rec["sfreq"]
    k15 = int(marker_sample(rec["ts"], rec["t_mk"][15], sf))
    J = k15 + join_after
    true = rec["ts"] + np.where(np.arange(rec["ts"].size) >= J, lost_s, 0.0)
    offset2 = true[J] - 1.0  # stream clock after the reset: 1.0 s at sample J
    stream_ts = np.where(np.arange(true.size) >= J, true - offset2, true - OFFSET)
    offs = [(float(t), OFFSET) for t in np.arange(stream_ts[0], stream_ts[J - 1], 2.0)]
    offs += [(float(t), float(offset2)) for t in np.arange(1.0, stream_ts[-1], 2.0)]
    chans = [{"label": c, "unit": "V", "type": "EEG"} for c in rec["ch_names"]]
    eeg = XDFStream("BioSemi", "EEG", sf, rec["data"].T.astype(np.float32), stream_ts, chans,
                    clock_offsets=offs)
    t_mk = rec["t_mk"] + np.where(rec["t_mk"] >= rec["ts"][J] - 0.5 / sf, lost_s, 0.0)
    return eeg, J, t_mk


def test_clock_reset_is_a_join_not_lost_valid_data(recording, caplog):
    """A clock reset with 274 s without samples: one join between two samples (MNE's
    zero-length ``BAD boundary``/``EDGE boundary``), the lost time counted in ``gaps``, the
    markers on their own samples on both sides, only the window across the join rejected."""
    sf = recording["sfreq"]
    eeg, J, t_mk = clock_reset_streams(recording, join_after=50)
    inside = float(recording["ts"][J] + LOST_S / 2)  # a marker sent while no sample came
    marks = XDFStream("PsychoPy", "Markers", 0.0, [*recording["markers"], "stim/in-the-gap"],
                      np.append(t_mk, inside))
    path = write_xdf(recording["tmp"] / "reset.xdf", [eeg, marks])
    with caplog.at_level(logging.WARNING, logger="bci_app.datasets.xdf"):
        raw = read_raw_xdf(path)
    assert "1 marker(s) inside a stretch without EEG samples were left out" in caplog.text
    ann = raw.annotations
    joins = [(o, d, e) for o, d, e in zip(ann.onset, ann.description, ann.extras, strict=True)
             if not is_marker(d)]
    assert sorted(d for _, d, _ in joins) == sorted(BOUNDARY_DESCRIPTIONS)
    assert all(o == J / sf and e[LOST_KEY] == round(LOST_S * sf) for o, _, e in joins)
    assert not any(ann.duration)  # nothing covers the valid data after the join
    # every marker on the sample it was sent for, before and after the join
    got = np.round(np.array([o for o, d in zip(ann.onset, ann.description, strict=True)
                             if is_marker(d)]) * sf).astype(int)
    assert np.array_equal(got, [marker_sample(recording["ts"], t, sf) for t in recording["t_mk"]])
    assert (got < J).any() and (got >= J).any()
    assert "1 discontinuity" in raw.info["description"]

    fif = load_spec(f"session:{record_fif(recording, recording['tmp'] / 'fif-reset')}")
    ds = load_spec(f"session:{path}", preprocessing=fif.spec)
    start = got + fif.spec.start_offset
    across = (start < J) & (J < start + fif.spec.n_times)
    assert across.sum() == 1 and ds.skipped == {"gap": 1}
    keep = [i for i in range(len(fif)) if not across[i]]
    assert ds.stim_ids == [fif.stim_ids[i] for i in keep]
    np.testing.assert_allclose(ds.X, fif.X[keep], rtol=1e-5, atol=1e-11)
    assert ds.gaps == {"discontinuities": 1, "samples_lost": round(LOST_S * sf),
                       "seconds_lost": LOST_S}
    assert ds.summary()["gaps"] == ds.gaps and fif.gaps is None


def test_clock_reset_replays_with_its_gap(recording, stream_id, wait):
    """``replay`` of the joined raw: the stamps jump by the lost time, so the live path counts
    the lost samples and rejects the same window as offline epoching."""
    from bci_app.acquisition import Acquisition, Epocher, LSLMarkerSource, LSLSource, SessionPlayer
    from bci_app.datasets.sessions import default_spec
    from bci_app.preprocessing import epoch_raw
    from bci_app.stimuli import MarkerMapper

    eeg, J, t_mk = clock_reset_streams(recording, join_after=50)
    marks = XDFStream("PsychoPy", "Markers", 0.0, list(recording["markers"]), t_mk)
    raw = read_raw_xdf(write_xdf(recording["tmp"] / "reset-replay.xdf", [eeg, marks]))
    spec = default_spec(list(raw.ch_names), raw.info["sfreq"])
    offline = epoch_raw(raw, spec, MarkerMapper())
    assert offline.reject_counts() == {"gap": 1}
    name, sid = stream_id
    trials = []
    player = SessionPlayer(raw, speed=10.0, name=name, source_id=sid)
    acq = Acquisition(LSLSource(name, source_id=sid, ch_names=list(raw.ch_names), sfreq=spec.sfreq,
                                timeout=5),
                      LSLMarkerSource(f"{name}-markers", timeout=5),
                      Epocher(spec, MarkerMapper(), buffer_seconds=5), on_trial=trials.append)
    try:
        player.open()
        acq.start()
        player.start(wait_for_consumers=5)
        assert player.wait(60)
        wait(lambda: acq.epocher.buffer.n_total == player.n_times and acq.epocher.n_pending == 0,
             10, what="all samples and trials")
    finally:
        acq.stop()
        player.stop()
    assert [t.stim_id for t in trials] == offline.stim_ids
    assert [t.reject_reason for t in trials] == offline.reject
    assert acq.stats["samples_lost"] == round(LOST_S * spec.sfreq)


def test_string_streams_of_any_type_are_markers(recording, caplog):
    """Markers come from a stream whose type names markers (``StringMarker``), else from the
    only irregular-rate string stream (``Events``); empty streams are skipped with a note."""
    tmp = recording["tmp"]
    eeg = xdf_streams(recording, markers=False)[0]
    events = XDFStream("Presenter", "Events", 0.0, list(recording["markers"]), recording["t_mk"])
    ctrl = XDFStream("ctrl", "control", 0.0, ['{"state": 2}'], recording["t_mk"][:1])
    typed = XDFStream("Typed", "StringMarker", 0.0, list(recording["markers"]), recording["t_mk"])
    empty_eeg = XDFStream("Spare amp", "EEG", 500.0, np.zeros((0, 2), np.float32), np.zeros(0))
    empty_mk = XDFStream("Unused", "Markers", 0.0, [], np.zeros(0))
    ds = load_spec(f"session:{write_xdf(tmp / 'events.xdf', [eeg, events])}")
    assert len(ds) == 30
    with pytest.raises(ValueError, match=r"2 candidate marker streams .*'Presenter'.*'ctrl'"):
        load_spec(f"session:{write_xdf(tmp / 'two.xdf', [eeg, events, ctrl])}")
    with caplog.at_level(logging.WARNING, logger="bci_app.datasets.xdf"):
        raw = read_recording(write_xdf(tmp / "typed.xdf", [empty_eeg, eeg, ctrl, typed, empty_mk]))
    assert "skipped 2 empty stream(s)" in caplog.text and "'Spare amp'" in caplog.text
    assert "markers 'Typed'" in raw.info["description"]
    assert "empty streams skipped: 'Spare amp', 'Unused'" in raw.info["description"]
    with pytest.raises(ValueError, match=r"stream 'Unused' \(marker\) holds no samples"):
        read_recording(tmp / "typed.xdf", marker_stream="Unused")


def test_xdf_modules_minimal_file():
    """xdf-modules' minimal.xdf: its ``StringMarker`` stream (a regular-rate string stream)
    gives the markers, each on its nearest sample of the (clock-corrected) EEG stream."""
    import pyxdf

    streams, _ = pyxdf.load_xdf(str(DATA / "minimal.xdf"), verbose=False)
    eeg = next(s for s in streams if s["info"]["type"] == ["EEG"])
    mk = next(s for s in streams if s["info"]["type"] == ["StringMarker"])
    raw = read_raw_xdf(DATA / "minimal.xdf", units="uV")
    assert "markers 'SendDataString'" in raw.info["description"]
    ts, sf = eeg["time_stamps"], float(eeg["info"]["nominal_srate"][0])
    inside = [(marker_sample(ts, t, sf), m[0]) for t, m in zip(mk["time_stamps"], mk["time_series"],
                                                                  strict=True)
              if marker_sample(ts, t, sf) < ts.size]
    assert 0 < len(inside) <= len(mk["time_stamps"])
    assert [(int(round(o * sf)), d) for o, d in zip(raw.annotations.onset,
                                                     raw.annotations.description, strict=True)] == inside
    assert "Hello" in raw.annotations.description
    np.testing.assert_allclose(raw.get_data(), eeg["time_series"].T * 1e-6)


def test_xdf_modules_empty_streams_file(caplog):
    """xdf-modules' empty_streams.xdf: its two empty streams are skipped with a note, never a
    crash; without an EEG-typed stream the error lists them and asks for eeg=NAME."""
    path = DATA / "empty_streams.xdf"
    with pytest.raises(ValueError, match=r"no EEG stream with samples found .*, empty\).*eeg=NAME"):
        read_raw_xdf(path)
    with caplog.at_level(logging.WARNING, logger="bci_app.datasets.xdf"):
        raw = read_raw_xdf(path, eeg_stream="Data stream: test stream 0 counter", units="V")
    assert "skipped 2 empty stream(s)" in caplog.text
    assert raw.n_times == 10 and "markers 'ctrl'" in raw.info["description"]
    assert "empty streams skipped: 'Empty data stream: test stream 0 counter', " \
           "'Empty marker stream: test stream 0 counter'" in raw.info["description"]
    with pytest.raises(ValueError, match=r"stream 'Empty data stream: test stream 0 counter' "
                                         r"\(EEG\) holds no samples"):
        read_raw_xdf(path, eeg_stream="Empty data stream: test stream 0 counter")


def test_xdf_modules_clock_resets_file():
    """xdf-modules' clock_resets.xdf (its EEG clock is reset with 274 s without samples): one
    zero-length join where pyxdf's stamps jump, every marker kept on its sample, and only the
    windows that straddle the join rejected as ``gap``."""
    import pyxdf

    from bci_app.preprocessing.spec import PreprocessingSpec
    from bci_app.stimuli.markers import MarkerMapper

    path = DATA / "clock_resets.xdf"
    streams, _ = pyxdf.load_xdf(str(path), verbose=False)
    eeg = next(s for s in streams if s["info"]["type"] == ["EEG"])
    ts, sf = eeg["time_stamps"], float(eeg["info"]["nominal_srate"][0])
    (jump,) = np.nonzero(np.diff(ts) > 1.5 / sf)[0]  # the reset: the stamps jump once
    raw = read_raw_xdf(path, units="mV")
    ann = raw.annotations
    joins = [(round(o * sf), d) for o, d, w in zip(ann.onset, ann.description, ann.duration, strict=True)
             if not is_marker(d) and w == 0]
    assert sorted(joins) == sorted((jump + 1, d) for d in BOUNDARY_DESCRIPTIONS)
    assert not any(ann.duration) and raw.n_times == ts.size  # no stretch laid over valid samples
    np.testing.assert_allclose(raw.get_data(), eeg["time_series"].T * 1e-3, rtol=1e-6)
    assert sum(map(is_marker, ann.description)) == 175  # the file's marker stream, all of it

    for tmax, straddle in ((0.5, 0), (5.0, 5)):
        spec = PreprocessingSpec(sfreq=sf, ch_names=list(raw.ch_names), tmin=0.0, tmax=tmax,
                                 l_freq=None, h_freq=None, notch=None)
        ep = epoch_raw(raw, spec, MarkerMapper(r"^(?P<id>.+)$"))
        on = np.asarray(ep.onset_samples)
        across = (on <= jump) & (on + spec.n_times > jump + 1)
        assert across.sum() == straddle
        reasons = np.asarray(ep.reject, dtype=object)
        assert all(reasons[across] == "gap") and "gap" not in reasons[~across]
