"""The presenter window: stimuli full screen, one LSL marker per image at its frame.

Timing: when an image is due, the widget is repainted synchronously (``repaint()``
paints and flushes the backing store to the window surface, i.e. the buffer swap of a
raster window) and the LSL marker is stamped with ``local_clock()`` taken right after
that call returns. A compositor or the monitor may add a constant delay after the
flush: measure it once with ``--photodiode`` (a white patch in the bottom-left corner
while an image is on) and a light sensor on the amplifier's aux channel.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter
from PySide6.QtWidgets import QApplication, QWidget

from bci_app.stimuli import Schedule, format_marker
from bci_app.ui.presenter import make_marker_outlet
from bci_app.ui.qt import to_qimage

log = logging.getLogger(__name__)


class PresenterWindow(QWidget):
    """Show ``schedule``'s stimuli and push a marker per image at its buffer swap.

    Signals
    -------
    markerPushed(str stim_id, float timestamp)
    finished()
    errored(str message)
    """

    markerPushed = Signal(str, float)
    finished = Signal()
    errored = Signal(str)

    def __init__(
        self,
        stimuli: Any,
        schedule: Schedule,
        *,
        stream_name: str = "bci-app-markers",
        source_id: str | None = None,
        outlet: Any = None,
        photodiode: bool = False,
        photodiode_size: int = 60,
        image_size: int | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("bci-app presenter")
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.stimuli = stimuli
        self.schedule = schedule
        self.outlet = outlet if outlet is not None else make_marker_outlet(stream_name, source_id)
        self.photodiode = photodiode
        self.photodiode_size = photodiode_size
        self.image_size = image_size
        self.pushed = 0
        self.timestamps: list[float] = []
        self._image = None  # QImage shown now, or None (blank)
        self._i = 0
        self._t0: float | None = None
        self._running = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._tick)
        self._pending_off = False
        self.resize(640, 480)

    # ------------------------------------------------------------------ control
    def show_on_screen(self, screen: int | None = None, fullscreen: bool = True) -> None:
        screens = QApplication.screens()
        if screen is not None:
            if not 0 <= screen < len(screens):
                raise ValueError(f"screen must be in 0..{len(screens) - 1}, got {screen}")
            self.setScreen(screens[screen])
            self.move(screens[screen].geometry().topLeft())
        if fullscreen:
            self.showFullScreen()
        else:
            self.show()

    def start(self) -> None:
        import pylsl

        self._running = True
        self._t0 = pylsl.local_clock()
        self._i = 0
        self._schedule_next()

    def stop(self) -> None:
        self._running = False
        self._timer.stop()
        self._image = None
        self.update()

    @property
    def running(self) -> bool:
        return self._running

    def _schedule_next(self) -> None:
        import pylsl

        if not self._running:
            return
        if self._i >= len(self.schedule):
            # last image stays for its on-time, then the window goes blank and we finish
            if self._pending_off:
                self._pending_off = False
                self._timer.start(int(self.schedule.on * 1000))
                return
            self._running = False
            self._image = None
            self.update()
            self.finished.emit()
            return
        target = self._t0 + float(self.schedule.onsets[self._i])
        delay_ms = max(0, int(round((target - pylsl.local_clock()) * 1000)))
        self._timer.start(delay_ms)

    def _tick(self) -> None:
        import pylsl

        if not self._running:
            return
        if self._i >= len(self.schedule):
            self._schedule_next()
            return
        stim_id = self.schedule.stim_ids[self._i]
        try:
            img = self.stimuli.image(stim_id, self.image_size) if self.image_size else self.stimuli.image(stim_id)
            self._image = to_qimage(img)
            self.repaint()  # synchronous paint + flush: the buffer swap of this window
            t = pylsl.local_clock()
            self.outlet.push_sample([format_marker(stim_id)], t)
        except Exception as exc:  # show and go on; a presenter must not die mid-run
            log.exception("presenting %s failed", stim_id)
            self.errored.emit(f"presenting {stim_id} failed: {exc}")
            self._i += 1
            self._schedule_next()
            return
        self.pushed += 1
        self.timestamps.append(t)
        self.markerPushed.emit(stim_id, t)
        self._i += 1
        if self.schedule.off > 0:
            QTimer.singleShot(int(self.schedule.on * 1000), self._blank)
        self._pending_off = self._i >= len(self.schedule)
        self._schedule_next()

    def _blank(self) -> None:
        self._image = None
        self.repaint()

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        if self._image is not None:
            side = min(self.width(), self.height())
            x = (self.width() - side) // 2
            y = (self.height() - side) // 2
            p.drawImage(QRect(x, y, side, side), self._image)
        if self.photodiode:
            s = self.photodiode_size
            colour = QColor(255, 255, 255) if self._image is not None else QColor(0, 0, 0)
            p.fillRect(QRect(0, self.height() - s, s, s), colour)
        p.end()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Escape, Qt.Key.Key_Q):
            self.stop()
            self.finished.emit()
            self.close()
        else:
            super().keyPressEvent(event)
