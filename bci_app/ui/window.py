"""The live window: stimulus | saliency | reconstruction, EEG traces, history, latency.

Threading: only the GUI thread touches widgets. Workers call the thread-safe
``push_*`` methods, which put items on queues; a ``QTimer`` (every ``frame_ms``)
drains the queues and updates items that were all made once in ``__init__``
(``setData``/``setImage``). A worker error arrives through :meth:`push_error` (or the
``errored`` signal) and is shown in a banner; it never closes the window.

Controls emit signals that the session connects to: ``startRequested``,
``stopRequested``, ``recordToggled(bool)``, ``bundleChanged(str)``,
``refinerChanged(int steps, float strength)``.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bci_app.acquisition.trial import InferenceResult

log = logging.getLogger(__name__)

LATENCY_STAGES = ("end_to_end", "epoch", "queue", "encoder", "saliency", "semantic", "refiner", "display")
_STAGE_COLOURS = {
    "end_to_end": (255, 255, 255),
    "epoch": (120, 200, 255),
    "queue": (160, 160, 160),
    "encoder": (255, 170, 60),
    "saliency": (120, 230, 120),
    "semantic": (230, 120, 230),
    "refiner": (255, 90, 90),
    "display": (240, 240, 120),
}
_STATE_COLOURS = {"connected": "#3c3", "lost": "#e33", "reconnecting": "#e93", "stopped": "#999"}



def drain(q: queue.Queue, limit: int = 1000) -> list[Any]:
    """Everything waiting in ``q`` now (non-blocking), at most ``limit`` items."""
    out = []
    for _ in range(limit):
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            break
    return out


class _ImagePanel:
    """A titled ViewBox holding one ImageItem (row-major RGB), made once."""

    def __init__(self, layout: pg.GraphicsLayout, row: int, col: int, title: str | None) -> None:
        if title:
            layout.addLabel(title, row=row, col=col)
            row += 1
        self.view = layout.addViewBox(row=row, col=col, lockAspect=True, invertY=True,
                                      enableMouse=False)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self.shape: tuple[int, ...] | None = None
        self.has_image = False

    def set(self, img: np.ndarray | None) -> None:
        if img is None:
            self.item.clear()
            self.has_image = False
            return
        img = np.asarray(img)
        self.item.setImage(img, autoLevels=False, levels=(0, 255))
        if img.shape != self.shape:
            self.shape = img.shape
            self.view.setRange(xRange=(0, img.shape[1]), yRange=(0, img.shape[0]), padding=0)
        self.has_image = True


class LiveWindow(QMainWindow):
    """Live view of a session.

    Parameters
    ----------
    ch_names : list of str
        EEG channel names (traces are drawn for ``channels`` of them, all by default).
    sfreq : float
        EEG sampling rate (Hz).
    seen_image : callable, optional
        ``stim_id -> uint8 [H, W, 3]`` or None (the seen-stimulus panel shows it).
    channels : sequence of int, optional
        Which channels to draw (default: all).
    seconds : float
        Width of the scrolling EEG view.
    display_rate : float
        Trace points per second after min/max decimation.
    frame_ms : int
        Redraw period (20-33 ms).
    history : int
        Trials in the history strip.
    bundles : list of str
        Choices of the bundle combo box (editable).
    """

    startRequested = Signal()
    stopRequested = Signal()
    recordToggled = Signal(bool)
    bundleChanged = Signal(str)
    refinerChanged = Signal(int, float)
    errored = Signal(str)

    def __init__(
        self,
        ch_names: Sequence[str],
        sfreq: float,
        *,
        seen_image: Callable[[str], np.ndarray | None] | None = None,
        channels: Sequence[int] | None = None,
        seconds: float = 5.0,
        display_rate: float = 25.0,
        frame_ms: int = 30,
        history: int = 6,
        latency_points: int = 100,
        bundles: Sequence[str] = ("demo",),
        steps: int = 1,
        strength: float = 0.5,
        device: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("bci-app live")
        pg.setConfigOptions(antialias=False)
        self.ch_names = list(ch_names)
        self.sfreq = float(sfreq)
        self.seen_image = seen_image
        self.channels = np.asarray(list(channels) if channels is not None else range(len(self.ch_names)), dtype=int)
        self.seconds = float(seconds)
        self.frame_ms = int(frame_ms)
        self.n_history = int(history)

        # thread-safe inputs
        self._eeg_q: queue.Queue = queue.Queue()
        self._marker_q: queue.Queue = queue.Queue()
        self._result_q: queue.Queue = queue.Queue()
        self._status_q: queue.Queue = queue.Queue()
        self._error_q: queue.Queue = queue.Queue()
        self.errored.connect(self.push_error)

        # state read by tests and the status bar
        self.trials_shown = 0
        self.results_seen = 0
        self.last_result: InferenceResult | None = None
        self.state = "stopped"
        self.status: dict[str, Any] = {"device": device}
        self.errors: list[str] = []
        self.frames = 0
        self._frame_times: deque[float] = deque(maxlen=120)

        # EEG display ring buffer (min/max decimated): 2 points per bin
        self._bin = max(1, int(round(self.sfreq / display_rate)))
        self._n_bins = int(round(self.seconds * self.sfreq / self._bin))
        n_ch = len(self.channels)
        self._trace = np.zeros((n_ch, 2 * self._n_bins), dtype=np.float32)
        self._trace_x = (np.repeat(np.arange(self._n_bins), 2) - self._n_bins + 1) * (self._bin / self.sfreq)
        self._residual = np.zeros((n_ch, 0), dtype=np.float32)
        self._last_ts: float | None = None
        self._scale: float | None = None
        self._markers: deque[tuple[float, str]] = deque(maxlen=64)
        self._eeg_dirty = False

        self._build(bundles, steps, strength)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._on_frame)
        self._timer.start(self.frame_ms)

    # ------------------------------------------------------------------ layout
    def _build(self, bundles: Sequence[str], steps: int, strength: float) -> None:
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(4, 4, 4, 4)

        # controls
        bar = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setCheckable(True)
        self.start_button.toggled.connect(self._on_start_toggled)
        self.record_box = QCheckBox("Record")
        self.record_box.toggled.connect(self.recordToggled)
        self.bundle_combo = QComboBox()
        self.bundle_combo.setEditable(True)
        self.bundle_combo.addItems(list(bundles))
        self.bundle_combo.activated.connect(lambda _i: self.bundleChanged.emit(self.bundle_combo.currentText()))
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 50)
        self.steps_spin.setValue(int(steps))
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.0, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setValue(float(strength))
        self.steps_spin.valueChanged.connect(self._emit_refiner)
        self.strength_spin.valueChanged.connect(self._emit_refiner)
        for w in (self.start_button, self.record_box, QLabel("Bundle"), self.bundle_combo,
                  QLabel("Steps"), self.steps_spin, QLabel("Strength"), self.strength_spin):
            bar.addWidget(w)
        bar.addStretch(1)
        outer.addLayout(bar)

        self.error_label = QLabel("")
        self.error_label.setStyleSheet("background:#600; color:white; padding:3px;")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        outer.addWidget(self.error_label)

        split = QSplitter(Qt.Orientation.Vertical)
        outer.addWidget(split, 1)

        # images + history
        self.images_widget = pg.GraphicsLayoutWidget()
        gl = self.images_widget.ci
        self.seen_panel = _ImagePanel(gl, 0, 0, "seen")
        self.saliency_panel = _ImagePanel(gl, 0, 1, "saliency")
        self.recon_panel = _ImagePanel(gl, 0, 2, "reconstruction")
        self.trial_label = gl.addLabel("", row=2, col=0, colspan=3)
        self.history_widget = pg.GraphicsLayoutWidget()
        hl = self.history_widget.ci
        self.history_panels: list[list[_ImagePanel]] = [
            [_ImagePanel(hl, r, c, None) for c in range(self.n_history)] for r in range(3)
        ]
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self.images_widget)
        top.addWidget(self.history_widget)
        split.addWidget(top)

        # EEG traces
        self.eeg_plot = pg.PlotWidget()
        self.eeg_plot.setMouseEnabled(x=False, y=False)
        self.eeg_plot.hideButtons()
        # one full repaint per frame instead of several partial ones (each would redraw
        # the whole trace path)
        self.eeg_plot.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.eeg_plot.setLabel("bottom", "time", units="s")
        self.eeg_plot.getAxis("left").setTicks(
            [[(float(-i), self.ch_names[c]) for i, c in enumerate(self.channels) if i % 8 == 0]]
        )
        self.eeg_plot.setXRange(-self.seconds, 0, padding=0)
        self.eeg_plot.setYRange(-len(self.channels), 1, padding=0)
        # All traces are one PlotCurveItem with a `connect` array that breaks the line
        # between channels: one QPainterPath per frame instead of 128 items (15x faster
        # here). The buffer holds exactly the visible window, min/max decimated, so
        # clip-to-view and peak downsampling are already done before setData.
        self.eeg_curve = pg.PlotCurveItem(pen=pg.mkPen((150, 200, 255), width=1), skipFiniteCheck=True)
        # QPainter.drawLines on segment arrays: ~40 % cheaper than one long QPainterPath
        self.eeg_curve.setSegmentedLineMode("on")
        self.eeg_plot.addItem(self.eeg_curve)
        n_pts = self._trace.shape[1]
        self._eeg_x = np.tile(self._trace_x, len(self.channels))
        self._eeg_connect = np.ones(n_pts * len(self.channels), dtype=bool)
        self._eeg_connect[n_pts - 1 :: n_pts] = False
        self._eeg_offsets = -np.arange(len(self.channels), dtype=np.float32)[:, None]
        self.marker_lines = []
        for _ in range(32):
            line = pg.InfiniteLine(angle=90, pen=pg.mkPen((255, 200, 0), width=1))
            line.hide()
            self.eeg_plot.addItem(line)
            self.marker_lines.append(line)

        # latency
        self.latency_plot = pg.PlotWidget()
        self.latency_plot.addLegend(offset=(5, 5))
        self.latency_plot.setLabel("left", "latency", units="ms")
        self.latency_plot.setLabel("bottom", "trial")
        self._lat_n = 100
        self._lat: dict[str, deque] = {s: deque(maxlen=self._lat_n) for s in LATENCY_STAGES}
        self._lat_idx: dict[str, deque] = {s: deque(maxlen=self._lat_n) for s in LATENCY_STAGES}
        self.latency_curves = {
            s: self.latency_plot.plot(pen=pg.mkPen(_STAGE_COLOURS[s], width=1), name=s, skipFiniteCheck=True)
            for s in LATENCY_STAGES
        }
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.eeg_plot)
        bottom.addWidget(self.latency_plot)
        bottom.setSizes([700, 300])
        split.addWidget(bottom)
        split.setSizes([320, 480])
        self.setCentralWidget(central)

        # status bar
        sb = self.statusBar()
        self.state_label = QLabel()
        self.sfreq_label = QLabel(f"{self.sfreq:g} Hz, {len(self.ch_names)} ch")
        self.lost_label = QLabel()
        self.queue_label = QLabel()
        self.drops_label = QLabel()
        self.device_label = QLabel()
        self.fps_label = QLabel()
        for w in (self.state_label, self.sfreq_label, self.lost_label, self.queue_label,
                  self.drops_label, self.device_label, self.fps_label):
            sb.addWidget(w)
        self._render_status()
        self.resize(1280, 800)

    # ------------------------------------------------------------------ inputs (any thread)
    def push_eeg(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """EEG chunk ``[C, n]`` (volts) with LSL timestamps; any thread."""
        self._eeg_q.put((data, timestamps))

    def push_marker(self, label: str, t: float) -> None:
        self._marker_q.put((float(t), str(label)))

    def push_result(self, result: InferenceResult) -> None:
        self._result_q.put(result)

    def push_status(self, status: dict[str, Any]) -> None:
        """Partial status: state, samples_lost, queue_depth, dropped, device, trials..."""
        self._status_q.put(dict(status))

    def push_error(self, message: str) -> None:
        self._error_q.put(str(message))

    # ------------------------------------------------------------------ controls
    def _on_start_toggled(self, on: bool) -> None:
        self.start_button.setText("Stop" if on else "Start")
        (self.startRequested if on else self.stopRequested).emit()

    def set_running(self, running: bool) -> None:
        """Reflect the session state in the start/stop button without re-emitting."""
        self.start_button.blockSignals(True)
        self.start_button.setChecked(running)
        self.start_button.setText("Stop" if running else "Start")
        self.start_button.blockSignals(False)

    def _emit_refiner(self, *_: Any) -> None:
        self.refinerChanged.emit(int(self.steps_spin.value()), float(self.strength_spin.value()))

    # ------------------------------------------------------------------ frame
    @property
    def fps(self) -> float:
        """Redraws per second over the last ~second (frames with new content)."""
        ts = [t for t in self._frame_times if t >= time.perf_counter() - 2.0]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / (ts[-1] - ts[0])

    def _on_frame(self) -> None:
        try:
            self._drain_eeg()
            self._drain_markers()
            self._drain_results()
            self._drain_status()
            self._drain_errors()
            if self._eeg_dirty:
                self._draw_eeg()
                self._eeg_dirty = False
                self.frames += 1
                self._frame_times.append(time.perf_counter())
        except Exception as exc:  # keep the window alive; show what went wrong
            log.exception("window update failed")
            self._show_error(f"display error: {type(exc).__name__}: {exc}")

    def _drain_eeg(self) -> None:
        chunks = drain(self._eeg_q)
        if not chunks:
            return
        data = np.concatenate([np.asarray(d, dtype=np.float32)[self.channels] for d, _ in chunks], axis=1)
        self._last_ts = float(np.asarray(chunks[-1][1])[-1]) if len(chunks[-1][1]) else self._last_ts
        data = np.concatenate([self._residual, data], axis=1)
        n_bins = data.shape[1] // self._bin
        if n_bins == 0:
            self._residual = data
            return
        used = data[:, : n_bins * self._bin].reshape(len(self.channels), n_bins, self._bin)
        self._residual = data[:, n_bins * self._bin :]
        mm = np.empty((len(self.channels), 2 * n_bins), dtype=np.float32)
        mm[:, 0::2] = used.min(axis=2)
        mm[:, 1::2] = used.max(axis=2)
        n = min(mm.shape[1], self._trace.shape[1])
        self._trace = np.roll(self._trace, -n, axis=1)
        self._trace[:, -n:] = mm[:, -n:]
        self._eeg_dirty = True

    def _draw_eeg(self) -> None:
        tr = self._trace
        centred = tr - tr.mean(axis=1, keepdims=True)
        if self._scale is None or not np.isfinite(self._scale) or self._scale == 0:
            s = float(np.nanpercentile(np.abs(centred), 95)) if centred.size else 0.0
            if s > 0 and np.isfinite(s):
                self._scale = s
        scale = 1.0 / (3.0 * self._scale) if self._scale else 1.0
        y = centred * np.float32(scale) + self._eeg_offsets
        self.eeg_curve.setData(self._eeg_x, y.ravel(), connect=self._eeg_connect)
        # marker lines relative to the newest sample
        now = self._last_ts
        k = 0
        if now is not None:
            for t, _label in self._markers:
                dt = t - now
                if -self.seconds <= dt <= 0.5 and k < len(self.marker_lines):
                    self.marker_lines[k].setValue(dt)
                    self.marker_lines[k].show()
                    k += 1
        for line in self.marker_lines[k:]:
            line.hide()

    def _drain_markers(self) -> None:
        for t, label in drain(self._marker_q):
            self._markers.append((t, label))
            self._eeg_dirty = True

    def _drain_results(self) -> None:
        results = drain(self._result_q)
        if not results:
            return
        now = _lsl_now()
        shown = None
        for r in results:
            self.results_seen += 1
            if r.outcome == "reconstructed":
                shown = r
                r.times_ms["display"] = 1000.0 * (now - r.t_ready)
                self._history_push(r)
                for s in LATENCY_STAGES:
                    if s in r.times_ms:
                        self._lat[s].append(r.times_ms[s])
                        self._lat_idx[s].append(r.trial.index)
        if shown is not None:
            self._show_result(shown)
            for s, curve in self.latency_curves.items():
                if self._lat[s]:
                    curve.setData(np.fromiter(self._lat_idx[s], float), np.fromiter(self._lat[s], float))
        self._render_status()

    def _seen(self, stim_id: str | None) -> np.ndarray | None:
        if stim_id is None or self.seen_image is None:
            return None
        try:
            return self.seen_image(stim_id)
        except (KeyError, ValueError, FileNotFoundError):
            return None

    def _show_result(self, r: InferenceResult) -> None:
        rec = r.reconstruction
        self.seen_panel.set(self._seen(r.trial.stim_id))
        self.saliency_panel.set(np.asarray(rec.saliency))
        self.recon_panel.set(np.asarray(rec.image))
        e2e = r.times_ms.get("end_to_end")
        self.trial_label.setText(
            f"trial {r.trial.index}  {r.trial.stim_id or r.trial.marker}"
            + (f"  end-to-end {e2e:.0f} ms" if e2e is not None else "")
        )
        self.trials_shown += 1
        self.last_result = r

    def _history_push(self, r: InferenceResult) -> None:
        if not hasattr(self, "_history"):
            self._history: deque = deque(maxlen=self.n_history)
        rec = r.reconstruction
        self._history.appendleft((self._seen(r.trial.stim_id), np.asarray(rec.saliency), np.asarray(rec.image)))
        for c, triple in enumerate(self._history):
            for row, img in enumerate(triple):
                self.history_panels[row][c].set(img)

    def _drain_status(self) -> None:
        items = drain(self._status_q)
        if not items:
            return
        for s in items:
            self.status.update(s)
        self.state = str(self.status.get("state", self.state))
        self._render_status()

    def _render_status(self) -> None:
        st = self.status
        colour = _STATE_COLOURS.get(self.state, "#999")
        self.state_label.setText(f"source: {self.state}")
        self.state_label.setStyleSheet(f"color:{colour}; font-weight:bold;")
        self.lost_label.setText(f"samples lost: {st.get('samples_lost', 0)}")
        self.queue_label.setText(f"queue: {st.get('queue_depth', 0)}")
        self.drops_label.setText(f"drops: {st.get('dropped', 0)}  rejected: {st.get('rejected', 0)}")
        self.device_label.setText(f"device: {st.get('device', '') or '?'}")
        self.fps_label.setText(f"{self.fps:.0f} fps")

    def _drain_errors(self) -> None:
        for msg in drain(self._error_q):
            self._show_error(msg)

    def _show_error(self, msg: str) -> None:
        self.errors.append(msg)
        self.error_label.setText(f"error: {msg}")
        self.error_label.show()

    def clear_error(self) -> None:
        self.error_label.hide()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._timer.stop()
        super().closeEvent(event)


def _lsl_now() -> float:
    from pylsl import local_clock

    return local_clock()
