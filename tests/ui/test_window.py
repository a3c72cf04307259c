"""The live window with real widgets (offscreen) on a real loopback LSL pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bci_app.acquisition.markers import LSLMarkerSource
from bci_app.acquisition.sources import LSLSource
from bci_app.session.commands import Pipeline, run_gui
from bci_app.stimuli import DemoStimulusSet, Schedule
from bci_app.ui.presenter import MarkerSchedulePublisher
from tests.session.test_inference import tiny_reconstructor
from tests.ui.conftest import LoopbackEEG

pytestmark = pytest.mark.gui


def start_live(stream_id, qtbot, request, rec=None, ids=None, report=None, **gui):
    """Loopback EEG + marker publisher (``ids``, default 20 across the classes) + pipeline (tiny
    real model; ``report``: a SessionReport, default the pipeline's own) + live window."""
    rec = rec or tiny_reconstructor()
    name, sid = stream_id
    eeg = LoopbackEEG(name, sid, rec.spec.ch_names).start()
    stimuli = DemoStimulusSet()
    ids = ids or stimuli.stim_ids[::37][:20]
    schedule = Schedule(ids, 0.5 + 0.25 * np.arange(len(ids)), 0.25, 0.0)
    pub = MarkerSchedulePublisher(schedule, name=f"{name}-mk", source_id=f"{sid}-mk")
    source = LSLSource(name=name, source_id=sid, n_channels=128, sfreq=1000.0, lost_timeout=0.5)
    markers = LSLMarkerSource(name=f"{name}-mk")
    pipe = Pipeline(source, markers, rec, report=report)
    pipe.worker.warmup_n = 1
    pipe.start()
    win = run_gui(pipe, stimuli=stimuli, exec_loop=False, **gui)
    qtbot.addWidget(win)
    pub.start()

    def cleanup():
        pub.stop()
        pipe.stop()
        eeg.stop()
    request.addfinalizer(cleanup)
    return pipe, win, eeg, pub


@pytest.fixture
def live(stream_id, qtbot, request):
    return start_live(stream_id, qtbot, request)


def test_window_shows_trials_and_screenshot(live, qtbot, tmp_path):
    pipe, win, eeg, pub = live
    qtbot.waitUntil(lambda: win.trials_shown >= 3, timeout=20000)
    qtbot.waitUntil(lambda: win.frames >= 10, timeout=10000)
    assert win.recon_panel.has_image and win.saliency_panel.has_image and win.seen_panel.has_image
    assert win.history_panels[0][0].has_image
    assert win.state == "connected"
    assert "connected" in win.state_label.text()
    assert win.marker_lines[0].isVisible()
    # marker lines are labelled with the stimulus (the id the marker maps to)
    assert win.traces.visible_markers and set(win.traces.visible_markers) <= set(DemoStimulusSet().stim_ids)
    assert win.latency_curves["end_to_end"].getData()[0] is not None
    path = tmp_path / "window.png"
    assert win.grab().save(str(path))
    img = win.grab().toImage()
    arr = np.array([[img.pixelColor(x, y).value() for x in range(0, img.width(), 16)]
                    for y in range(0, img.height(), 16)])
    assert path.stat().st_size > 10_000 and arr.std() > 10  # not blank
    assert not win.errors
    # a bundle that holds no class out: no tag, no held-out score; the running top-1 is shown
    assert win.held_out_shown == 0 and "HELD OUT" not in win.trial_label.text
    assert not any(p.marked for row in win.history_panels for p in row) and not win.seen_panel.marked
    assert win.score_label.isVisible() and win.score_label.text().startswith("top-1 ")
    assert not win.held_out_score_label.isVisible()


def test_window_marks_held_out_trials_and_scores_them(stream_id, qtbot, request, tmp_path,
                                                      tmp_path_factory):
    """The real tiny held-out bundle, trials alternating between held-out and trained classes:
    a held-out trial is tagged with its class, a trained one is not, and the status bar shows
    the session report's running top-1 with the held-out classes' own beside it."""
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.session.commands import _report_for
    from tests.training.holdout_bundle import HOLDOUT, trained_holdout_bundle

    bundle, _ = trained_holdout_bundle(tmp_path_factory.getbasetemp() / "holdout_shared")
    rec = Reconstructor.from_bundle(bundle, device="cpu")
    stimuli = DemoStimulusSet()
    names = DemoStimulusSet.class_names()
    held = [k for k, c in enumerate(names) if c in HOLDOUT]
    trained = [k for k, c in enumerate(names) if c not in HOLDOUT][::5][:len(held)]
    ids = [DemoStimulusSet.make_id(k, 40 + i) for i, pair in enumerate(zip(held, trained, strict=True)) for k in pair]
    pipe, win, eeg, pub = start_live(stream_id, qtbot, request, rec=rec, ids=ids,
                                     report=_report_for(stimuli, rec))
    qtbot.waitUntil(lambda: win.last_held_out is not None, timeout=30000)
    sid = win.last_result.trial.stim_id
    assert win.last_held_out == names[stimuli.label(sid)] and win.last_held_out in HOLDOUT
    assert f"{sid}" in win.trial_label.text and f"HELD OUT: {win.last_held_out}" in win.trial_label.text
    assert win.seen_panel.marked and win.recon_panel.marked and win.history_panels[2][0].marked
    path = tmp_path / "holdout_window.png"
    assert win.grab().save(str(path)) and path.stat().st_size > 10_000
    n = win.trials_shown
    qtbot.waitUntil(lambda: win.trials_shown > n and win.last_held_out is None, timeout=30000)
    assert "HELD OUT" not in win.trial_label.text
    assert not win.seen_panel.marked and not win.history_panels[0][0].marked
    assert any(p.marked for p in win.history_panels[0][1:])  # the earlier held-out trial's column

    def scores_shown() -> bool:  # the report's figures once the session has settled
        q = pipe.report.quality()
        h = q["held_out"]
        done = pub.pushed == len(ids) and pipe.n_results == pipe.stats()["trials"]  # every marker's outcome
        return (done and h["n"] >= 1
                and win.score_label.text() == f"top-1 {q['top1']:.2f} (n={q['n']}, 40-way, chance 0.025)"
                and win.held_out_score_label.text()
                == f"held out top-1 {h['top1']:.2f} (n={h['n']}, {len(HOLDOUT)}-way, chance "
                   f"{1 / len(HOLDOUT):.3g})")
    qtbot.waitUntil(scores_shown, timeout=30000)
    assert win.held_out_score_label.isVisible() and win.held_out_shown >= 1
    pipe.report.write(tmp_path / "out")
    rows = [json.loads(s) for s in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    assert [d.get("held_out", False) for d in rows] == [d["seen_class"] in HOLDOUT for d in rows]
    assert pipe.report.quality()["held_out"]["n"] == sum("held_out_top1_correct" in d for d in rows)
    assert not win.errors


def test_lost_stream_shows_lost_state_and_recovers(live, qtbot):
    pipe, win, eeg, pub = live
    qtbot.waitUntil(lambda: win.state == "connected" and win.frames > 3, timeout=15000)
    eeg.stop()
    qtbot.waitUntil(lambda: win.state in ("lost", "reconnecting"), timeout=15000)
    assert win.state_label.text().endswith(win.state)
    assert win.isVisible()
    eeg.start()
    qtbot.waitUntil(lambda: win.state == "connected", timeout=20000)
    n = win.trials_shown
    qtbot.waitUntil(lambda: win.trials_shown > n, timeout=20000)  # trials flow again


def test_worker_error_shows_in_window_and_it_stays_open(live, qtbot):
    pipe, win, eeg, pub = live
    qtbot.waitUntil(lambda: win.trials_shown >= 1, timeout=20000)

    good = pipe.worker.reconstructor
    # a real model for another montage: raises ValueError on these 128-channel windows
    pipe.worker.reconstructor = tiny_reconstructor(n_chans=64)
    qtbot.waitUntil(lambda: win.error_label.isVisible(), timeout=20000)
    assert "ValueError" in win.error_label.text()
    assert win.isVisible()
    pipe.worker.reconstructor = good
    n = win.trials_shown
    qtbot.waitUntil(lambda: win.trials_shown > n, timeout=20000)


def test_controls_emit_and_apply(live, qtbot):
    pipe, win, eeg, pub = live
    win.steps_spin.setValue(3)
    win.strength_spin.setValue(0.7)
    assert pipe.worker.reconstructor.steps == 3
    assert abs(pipe.worker.reconstructor.strength - 0.7) < 1e-9
    with qtbot.waitSignal(win.stopRequested, timeout=1000):
        win.start_button.setChecked(False)
    assert pipe.paused
    with qtbot.waitSignal(win.startRequested, timeout=1000):
        win.start_button.setChecked(True)
    assert not pipe.paused


def test_controls_show_the_bundles_sampling_and_refuse_bad_values(qtbot):
    """The demo bundle samples with its refiner's steps/strength/guidance: the boxes show
    those, a bad value (strength 0) is refused in the window and nothing changes."""
    from bci_app.models.reconstructor import Reconstructor

    rec = Reconstructor.from_bundle("demo", device="cpu")
    ref = rec.refiner
    pipe = Pipeline(LSLSource(name="unused", n_channels=128, sfreq=1000.0),
                    LSLMarkerSource(name="unused-mk"), rec)
    win = run_gui(pipe, exec_loop=False)
    qtbot.addWidget(win)
    assert win.steps_spin.value() == ref.steps and ref.steps > 1
    assert win.strength_spin.value() == pytest.approx(ref.strength)
    assert win.guidance_spin.value() == pytest.approx(ref.guidance_scale)
    win.strength_spin.setValue(0.0)
    assert win.error_label.isVisible() and "strength must be in (0, 1]" in win.error_label.text()
    assert rec.strength is None and rec.refine_settings()["strength"] is None  # unchanged
    win.steps_spin.setValue(1)
    win.strength_spin.setValue(0.4)  # 1 step x 0.4 denoises nothing: refused with the fix
    assert "steps * strength must be >= 1" in win.error_label.text()
    win.strength_spin.setValue(1.0)
    assert not win.error_label.isVisible()
    assert (rec.steps, rec.strength) == (1, 1.0)
    win.guidance_spin.setValue(2.0)
    assert rec.guidance == 2.0 and win.sampling == (1, 1.0, 2.0)


def sd_turbo_bundle(root):
    """A bundle on disk whose refiner is an SD-Turbo-layout diffusers directory (tiny random
    weights, as ``hf download stabilityai/sd-turbo`` lays it out) and whose semantic head
    predicts that directory's [77, 32] text embeddings."""
    from bci_app.models.bundle import save_bundle
    from bci_app.models.encoders import BinnedLinearEncoder
    from bci_app.models.saliency_gan import SaliencyGenerator
    from bci_app.models.semantic import SemanticHead
    from bci_app.preprocessing import PreprocessingSpec
    from bci_app.simulation.montage import standard_montage_128
    from tests.models.test_sd_turbo_path import write_tiny_sd_turbo

    sd_dir = write_tiny_sd_turbo(root)
    torch.manual_seed(0)
    spec = PreprocessingSpec(sfreq=1000.0, ch_names=standard_montage_128())
    comps = {
        "encoder": BinnedLinearEncoder(128, 16, 440, sfreq=1000.0),
        "generator": SaliencyGenerator(z_dim=8, cond_dim=16, resolution=16, base_channels=8),
        "semantic": SemanticHead(16, seq_len=77, embed_dim=32, hidden=16),
    }
    cfg = {"spec": spec.to_dict(), "classes": [f"c{i}" for i in range(4)], "n_times": 440,
           "refiner": {"type": "sd-turbo", "model": str(sd_dir), "steps": 2, "strength": 0.5}}
    return save_bundle(root / "bundle", cfg, comps)


def test_guidance_the_sd_turbo_refiner_cannot_run_is_refused_and_trials_go_on(
        stream_id, qtbot, request, tmp_path, monkeypatch):
    """SD-Turbo samples without classifier-free guidance (its semantic head predicts no
    negative embeddings): guidance 2 typed in the window is refused there with the reason,
    nothing changes, and the trials after it are still reconstructed."""
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.models.refiners import DiffusersImg2ImgRefiner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = sd_turbo_bundle(tmp_path)
    # the command line's --guidance reaches the same check when the bundle loads
    with pytest.raises(ValueError, match="guidance_scale=2.0 would need classifier-free guidance"):
        Reconstructor.from_bundle(bundle, device="cpu", guidance=2.0)
    rec = Reconstructor.from_bundle(bundle, device="cpu", dtype="float32")
    assert isinstance(rec.refiner, DiffusersImg2ImgRefiner) and rec.refiner.kind == "sd-turbo"
    pipe, win, eeg, pub = start_live(stream_id, qtbot, request, rec=rec)
    qtbot.waitUntil(lambda: win.trials_shown >= 1, timeout=30000)
    assert win.guidance_spin.value() == 0.0 and win.sampling == (2, 0.5, 0.0)

    win.guidance_spin.setValue(2.0)
    assert win.error_label.isVisible()
    text = win.error_label.text()
    assert "sampling refused: guidance_scale=2.0" in text and "negative prompt embeddings" in text
    assert "still sampling with steps 2, strength 0.5, guidance 0" in text
    assert rec.guidance is None and pipe.sampling() == (2, 0.5, 0.0) and win.sampling == (2, 0.5, 0.0)
    # the pipeline refuses it too (a script, or a bundle swapped in between)
    with pytest.raises(ValueError, match="negative prompt embeddings"):
        pipe.set_sampling(2, 0.5, 2.0)
    assert rec.guidance is None

    done = pipe.stats()["reconstructed"]
    qtbot.waitUntil(lambda: pipe.stats()["reconstructed"] >= done + 3, timeout=30000)
    assert pipe.stats()["last_error"] is None
    assert all(e.startswith("sampling refused") for e in win.errors), win.errors
    win.guidance_spin.setValue(1.0)  # 1: no guidance, allowed
    assert not win.error_label.isVisible() and rec.guidance == 1.0


def test_session_ends_after_n_trials_and_writes_the_report(stream_id, qtbot, request, tmp_path):
    from tests.session.test_report import check_report_contract

    pipe, win, eeg, pub = start_live(stream_id, qtbot, request, out=tmp_path, n_trials=4)
    qtbot.waitUntil(lambda: win.over, timeout=30000)
    assert "session over" in win.over_label.text() and str(tmp_path) in win.over_label.text()
    assert win.isVisible() and not win.start_button.isEnabled()  # stays open for looking
    assert not pipe.started and not pipe.worker.alive
    report = json.loads((tmp_path / "report.json").read_text())
    check_report_contract(report)
    assert report["trials"] >= 4
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == report["trials"]
    # the window's display time (image ready -> shown) reaches the files
    assert report["latency_ms"]["display"]["p50"] >= 0
    lines = [json.loads(s) for s in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert any("display" in d["times_ms"] for d in lines if d["outcome"] == "reconstructed")
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_close_when_done_closes_the_window(stream_id, qtbot, request, tmp_path):
    pipe, win, eeg, pub = start_live(stream_id, qtbot, request, out=tmp_path, n_trials=2,
                                     close_when_done=True)
    qtbot.waitUntil(lambda: win.over and not win.isVisible(), timeout=30000)
    assert (tmp_path / "report.json").exists()


def test_bundle_switch_rebuilds_the_epocher_or_refuses(live, qtbot):
    """Another bundle with another window and filters: the epocher is rebuilt for its spec;
    a bundle for another montage is refused with the reason and the old one stays."""
    from bci_app.models.reconstructor import Reconstructor
    from bci_app.preprocessing import PreprocessingSpec

    pipe, win, eeg, pub = live
    qtbot.waitUntil(lambda: win.trials_shown >= 1, timeout=20000)
    old = pipe.worker.reconstructor
    with pytest.raises(ValueError, match="channel"):
        pipe.swap_reconstructor(tiny_reconstructor(n_chans=64))
    assert pipe.worker.reconstructor is old and pipe.epocher.spec is old.spec

    base = tiny_reconstructor(n_times=300)
    spec = PreprocessingSpec(sfreq=1000.0, ch_names=old.spec.ch_names, tmin=0.0, tmax=0.3,
                             l_freq=0.5, h_freq=30.0, notch=None,
                             norm_mean=[0.0] * 128, norm_std=[2e-5] * 128)
    comps = {"encoder": base.encoder, "generator": base.generator, "semantic": base.semantic}
    new = Reconstructor({"spec": spec.to_dict(), "n_times": 300}, comps, device="cpu", dtype="float32")
    seen = []
    pipe.on_result(lambda r: seen.append(r))
    pipe.swap_reconstructor(new)
    assert pipe.epocher.spec is new.spec and pipe.acquisition.epocher is pipe.epocher
    ep = pipe.epocher  # the new filters and normalisation are the ones in force
    assert ep.spec.notch is None and ep.spec.norm_std == [2e-5] * 128 and ep.spec.n_times == 300
    assert ep.filter.sos.shape != old_filter_sos(old).shape  # no notch section any more
    qtbot.waitUntil(lambda: any(r.outcome == "reconstructed" and r.trial.data.shape == (128, 300)
                                for r in seen), timeout=20000)
    idx = [r.trial.index for r in seen]
    assert len(idx) == len(set(idx))  # trial numbering continues, no index twice


def old_filter_sos(rec):
    from bci_app.preprocessing import CausalFilter

    return CausalFilter(rec.spec).sos


def test_bundle_refused_in_the_window(live, qtbot):
    pipe, win, eeg, pub = live
    old = pipe.worker.reconstructor
    win.session.bundle("/nonexistent/bundle")
    qtbot.waitUntil(lambda: win.error_label.isVisible(), timeout=20000)
    assert "refused" in win.error_label.text() and "/nonexistent/bundle" in win.error_label.text()
    assert pipe.worker.reconstructor is old


def test_record_toggles_from_the_window_finalise_off_the_gui_thread(stream_id, qtbot, request, tmp_path):
    import mne

    pipe, win, eeg, pub = start_live(stream_id, qtbot, request, record_dir=str(tmp_path))
    qtbot.waitUntil(lambda: win.frames >= 3, timeout=15000)
    for _ in range(3):
        win.record_box.setChecked(True)
        rec = pipe.acquisition.recorder
        assert rec is not None
        qtbot.waitUntil(lambda rec=rec: rec.n_samples >= 200, timeout=10000)
        win.record_box.setChecked(False)  # returns at once; the file is written on a thread
        assert pipe.acquisition.recorder is None
    assert pipe.wait_recordings(60)
    files = sorted(tmp_path.glob("session-*/session_raw.fif"))
    assert len(files) == 3 and not pipe.record_errors
    for f in files:
        assert mne.io.read_raw_fif(f, verbose="error").n_times >= 200
    qtbot.waitUntil(lambda: "recording saved" in win.statusBar().currentMessage(), timeout=10000)
    assert not win.errors
