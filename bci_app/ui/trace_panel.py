"""The EEG trace panel of the live window (Qt): one row per channel, a page at a time.

Drawing follows the pyqtgraph / mne-qt-browser rules: every item is made once in
``__init__`` (two curves, a pool of marker lines, flag labels, the scale bar), and
:meth:`TracePanel.redraw` only calls ``setData``/``setValue`` with a page of channels
decimated to the plot's pixel width by :class:`~bci_app.ui.traces.TraceBuffer`.
All rows of a page share one curve whose ``connect`` array breaks the line between
channels (one path per frame instead of one item per channel).

Keys (when the panel or the window has focus): ``+``/``-`` scale, PageUp/PageDown page
through the channels, Up/Down move one channel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QScrollBar, QToolButton, QVBoxLayout, QWidget

from bci_app.ui.traces import TraceBuffer, next_scale

_TRACE_PEN = (160, 205, 255)
_FLAG_PEN = (255, 110, 90)
_MARKER_PEN = (255, 200, 0)


class TracePanel(QWidget):
    """Readable EEG rows: fixed microvolt scale, display filters, paging, marker lines.

    Parameters
    ----------
    ch_names : list of str
    sfreq : float
    seconds : float
        Width of the scrolling view.
    visible : int
        Channel rows on one page (all of them when the montage is smaller).
    scale_uv : float
        Microvolts per lane (the distance between two rows' baselines).
    highpass, notch : float | None
        Display-only filters (Hz); the data of the session is not touched.
    saturation_uv : float | None
        See :class:`~bci_app.ui.traces.TraceBuffer`.
    n_marker_lines : int
        Marker lines made up front (markers beyond that in one view are not drawn).
    """

    scaleChanged = Signal(float)
    pageChanged = Signal(int)

    def __init__(
        self,
        ch_names: Sequence[str],
        sfreq: float,
        *,
        seconds: float = 5.0,
        visible: int = 32,
        scale_uv: float = 100.0,
        highpass: float | None = 0.5,
        notch: float | None = 50.0,
        saturation_uv: float | None = None,
        n_marker_lines: int = 24,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        if scale_uv <= 0:
            raise ValueError(f"scale_uv must be > 0 microvolts per row, got {scale_uv}")
        self.ch_names = list(ch_names)
        self.seconds = float(seconds)
        self.buffer = TraceBuffer(len(self.ch_names), sfreq, seconds=seconds, highpass=highpass,
                                  notch=notch, saturation_uv=saturation_uv)
        self.n_visible = max(1, min(int(visible), len(self.ch_names)))
        self.first = 0
        self.scale_uv = float(scale_uv)
        self.flagged: dict[int, str] = {}
        self._markers: deque[tuple[float, str]] = deque(maxlen=256)
        self._frames = 0
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._build(n_marker_lines)
        self._on_page_changed()

    # ------------------------------------------------------------------ layout
    def _build(self, n_lines: int) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        head = QHBoxLayout()
        self.title_label = QLabel()
        self.scale_label = QLabel()
        self.finer_button = QToolButton(text="+")
        self.finer_button.setToolTip("larger traces (key +)")
        self.finer_button.clicked.connect(lambda: self.step_scale(-1))
        self.coarser_button = QToolButton(text="-")
        self.coarser_button.setToolTip("smaller traces (key -)")
        self.coarser_button.clicked.connect(lambda: self.step_scale(+1))
        self.flag_label = QLabel()
        self.flag_label.setStyleSheet("color:#f76;")
        for w in (self.title_label, self.coarser_button, self.scale_label, self.finer_button):
            head.addWidget(w)
        head.addWidget(self.flag_label, 1)
        outer.addLayout(head)

        body = QHBoxLayout()
        body.setSpacing(0)
        self.plot = pg.PlotWidget()
        self.plot.setFocusProxy(self)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.getAxis("left").setWidth(54)
        pad = 0.13 * self.seconds  # room right of "now" for the scale bar and flag labels
        self.plot.setXRange(-self.seconds, pad, padding=0)
        self.curve = pg.PlotCurveItem(pen=pg.mkPen(_TRACE_PEN, width=1), skipFiniteCheck=True)
        self.flag_curve = pg.PlotCurveItem(pen=pg.mkPen(_FLAG_PEN, width=1), skipFiniteCheck=True)
        for c in (self.curve, self.flag_curve):
            c.setSegmentedLineMode("on")  # QPainter.drawLines: cheaper than one long path
            self.plot.addItem(c)
        self.marker_lines: list[pg.InfiniteLine] = []
        for _ in range(n_lines):
            line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen(_MARKER_PEN, width=1),
                                   label="", labelOpts={"position": 0.985, "color": _MARKER_PEN,
                                                        "fill": (0, 0, 0, 160), "anchors": [(0, 0), (0, 0)]})
            line.hide()
            self.plot.addItem(line, ignoreBounds=True)
            self.marker_lines.append(line)
        self._line_text = [""] * n_lines
        self.flag_texts: list[pg.TextItem] = []
        for _ in range(self.n_visible):
            t = pg.TextItem("", color=_FLAG_PEN, anchor=(0, 0.5))
            t.hide()
            self.plot.addItem(t, ignoreBounds=True)
            self.flag_texts.append(t)
        # scale bar: one lane tall, at the bottom right
        self.scale_bar = pg.PlotCurveItem(pen=pg.mkPen((255, 255, 255), width=3))
        self.scale_text = pg.TextItem("", color=(255, 255, 255), anchor=(0, 0.5))
        self.plot.addItem(self.scale_bar, ignoreBounds=True)
        self.plot.addItem(self.scale_text, ignoreBounds=True)
        body.addWidget(self.plot, 1)
        self.scroll = QScrollBar(Qt.Orientation.Vertical)
        self.scroll.setRange(0, max(0, len(self.ch_names) - self.n_visible))
        self.scroll.setPageStep(self.n_visible)
        self.scroll.setSingleStep(1)
        self.scroll.valueChanged.connect(self.set_first)
        self.scroll.setVisible(len(self.ch_names) > self.n_visible)
        body.addWidget(self.scroll)
        outer.addLayout(body, 1)

    # ------------------------------------------------------------------ inputs (GUI thread)
    def push(self, data: np.ndarray, timestamps: np.ndarray) -> None:
        self.buffer.push(data, timestamps)

    def add_marker(self, t: float, label: str) -> None:
        self._markers.append((float(t), str(label)))

    # ------------------------------------------------------------------ view state
    @property
    def rows(self) -> np.ndarray:
        """Channel indices on the current page, top to bottom."""
        return np.arange(self.first, self.first + self.n_visible)

    def set_first(self, first: int) -> None:
        """Show channels ``first .. first + visible - 1``."""
        first = int(np.clip(first, 0, len(self.ch_names) - self.n_visible))
        if first == self.first:
            return
        self.first = first
        self.scroll.blockSignals(True)
        self.scroll.setValue(first)
        self.scroll.blockSignals(False)
        self._on_page_changed()
        self.pageChanged.emit(first)

    def set_scale(self, scale_uv: float) -> None:
        """Microvolts per lane (fixed until changed here or with +/-)."""
        if not scale_uv > 0:
            raise ValueError(f"scale_uv must be > 0 microvolts per row, got {scale_uv}")
        self.scale_uv = float(scale_uv)
        self._render_scale()
        self.scaleChanged.emit(self.scale_uv)

    def step_scale(self, step: int) -> None:
        self.set_scale(next_scale(self.scale_uv, step))

    def handle_key(self, key: int) -> bool:
        """Apply a trace key (see module docs); True when it was one."""
        k = Qt.Key
        if key in (k.Key_Plus, k.Key_Equal):
            self.step_scale(-1)
        elif key in (k.Key_Minus, k.Key_Underscore):
            self.step_scale(+1)
        elif key == k.Key_PageDown:
            self.set_first(self.first + self.n_visible)
        elif key == k.Key_PageUp:
            self.set_first(self.first - self.n_visible)
        elif key == k.Key_Down:
            self.set_first(self.first + 1)
        elif key == k.Key_Up:
            self.set_first(self.first - 1)
        else:
            return False
        return True

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if not self.handle_key(event.key()):
            super().keyPressEvent(event)

    def _on_page_changed(self) -> None:
        n = self.n_visible
        self.plot.getAxis("left").setTicks([[(float(-i), self.ch_names[c]) for i, c in enumerate(self.rows)]])
        self.plot.setYRange(-n + 0.5, 0.5, padding=0)
        last = self.first + n
        self.title_label.setText(
            f"EEG {self.first + 1}-{last} of {len(self.ch_names)} channels"
            + ("  (PgUp/PgDn)" if len(self.ch_names) > n else "")
        )
        self._render_scale()
        self._render_flags()

    def _render_scale(self) -> None:
        s = self.scale_uv
        text = f"{s:g} \u00b5V" if s < 1000 else f"{s / 1000:g} mV"
        self.scale_label.setText(f"{text} / row")
        x = 0.02 * self.seconds
        y0 = -self.n_visible + 0.5
        self.scale_bar.setData([x, x], [y0, y0 + 1.0])
        self.scale_text.setText(text)
        self.scale_text.setPos(x * 1.4, y0 + 0.5)

    def _render_flags(self) -> None:
        rows = self.rows
        for i, t in enumerate(self.flag_texts):
            what = self.flagged.get(int(rows[i]))
            if what:
                t.setText(what)
                t.setPos(0.005 * self.seconds, -i)
                t.show()
            else:
                t.hide()
        if self.flagged:
            names = [f"{self.ch_names[c]} {w}" for c, w in sorted(self.flagged.items())]
            more = f" (+{len(names) - 6})" if len(names) > 6 else ""
            self.flag_label.setText("marked: " + ", ".join(names[:6]) + more)
        else:
            self.flag_label.setText("")

    # ------------------------------------------------------------------ drawing
    def columns(self) -> int:
        """Pixel columns the traces span (what the data is decimated to)."""
        w = self.plot.getViewBox().width()
        return max(64, int(w / 1.13)) if w and np.isfinite(w) else 800

    def redraw(self) -> None:
        """Draw the current page from the buffer (GUI thread)."""
        self._frames += 1
        if self._frames % 15 == 1:  # flags change slowly: about twice a second
            flags = self.buffer.flags()
            if flags != self.flagged:
                self.flagged = flags
                self._render_flags()
        rows = self.rows
        x, y = self.buffer.page(rows, self.columns(), self.scale_uv)
        m = x.size
        if m:
            y = y - np.arange(len(rows), dtype=np.float32)[:, None]
            bad = np.array([int(r) in self.flagged for r in rows])
            self._set(self.curve, x, y[~bad])
            self._set(self.flag_curve, x, y[bad])
        self._draw_markers()

    @staticmethod
    def _set(curve: pg.PlotCurveItem, x: np.ndarray, y: np.ndarray) -> None:
        k, m = y.shape
        if k == 0:
            curve.setData([], [])
            return
        connect = np.ones(k * m, dtype=bool)
        connect[m - 1 :: m] = False
        curve.setData(np.tile(x, k), y.ravel(), connect=connect)

    def _draw_markers(self) -> None:
        now = self.buffer.last_ts
        k = 0
        if now is not None:
            for t, label in reversed(self._markers):  # newest first
                dt = t - now
                if dt < -self.seconds:
                    break
                if dt > 0.02 * self.seconds or k >= len(self.marker_lines):
                    continue
                line = self.marker_lines[k]
                line.setValue(dt)
                if self._line_text[k] != label:
                    line.label.setFormat(label)
                    self._line_text[k] = label
                line.show()
                k += 1
        for line in self.marker_lines[k:]:
            if line.isVisible():
                line.hide()

    @property
    def visible_markers(self) -> list[str]:
        """Labels of the marker lines shown now."""
        return [t for t, line in zip(self._line_text, self.marker_lines, strict=True) if line.isVisible()]
