"""The presenter window (and ``bci-app present``): stimuli timed in display frames, one LSL
marker per image at its flip.

Timing follows PsychoPy: onsets and durations are whole frames of the display
(:class:`~bci_app.ui.presenter.FrameSchedule`, at the screen's refresh rate or
``refresh_hz``); the window redraws every frame and each image's marker is stamped with
``local_clock()`` taken when the frame holding it was swapped to the screen:

- with OpenGL (any real display): the canvas is a ``QOpenGLWidget`` and the stamp is
  taken in its ``frameSwapped`` signal, after the buffer swap (with vsync, at the flip);
- without OpenGL (``QT_QPA_PLATFORM=offscreen``, some remote sessions): a raster canvas,
  repainted synchronously by a precise timer at the frame period, stamped right after the
  repaint flushed it.

Frame timing holds only where flips are locked to the refresh (vsync). Under Xvfb, a
remote session or any display without it, a swap returns at once and frame-counted stimuli
are shown for a fraction of ``--on``. So before the first stimulus the presenter measures
its flip period (:meth:`PresenterWindow.check_flip_lock`, 60 unpaced flips): when it is
not within 10 % of ``1 / refresh_hz`` it refuses with the measured figure, or, with
``allow_unlocked`` (``--allow-unlocked``), paces the frames by the clock (a precise timer at
the frame period, as the raster canvas does) and says so in its output and in every
marker's log line. The raster canvas is never locked to a refresh.

A flip later than 1.5 frame periods after the previous one counts the frames in between
as dropped (:meth:`PresenterWindow.frame_report`). The image is centred at ``size_px``
pixels, or ``size_deg`` degrees of visual angle (``distance_cm`` and the screen's width in
cm or its reported physical size), else the largest square that fits. The compositor and
monitor may add a constant delay after the swap: measure it with ``photodiode=True`` (a
white patch in the bottom-left corner on every frame an image is on) and a light sensor
on an aux channel of the amplifier.

Checking the timing with the photodiode: tape the sensor over the bottom-left corner, wire
it to an aux input, run ``bci-app record --source lsl:AMP --present --photodiode-patch
--photodiode AUX --trials 100``: it prints the marker-to-light delays (their mean is the
display's constant lag, their spread the jitter: a frame or less on a vsync'd display), and
``--photodiode AUX`` on train/evaluate/replay/live re-times each trial to its light edge. The
printed ``dropped`` frame count should be 0.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEventLoop, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from bci_app.stimuli import Schedule, format_marker
from bci_app.ui.presenter import (
    FrameCounter,
    FrameSchedule,
    display_options,
    load_stimuli,
    make_marker_outlet,
    schedule_for,
    visual_angle_px,
)
from bci_app.ui.qt import to_qimage

log = logging.getLogger(__name__)

DEFAULT_REFRESH_HZ = 60.0
#: flips measured before the first stimulus, and the tolerance on their period
LOCK_FLIPS = 60
LOCK_TOLERANCE = 0.10


def opengl_available() -> bool:
    """Whether an OpenGL context can be made current on this platform."""
    from PySide6.QtGui import QOffscreenSurface, QOpenGLContext

    ctx = QOpenGLContext()
    if not ctx.create():
        return False
    surface = QOffscreenSurface()
    surface.create()
    ok = ctx.makeCurrent(surface)
    if ok:
        ctx.doneCurrent()
    return bool(ok)


def _make_canvas(paint: Callable[[QWidget], None], swapped: Callable[[], None],
                 use_opengl: bool) -> QWidget:
    """The widget the frames are drawn on: ``paint(canvas)`` draws a frame, ``swapped()`` is
    called after each OpenGL buffer swap."""
    if use_opengl:
        from PySide6.QtOpenGLWidgets import QOpenGLWidget

        class GLCanvas(QOpenGLWidget):
            def paintGL(self) -> None:  # noqa: N802 - Qt API
                paint(self)

        canvas = GLCanvas()
        canvas.frameSwapped.connect(swapped)
        return canvas

    class RasterCanvas(QWidget):
        def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
            paint(self)

    canvas = RasterCanvas()
    canvas.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
    return canvas


class PresenterWindow(QWidget):
    """Show ``schedule``'s stimuli, frame by frame, and push a marker per image at its flip.

    Parameters
    ----------
    stimuli, schedule
        The stimulus set (``image(stim_id[, size])``) and the schedule (seconds, rounded to
        frames).
    stream_name, source_id, outlet
        The LSL marker outlet (made here unless ``outlet`` is given).
    photodiode, photodiode_size
        A white patch (pixels) in the bottom-left corner while an image is on.
    image_size : int, optional
        Resolution asked of the stimulus set.
    size_px, size_deg, distance_cm, screen_width_cm : optional
        Displayed image side: pixels, or degrees of visual angle at ``distance_cm``.
    refresh_hz : float, optional
        Display refresh rate (default: the screen's).
    use_opengl : bool, optional
        Force the OpenGL (True) or raster (False) canvas; default: OpenGL when available.

    Signals: ``markerPushed(str stim_id, float timestamp)``, ``finished()``,
    ``errored(str message)``.
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
        size_px: int | None = None,
        size_deg: float | None = None,
        distance_cm: float | None = None,
        screen_width_cm: float | None = None,
        refresh_hz: float | None = None,
        use_opengl: bool | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("bci-app presenter")
        if size_px is not None and size_px < 1:
            raise ValueError(f"size_px must be >= 1 pixel, got {size_px}")
        if size_deg is not None and distance_cm is None:
            raise ValueError("size_deg needs the viewing distance: pass --distance-cm")
        self.stimuli, self.schedule = stimuli, schedule
        self.outlet = outlet if outlet is not None else make_marker_outlet(stream_name, source_id)
        self.photodiode, self.photodiode_size = photodiode, photodiode_size
        self.image_size, self.size_px, self.size_deg = image_size, size_px, size_deg
        self.distance_cm, self.screen_width_cm = distance_cm, screen_width_cm
        screen_hz = self.screen().refreshRate() if self.screen() is not None else 0.0
        self.refresh_hz = float(refresh_hz or (screen_hz if screen_hz > 1 else DEFAULT_REFRESH_HZ))
        self.frames = FrameSchedule(schedule, self.refresh_hz)
        self.use_opengl = opengl_available() if use_opengl is None else bool(use_opengl)
        self.canvas = _make_canvas(self._paint, self._on_swapped, self.use_opengl)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.pushed = 0
        self.timestamps: list[float] = []
        self.counter = FrameCounter(self.refresh_hz)
        self._frame = 0  # index of the next frame to flip
        self._show: int | None = None  # trial drawn on that frame
        self._images: dict[int, Any] = {}
        self._running = False
        self._timer = QTimer(self)  # raster canvas: one tick per frame
        self._timer.setSingleShot(True)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._raster_frame)
        self._t_start: float | None = None
        # False: frames follow the display's flips (vsync); True: paced by the clock
        self.clock_timed = not self.use_opengl
        self.flip_check: dict[str, Any] | None = None
        self._awaiting_swap = False
        self._anchor: tuple[int, float] | None = None  # (frame, time) of the last onset
        self._requested_at: float | None = None  # when the clock-timed frame was issued
        self.offsets: dict[int, float] = {}  # trial -> flip time of the first frame without it
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
        """Start at frame 0 (the next flip); the schedule's onsets count from there."""
        import pylsl

        self._running = True
        self._frame = 0
        self._anchor = None
        self.counter = FrameCounter(self.refresh_hz)
        self._prepare(0)
        self._show = self.frames.content(0)
        self._t_start = pylsl.local_clock()
        self._request_frame()

    def measure_flip_period(self, n: int = LOCK_FLIPS, timeout: float = 5.0) -> float:
        """Median seconds between ``n`` flips requested back to back (none paced by a timer).

        With vsync each one waits for the next refresh; without it they return at once.
        """
        QApplication.processEvents()
        flips: list[float] = []
        if not self.use_opengl:
            for _ in range(n + 1):
                self.canvas.repaint()
                flips.append(time.perf_counter())
        else:
            from PySide6.QtCore import QEventLoop

            loop = QEventLoop()

            def swapped() -> None:
                flips.append(time.perf_counter())
                if len(flips) > n:
                    loop.quit()
                else:
                    self.canvas.update()

            self.canvas.frameSwapped.connect(swapped)
            QTimer.singleShot(int(timeout * 1000), loop.quit)
            self.canvas.update()
            loop.exec()
            self.canvas.frameSwapped.disconnect(swapped)
        if len(flips) < 3:
            raise RuntimeError(
                f"the presenter window flipped {len(flips)} times in {timeout:g} s while its flip "
                "period was measured; expected a window on screen (is it shown and not minimised?)"
            )
        return float(sorted(b - a for a, b in zip(flips, flips[1:], strict=False))[(len(flips) - 1) // 2])

    def check_flip_lock(self, allow_unlocked: bool = False, n: int = LOCK_FLIPS) -> dict[str, Any]:
        """Measure the flip period; refuse (``RuntimeError``) when flips are not locked to
        the refresh, unless ``allow_unlocked``: then the stimuli are timed by the clock.

        Returns ``{"measured_period_ms", "expected_period_ms", "locked", "timing"}`` (also
        kept in :attr:`flip_check` and :meth:`frame_report`).
        """
        period = self.measure_flip_period(n)
        expected = 1.0 / self.refresh_hz
        locked = self.use_opengl and math.isfinite(period) and abs(period - expected) <= LOCK_TOLERANCE * expected
        self.flip_check = {"measured_period_ms": round(1000 * period, 3),
                           "expected_period_ms": round(1000 * expected, 3), "locked": bool(locked),
                           "flips": int(n)}
        if not locked and not allow_unlocked:
            raise RuntimeError(
                f"the display's flips are not locked to its refresh: {n} flips came every "
                f"{1000 * period:.2f} ms, expected {1000 * expected:.2f} ms ({self.refresh_hz:g} Hz) "
                f"within {LOCK_TOLERANCE:.0%} ({'OpenGL' if self.use_opengl else 'raster canvas, no vsync'}); "
                "stimuli counted in frames would be shown for the wrong time. Run on a display with "
                "vsync (or pass --refresh HZ if the rate is wrong), or pass --allow-unlocked to time "
                "the stimuli by the clock"
            )
        self.clock_timed = not locked
        self.flip_check["timing"] = self.timing
        if self.clock_timed:
            log.warning("presenter: flips not locked to the refresh (every %.2f ms, expected %.2f ms): "
                        "stimuli timed by the clock", 1000 * period, 1000 * expected)
        return dict(self.flip_check)

    @property
    def timing(self) -> str:
        """``"frames"`` (locked to the refresh) or ``"clock"`` (paced by a timer)."""
        return "clock" if self.clock_timed else "frames"

    def stop(self) -> None:
        self._running = False
        self._timer.stop()
        self._show = None
        self.canvas.update()

    @property
    def running(self) -> bool:
        return self._running

    def frame_report(self) -> dict[str, Any]:
        """Refresh rate, on/off frames, frames flipped, dropped frames, measured period."""
        return {"refresh_hz": self.refresh_hz, "on_frames": self.frames.n_on,
                "off_frames": self.frames.n_off, "opengl": self.use_opengl,
                "timing": self.timing, "flip_check": self.flip_check,
                **self.counter.report()}

    # ------------------------------------------------------------------ frames
    def _prepare(self, trial: int) -> None:
        """Load and convert trial ``trial``'s image ahead of its first frame."""
        if trial >= len(self.frames.stim_ids) or trial in self._images:
            return
        sid = self.frames.stim_ids[trial]
        try:
            img = self.stimuli.image(sid, self.image_size) if self.image_size else self.stimuli.image(sid)
            self._images[trial] = to_qimage(img)
        except Exception as exc:  # shown as blank; a presenter must not die mid-run
            log.exception("loading stimulus %s failed", sid)
            self._images[trial] = None
            self.errored.emit(f"presenting {sid} failed: {exc}")

    def _request_frame(self) -> None:
        if self.use_opengl and not self.clock_timed:
            self._awaiting_swap = True
            self.canvas.update()  # painted and swapped at the next vsync: frameSwapped
            return
        import pylsl

        # clock-timed: the frame is due at its time from the last stimulus onset actually
        # flipped (so a late onset flip does not shorten that stimulus), whatever the display does
        due = self._due(self._frame)
        self._timer.start(max(0, int(round((due - pylsl.local_clock()) * 1000))))

    def _due(self, frame: int) -> float:
        """Clock time at which ``frame`` is due (clock-timed frames)."""
        f0, t0 = self._anchor if self._anchor is not None else (0, self._t_start)
        return t0 + (frame - f0) / self.refresh_hz

    def _raster_frame(self) -> None:
        import pylsl

        if not self._running:
            return
        self._requested_at = pylsl.local_clock()
        if self.use_opengl:  # clock-timed OpenGL: draw now, stamp at its swap
            self._awaiting_swap = True
            self.canvas.update()
            return
        self.canvas.repaint()  # synchronous paint + flush: this window's buffer swap
        self._on_flip(pylsl.local_clock())

    def _on_swapped(self) -> None:
        import pylsl

        if self._running and self._awaiting_swap:  # not a swap of an expose or a resize
            self._awaiting_swap = False
            self._on_flip(pylsl.local_clock())

    def _on_flip(self, t: float) -> None:
        frame = self._frame
        self.counter.flip(t)
        if frame > 0:
            before = self.frames.content(frame - 1)
            if before is not None and before != self.frames.content(frame):
                self.offsets[before] = t
        trial = self.frames.onset_trial(frame)
        if trial is not None and self.clock_timed:
            # an onset frame issued more than half a frame late (a stalled GUI thread)
            # re-anchors the clock at its issue time, so that the stimulus is still on for its
            # whole duration; timer jitter does not. Issue, not swap, time: the swap latency
            # is then the same at the onset and at the offset
            due = self._due(frame)
            issued = self._requested_at if self._requested_at is not None else t
            self._anchor = (frame, issued if issued - due > 0.5 / self.refresh_hz else due)
        if trial is not None and self._images.get(trial) is not None:
            sid = self.frames.stim_ids[trial]
            marker = format_marker(sid)
            self.outlet.push_sample([marker], t)
            self.pushed += 1
            self.timestamps.append(t)
            log.info("marker %s at %.6f (frame %d, timing: %s)", marker, t, frame,
                     "clock - flips not locked to the refresh" if self.clock_timed else "frames")
            self.markerPushed.emit(sid, t)
        if trial is not None:
            self._images.pop(trial - 1, None)
            self._prepare(trial + 1)
        self._frame += 1
        if self._frame >= self.frames.n_frames:
            last = self.frames.content(frame)
            if last is not None:
                self.offsets.setdefault(last, t + 1.0 / self.refresh_hz)  # until the next refresh
            self._running = False
            self._show = None
            self.canvas.update()
            log.info("presentation done: %s", self.frame_report())
            self.finished.emit()
            return
        self._show = self.frames.content(self._frame)
        self._request_frame()

    # ------------------------------------------------------------------ painting
    def _image_rect(self, w: int, h: int, img) -> QRect:
        if self.size_px is not None:
            side = int(self.size_px)
        elif self.size_deg is not None:
            screen = self.screen()
            if self.screen_width_cm:
                px_per_cm = screen.geometry().width() / float(self.screen_width_cm)
            else:
                px_per_cm = screen.physicalDotsPerInchX() / 2.54
            side = visual_angle_px(self.size_deg, float(self.distance_cm), px_per_cm)
        else:
            side = min(w, h)
        iw, ih = max(1, img.width()), max(1, img.height())
        rw, rh = (side, max(1, round(side * ih / iw))) if iw >= ih else (max(1, round(side * iw / ih)), side)
        return QRect((w - rw) // 2, (h - rh) // 2, rw, rh)

    def _paint(self, canvas: QWidget) -> None:
        p = QPainter(canvas)
        w, h = canvas.width(), canvas.height()
        p.fillRect(0, 0, w, h, QColor(0, 0, 0))
        img = self._images.get(self._show) if self._show is not None else None
        if img is not None:
            p.drawImage(self._image_rect(w, h, img), img)
        if self.photodiode:
            s = self.photodiode_size
            colour = QColor(255, 255, 255) if img is not None else QColor(0, 0, 0)
            p.fillRect(QRect(0, h - s, s, s), colour)
        p.end()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt API
        if event.key() in (Qt.Key.Key_Escape, Qt.Key.Key_Q):
            self.stop()
            self.finished.emit()
            self.close()
        else:
            super().keyPressEvent(event)


def run_present(args: Any) -> int:
    """``bci-app present``: show the stimuli full screen (or windowed) and push markers."""
    from bci_app.ui.qt import ensure_app, has_display

    if not has_display():
        raise RuntimeError(
            "bci-app present needs a display (QT_QPA_PLATFORM is offscreen or no DISPLAY); "
            "for a presentation without a window, use MarkerSchedulePublisher or `bci-app demo --headless`"
        )
    stimuli = load_stimuli(args)
    n = args.trials or len(stimuli)
    schedule = schedule_for(stimuli, n, on=args.on, off=args.off, order=args.order, seed=args.seed)
    ensure_app()
    win = PresenterWindow(stimuli, schedule, stream_name=args.stream_name,
                          photodiode=args.photodiode, **display_options(args))
    win.show_on_screen(args.screen, fullscreen=not args.windowed)
    try:  # before the first stimulus: are the flips locked to the refresh?
        check = win.check_flip_lock(allow_unlocked=bool(getattr(args, "allow_unlocked", False)))
    except RuntimeError:
        win.close()
        raise
    # a local event loop, not app.exec()/app.quit(): quitting the application leaves Qt's
    # "quit now" flag set, which ends every later event loop of the process at once
    loop = QEventLoop()
    win.finished.connect(loop.quit)
    if win.clock_timed:
        print(f"flips are NOT locked to the refresh (every {check['measured_period_ms']:.2f} ms, "
              f"expected {check['expected_period_ms']:.2f} ms): --allow-unlocked, stimuli timed by the "
              "clock; onsets are exact to the timer, not to the screen's refresh")
        win.markerPushed.connect(lambda sid, t: print(
            f"marker {format_marker(sid)} at {t:.6f} (timing: clock - flips not locked to the refresh)"))
    else:
        print(f"flips locked to the refresh: every {check['measured_period_ms']:.2f} ms")
    if args.photodiode and win.frames.n_off == 0:
        print("note: --photodiode-patch with --off 0 keeps the patch white from one stimulus to the "
              "next, so only the first makes a light edge; pass --off > 0 for a sensor to time each")
    win.start()
    print(f"presenting {n} stimuli on stream {args.stream_name!r} at {win.refresh_hz:g} Hz: "
          f"{win.frames.n_on} frames on, {win.frames.n_off} off, timed by {win.timing} (Esc to stop)")
    loop.exec()
    print(f"pushed {win.pushed} markers; frames: {win.frame_report()}")
    return 0
