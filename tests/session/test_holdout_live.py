"""Issue 22, live: a bundle that held classes out of its training (the real tiny held-out
bundle) - the session report flags their trials and scores them apart, and the demo shows them."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest
from PIL import Image

from bci_app.session.commands import _report_for
from bci_app.session.inference import InferenceResult
from bci_app.session.report import HELD_OUT_RGB, SessionReport
from bci_app.stimuli import DemoStimulusSet
from tests.session.test_inference import make_trial
from tests.session.test_report import check_report_contract
from tests.training.holdout_bundle import DATA, HOLDOUT, trained_holdout_bundle


@pytest.fixture(scope="module")
def holdout(tmp_path_factory):
    """The tiny held-out bundle (shared with the zero-shot tests) and its Reconstructor."""
    from bci_app.models.reconstructor import Reconstructor

    bundle, _ = trained_holdout_bundle(tmp_path_factory.getbasetemp() / "holdout_shared")
    return bundle, Reconstructor.from_bundle(bundle, device="cpu")


def amber(band: np.ndarray) -> int:
    return int((np.abs(band - np.array(HELD_OUT_RGB)).sum(axis=-1) < 60).sum())


def test_report_flags_held_out_trials_and_scores_them_among_themselves(holdout, tmp_path, capsys):
    """Real reconstructions of held-out and trained classes' trials: ``held_out`` on exactly
    the held-out trials, and quality["held_out"] equal to evaluate's N-way rule recomputed
    from the judge's scores of the reconstructions; the all-class top-1 as before."""
    from bci_app.datasets import load_spec
    from bci_app.evaluation.metrics import n_way_top_k_per_trial
    from bci_app.preprocessing import normalise
    from bci_app.session.commands import _print_summary

    _, rec = holdout
    ds = load_spec(DATA)
    names = list(ds.class_names)
    is_held = np.array([names[k] in HOLDOUT for k in ds.labels])
    idx = np.sort(np.concatenate([np.flatnonzero(is_held), np.flatnonzero(~is_held)[:10]]))
    recons = rec.reconstruct(normalise(ds.X[idx], rec.spec))
    stimuli = DemoStimulusSet()
    report = _report_for(stimuli, rec)  # as the demo makes it: held-out classes from the bundle
    ids = [str(ds.stim_ids[j]) for j in idx]
    for i, (sid, r) in enumerate(zip(ids, recons, strict=True)):
        t = make_trial(i)
        t.stim_id, t.marker = sid, f"stim/{sid}"
        report.add(InferenceResult(t, "reconstructed", r, {"epoch": 1.0, **r.times_ms, "end_to_end": 5.0}, None, 0.0))
    t = make_trial(len(ids))  # a held-out trial the overload policy dropped: flagged, not scored
    t.stim_id = ids[int(np.flatnonzero(is_held[idx])[0])]
    report.add(InferenceResult(t, "dropped", None, {}, "drop_oldest", 0.0))
    summary = report.write(tmp_path)
    check_report_contract(summary)

    labels = np.array([stimuli.label(s) for s in ids])
    held = is_held[idx]
    probs = np.stack([np.asarray(r.class_probs, dtype=float) for r in recons])
    classes = list(rec.classes)
    h_idx = [k for k, c in enumerate(classes) if c in HOLDOUT]
    truth = np.searchsorted(h_idx, labels[held])
    per = n_way_top_k_per_trial(probs[held][:, h_idx], truth, ways=len(h_idx), k=1, draws=1)
    q = summary["quality"]
    assert q["held_out"] == {"classes": [classes[k] for k in h_idx], "n": int(held.sum()),
                             "top1": round(float(per.mean()), 4), "ways": len(HOLDOUT),
                             "chance": round(1 / len(HOLDOUT), 6)}
    assert held.sum() >= 6 and (~held).sum() == 10
    assert q["n"] == len(ids) and q["top1"] == round(float((probs.argmax(1) == labels).mean()), 4)
    assert json.loads((tmp_path / "report.json").read_text())["quality"]["held_out"] == q["held_out"]

    lines = [json.loads(s) for s in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert [d.get("held_out", False) for d in lines] == [*held.tolist(), True]
    assert all(d["held_out"] is True for d in lines if "held_out" in d)
    assert [d["held_out_top1_correct"] for d in lines if "held_out_top1_correct" in d] == per.astype(bool).tolist()
    assert all("held_out_top1_correct" not in d for d in lines if not d.get("held_out"))
    assert "top1_correct" not in lines[-1] and "held_out_top1_correct" not in lines[-1]  # dropped
    assert [d["seen_class"] in HOLDOUT for d in lines[:-1]] == held.tolist()

    # grid.png: an amber "held out" tag in the label band of held-out rows only
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    tops = []
    for sid in ids[:report.grid_rows]:
        tile = np.asarray(Image.fromarray(np.asarray(stimuli.image(sid))).resize((128, 128), Image.NEAREST))
        hits = [y for y in range(grid.shape[0] - 127) if np.array_equal(grid[y:y + 128, 4:132], tile)]
        assert len(hits) == 1, (sid, hits)
        tops.append(hits[0])
    marked = [amber(grid[top - 39:top]) > 30 for top in tops]
    assert marked == held[:report.grid_rows].tolist() and any(marked) and not all(marked)

    _print_summary(summary, tmp_path)
    h = q["held_out"]
    assert (f"held out ({', '.join(h['classes'])}): top-1 {h['top1']:.2f} ({len(HOLDOUT)}-way among them, "
            f"chance {1 / len(HOLDOUT):.3g}, n={h['n']})") in capsys.readouterr().out


def test_ordinary_bundle_report_has_no_held_out_figures(tmp_path):
    """A bundle that held nothing out (the shipped demo bundle's config): nothing changes."""
    from bci_app.models.bundle import read_bundle_config, resolve_bundle_path
    from tests.session.test_report import _result, demo_reconstructor

    stimuli = DemoStimulusSet()
    rec = demo_reconstructor()
    rec.config = read_bundle_config(resolve_bundle_path("demo"))
    assert not rec.config["training"].get("holdout_classes")
    report = _report_for(stimuli, rec)
    for i, sid in enumerate(["c00_i00", "c06_i01", "c12_i02"]):  # classes the held-out bundle holds out
        report.add(_result(stimuli, i, sid, 3))
    summary = report.write(tmp_path)
    assert "held_out" not in summary["quality"] and report.held_out_class("c00_i00") is None
    assert not any("held_out" in s for s in (tmp_path / "trials.jsonl").read_text().splitlines())
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("RGB")).astype(int)
    assert amber(grid) == 0
    # the same trials, told that those classes were held out: flagged and scored apart
    told = SessionReport(seen_image=stimuli.image, seen_label=stimuli.label, n_classes=40, reconstructor=rec,
                      holdout_classes=["red circle", "green square"])
    told.add(_result(stimuli, 0, "c00_i00", 0))
    told.add(_result(stimuli, 1, "c06_i01", 0))
    told.add(_result(stimuli, 2, "c12_i02", 12))
    assert told.quality()["held_out"] == {"classes": ["red circle", "green square"], "n": 2, "top1": 0.5,
                                          "ways": 2, "chance": 0.5}
    assert told.held_out_class("c06_i01") == "green square" and told.held_out_class("c12_i02") is None


