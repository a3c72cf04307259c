"""EEG traces people can read: rows stay in their lanes, offsets and drift removed for the
eye only, flat and saturated channels marked, +/- and paging work on the real widget."""

from __future__ import annotations

import numpy as np
import pytest

from bci_app.ui.traces import SCALES_UV, TraceBuffer, next_scale

SFREQ = 1000.0


def realistic(n_ch: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Volts: 10 uV background + 10 Hz alpha + 0.2 Hz drift of 40 uV on electrode offsets of
    up to +-40 mV (DC-coupled amplifier), as a lab stream delivers them."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SFREQ)
    t = np.arange(n) / SFREQ
    x = rng.standard_normal((n_ch, n)) * 10e-6
    x += 10e-6 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (n_ch, 1)))
    x += 40e-6 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6, (n_ch, 1)))
    return x + rng.uniform(-40e-3, 40e-3, (n_ch, 1))


def feed(buf: TraceBuffer, x: np.ndarray, chunk: int = 25) -> None:
    for i in range(0, x.shape[1], chunk):
        part = x[:, i : i + chunk]
        buf.push(part, (i + np.arange(part.shape[1])) / SFREQ)


def test_rows_stay_inside_their_lanes_with_offsets_removed():
    buf = TraceBuffer(16, SFREQ, seconds=5.0)
    x = realistic(16, 8.0)
    feed(buf, x)
    xs, y = buf.page(np.arange(16), columns=800, scale_uv=100.0)
    assert y.shape == (16, 1600) and xs.shape == (1600,)  # min/max per pixel column
    assert xs[0] == pytest.approx(-5.0, abs=0.01) and xs[-1] <= 0
    assert np.abs(y).max() <= 0.5  # every row inside its own lane
    # and readable: the offset is gone (centred) and hardly anything is clipped
    assert np.abs(np.median(y, axis=1)).max() < 0.1
    assert (np.abs(y) >= 0.5).mean() < 0.01
    assert y.std(axis=1).min() > 0.05  # the EEG is visible, not a flat line
    # the data itself is untouched: the display filter works on its own copy
    assert np.abs(x.mean(axis=1)).max() > 1e-3


def test_the_scale_is_fixed_and_not_estimated_from_an_empty_buffer():
    buf = TraceBuffer(4, SFREQ, seconds=2.0)
    feed(buf, np.zeros((4, 200)))  # the first frames: almost nothing received yet
    _, y0 = buf.page(np.arange(4), 300, 50.0)
    assert np.abs(y0).max() == 0.0
    feed(buf, realistic(4, 3.0, seed=1))
    _, y1 = buf.page(np.arange(4), 300, 50.0)
    _, y2 = buf.page(np.arange(4), 300, 500.0)  # 10x coarser scale: 10x smaller traces
    inside = np.abs(y1) < 0.5
    np.testing.assert_allclose(y2[inside], y1[inside] / 10, rtol=1e-5, atol=1e-7)


def test_flat_and_saturated_channels_are_flagged():
    buf = TraceBuffer(5, SFREQ, seconds=2.0)
    x = realistic(5, 3.0, seed=2)
    x[1] = 0.012  # flat (disconnected electrode)
    x[3] = np.minimum(x[3], np.percentile(x[3], 70))  # pinned at a rail 30 % of the time
    feed(buf, x)
    assert buf.flags() == {1: "flat", 3: "saturated"}
    # a known input range (e.g. +-1 mV): beyond it the channel is saturated
    rail = TraceBuffer(2, SFREQ, saturation_uv=1000.0)
    noise = np.random.default_rng(3).standard_normal((2, 1500)) * 20e-6
    feed(rail, noise)
    assert rail.flags() == {}
    feed(rail, noise + [[0.0], [5e-3]])
    assert rail.flags() == {1: "saturated"}


def test_next_scale_steps_through_1_2_5():
    assert next_scale(100.0, -1) == 50.0 and next_scale(100.0, +1) == 200.0
    assert next_scale(70.0, +1) == 100.0 and next_scale(70.0, -1) == 50.0
    assert next_scale(SCALES_UV[0], -1) == SCALES_UV[0]


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="n_channels must be >= 1, got 0"):
        TraceBuffer(0, SFREQ)
    buf = TraceBuffer(2, SFREQ)
    with pytest.raises(ValueError, match=r"expected \(2, n_samples\)"):
        buf.push(np.zeros((3, 10)), np.arange(10.0))
    with pytest.raises(ValueError, match="scale_uv must be > 0"):
        buf.page([0], 100, 0.0)


@pytest.mark.gui
def test_panel_rows_in_lanes_keys_and_paging(qtbot):
    from PySide6.QtCore import Qt

    from bci_app.ui.trace_panel import TracePanel

    names = [f"E{i}" for i in range(40)]
    panel = TracePanel(names, SFREQ, seconds=4.0, visible=16, scale_uv=100.0)
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    x = realistic(40, 6.0, seed=6)
    for i in range(0, x.shape[1], 50):
        panel.push(x[:, i : i + 50], (i + np.arange(50)) / SFREQ)
        if i % 1000 == 0:
            panel.add_marker(i / SFREQ, f"c{i // 1000:02d}_i00")
    panel.redraw()
    xs, ys = panel.curve.getData()
    m = len(xs) // 16
    rows = np.asarray(ys).reshape(16, m)
    for i in range(16):  # row i is centred on -i and never leaves [-i - 0.5, -i + 0.5]
        assert rows[i].min() >= -i - 0.5 - 1e-6 and rows[i].max() <= -i + 0.5 + 1e-6
    assert set(panel.visible_markers) >= {"c03_i00", "c04_i00", "c05_i00"}
    assert "100 \u00b5V" in panel.scale_label.text()
    qtbot.keyClick(panel, Qt.Key.Key_Plus)
    assert panel.scale_uv == 50.0 and "50 \u00b5V" in panel.scale_label.text()
    qtbot.keyClick(panel, Qt.Key.Key_Minus)
    qtbot.keyClick(panel, Qt.Key.Key_Minus)
    assert panel.scale_uv == 200.0
    qtbot.keyClick(panel, Qt.Key.Key_PageDown)
    assert panel.first == 16 and list(panel.rows) == list(range(16, 32))
    qtbot.keyClick(panel, Qt.Key.Key_PageDown)
    assert panel.first == 24  # the last page is full, not partly empty
    assert panel.scroll.value() == 24
    ticks = panel.plot.getAxis("left")._tickLevels[0]
    assert [t for _, t in ticks] == names[24:40]
    panel.scroll.setValue(3)
    assert panel.first == 3


def test_a_chunk_longer_than_the_view_keeps_the_newest_samples():
    """After a stall the window drains many seconds at once: the ring keeps the newest."""
    buf = TraceBuffer(1, 100.0, seconds=2.0, highpass=None, notch=None)
    ramp = np.arange(1234, dtype=float)[None] * 1e-6  # 1 uV per sample
    buf.push(ramp[:, :7], np.arange(7) / 100.0)
    buf.push(ramp[:, 7:], np.arange(7, 1234) / 100.0)  # 12 s in one chunk
    x, y = buf.page([0], columns=1000, scale_uv=1e6)  # no decimation: 200 samples <= 2 x 1000
    np.testing.assert_allclose(y[0], ramp[0, -200:], rtol=1e-6)  # 1 lane = 1 V here
    assert buf.n_total == 1234 and x[-1] == 0.0 and buf.last_ts == 12.33
