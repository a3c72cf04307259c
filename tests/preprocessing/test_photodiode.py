"""Photodiode onsets: light edges after markers, re-timed session epochs, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.preprocessing.photodiode import find_edges, photodiode_summary

MONTAGE = "standard_1020:Fz,Cz,Pz,O1,Oz,O2"


def light_channel(
    n: int,
    sfreq: float,
    marker_samples: np.ndarray,
    delays_s: np.ndarray,
    *,
    on_s: float = 0.1,
    amp: float = 1.0,
    noise: float = 0.03,
    drift: float = 0.2,
    seed: int = 0,
    falling: bool = False,
) -> np.ndarray:
    """A light sensor: ``amp`` while the patch is lit (from marker + delay for ``on_s``),
    plus white noise and a slow sinusoidal baseline of ``drift`` x ``amp``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sfreq
    x = drift * amp * np.sin(2 * np.pi * t / 7.0) + noise * amp * rng.standard_normal(n)
    for m, d in zip(marker_samples, delays_s, strict=True):
        if np.isnan(d):
            continue
        a = int(m + np.ceil(d * sfreq))
        x[a : a + int(on_s * sfreq)] += -amp if falling else amp
    return x


def add_photodiode(raw, delays_s: np.ndarray, name: str = "PD", **kw):
    """``raw`` (a simulated session) with a ``misc`` photodiode channel trailing each marker."""
    import mne

    sfreq = raw.info["sfreq"]
    marks = np.round(np.asarray(raw.annotations.onset) * sfreq).astype(np.int64)
    x = light_channel(raw.n_times, sfreq, marks, delays_s, **kw)
    info = mne.create_info([name], sfreq, ["misc"])
    pd = mne.io.RawArray(x[None] * 1e-3, info, verbose="error")
    raw.add_channels([pd], force_update_info=True)
    return raw


@pytest.mark.parametrize("falling", [False, True])
def test_find_edges_recovers_known_delays(falling):
    sfreq, n_tr = 1000.0, 80
    rng = np.random.default_rng(1)
    marks = (1000 + np.arange(n_tr) * 400).astype(np.int64)
    delays = rng.uniform(0.010, 0.050, n_tr)
    x = light_channel(int(marks[-1] + 2000), sfreq, marks, delays, falling=falling, seed=2)
    edges = find_edges(x, sfreq, marks)
    assert (edges >= 0).all()
    true_ms = np.ceil(delays * sfreq)  # the first lit sample
    got_ms = (edges - marks) * 1000 / sfreq
    assert np.abs(got_ms - true_ms).max() <= 1.0
    s = photodiode_summary(got_ms)
    assert s["n"] == n_tr and s["missing"] == 0
    assert (
        abs(s["mean_ms"] - 1000 * delays.mean()) < 2
        and abs(s["sd_ms"] - 1000 * delays.std(ddof=1)) < 2
    )
    assert s["min_ms"] <= s["mean_ms"] <= s["max_ms"] and sum(s["hist"]["counts"]) == n_tr


def test_missing_edges_are_minus_one_and_counted():
    sfreq = 500.0
    marks = np.array([500, 800, 1100, 1400, 1700])
    delays = np.array([0.02, np.nan, 0.03, 0.2, 0.04])  # trial 1 no light, trial 3 too late
    x = light_channel(2500, sfreq, marks, delays)
    edges = find_edges(x, sfreq, marks, window=(0.0, 0.15))
    assert edges[1] == -1 and edges[3] == -1 and (edges[[0, 2, 4]] > marks[[0, 2, 4]]).all()
    d = np.where(edges >= 0, (edges - marks) * 2.0, np.nan)
    s = photodiode_summary(d)
    assert (s["n"], s["missing"]) == (5, 2)


def test_flat_channel_is_a_clear_error():
    x = np.random.default_rng(0).standard_normal(5000) * 1e-6
    with pytest.raises(ValueError, match=r"photodiode channel 'AUX1' never crosses its threshold"):
        find_edges(x, 1000.0, [1000, 2000], name="AUX1")
    with pytest.raises(ValueError, match="never crosses its threshold"):
        find_edges(np.zeros(3000), 1000.0, [1000], name="AUX1")


def test_steps_but_none_after_markers_is_a_clear_error():
    sfreq = 1000.0
    marks = np.array([1000, 2000, 3000])
    x = light_channel(4000, sfreq, marks + 500, np.full(3, 0.02))  # light far from the markers
    with pytest.raises(ValueError, match=r"'PD' never crosses its threshold within 0-150 ms"):
        find_edges(x, sfreq, marks, name="PD")