def test_demo_schedule_shows_the_held_out_classes(holdout):
    """``bci-app demo --bundle B``: the schedule draws from every class, held-out ones included;
    the held-out images it shows were never trained or validated on (the bundle's test split
    or images outside its data)."""
    from bci_app.session.commands import build_demo

    bundle, rec = holdout
    args = Namespace(bundle=str(bundle), seed=5, device="cpu", rate=None, snr=None, montage=None, sfreq=None)
    pipeline, subject, schedule, outlet, stimuli, _ = build_demo(args, headless=True, n_trials=400)
    split = rec.config["training"]["split_images"]
    trained = set(split["train"]) | set(split["val"])
    shown = {pipeline.report.held_out_class(s) for s in schedule.stim_ids} - {None}
    assert shown == set(HOLDOUT)  # every held-out class is among the stimuli
    held_ids = [s for s in schedule.stim_ids if pipeline.report.held_out_class(s) is not None]
    assert len(held_ids) >= 400 * len(HOLDOUT) / 40 / 2 and not set(held_ids) & trained
    # the bundle's own data: its held-out images are all in the test split
    assert not [s for s in trained if pipeline.report.held_out_class(s) is not None]
    assert [s for s in split["test"] if pipeline.report.held_out_class(s) is not None]


def test_demo_headless_marks_held_out_trials(holdout, tmp_path, capsys):
    """``bci-app demo --headless --bundle B`` over real loopback LSL: the held-out trials are
    flagged and the report's held-out block is their own top-1."""
    from bci_app.cli import main

    bundle, _ = holdout
    out = tmp_path / "out"
    rc = main(["demo", "--headless", "--bundle", str(bundle), "--trials", "24", "--rate", "4",
               "--seed", "1", "--out", str(out), "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0, text
    report = json.loads((out / "report.json").read_text())
    check_report_contract(report)
    lines = [json.loads(s) for s in (out / "trials.jsonl").read_text().splitlines()]
    held = [d for d in lines if d.get("held_out")]
    assert [d for d in lines if d.get("seen_class") in HOLDOUT] == held and held  # seed 1 shows some
    scored = [d["held_out_top1_correct"] for d in held if "held_out_top1_correct" in d]
    h = report["quality"]["held_out"]
    assert h["n"] == len(scored) == len([d for d in held if d["outcome"] == "reconstructed"])
    assert h["top1"] == round(sum(scored) / len(scored), 4) and h["ways"] == len(HOLDOUT)
    assert f"held out ({', '.join(h['classes'])}): top-1 " in text
