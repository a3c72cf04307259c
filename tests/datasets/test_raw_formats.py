"""``session:FILE`` for every raw format, trigger channels and event maps (issue 21, items 3-4).

Acceptance: "The same session as FIF, BrainVision with trigger codes + --event-map, and EDF:
identical trials and top-1".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bci_app.datasets import load_spec
from bci_app.stimuli import EventMap, trigger_code
from tests.datasets.raw_writers import write_brainvision, write_edf

MONTAGE = "standard_1020:Fz,Cz,Pz,P3,P4,O1,Oz,O2"
SFREQ = 250.0


@pytest.fixture(scope="module")
def session_files(tmp_path_factory):
    """One simulated session as FIF (annotations "stim/<id>"), BrainVision ("Stimulus/S N")
    and EDF (a "Status" trigger channel), with the event map of its codes."""
    from bci_app.simulation import simulate_raw

    out = tmp_path_factory.mktemp("formats")
    raw = simulate_raw(240, seed=3, montage=MONTAGE, sfreq=SFREQ, classes=8, snr=2.0)
    data, names = raw.get_data(), list(raw.ch_names)
    desc = list(raw.annotations.description)
    onsets = np.round(raw.annotations.onset * SFREQ).astype(int)
    ids = sorted({d.split("/", 1)[1] for d in desc})
    code = {s: i + 1 for i, s in enumerate(ids)}
    fif = out / "s_raw.fif"
    raw.save(fif, verbose="error")
    events = [(int(k), code[d.split("/", 1)[1]]) for k, d in zip(onsets, desc, strict=True)]
    vhdr = write_brainvision(out / "s.vhdr", data, names, SFREQ, events)
    trig = np.zeros(data.shape[1], dtype=np.int64)
    for k, c in events:
        trig[k:k + 5] = c
    edf = write_edf(out / "s.edf", data, names, SFREQ, trig)
    bdf = write_edf(out / "s.bdf", data, names, SFREQ, trig)  # BioSemi: 24-bit, Status channel
    emap = out / "events.tsv"
    emap.write_text("marker\tstimulus\n" + "".join(f"{c}\t{s}\n" for s, c in code.items()))
    return {"fif": fif, "vhdr": vhdr, "edf": edf, "bdf": bdf, "map": emap, "n": len(desc)}


def _top1(ds) -> float:
    from bci_app.models.baseline import LinearBaseline

    tr, te = ds.splits["train"], ds.splits["test"]
    clf = LinearBaseline(sfreq=ds.spec.sfreq).fit(ds.X[tr], np.asarray(ds.labels)[tr])
    return float(clf.score(ds.X[te], np.asarray(ds.labels)[te]))


def test_same_session_fif_brainvision_edf_identical_trials_and_top1(session_files):
    """FIF (annotations), BrainVision ("Stimulus/S N" + event map), EDF and BDF (a Status
    trigger channel + event map): the same trials, data up to the format's precision, and
    the same linear-baseline top-1."""
    f = session_files
    a = load_spec(f"session:{f['fif']}")
    b = load_spec(f"session:{f['vhdr']}", event_map=f["map"])
    c = load_spec(f"session:{f['edf']},event_map={f['map']}")  # trigger channel found by type
    d = load_spec(f"session:{f['bdf']}", event_map=f["map"])
    assert len(a.stim_ids) == f["n"]
    # relative to the largest value: float32 BrainVision and 24-bit BDF ~1e-7, 16-bit EDF ~2e-5
    for other, tol in ((b, 1e-6), (c, 1e-4), (d, 1e-6)):
        assert other.stim_ids == a.stim_ids
        assert list(other.spec.ch_names) == list(a.spec.ch_names)
        np.testing.assert_array_equal(other.labels, a.labels)
        assert np.max(np.abs(other.X - a.X)) < tol * float(np.abs(a.X).max())
        for k in ("train", "val", "test"):
            np.testing.assert_array_equal(other.splits[k], a.splits[k])
    accs = [_top1(ds) for ds in (a, b, c, d)]
    assert accs[0] > 1.5 / 8  # the session carries signal
    assert accs[0] == accs[1] == accs[2] == accs[3], accs



def test_eeglab_set_and_egi_mff_written_by_their_own_tools(tmp_path):
    """EEGLAB ``.set`` written by MNE's exporter with eeglabio (events typed "stim/<id>"), and
    EGI ``.mff`` written by EGI's own library mffpy (a HydroCel 32 net: E1..E32 plus the
    vertex reference, events as 4-letter codes + an event map): the same trials, data to
    float32 precision and the same linear-baseline top-1 as the FIF they were made from."""
    import datetime

    import mne

    pytest.importorskip("eeglabio")
    mffpy = pytest.importorskip("mffpy")
    from mffpy.writer import BinWriter

    from bci_app.simulation import simulate_raw

    raw = simulate_raw(160, seed=4, montage="biosemi32", sfreq=SFREQ, classes=8, snr=2.0)
    raw.rename_channels({n: f"E{i + 1}" for i, n in enumerate(raw.ch_names)})  # the net's names
    raw.save(tmp_path / "s_raw.fif", verbose="error")
    mne.export.export_raw(tmp_path / "s.set", raw, fmt="eeglab", verbose="error")

    start = datetime.datetime(2026, 12, 8, 10, 0, tzinfo=datetime.UTC)
    writer = mffpy.Writer(str(tmp_path / "s.mff"))
    writer.addxml("fileInfo", recordTime=start)
    signal = BinWriter(sampling_rate=int(SFREQ), data_type="EEG")
    ref = np.zeros((1, raw.n_times))  # the vertex reference, recorded as a 33rd channel
    signal.add_block((np.vstack([raw.get_data(), ref]) * 1e6).astype(np.float32), offset_us=0)
    writer.addbin(signal)
    writer.add_coordinates_and_sensor_layout("HydroCel GSN 32 1.0")
    codes: dict[str, str] = {}
    events = []
    for onset, desc in zip(raw.annotations.onset, raw.annotations.description, strict=True):
        code = codes.setdefault(desc.split("/", 1)[1], f"S{len(codes) + 1:03d}")
        events.append({"beginTime": start + datetime.timedelta(seconds=float(onset)), "duration": 4,
                       "code": code, "label": desc})
    writer.addxml("eventTrack", name="Events", trackType="EVNT", events=events)
    writer.write()
    emap = tmp_path / "codes.tsv"
    emap.write_text("marker\tstimulus\n" + "".join(f"{c}\t{s}\n" for s, c in codes.items()))

    a = load_spec(f"session:{tmp_path / 's_raw.fif'}")
    b = load_spec(f"session:{tmp_path / 's.set'}")
    c = load_spec(f"session:{tmp_path / 's.mff'}", event_map=emap)
    assert len(a.stim_ids) == 160 and b.stim_ids == a.stim_ids and c.stim_ids == a.stim_ids
    assert list(b.spec.ch_names) == list(a.spec.ch_names)
    assert list(c.spec.ch_names) == [*a.spec.ch_names, "Vertex Reference"]  # as MNE reads the net
    scale = float(np.abs(a.X).max())
    assert np.max(np.abs(b.X - a.X)) < 1e-6 * scale
    assert np.max(np.abs(c.X[:, :32] - a.X)) < 1e-6 * scale and not c.X[:, 32].any()
    for other in (b, c):
        np.testing.assert_array_equal(other.labels, a.labels)
        for k in ("train", "val", "test"):
            np.testing.assert_array_equal(other.splits[k], a.splits[k])
    accs = [_top1(ds) for ds in (a, b)]
    assert accs[0] > 1.5 / 8 and accs[0] == accs[1], accs


def test_brainvision_through_marker_pattern(session_files):
    """Without a map, "Stimulus/S N" markers map through --marker-pattern (the code is the id)."""
    with pytest.raises(ValueError, match="no usable trial"):
        load_spec(f"session:{session_files['vhdr']}")  # codes are not demo stimulus ids
    ds = load_spec(f"session:{session_files['fif']}", marker_pattern=r"^stim/(?P<id>c0\d_i\d+)$")
    assert 0 < len(ds.stim_ids) < session_files["n"] + 1


def test_trigger_channel_by_name_and_missing(session_files):
    f = session_files
    ds = load_spec(f"session:{f['edf']}", event_map=f["map"], trigger_channel="status")
    assert len(ds.stim_ids) == f["n"]
    with pytest.raises(ValueError, match=r"trigger channel 'STI 014'.*Fz \(eeg\).*Status \(stim\)"):
        load_spec(f"session:{f['edf']}", event_map=f["map"], trigger_channel="STI 014")


def test_unmapped_codes_are_counted_not_fatal(session_files, tmp_path):
    f = session_files
    lines = f["map"].read_text().splitlines()
    partial = tmp_path / "half.tsv"
    partial.write_text("\n".join(lines[:5]) + "\n")  # header + codes 1-4
    ds = load_spec(f"session:{f['edf']}", event_map=partial)
    assert 0 < len(ds.stim_ids) < f["n"]
    assert ds.skipped["unknown_marker"] == f["n"] - len(ds.stim_ids)


def test_unknown_format_and_missing_file(tmp_path):
    bad = tmp_path / "x.abc"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"unknown file format '\.abc'.*\.vhdr"):
        load_spec(f"session:{bad}")
    with pytest.raises(FileNotFoundError, match="nope.edf"):
        load_spec(f"session:{tmp_path / 'nope.edf'}")


# ------------------------------------------------------------------ event map files
def test_event_map_codes_and_strings(tmp_path):
    p = tmp_path / "m.tsv"
    p.write_text("# a lab's map\nmarker\tstimulus\tnote\n12\tc00_i00\tx\nface_1\tc01_i02\t\n\n")
    m = EventMap.load(p, {"c00_i00", "c01_i02"})
    assert m("12") == m("Stimulus/S 12") == m("S 12") == m(" 12 ") == "c00_i00"
    assert m("face_1") == "c01_i02"
    assert m("Response/R 12") is None and m("13") is None and m.unknown == 2
    assert trigger_code("Stimulus/S  7") == 7 and trigger_code("stim/c00_i00") is None


def test_event_map_errors_name_the_line(tmp_path):
    from bci_app.stimuli import DemoStimulusSet

    p = tmp_path / "dup.tsv"
    p.write_text("marker\tstimulus\n12\tc00_i00\n12\tc00_i01\n")
    with pytest.raises(ValueError, match=r"dup.tsv, line 3: trigger code 12 is already mapped on line 2"):
        EventMap.load(p)
    p.write_text("marker\tstimulus\nS 1\tc00_i00\nS 1\tc00_i01\n")
    with pytest.raises(ValueError, match=r"line 3: marker 'S 1' is already mapped"):
        EventMap.load(p)
    p.write_text("marker\tstimulus\n1\tc00_i00\n2\tdog_17\n")
    with pytest.raises(ValueError, match=r"line 3: 'dog_17'"):
        EventMap.load(p, DemoStimulusSet())
    assert EventMap.load(p)("2") == "dog_17"  # no stimulus set known: any id
    p.write_text("code\tid\n1\tc00_i00\n")
    with pytest.raises(ValueError, match="line 1.*'marker' and 'stimulus'"):
        EventMap.load(p)
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        EventMap.load(tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        load_spec(f"session:{tmp_path / 'x.fif'}", event_map=tmp_path / "missing.tsv")


def test_event_map_rejected_for_non_session_data(tmp_path):
    with pytest.raises(ValueError, match="apply to recorded sessions"):
        load_spec("synthetic:50", event_map=Path(tmp_path / "m.tsv"))


@pytest.mark.parametrize("fmt", ["vhdr", "edf"])
def test_replay_streams_brainvision_and_edf_with_event_map(fmt, tmp_path):
    """``bci-app replay FILE.vhdr|FILE.edf --event-map MAP`` streams the file (BrainVision
    "Stimulus/S N" markers; EDF trigger-channel codes, the Status channel left out of the
    bundle's picks) into the live pipeline with the demo bundle (128 channels, 1 kHz)."""
    import json

    from bci_app.cli import main
    from bci_app.simulation import simulate_raw

    raw = simulate_raw(6, seed=9, on=0.6)
    data, sfreq, names = raw.get_data(), raw.info["sfreq"], list(raw.ch_names)
    desc = [d.split("/", 1)[1] for d in raw.annotations.description]
    onsets = np.round(raw.annotations.onset * sfreq).astype(int)
    codes = {s: 10 + i for i, s in enumerate(dict.fromkeys(desc))}
    events = [(int(k), codes[s]) for k, s in zip(onsets, desc, strict=True)]
    if fmt == "vhdr":
        path = write_brainvision(tmp_path / "s.vhdr", data, names, sfreq, events)
    else:
        trig = np.zeros(data.shape[1], dtype=np.int64)
        for k, c in events:
            trig[k:k + 10] = c
        path = write_edf(tmp_path / "s.edf", data, names, sfreq, trig)
    emap = tmp_path / "map.tsv"
    emap.write_text("marker\tstimulus\n" + "".join(f"{c}\t{s}\n" for s, c in codes.items()))
    out = tmp_path / "out"
    rc = main(["replay", str(path), "--headless", "--speed", "2", "--out", str(out),
               "--event-map", str(emap)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["trials"] == 6 and report["reconstructed"] == 6, report
    lines = [json.loads(s) for s in (out / "trials.jsonl").read_text().splitlines()]
    assert [d["stim_id"] for d in lines] == desc


def test_train_and_evaluate_pass_event_options_into_the_session_spec():
    from bci_app.cli import _fold_event_options, build_parser

    p = build_parser()
    args = p.parse_args(["train", "--data", "session:s.vhdr", "--out", "b", "--event-map", "m.tsv",
                         "--trigger-channel", "Status"])
    _fold_event_options(args)
    assert args.data == "session:s.vhdr,event_map=m.tsv,trigger=Status"
    args = p.parse_args(["evaluate", "--bundle", "b", "--data", "synthetic:10", "--out", "o",
                         "--event-map", "m.tsv"])
    with pytest.raises(ValueError, match="apply to recorded sessions"):
        _fold_event_options(args)
    for cmd in (["live", "--source", "lsl"], ["replay", "s.fif"], ["record", "--source", "lsl", "--out", "o"]):
        a = p.parse_args([*cmd, "--event-map", "m.tsv", "--trigger-channel", "STI 014"])
        assert a.event_map == "m.tsv" and a.trigger_channel == "STI 014"
