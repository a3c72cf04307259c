"""End to end over real loopback LSL: virtual subject + marker schedule + live pipeline
with the shipped demo bundle (what `bci-app demo --headless` runs)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bci_app.cli import main
from tests.session.test_report import check_report_contract


def test_demo_headless_reconstructs_every_trial(tmp_path, monkeypatch, capsys):
    # no --headless: with QT_QPA_PLATFORM=offscreen there is no display, and it says so
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    out = tmp_path / "out"
    rc = main(["demo", "--trials", "12", "--rate", "4", "--out", str(out), "--seed", "3"])
    text = capsys.readouterr().out
    assert "no display" in text and "headless" in text
    assert rc == 0, text
    report = json.loads((out / "report.json").read_text())
    check_report_contract(report)
    assert report["trials"] == 12
    assert report["reconstructed"] == 12, report  # every trial of a short run, none dropped
    assert report["samples_lost"] == 0
    assert report["quality"]["n"] == 12 and report["quality"]["ways"] == 40
    assert 0.0 <= report["quality"]["top1"] <= 1.0 and report["quality"]["ssim"] is not None
    e2e = report["latency_ms"]["end_to_end"]
    assert 0 < e2e["p50"] <= e2e["max"] < 5000
    lines = [json.loads(s) for s in (out / "trials.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and all(d["outcome"] == "reconstructed" for d in lines)
    assert all(d["marker"].startswith("stim/c") for d in lines)
    grid = np.asarray(Image.open(out / "grid.png").convert("RGB"))
    assert grid.std() > 10


def test_bad_rate_is_a_clear_error(tmp_path, capsys):
    rc = main(["demo", "--headless", "--trials", "2", "--rate", "-1", "--out", str(tmp_path)])
    assert rc == 2
    assert "--rate must be > 0" in capsys.readouterr().err


def test_pipeline_headless_over_loopback_lsl(tmp_path, stream_id):
    """The session wiring (acquisition -> worker -> report files) on a real loopback EEG
    stream and marker stream, with a tiny real model: every marker gets an outcome."""
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.sources import LSLSource
    from bci_app.session.commands import Pipeline, run_headless
    from bci_app.session.report import SessionReport
    from bci_app.stimuli import DemoStimulusSet
    from bci_app.ui.presenter import MarkerSchedulePublisher, schedule_for
    from tests.session.test_inference import tiny_reconstructor
    from tests.ui.conftest import LoopbackEEG

    rec = tiny_reconstructor()
    name, sid = stream_id
    eeg = LoopbackEEG(name, sid, rec.spec.ch_names).start()
    stimuli = DemoStimulusSet()
    schedule = schedule_for(stimuli, 10, on=0.2, off=0.0, order="random", seed=0, start=0.8)
    report = SessionReport(seen_image=stimuli.image, seen_label=stimuli.label, n_classes=40)
    pipe = Pipeline(LSLSource(name=name, source_id=sid, n_channels=128, sfreq=1000.0),
                    LSLMarkerSource(name=f"{name}-mk"), rec, report=report)
    pub = MarkerSchedulePublisher(schedule, name=f"{name}-mk", source_id=f"{sid}-mk")
    try:
        pipe.start()
        pub.start()
        summary = run_headless(pipe, 10, tmp_path, timeout=30)
    finally:
        pub.stop()
        eeg.stop()
    assert not pipe.started and not pipe.worker.alive  # shut down
    check_report_contract(summary)
    assert summary["trials"] == 10 and summary["reconstructed"] == 10
    lines = [json.loads(s) for s in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [d["stim_id"] for d in lines] == schedule.stim_ids
    assert (tmp_path / "grid.png").stat().st_size > 1000


def _recorded_markers(directory) -> list[str]:
    import mne

    raw = mne.io.read_raw_fif(directory / "session_raw.fif", preload=False, verbose="error")
    return [d for d in raw.annotations.description if not d.startswith("BAD")]


def test_demo_record_holds_every_trial_of_the_session(tmp_path):
    """Issue 21 (6a): the recording starts with the first sample the app receives, so its
    markers include every trial the session reconstructed (>= N markers for N trials)."""
    from collections import Counter

    out, rec = tmp_path / "out", tmp_path / "rec"
    rc = main(["demo", "--headless", "--trials", "10", "--rate", "4", "--seed", "5",
               "--out", str(out), "--record", str(rec)])
    assert rc == 0
    trials = [json.loads(s) for s in (out / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 10
    recorded = _recorded_markers(rec)
    assert len(recorded) >= 10
    missing = Counter(d["marker"] for d in trials) - Counter(recorded)
    assert not missing, f"trials of the session missing from the recording: {missing}"
    assert recorded[:1] == [trials[0]["marker"]]  # the very first marker is in the file


def test_demo_sigterm_writes_report_and_finalizes_the_recording(tmp_path):
    """Issue 21 (6b): ``demo --headless --record DIR`` ended by SIGTERM writes report.json and
    trials.jsonl and a session_raw.fif (readable by MNE) holding the trials' markers."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from collections import Counter

    import pytest

    out, rec = tmp_path / "out", tmp_path / "rec"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bci_app.cli", "demo", "--headless", "--trials", "400",
         "--rate", "4", "--out", str(out), "--record", str(rec)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        marks = rec / "markers.tsv"
        while time.monotonic() < deadline:  # a few trials into the session
            if marks.exists() and len(marks.read_text().splitlines()) >= 6:
                break
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        else:
            pytest.fail("the demo recorded no 6 markers within 120 s")
        proc.send_signal(signal.SIGTERM)
        text, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in text, text
    report = json.loads((out / "report.json").read_text())
    check_report_contract(report)
    assert 0 < report["trials"] < 400
    trials = [json.loads(s) for s in (out / "trials.jsonl").read_text().splitlines()]
    recorded = _recorded_markers(rec)
    assert not (rec / "chunks").exists() and json.loads((rec / "session.json").read_text())["finalized"]
    assert not Counter(d["marker"] for d in trials) - Counter(recorded)
    assert len(recorded) >= report["reconstructed"] >= 1


