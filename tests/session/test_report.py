"""report.json / trials.jsonl / grid.png follow the contract."""

from __future__ import annotations

import datetime
import json
from types import SimpleNamespace

import numpy as np
from PIL import Image

import bci_app
from bci_app.models.bundle import read_bundle_config, resolve_bundle_path
from bci_app.models.reconstructor import Reconstruction
from bci_app.session.inference import InferenceResult
from bci_app.session.report import SessionReport, percentiles, ssim
from bci_app.stimuli import DemoStimulusSet
from tests.session.test_inference import make_trial

REPORT_KEYS = {"trials", "reconstructed", "dropped", "rejected", "samples_lost", "latency_ms", "quality",
               "bundle", "montage", "sfreq", "date", "version"}
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
    assert set(q) >= {"n", "top1", "ways", "chance", "ssim", "ssim_shuffled"}
    if q["ways"]:
        assert abs(q["chance"] - 1 / q["ways"]) < 1e-6
    datetime.datetime.fromisoformat(report["date"])
    assert report["version"] == bci_app.__version__


def demo_reconstructor():
    """What SessionReport reads of a Reconstructor, for the demo bundle (no weights loaded)."""
    path = resolve_bundle_path("demo")
    cfg = read_bundle_config(path)
    spec = SimpleNamespace(ch_names=list(cfg["spec"]["ch_names"]), sfreq=float(cfg["spec"]["sfreq"]))
    return SimpleNamespace(bundle_dir=path, spec=spec, classes=list(cfg["classes"]))


def _onehot(k, n=40):
    p = np.zeros(n)
    p[k] = 1.0
    return p


def _result(stimuli, i, stim_id, probs_label, outcome="reconstructed", reason=None,
            eeg_label=None, caption_label=None):
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
                             eeg_class_probs=None if eeg_label is None else _onehot(eeg_label),
                             caption_probs=None if caption_label is None else _onehot(caption_label),
                             times_ms={"encoder": 2.0, "saliency": 1.0, "semantic": 0.5, "refiner": 3.0})
        times.update(rec.times_ms, end_to_end=10.0 + i)
    return InferenceResult(t, outcome, rec, times, reason, 0.0)


