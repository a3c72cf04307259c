"""The live window with real widgets (offscreen) on a real loopback LSL pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.acquisition.markers import LSLMarkerSource
from bci_app.acquisition.sources import LSLSource
from bci_app.session.commands import Pipeline, run_gui
from bci_app.stimuli import DemoStimulusSet, Schedule
from bci_app.ui.presenter import MarkerSchedulePublisher
from tests.session.test_inference import tiny_reconstructor
from tests.ui.conftest import LoopbackEEG

pytestmark = pytest.mark.gui


@pytest.fixture
def live(stream_id, qtbot):
    """Loopback EEG + marker publisher + pipeline (tiny real model) + live window."""
    rec = tiny_reconstructor()
    name, sid = stream_id
    eeg = LoopbackEEG(name, sid, rec.spec.ch_names).start()
    stimuli = DemoStimulusSet()
    ids = stimuli.stim_ids[::37][:20]
    schedule = Schedule(ids, 0.5 + 0.25 * np.arange(len(ids)), 0.25, 0.0)
    pub = MarkerSchedulePublisher(schedule, name=f"{name}-mk", source_id=f"{sid}-mk")
    source = LSLSource(name=name, source_id=sid, n_channels=128, sfreq=1000.0, lost_timeout=0.5)
    markers = LSLMarkerSource(name=f"{name}-mk")
    pipe = Pipeline(source, markers, rec, report=None)
    pipe.worker.warmup_n = 1
    pipe.start()
    win = run_gui(pipe, stimuli=stimuli, exec_loop=False)
    qtbot.addWidget(win)
    pub.start()
    yield pipe, win, eeg, pub
    pub.stop()
    pipe.stop()
    eeg.stop()


def test_window_shows_trials_and_screenshot(live, qtbot, tmp_path):
    pipe, win, eeg, pub = live
    qtbot.waitUntil(lambda: win.trials_shown >= 3, timeout=20000)
    qtbot.waitUntil(lambda: win.frames >= 10, timeout=10000)
    assert win.recon_panel.has_image and win.saliency_panel.has_image and win.seen_panel.has_image
    assert win.history_panels[0][0].has_image
    assert win.state == "connected"
    assert "connected" in win.state_label.text()
    assert win.marker_lines[0].isVisible()
    assert win.latency_curves["end_to_end"].getData()[0] is not None
    path = tmp_path / "window.png"
    assert win.grab().save(str(path))
    img = win.grab().toImage()
    arr = np.array([[img.pixelColor(x, y).value() for x in range(0, img.width(), 16)]
                    for y in range(0, img.height(), 16)])
    assert path.stat().st_size > 10_000 and arr.std() > 10  # not blank
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
