"""report.json / trials.jsonl / grid.png follow the contract."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from bci_app.models.reconstructor import Reconstruction
from bci_app.session.inference import InferenceResult
from bci_app.session.report import SessionReport, percentiles, ssim
from bci_app.stimuli import DemoStimulusSet
from tests.session.test_inference import make_trial

REPORT_KEYS = {"trials", "reconstructed", "dropped", "rejected", "samples_lost", "latency_ms", "quality"}
STAGES = {"end_to_end", "epoch", "encoder", "saliency", "semantic", "refiner"}


def check_report_contract(report: dict) -> None:
    """The report.json contract of ARCHITECTURE.md (shared with the session tests)."""
    assert REPORT_KEYS <= set(report)
    for k in ("trials", "reconstructed", "dropped", "samples_lost"):
        assert isinstance(report[k], int), k
    assert all(isinstance(v, int) for v in report["rejected"].values())
    assert report["reconstructed"] + report["dropped"] + sum(report["rejected"].values()) == report["trials"]
    assert STAGES <= set(report["latency_ms"])
    for stage, d in report["latency_ms"].items():
        assert set(d) == {"p50", "p95", "max"}, stage
        if report["reconstructed"] and stage in STAGES:
            assert d["p50"] is not None and d["p50"] <= d["p95"] <= d["max"], stage
    q = report["quality"]
    assert set(q) >= {"n", "top1", "ways", "ssim"}


def _result(stimuli, i, stim_id, probs_label, outcome="reconstructed", reason=None):
    t = make_trial(i)
    t.stim_id = stim_id
    t.marker = f"stim/{stim_id}"
    rec = None
    times = {"epoch": 1.0 + i}
    if outcome == "reconstructed":
        img = np.asarray(stimuli.image(stim_id))
        probs = np.zeros(40)
        probs[probs_label] = 1.0
        rec = Reconstruction(saliency=img[::2, ::2], image=img, class_probs=probs,
                             times_ms={"encoder": 2.0, "saliency": 1.0, "semantic": 0.5, "refiner": 3.0})
        times.update(rec.times_ms, end_to_end=10.0 + i)
    return InferenceResult(t, outcome, rec, times, reason, 0.0)


def test_report_files(tmp_path):
    stimuli = DemoStimulusSet()
    rep = SessionReport(seen_image=stimuli.image, seen_label=stimuli.label, n_classes=40)
    ids = ["c03_i00", "c05_i01", "c07_i02", "c09_i03"]
    rep.add(_result(stimuli, 0, ids[0], 3))  # correct
    rep.add(_result(stimuli, 1, ids[1], 5))  # correct
    rep.add(_result(stimuli, 2, ids[2], 0))  # wrong class
    rep.add(_result(stimuli, 3, ids[3], 0, outcome="dropped", reason="drop_oldest"))
    rep.add(_result(stimuli, 4, ids[3], 0, outcome="rejected", reason="nan"))
    rep.add(_result(stimuli, 5, ids[3], 0, outcome="error", reason="ValueError: x"))
    rep.samples_lost = 7
    summary = rep.write(tmp_path)

    report = json.loads((tmp_path / "report.json").read_text())
    assert report == json.loads(json.dumps(summary))
    check_report_contract(report)
    assert report["trials"] == 6 and report["reconstructed"] == 3 and report["dropped"] == 1
    assert report["rejected"] == {"nan": 1, "error": 1}
    assert report["samples_lost"] == 7
    assert report["latency_ms"]["end_to_end"] == {"p50": 11.0, "p95": 11.9, "max": 12.0}
    q = report["quality"]
    assert q["n"] == 3 and q["ways"] == 40 and abs(q["top1"] - 2 / 3) < 1e-3
    assert q["ssim"] > 0.99  # reconstructions here are the seen images themselves

    lines = [json.loads(s) for s in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [d["index"] for d in lines] == list(range(6))
    assert lines[3]["outcome"] == "dropped" and lines[0]["times_ms"]["end_to_end"] == 10.0
    assert {"marker", "onset", "times_ms", "outcome"} <= set(lines[0])
    # per-trial quality, so any subset of trials can be scored from the file
    assert [d.get("top1_correct") for d in lines] == [True, True, False, None, None, None]
    assert lines[0]["ssim"] > 0.99 and "ssim" not in lines[3]

    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB"))
    assert grid.shape[1] == 3 * 128 + 16 and grid.shape[0] > 3 * 128
    assert grid.std() > 10  # images, not a blank canvas


def test_ssim_properties():
    stimuli = DemoStimulusSet()
    a = np.asarray(stimuli.image("c00_i00"))
    b = np.asarray(stimuli.image("c10_i07"))
    assert ssim(a, a) > 0.999
    assert ssim(a, b) < 0.9
    assert ssim(a, np.asarray(stimuli.image("c00_i00", size=32))) > 0.5  # resized first


def test_percentiles_empty_and_nan():
    assert percentiles([]) == {"p50": None, "p95": None, "max": None}
    assert percentiles([1.0, float("nan"), 3.0])["max"] == 3.0