def _session(tmp_path, n_trials=60, seed=0, missing=()):
    from bci_app.simulation import simulate_raw

    raw = simulate_raw(
        n_trials, seed=seed, montage=MONTAGE, sfreq=1000.0, on=0.3, off=0.2, line_freq=None
    )
    rng = np.random.default_rng(seed + 7)
    delays = rng.uniform(0.010, 0.050, n_trials)
    lit = delays.copy()
    lit[list(missing)] = np.nan
    add_photodiode(raw, lit, seed=seed + 3)
    path = tmp_path / "pd_raw.fif"
    raw.save(path, verbose="error")
    return path, delays


def test_session_loader_retimes_trials_to_the_light(tmp_path):
    from bci_app.datasets.sessions import default_spec, load_session, read_recording
    from bci_app.preprocessing import epoch_raw
    from bci_app.stimuli import MarkerMapper

    path, delays = _session(tmp_path, missing=(3, 10))
    ds = load_session(path, photodiode="PD")
    assert "PD" not in ds.spec.ch_names and len(ds.spec.ch_names) == 6
    s = ds.photodiode
    ok = np.delete(delays, [3, 10]) * 1000
    assert (s["n"], s["missing"]) == (60, 2)
    assert abs(s["mean_ms"] - ok.mean()) < 2 and abs(s["sd_ms"] - ok.std(ddof=1)) < 2
    assert ds.skipped.get("photodiode_missing") == 2 and len(ds) == 58
    # onsets moved by the delay: the epochs start at the edge, not the marker
    raw = read_recording(path)
    spec = default_spec(ds.spec.ch_names, 1000.0)
    plain = epoch_raw(raw, spec, MarkerMapper())
    timed = epoch_raw(raw, spec, MarkerMapper(), photodiode="PD")
    shift = (timed.onset_samples - plain.onset_samples)[timed.ok]
    assert np.abs(shift - np.ceil(ok)).max() <= 1
    assert timed.reject_counts() == {"photodiode_missing": 2}


def test_session_loader_bad_photodiode_channel(tmp_path):
    from bci_app.datasets.sessions import load_session

    path, _ = _session(tmp_path, n_trials=10)
    with pytest.raises(ValueError, match=r"--photodiode 'LIGHT': no such channel.*Fz, Cz, .*PD"):
        load_session(path, photodiode="LIGHT")
    with pytest.raises(ValueError, match=r"photodiode channel 'Oz' never crosses its threshold"):
        load_session(path, photodiode="Oz")


def test_live_epocher_cuts_from_the_light_edge_like_offline():
    """The live epocher waits for the search window, cuts from the edge, counts the missing."""
    from bci_app.acquisition.epocher import Epocher
    from bci_app.preprocessing import PreprocessingSpec, epoch_array
    from bci_app.stimuli import MarkerMapper

    sf = 500.0
    spec = PreprocessingSpec(
        sfreq=sf, ch_names=["a", "b"], tmin=-0.05, tmax=0.3, l_freq=None, h_freq=None, notch=None
    )
    n = 6000
    marks = np.arange(400, 5400, 250)
    delays = np.random.default_rng(3).uniform(0.010, 0.050, marks.size)
    lit = delays.copy()
    lit[4] = np.nan  # this trial's light never comes
    pd = light_channel(n, sf, marks, lit, seed=4)
    x = np.random.default_rng(5).standard_normal((2, n))
    ts = 20.0 + np.arange(n) / sf
    ep = Epocher(spec, MarkerMapper(), buffer_seconds=8, photodiode_window=(0.0, 0.15))
    ep.push_markers([(f"stim/{k}", ts[k]) for k in marks])
    trials = []
    rows = np.vstack([x, pd])  # the source's chunks: the spec's channels, then the light sensor
    for s in range(0, n, 17):
        trials += ep.push_data(rows[:, s : s + 17], ts[s : s + 17])
    assert len(trials) == marks.size
    edges = find_edges(pd, sf, marks)
    ok = edges >= 0
    assert [t.reject_reason for t in trials].count("photodiode_missing") == 1 and not ok[4]
    assert [t.onset_sample for t in trials if t.ok] == edges[ok].tolist()
    off = epoch_array(x, edges[ok], [f"stim/{k}" for k in marks[ok]], spec, MarkerMapper())
    np.testing.assert_allclose(np.stack([t.data for t in trials if t.ok]), off.X, rtol=1e-6)
    s = ep.photodiode_summary()
    assert (s["n"], s["missing"]) == (marks.size, 1)
    assert abs(s["mean_ms"] - 1000 * np.delete(delays, 4).mean()) < 2
    with pytest.raises(ValueError, match=r"expected \(3, n_samples\) for the spec's channels, then the photodiode"):
        ep.push_data(x[:, :5], ts[:5] + 100)
    from bci_app.session.report import SessionReport

    rep = SessionReport()
    assert "photodiode" not in rep.summary()
    rep.photodiode = s
    assert rep.summary()["photodiode"]["missing"] == 1


