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
