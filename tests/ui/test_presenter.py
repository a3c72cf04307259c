"""Presenter window and headless publisher push one LSL marker per stimulus."""

from __future__ import annotations

import numpy as np
import pylsl
import pytest

from bci_app.acquisition.markers import LSLMarkerSource
from bci_app.stimuli import DemoStimulusSet, format_marker
from bci_app.ui.presenter import MarkerSchedulePublisher, make_marker_outlet, schedule_for


def _receive(src, n, wait, timeout=15.0):
    got = []
    wait(lambda: got.extend(src.pull()) or len(got) >= n, timeout=timeout, what=f"{n} markers")
    return got


@pytest.mark.gui
def test_presenter_window_pushes_marker_at_each_image(qtbot, stream_id, wait):
    from bci_app.ui.presenter_window import PresenterWindow

    name, sid = stream_id
    stimuli = DemoStimulusSet()
    schedule = schedule_for(stimuli, 6, on=0.15, off=0.05, order="block", seed=1, start=0.3)
    outlet = make_marker_outlet(name, sid)
    src = LSLMarkerSource(name=name)
    src.connect()
    win = PresenterWindow(stimuli, schedule, outlet=outlet, photodiode=True)
    qtbot.addWidget(win)
    win.show_on_screen(None, fullscreen=False)
    shown = []
    win.markerPushed.connect(lambda s, t: shown.append((s, t)))
    with qtbot.waitSignal(win.finished, timeout=15000):
        win.start()
    got = _receive(src, 6, wait)
    assert [m for m, _ in got] == [format_marker(s) for s in schedule.stim_ids]
    assert [s for s, _ in shown] == schedule.stim_ids
    # marker time = the time stamped right after the frame was flushed
    assert np.allclose([t for _, t in got], [t for _, t in shown], atol=1e-3)
    # onsets follow the schedule (on + off = 0.2 s) within a frame or two
    d = np.diff([t for _, t in shown])
    assert np.all(np.abs(d - 0.2) < 0.06), d
    src.disconnect()


def test_schedule_publisher_headless(stream_id, wait):
    name, sid = stream_id
    stimuli = DemoStimulusSet()
    schedule = schedule_for(stimuli, 8, on=0.1, off=0.0, order="random", seed=2, start=0.3)
    pub = MarkerSchedulePublisher(schedule, name=name, source_id=sid)
    src = LSLMarkerSource(name=name)
    src.connect()
    pub.start()
    got = _receive(src, 8, wait)
    assert pub.wait(5) and pub.pushed == 8 and pub.error is None
    assert [m for m, _ in got] == [format_marker(s) for s in schedule.stim_ids]
    ts = np.array([t for _, t in got])
    assert np.allclose(ts - ts[0], schedule.onsets - schedule.onsets[0], atol=1e-6)
    assert abs(ts[-1] - pylsl.local_clock()) < 5
    src.disconnect()