# ---------------------------------------------------------------- --photodiode on the commands
def _event_map(raw, path):
    """A ``marker<TAB>stimulus`` table mapping each of ``raw``'s markers to its stimulus id."""
    rows = sorted({d: d.removeprefix("stim/") for d in raw.annotations.description}.items())
    path.write_text("marker\tstimulus\n" + "".join(f"{m}\t{s}\n" for m, s in rows))
    return path


def test_load_spec_takes_the_photodiode_on_one_path(tmp_path):
    """``load_spec(..., photodiode=)``, the spec option ``photodiode=`` and the folded
    ``--photodiode`` of train/evaluate are one path, and it combines with ``--event-map``."""
    from bci_app.cli import _fold_event_options, build_parser
    from bci_app.datasets import load_spec, read_recording

    path, delays = _session(tmp_path, n_trials=30)
    by_arg = load_spec(f"session:{path}", photodiode="PD")
    by_spec = load_spec(f"session:{path},photodiode=PD")
    tsv = _event_map(read_recording(path), tmp_path / "map.tsv")
    # what train/evaluate --event-map MAP --photodiode PD load (see the folding below)
    mapped = load_spec(f"session:{path},event_map={tsv},photodiode=PD")
    for ds in (by_spec, mapped):
        assert ds.stim_ids == by_arg.stim_ids and ds.photodiode == by_arg.photodiode
        np.testing.assert_array_equal(ds.X, by_arg.X)
    assert abs(by_arg.photodiode["mean_ms"] - 1000 * delays.mean()) < 2
    assert by_arg.summary()["photodiode"]["n"] == 30 and "PD" not in by_arg.spec.ch_names
    plain = load_spec(f"session:{path}")
    assert plain.photodiode is None and not np.array_equal(plain.X, by_arg.X)
    parser = build_parser()
    for argv in (["train"], ["evaluate", "--bundle", "b"]):
        args = parser.parse_args([*argv, "--data", f"session:{path}", "--out", "o", "--event-map",
                                  str(tsv), "--photodiode", "PD"])
        _fold_event_options(args)
        assert args.data == f"session:{path},event_map={tsv},photodiode=PD"
    args = parser.parse_args(["evaluate", "--bundle", "b", "--data", "synthetic:10", "--out", "o",
                              "--photodiode", "PD"])
    with pytest.raises(ValueError, match=r"option\(s\) --photodiode apply to recorded sessions"):
        _fold_event_options(args)
    with pytest.raises(ValueError, match=r"option\(s\) --photodiode apply to recorded sessions"):
        load_spec("synthetic:10", photodiode="PD")


def test_live_sources_read_the_photodiode_after_the_bundles_channels(capsys):
    """``live``/``replay --photodiode``: the stream is read as the bundle's channels, then the
    sensor (the epocher's last row); a sensor that is one of the EEG channels is an error, and
    so is one on the virtual subject (``demo``), which has none."""
    from bci_app.cli import build_parser, main
    from bci_app.preprocessing import PreprocessingSpec
    from bci_app.session.wiring import source_options

    spec = PreprocessingSpec(sfreq=500.0, ch_names=["Fz", "Cz", "Oz"])
    args = build_parser().parse_args(["live", "--source", "lsl:Amp", "--photodiode", "AUX1"])
    assert source_options(args, spec)["ch_names"] == ["Fz", "Cz", "Oz", "AUX1"]
    args = build_parser().parse_args(["live", "--source", "lsl:Amp", "--photodiode", "oz"])
    with pytest.raises(ValueError, match=r"--photodiode 'oz' is one of the 3 EEG channels"):
        source_options(args, spec)
    assert main(["demo", "--headless", "--photodiode", "PD"]) == 2
    assert "the virtual subject's stream has no light-sensor channel" in capsys.readouterr().err