def test_report_files(tmp_path):
    stimuli = DemoStimulusSet()
    rep = SessionReport(seen_image=stimuli.image, seen_label=stimuli.label, n_classes=40,
                        reconstructor=demo_reconstructor())
    ids = ["c03_i00", "c05_i01", "c07_i02", "c09_i03"]
    rep.add(_result(stimuli, 0, ids[0], 3, eeg_label=3, caption_label=3))  # correct
    rep.add(_result(stimuli, 1, ids[1], 5))  # correct
    rep.add(_result(stimuli, 2, ids[2], 0, eeg_label=7, caption_label=0))  # wrong class
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
    # references: chance level, and SSIM of reconstructions against other trials' seen images
    assert q["chance"] == 0.025
    img = {k: np.asarray(stimuli.image(k)) for k in ids[:3]}
    first = ssim(img[ids[0]], img[ids[1]])  # trial 1 has one earlier trial to pair with
    options = [(first + ssim(img[k], img[ids[2]])) / 2 for k in ids[:2]]
    assert min(abs(q["ssim_shuffled"] - o) for o in options) < 1e-3, (q, options)
    assert q["ssim_shuffled"] < 0.9 < q["ssim"]
    assert "held_out" not in q  # the bundle held no class out (tests/session/test_holdout_live.py)
    # what the figures were measured with
    assert report["bundle"] == "demo"
    assert report["montage"] == "biosemi128 (128 ch)" and report["n_channels"] == 128
    assert report["sfreq"] == 1000.0

    lines = [json.loads(s) for s in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [d["index"] for d in lines] == list(range(6))
    assert lines[3]["outcome"] == "dropped" and lines[0]["times_ms"]["end_to_end"] == 10.0
    assert {"marker", "onset", "times_ms", "outcome"} <= set(lines[0])
    # per-trial quality, so any subset of trials can be scored from the file
    assert [d.get("top1_correct") for d in lines] == [True, True, False, None, None, None]
    assert not any("held_out" in d for d in lines)
    assert lines[0]["ssim"] > 0.99 and "ssim" not in lines[3]
    # the read-outs: encoder's class, semantic head's caption, the drawing's judged class
    names = DemoStimulusSet.class_names()
    assert lines[0]["seen_class"] == names[3] == "yellow circle"
    assert lines[0]["decoded_class"] == "yellow circle" and lines[0]["judged_class"] == "yellow circle"
    assert lines[0]["caption"] == "an image of a yellow circle" == DemoStimulusSet.caption(3)
    assert lines[0]["caption_correct"] is True
    assert lines[2]["decoded_class"] == names[7] and lines[2]["judged_class"] == "red circle"
    assert lines[2]["caption"] == "an image of a red circle" and lines[2]["caption_correct"] is False
    assert "decoded_class" not in lines[1] and "caption" not in lines[1]  # not given by the model
    assert lines[1]["judged_class"] == names[5]
    assert "decoded_class" not in lines[3] and lines[3]["seen_class"] == names[9]  # dropped

    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    assert grid.shape[1] == 3 * 128 + 16
    # each row's seen image, where it is pasted (2x nearest: exact), in trial order
    tops = []
    for k in ids[:3]:
        tile = np.asarray(Image.fromarray(img[k]).resize((128, 128), Image.NEAREST)).astype(int)
        hits = [y for y in range(grid.shape[0] - 127) if np.array_equal(grid[y:y + 128, 4:132], tile)]
        assert len(hits) == 1, (k, hits)
        tops.append(hits[0])
    assert tops == sorted(tops)
    # a title above the first row and a label band (>= 3 text lines) above every row
    assert tops[0] >= 30 + 39 and tops[1] - tops[0] >= 128 + 39 and tops[2] - tops[1] >= 128 + 39

    def coloured(band, rgb):
        return int((np.abs(band - np.array(rgb)).sum(axis=-1) < 60).sum())

    title = grid[:28]
    assert coloured(title, (220, 220, 220)) > 100  # text of the title line
    bands = [grid[t - 39:t] for t in tops]
    green, red = (90, 210, 90), (235, 85, 85)
    # row 0: caption and drawing right (green, no red); row 2: both wrong (red, no green)
    assert coloured(bands[0], green) > 100 and coloured(bands[0], red) == 0
    assert coloured(bands[2], red) > 100 and coloured(bands[2], green) == 0
    assert coloured(bands[1], green) > 50  # drawing right, no caption read-out


def test_summary_line_names_the_references(tmp_path, capsys):
    from bci_app.session.commands import _print_summary

    stimuli = DemoStimulusSet()
    rep = SessionReport(seen_image=stimuli.image, seen_label=stimuli.label, n_classes=40,
                        reconstructor=demo_reconstructor())
    rep.add(_result(stimuli, 0, "c03_i00", 3))
    rep.add(_result(stimuli, 1, "c05_i01", 0))
    summary = rep.write(tmp_path)
    _print_summary(summary, tmp_path)
    out = capsys.readouterr().out
    q = summary["quality"]
    assert f"top-1 0.50 (40-way, chance 0.025, n=2) | SSIM {q['ssim']:.3f} " in out, out
    assert f"(shuffled pairs {q['ssim_shuffled']:.3f}) | bundle demo, 128 ch at 1000 Hz" in out, out


def test_seen_image_looked_up_once_and_display_time_reaches_the_files(tmp_path):
    """The seen image of a trial is looked up once (for quality, the grid and the window);
    the window's display time, arriving before or after the trial, reaches report.json and
    the trial's line."""
    stimuli = DemoStimulusSet()
    calls = []

    def seen(sid):
        calls.append(sid)
        return stimuli.image(sid)

    rep = SessionReport(seen_image=seen, seen_label=stimuli.label, n_classes=40)
    first = _result(stimuli, 0, "c03_i00", 3)
    rep.fetch_seen(first)  # as the pipeline's report thread does, before the window sees it
    assert first.seen is not None and calls == ["c03_i00"]
    rep.add_display(0, 20.0)  # the window showed it before the report scored it
    rep.add(first)
    assert calls == ["c03_i00"]
    rep.add(_result(stimuli, 1, "c05_i01", 5))
    rep.add_display(1, 30.0)
    summary = rep.write(tmp_path)
    assert calls.count("c05_i01") == 1
    assert summary["latency_ms"]["display"] == {"p50": 25.0, "p95": 29.5, "max": 30.0}
    lines = [json.loads(s) for s in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [d["times_ms"]["display"] for d in lines] == [20.0, 30.0]
    assert "display" not in SessionReport().latency()  # no window: not measured


def test_bundle_from_classify_and_no_bundle():
    """Without ``reconstructor=``, the object ``classify`` is bound to is the bundle; with
    neither, the first trial's stream names channels and rate, and the references are None."""
    class Rec(SimpleNamespace):
        def classify_images(self, images):
            return None

    r = Rec(**vars(demo_reconstructor()))
    assert SessionReport(classify=r.classify_images).session_info()["bundle"] == "demo"
    rep = SessionReport(n_classes=None)
    rep.add(_result(DemoStimulusSet(), 0, "c03_i00", 3, outcome="rejected", reason="nan"))
    info, q = rep.session_info(), rep.quality()
    t = make_trial(0)
    assert info["bundle"] is None and info["n_channels"] == t.data.shape[0]
    assert info["sfreq"] == t.sfreq and info["montage"] == f"{t.data.shape[0]} ch"
    assert q["chance"] is None and q["ssim_shuffled"] is None


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
