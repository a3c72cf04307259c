"""The live window: stimulus | saliency | reconstruction, EEG traces, history, latency.

Threading: only the GUI thread touches widgets. Workers call the thread-safe
``push_*`` methods, which append to bounded deques (the oldest item goes when one is
full; dropped EEG chunks are counted in ``display_dropped``); a ``QTimer`` (every
``frame_ms``) drains them and updates items that were all made once in ``__init__``
(``setData``/``setImage``). A worker error arrives through :meth:`push_error` (or the
``errored`` signal) and is shown in a banner; it never closes the window.

Controls emit signals that the session connects to: ``startRequested``,
``stopRequested``, ``recordToggled(bool)``, ``bundleChanged(str)``,
``refinerChanged(int steps, float strength, float guidance)``; ``displayed(int trial index,
float ms)`` says when a reconstruction was shown, ms after it was ready (the report's
``display`` latency). Results arrive with their seen image (``result.seen``), looked up once
by the session. A trial whose class the bundle held out of its training (``held_out``) is
tagged "held out" beside its caption and its images are framed in amber (in the history strip
too); the status bar shows the running top-1 of the session report (``quality`` in a pushed
status: report.json's figures), with the held-out classes' own N-way top-1 beside it when the
bundle holds classes out. The sampling boxes show
the values the bundle samples with (``sampling``) and are checked by
``validate_sampling`` before anything is emitted; a refused value is named in the
window and the previous one stays in force.
"""

from __future__ import annotations

import html
import logging
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
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from bci_app.messages import EXTRA_LATENCIES, LATENCIES, InferenceResult
from bci_app.ui.trace_panel import TracePanel

log = logging.getLogger(__name__)

LATENCY_STAGES = (*LATENCIES, *EXTRA_LATENCIES)
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
HELD_OUT_COLOUR = "#fa3"  # the "held out" tag and score (amber, as in the report's grid.png)
_STATE_COLOURS = {"connected": "#3c3", "lost": "#e33", "reconnecting": "#e93", "stopped": "#999"}