def test_replay_photodiode_retimes_the_live_trials(tmp_path):
    """``replay SESSION --photodiode PD --record DIR`` with the demo bundle: the sensor streams
    with the EEG, each live trial waits for its light edge, report.json has the delays of the
    truth, and the recording keeps the sensor as a misc channel named in session.json."""
    import json

    from bci_app.cli import main
    from bci_app.simulation import simulate_raw

    n = 8
    raw = simulate_raw(n, seed=9, on=0.6)
    truth = np.random.default_rng(12).uniform(0.010, 0.050, n)
    add_photodiode(raw, truth, seed=6)
    raw.save(tmp_path / "pd_raw.fif", verbose="error")
    out = tmp_path / "out"
    rec = tmp_path / "rec"
    rc = main(["replay", str(tmp_path / "pd_raw.fif"), "--headless", "--speed", "2", "--out", str(out),
               "--photodiode", "PD", "--record", str(rec)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["trials"] == n and report["reconstructed"] == n, report
    pd = report["photodiode"]
    assert (pd["n"], pd["missing"]) == (n, 0)
    assert abs(pd["mean_ms"] - 1000 * truth.mean()) < 2 and abs(pd["sd_ms"] - 1000 * truth.std(ddof=1)) < 2
    meta = json.loads((rec / "session.json").read_text())
    assert meta["photodiode"] == "PD" and meta["ch_names"][-1] == "PD" and meta["ch_types"][-1] == "misc"


def test_record_photodiode_keeps_the_sensor_out_of_the_eeg(tmp_path, stream_id, capsys):
    """``record --photodiode PD`` of a real LSL stream whose metadata calls the sensor EEG: it
    is recorded as a misc channel, named in session.json, its delays printed; ``train`` and
    ``evaluate --photodiode PD`` on the recording find the same delays."""
    import json
    import threading

    from bci_app.acquisition import SessionPlayer
    from bci_app.cli import main
    from bci_app.datasets import load_spec
    from bci_app.simulation import simulate_raw

    n = 10
    raw = simulate_raw(n, seed=2, montage=MONTAGE, sfreq=500.0, on=0.3, off=0.2, line_freq=None)
    truth = np.random.default_rng(13).uniform(0.010, 0.050, n)
    add_photodiode(raw, truth, seed=7)
    raw.set_channel_types({"PD": "eeg"}, on_unit_change="ignore")  # an amplifier that says EEG
    name, sid = stream_id
    player = SessionPlayer(raw, speed=2.0, name=name, source_id=sid)
    player.open()
    threading.Thread(target=player.start, kwargs={"wait_for_consumers": 10}, daemon=True).start()
    out = tmp_path / "calib"
    try:
        rc = main(["record", "--source", f"lsl:{name}", "--markers", f"{name}-markers",
                   "--trials", str(n), "--tail", "0.5", "--seconds", "60", "--out", str(out),
                   "--photodiode", "PD"])
    finally:
        player.stop()
    assert rc == 0
    text = capsys.readouterr().out
    meta = json.loads((out / "session.json").read_text())
    assert meta["photodiode"] == "PD" and meta["ch_types"][meta["ch_names"].index("PD")] == "misc"
    line = next(x for x in text.splitlines() if x.startswith("photodiode PD: marker-to-light delay"))
    mean = float(line.split("delay ")[1].split(" ms")[0])
    assert abs(mean - 1000 * truth.mean()) < 2, line
    assert f"--data session:{out} --config configs/calibration.toml --out runs/mybundle --photodiode PD" in text
    ds = load_spec(f"session:{out}", photodiode="PD")
    assert ds.photodiode["n"] == n and abs(ds.photodiode["mean_ms"] - mean) < 1e-6
    assert "PD" not in load_spec(f"session:{out}").spec.ch_names  # typed misc: never EEG
    rc = main(["record", "--source", "lsl:nothing", "--out", str(tmp_path / "x"), "--photodiode-patch"])
    assert rc == 2 and "--photodiode-patch is drawn by the presenter window; add --present" in \
        capsys.readouterr().err


def test_train_photodiode_trains_on_retimed_trials(tmp_path):
    """``train --photodiode PD``: the bundle reads the EEG channels only, its recorded data spec
    names the sensor, and its data summary holds the delays it was trained with."""
    import json

    from bci_app.cli import main

    path, delays = _session(tmp_path, n_trials=30)
    cfg = tmp_path / "few.toml"
    cfg.write_text("[data]\nmin_trials_per_class = 0\n")
    bundle = tmp_path / "bundle"
    rc = main(["train", "--data", f"session:{path}", "--out", str(bundle), "--stages", "encoder",
               "--epochs", "1", "--device", "cpu", "--config", str(cfg), "--photodiode", "PD"])
    assert rc == 0
    conf = json.loads((bundle / "config.json").read_text())
    assert "PD" not in conf["spec"]["ch_names"] and len(conf["spec"]["ch_names"]) == 6
    summary = conf["training"]["data_summary"]
    assert summary["source"] == f"session:{path},photodiode=PD"
    assert summary["photodiode"]["n"] == 30
    assert abs(summary["photodiode"]["mean_ms"] - 1000 * delays.mean()) < 2