def test_trigger_code_edges():
    from bci_app.acquisition.triggers import code_edges

    idx, last = code_edges(np.array([0, 0, 12, 12, 0, 13, 14, 14, 0]), previous=0)
    assert idx.tolist() == [2, 5, 6] and last == 0
    idx, last = code_edges(np.array([12, 12, 0]), previous=12)  # a code held across chunks
    assert idx.tolist() == [] and last == 0


def test_live_trigger_channel_and_event_map(tmp_path):
    """``live --trigger-channel STI --event-map MAP``: the codes of a stim channel in the EEG
    stream (no marker stream at all) become the session's trials, mapped to stimulus ids."""
    import threading

    from bci_app.acquisition.player import SessionPlayer
    from bci_app.simulation import simulate_raw

    # 4 s before the first stimulus: the EEG inlet opens after the trigger inlet
    raw = simulate_raw(6, seed=9, on=0.6, start=4.0)
    sfreq = raw.info["sfreq"]
    desc = [d.split("/", 1)[1] for d in raw.annotations.description]
    onsets = np.round(raw.annotations.onset * sfreq).astype(int)
    codes = {s: 20 + i for i, s in enumerate(dict.fromkeys(desc))}
    trig = np.zeros((1, raw.n_times))
    for k, s in zip(onsets, desc, strict=True):
        trig[0, k:k + 8] = codes[s]
    import mne

    stim = mne.io.RawArray(trig, mne.create_info(["STI"], sfreq, "stim"), verbose="error")
    raw.add_channels([stim], force_update_info=True)
    raw.set_annotations(None)  # the codes are the only events
    emap = tmp_path / "map.tsv"
    emap.write_text("marker\tstimulus\n" + "".join(f"{c}\t{s}\n" for s, c in codes.items()))
    name = f"bci-test-trig-{np.random.default_rng().integers(1 << 30)}"
    player = SessionPlayer(raw, speed=2.0, name=name, source_id=name)

    def start() -> None:  # once the session reads the stream (no marker stream is read)
        player.open()
        player._eeg.wait_for_consumers(30.0)
        player.start(wait_for_consumers=None)
    th = threading.Thread(target=start, daemon=True)
    th.start()
    out = tmp_path / "out"
    try:
        rc = main(["live", "--source", f"lsl:{name}", "--trigger-channel", "STI", "--event-map",
                   str(emap), "--headless", "--trials", "6", "--out", str(out)])
    finally:
        player.stop()
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["trials"] == 6 and report["reconstructed"] == 6, report
    lines = [json.loads(s) for s in (out / "trials.jsonl").read_text().splitlines()]
    assert [d["stim_id"] for d in lines] == desc
    assert [d["marker"] for d in lines] == [str(codes[s]) for s in desc]