def drain(q: deque, limit: int = 100_000) -> list[Any]:
    """Everything waiting in ``q`` now (oldest first, non-blocking), at most ``limit`` items.

    ``q`` is a deque that other threads ``append`` to (append/popleft are atomic)."""
    out = []
    for _ in range(limit):
        try:
            out.append(q.popleft())
        except IndexError:
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
        self.marked = False

    def mark(self, on: bool) -> None:
        """An amber frame around the panel (a held-out trial's), or none."""
        if on != self.marked:
            self.view.setBorder(pg.mkPen(HELD_OUT_COLOUR, width=3) if on else None)
            self.marked = on

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
        EEG channel names of the stream (traces are drawn for ``channels`` of them).
    sfreq : float
        EEG sampling rate (Hz).
    channels : sequence of int, optional
        Which channels to draw (default: all; a page of ``visible`` rows at a time).
    seconds : float
        Width of the scrolling EEG view.
    visible : int
        Channel rows per page of the trace panel.
    scale_uv : float
        Trace scale, microvolts per row (``+``/``-`` change it).
    highpass, notch : float | None
        Display-only filters of the traces (Hz).
    frame_ms : int
        Redraw period (20-33 ms).
    history : int
        Trials in the history strip.
    bundles : list of str
        Choices of the bundle combo box (editable).
    sampling : (steps, strength, guidance), optional
        The values the bundle samples with, shown in the boxes; None: the bundle has
        no refiner and the boxes are disabled.
    validate_sampling : callable, optional
        ``(steps, strength, guidance) -> None``, raising ``ValueError`` with the reason
        for a refused combination (shown in the window; nothing is emitted).
    yield_to : callable, optional
        ``() -> bool``; while it returns True (inference is running) the traces are
        not redrawn (at most ``max_yield_ms`` late), so drawing does not slow inference.
    held_out : callable, optional
        ``stim_id -> class name`` when the bundle held that stimulus's class out of its
        training, else None: such trials are tagged "held out" and framed.
    """

    startRequested = Signal()
    stopRequested = Signal()
    recordToggled = Signal(bool)
    bundleChanged = Signal(str)
    refinerChanged = Signal(int, float, float)
    errored = Signal(str)
    displayed = Signal(int, float)
    closed = Signal()

    def __init__(
        self,
        ch_names: Sequence[str],
        sfreq: float,
        *,
        channels: Sequence[int] | None = None,
        seconds: float = 5.0,
        visible: int = 32,
        scale_uv: float = 100.0,
        highpass: float | None = 0.5,
        notch: float | None = 50.0,
        frame_ms: int = 25,
        history: int = 6,
        bundles: Sequence[str] = ("demo",),
        sampling: tuple[int, float, float] | None = (2, 0.5, 1.0),
        validate_sampling: Callable[[int, float, float], None] | None = None,
        yield_to: Callable[[], bool] | None = None,
        max_yield_ms: float = 250.0,
        device: str = "",
        held_out: Callable[[str | None], str | None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("bci-app live")
        pg.setConfigOptions(antialias=False)
        self.ch_names = list(ch_names)
        self.sfreq = float(sfreq)
        self.channels = np.asarray(list(channels) if channels is not None else range(len(self.ch_names)), dtype=int)
        self._all_channels = channels is None
        self.seconds = float(seconds)
        self.frame_ms = int(frame_ms)
        self.n_history = int(history)
        self.validate_sampling = validate_sampling
        self.yield_to = yield_to
        self.max_yield_s = float(max_yield_ms) / 1000.0
        self.frames_yielded = 0
        self.held_out = held_out

        # thread-safe, bounded inputs (deque append/popleft are atomic)
        self._eeg_q: deque = deque(maxlen=4096)
        self._marker_q: deque = deque(maxlen=1024)
        self._result_q: deque = deque(maxlen=64)
        self._status_q: deque = deque(maxlen=64)
        self._error_q: deque = deque(maxlen=64)
        self.display_dropped = 0  # EEG chunks the display skipped because it fell behind
        self.errored.connect(self.push_error)

        # state read by tests and the status bar
        self.trials_shown = 0
        self.results_seen = 0
        self.last_result: InferenceResult | None = None
        self.held_out_shown = 0  # reconstructed trials of held-out classes shown
        self.last_held_out: str | None = None  # the held-out class of the trial shown, if it is one
        self.state = "stopped"
        self.over = False
        self.status: dict[str, Any] = {"device": device}
        self.errors: deque[str] = deque(maxlen=200)
        self.frames = 0
        self._frame_times: deque[float] = deque(maxlen=120)
        self._last_draw = 0.0
        self._eeg_dirty = False
        self._history: deque = deque(maxlen=self.n_history)
        self.sampling = None if sampling is None else (int(sampling[0]), float(sampling[1]), float(sampling[2]))

        self._build(bundles, highpass, notch, visible, scale_uv)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._on_frame)
        self._timer.start(self.frame_ms)

    # ------------------------------------------------------------------ layout
    def _build(self, bundles: Sequence[str], highpass: float | None, notch: float | None,
               visible: int, scale_uv: float) -> None:
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
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setRange(0.0, 1.0)  # 0 is typeable and refused with the reason
        self.strength_spin.setSingleStep(0.05)
        self.guidance_spin = QDoubleSpinBox()
        self.guidance_spin.setRange(0.0, 20.0)
        self.guidance_spin.setSingleStep(0.25)
        self.set_sampling(self.sampling)
        for spin in (self.steps_spin, self.strength_spin, self.guidance_spin):
            spin.valueChanged.connect(self._emit_refiner)
        for w in (self.start_button, self.record_box, QLabel("Bundle"), self.bundle_combo,
                  QLabel("Steps"), self.steps_spin, QLabel("Strength"), self.strength_spin,
                  QLabel("Guidance"), self.guidance_spin):
            bar.addWidget(w)
        bar.addStretch(1)
        outer.addLayout(bar)

        self.error_label = QLabel("")
        self.error_label.setStyleSheet("background:#600; color:white; padding:3px;")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        outer.addWidget(self.error_label)
        self.over_label = QLabel("")
        self.over_label.setStyleSheet("background:#234; color:white; padding:3px; font-weight:bold;")
        self.over_label.setWordWrap(True)
        self.over_label.hide()
        outer.addWidget(self.over_label)

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
        names = [self.ch_names[c] for c in self.channels]
        self.traces = TracePanel(names, self.sfreq, seconds=self.seconds, visible=visible,
                                 scale_uv=scale_uv, highpass=highpass, notch=notch)
        self.eeg_plot = self.traces.plot
        self.marker_lines = self.traces.marker_lines

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
        bottom.addWidget(self.traces)
        bottom.addWidget(self.latency_plot)
        bottom.setSizes([760, 240])
        split.addWidget(bottom)
        split.setSizes([300, 500])
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
        self.score_label = QLabel()
        self.held_out_score_label = QLabel()
        self.held_out_score_label.setStyleSheet(f"color:{HELD_OUT_COLOUR}; font-weight:bold;")
        # the scores before the counters: a narrow window cuts the status bar's right end
        for w in (self.state_label, self.sfreq_label, self.score_label, self.held_out_score_label,
                  self.lost_label, self.queue_label, self.drops_label, self.device_label,
                  self.fps_label):
            sb.addWidget(w)
        self._render_status()
        self.resize(1280, 800)

    # ------------------------------------------------------------------ inputs (any thread)
    def push_eeg(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        """EEG chunk ``[C, n]`` (volts) with LSL timestamps; any thread."""
        if len(self._eeg_q) == self._eeg_q.maxlen:
            self.display_dropped += 1
        self._eeg_q.append((data, timestamps))

    def push_marker(self, label: str, t: float) -> None:
        """A marker line at LSL time ``t`` labelled ``label`` (e.g. the stimulus id); any thread."""
        self._marker_q.append((float(t), str(label)))

    def push_result(self, result: InferenceResult) -> None:
        self._result_q.append(result)

    def push_status(self, status: dict[str, Any]) -> None:
        """Partial status: state, samples_lost, queue_depth, dropped, device, trials..."""
        self._status_q.append(dict(status))

    def push_error(self, message: str) -> None:
        self._error_q.append(str(message))

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

    def set_recording(self, on: bool) -> None:
        """Reflect the recording state in the Record box without re-emitting."""
        self.record_box.blockSignals(True)
        self.record_box.setChecked(bool(on))
        self.record_box.blockSignals(False)

    def set_sampling(self, sampling: tuple[int, float, float] | None) -> None:
        """Show the sampling values in force (no signal); None disables the boxes."""
        self.sampling = None if sampling is None else (int(sampling[0]), float(sampling[1]), float(sampling[2]))
        spins = (self.steps_spin, self.strength_spin, self.guidance_spin)
        for spin in spins:
            spin.blockSignals(True)
        if self.sampling is not None:
            self.steps_spin.setValue(self.sampling[0])
            self.strength_spin.setValue(self.sampling[1])
            self.guidance_spin.setValue(self.sampling[2])
        tips = ("refiner steps", "img2img strength, in (0, 1]", "classifier-free guidance weight (<= 1: none)")
        for spin, tip in zip(spins, tips, strict=True):
            spin.setEnabled(self.sampling is not None)
            spin.setToolTip(tip if self.sampling is not None else "this bundle has no refiner")
            spin.setStyleSheet("")
            spin.blockSignals(False)

    def _emit_refiner(self, *_: Any) -> None:
        values = (int(self.steps_spin.value()), float(self.strength_spin.value()),
                  float(self.guidance_spin.value()))
        if self.validate_sampling is not None:
            try:
                self.validate_sampling(*values)
            except ValueError as exc:
                for spin in (self.steps_spin, self.strength_spin, self.guidance_spin):
                    spin.setStyleSheet("background:#633;")
                kept = "" if self.sampling is None else (
                    f"; still sampling with steps {self.sampling[0]}, strength {self.sampling[1]:g}, "
                    f"guidance {self.sampling[2]:g}")
                self._show_error(f"sampling refused: {exc}{kept}")
                return
        for spin in (self.steps_spin, self.strength_spin, self.guidance_spin):
            spin.setStyleSheet("")
        if self.errors and self.errors[-1].startswith("sampling refused"):
            self.clear_error()
        self.sampling = values
        self.refinerChanged.emit(*values)

    def session_over(self, message: str) -> None:
        """The session has ended: say so (the window stays open for looking)."""
        self.over = True
        self.state = "stopped"
        self.set_running(False)
        self.start_button.setEnabled(False)
        self.over_label.setText(f"session over: {message}")
        self.over_label.show()
        self._render_status()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        # keys the focused control did not use reach the traces (+/-, PageUp/PageDown)
        if not self.traces.handle_key(event.key()):
            super().keyPressEvent(event)

    # ------------------------------------------------------------------ frame
    @property
    def fps(self) -> float:
        """Redraws per second over the last ~2 s (frames with new content)."""
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
                now = time.perf_counter()
                if (self.yield_to is not None and now - self._last_draw < self.max_yield_s
                        and self.yield_to()):
                    self.frames_yielded += 1
                    return  # inference is running: leave it the CPU, draw once it is done
                self.traces.redraw()
                self._eeg_dirty = False
                self._last_draw = now
                self.frames += 1
                self._frame_times.append(now)
        except Exception as exc:  # keep the window alive; show what went wrong
            log.exception("window update failed")
            self._show_error(f"display error: {type(exc).__name__}: {exc}")

    def _drain_eeg(self) -> None:
        chunks = drain(self._eeg_q)
        if not chunks:
            return
        data = np.concatenate([np.asarray(d, dtype=np.float32) for d, _ in chunks], axis=1)
        if not self._all_channels:
            data = data[self.channels]
        ts = np.concatenate([np.asarray(t, dtype=np.float64).ravel() for _, t in chunks])
        self.traces.push(data, ts)
        self._eeg_dirty = True

    def _drain_markers(self) -> None:
        for t, label in drain(self._marker_q):
            self.traces.add_marker(t, label)
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
                display = 1000.0 * (now - r.t_ready)
                self.displayed.emit(r.trial.index, display)
                held = self.held_out(r.trial.stim_id) if self.held_out is not None else None
                self._history.appendleft((r, held))
                shown = (r, held)
                for s, v in {**r.times_ms, "display": display}.items():
                    if s in self._lat:
                        self._lat[s].append(v)
                        self._lat_idx[s].append(r.trial.index)
        if shown is not None:
            self._show_result(*shown)
            self._render_history()
            for s, curve in self.latency_curves.items():
                if self._lat[s]:
                    curve.setData(np.fromiter(self._lat_idx[s], float), np.fromiter(self._lat[s], float))
        self._render_status()

    def _show_result(self, r: InferenceResult, held: str | None) -> None:
        rec = r.reconstruction
        self.seen_panel.set(r.seen)
        self.saliency_panel.set(np.asarray(rec.saliency))
        self.recon_panel.set(np.asarray(rec.image))
        for panel in (self.seen_panel, self.saliency_panel, self.recon_panel):
            panel.mark(held is not None)
        e2e = r.times_ms.get("end_to_end")
        self.trial_label.setText(
            html.escape(f"trial {r.trial.index}  {r.trial.stim_id or r.trial.marker}")
            + (f"  end-to-end {e2e:.0f} ms" if e2e is not None else "")
            + (f"&nbsp;&nbsp;<span style='color:{HELD_OUT_COLOUR}; font-weight:bold'>"
               f"HELD OUT: {html.escape(held)}</span>" if held is not None else "")
        )
        self.trials_shown += 1
        self.held_out_shown += held is not None
        self.last_held_out = held
        self.last_result = r

    def _render_history(self) -> None:
        for c, (r, held) in enumerate(self._history):
            rec = r.reconstruction
            for row, img in enumerate((r.seen, rec.saliency, rec.image)):
                self.history_panels[row][c].set(None if img is None else np.asarray(img))
                self.history_panels[row][c].mark(held is not None)

    def _drain_status(self) -> None:
        items = drain(self._status_q)
        if not items:
            return
        for s in items:
            self.status.update(s)
        if not self.over:
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
        q = st.get("quality")
        self.score_label.setVisible(q is not None)
        self.held_out_score_label.setVisible(q is not None and q.get("held_out") is not None)
        if q is not None:
            self.score_label.setText(_score_text("top-1", q))
            if q.get("held_out") is not None:
                self.held_out_score_label.setText(_score_text("held out top-1", q["held_out"]))

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
        self.closed.emit()


def _score_text(name: str, q: dict[str, Any]) -> str:
    """``name 0.50 (n=12, 40-way, chance 0.025)`` from a report's quality figures."""
    top1 = "n/a" if q.get("top1") is None else f"{q['top1']:.2f}"
    chance = "" if q.get("chance") is None else f", chance {q['chance']:.3g}"
    ways = f", {q['ways']}-way" if q.get("ways") else ""
    return f"{name} {top1} (n={q.get('n', 0)}{ways}{chance})"


def _lsl_now() -> float:
    from pylsl import local_clock

    return local_clock()
