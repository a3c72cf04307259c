"""``session:FILE.xdf``: an XDF written here gives the same epochs as the same data in FIF."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.acquisition.recorder import Recorder
from bci_app.datasets import load_spec, read_recording
from bci_app.simulation import simulate_raw
from tests.datasets.xdf_writer import XDFStream, write_xdf

T0 = 5000.0  # LSL time of the first sample on the recording machine
OFFSET = 123.25  # amplifier clock is this far behind the recording machine's clock


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
    with pytest.raises(ValueError, match=r"no marker stream found \(streams: 'BioSemi' \(type 'EEG'.*"
                                         r"expected a stream of type Markers"):
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
