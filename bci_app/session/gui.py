"""The live window wired to a running :class:`~bci_app.session.pipeline.Pipeline`
(``demo``/``live``/``replay`` with a display): listeners feed the window's queues, the
window's controls call back into the pipeline. Only the GUI thread touches widgets:
worker threads (bundle loader, recording finaliser, session end) leave callables in
``ui_calls``, which a timer runs on the GUI thread.

A session in the window ends like a headless one: with ``n_trials``, once that many
trials have an outcome the pipeline stops, ``out`` gets report.json, trials.jsonl and
grid.png, and the window says the session is over (it stays open unless
``close_when_done``). Closing the window earlier writes the files of the trials so far.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bci_app.config import InferenceConfig
from bci_app.session.pipeline import Pipeline, sampling_of
from bci_app.session.wiring import load_reconstructor

log = logging.getLogger(__name__)


class GuiSession:
    """The glue between one pipeline and one window (made by :func:`run_gui`)."""

    def __init__(self, pipeline: Pipeline, win: Any, *, out: str | Path | None, n_trials: int | None,
                 close_when_done: bool, cfg: InferenceConfig | None, record_dir: str | None,
                 presenter: Any = None) -> None:
        self.pipeline = pipeline
        self.win = win
        self.out = None if out is None else Path(out)
        self.n_trials = n_trials
        self.close_when_done = close_when_done
        self.cfg = cfg or InferenceConfig()
        self.record_dir = record_dir
        self.presenter = presenter
        self.ui_calls: deque[Callable[[], None]] = deque(maxlen=256)
        self.summary: dict[str, Any] | None = None
        self.finished = threading.Event()
        self._ending = False
        self._stop_lock = threading.Lock()
        self._error_shown: str | None = None

    # ------------------------------------------------------------------ GUI thread
    def tick(self) -> None:
        """Status, queued UI calls and the end of the session (a QTimer, GUI thread)."""
        while self.ui_calls:
            try:
                self.ui_calls.popleft()()
            except Exception as exc:  # a UI update must never stop the timer
                log.exception("UI call failed")
                self.win.push_error(f"{type(exc).__name__}: {exc}")
        if self._ending:
            return
        st = self.pipeline.stats()
        self.win.push_status({**st, "quality": self.pipeline.report.quality()})  # the running top-1
        err = self.pipeline.acquisition.error or st.get("recorder_error")
        if err is not None and str(err) != self._error_shown:
            self._error_shown = str(err)
            self.win.push_error(f"acquisition: {err}")
            if st.get("recorder_error"):
                self.win.set_recording(False)
        if self.n_trials is not None and self.pipeline.n_results >= self.n_trials:
            self.end(f"{self.n_trials} trials")

    def end(self, why: str) -> None:
        """Stop the pipeline and write the files on a worker thread; then say so."""
        if self._ending:
            return
        self._ending = True
        if self.presenter is not None and hasattr(self.presenter, "stop"):
            self.presenter.stop()

        def finish() -> None:
            text = self.stop_and_write()
            self.ui_calls.append(lambda: self._over(f"{why}; {text}"))
        threading.Thread(target=finish, name="session-end", daemon=True).start()

    def _over(self, text: str) -> None:
        self.win.session_over(text)
        if self.close_when_done:
            if self.presenter is not None and hasattr(self.presenter, "close"):
                self.presenter.close()
            self.win.close()

    def stop_and_write(self) -> str:
        """Stop the pipeline (idempotent) and write the report files to ``out`` (if given)."""
        with self._stop_lock:
            return self._stop_and_write()

    def _stop_and_write(self) -> str:
        try:
            if self.pipeline.started:
                self.pipeline.stop()
            if self.out is None:
                return "no --out: report files not written"
            if self.summary is not None:
                return f"report written to {self.out}"
            self.summary = self.pipeline.report.write(self.out)
            lat = self.summary["latency_ms"]["end_to_end"]
            return (f"{self.summary['reconstructed']} of {self.summary['trials']} reconstructed, end-to-end "
                    f"p95 {lat['p95']} ms; report written to {self.out}")
        except Exception as exc:
            log.exception("ending the session failed")
            return f"ending the session failed: {type(exc).__name__}: {exc}"
        finally:
            self.finished.set()

    # ------------------------------------------------------------------ controls
    def start(self) -> None:
        self.pipeline.paused = False
        p = self.presenter
        if p is not None and hasattr(p, "start") and not getattr(p, "running", True):
            p.start()

    def stop(self) -> None:
        self.pipeline.paused = True
        if self.presenter is not None and hasattr(self.presenter, "stop"):
            self.presenter.stop()

    def record(self, on: bool) -> None:
        """Start or stop recording; the closed recording is finalised off the GUI thread."""
        def closed(path: Any, error: str | None) -> None:  # finaliser thread
            if error:
                self.win.push_error(f"recording: {error}")
            elif path is not None:
                self.ui_calls.append(lambda: self.win.statusBar().showMessage(f"recording saved: {path}", 8000))
        try:
            if on:
                from bci_app.acquisition.recorder import Recorder

                base = Path(self.record_dir or "recordings")
                d = base / time.strftime("session-%Y%m%d-%H%M%S")
                n = 1
                while (d / "session.json").exists():  # two toggles within one second
                    d, n = base / (time.strftime("session-%Y%m%d-%H%M%S") + f"-{n}"), n + 1
                src = self.pipeline.raw_source
                # the stream's channel types and units (EOG, MISC...), a --photodiode sensor as
                # misc: as `--record` writes them
                self.pipeline.set_recorder(Recorder.for_source(d, src, photodiode=self.pipeline.photodiode),
                                           on_closed=closed)
                self.win.statusBar().showMessage(f"recording to {d}", 5000)
            else:
                self.pipeline.set_recorder(None, on_closed=closed)
        except Exception as exc:
            self.win.push_error(f"recording: {exc}")
            self.win.set_recording(self.pipeline.acquisition.recorder is not None)

    def refiner(self, steps: int, strength: float, guidance: float) -> None:
        try:
            self.pipeline.set_sampling(steps, strength, guidance)
        except ValueError as exc:  # the window validated already; a bundle swap in between is still reported
            self.win.push_error(f"sampling refused: {exc}")
            self.win.set_sampling(self.pipeline.sampling())

    def bundle(self, path: str) -> None:
        """Load another bundle on a worker thread; swap it in, or refuse with the reason."""
        def load() -> None:
            try:
                new = load_reconstructor(path, self.cfg)
                new.warmup(1)
                self.pipeline.swap_reconstructor(new)
            except Exception as exc:
                self.win.push_error(f"bundle {path!r} refused: {exc}; still using the previous bundle")
                return
            sampling = sampling_of(new)
            self.win.push_status({"device": str(new.device)})
            self.ui_calls.append(lambda: self.win.set_sampling(sampling))
            self.ui_calls.append(lambda: self.win.statusBar().showMessage(f"bundle {path} in use", 5000))
        threading.Thread(target=load, name="bundle-loader", daemon=True).start()


def run_gui(pipeline: Pipeline, *, stimuli: Any = None, bundle: str = "demo",
            cfg: InferenceConfig | None = None, record_dir: str | None = None,
            presenter: Any = None, on_close: Callable[[], None] | None = None,
            app: Any = None, exec_loop: bool = True, out: str | Path | None = None,
            n_trials: int | None = None, close_when_done: bool = False):
    """Open the live window on ``pipeline`` and run the Qt loop until it is closed.

    With ``exec_loop=False`` the window is returned at once (``win.session`` is the
    :class:`GuiSession`); the caller runs the loop.

    (A lower OS priority for the GUI thread was tried and dropped: a GUI thread
    descheduled while it holds the GIL stalls inference too.)
    """
    from PySide6.QtCore import QEventLoop, QTimer

    from bci_app.ui.qt import ensure_app
    from bci_app.ui.window import LiveWindow

    app = app or ensure_app()
    rec = pipeline.reconstructor
    spec = rec.spec

    if stimuli is not None and pipeline.report.seen_image is None:
        # the report thread looks each seen image up once, for the report and the window
        pipeline.report.seen_image = lambda sid: stimuli.image(sid) if sid in stimuli else None

    def validate_sampling(steps: int, strength: float, guidance: float) -> None:
        refiner = pipeline.reconstructor.refiner  # of the bundle in use (swaps included)
        if refiner is not None:  # without one the boxes are disabled: nothing samples with them
            refiner.validate_sampling(steps, strength, guidance)

    win = LiveWindow(spec.ch_names, spec.sfreq, bundles=[bundle],
                     sampling=sampling_of(rec), validate_sampling=validate_sampling,
                     yield_to=pipeline.inference_busy, notch=spec.notch or 50.0,
                     device=str(getattr(rec, "device", "")), held_out=pipeline.report.held_out_class)
    session = GuiSession(pipeline, win, out=out, n_trials=n_trials, close_when_done=close_when_done,
                         cfg=cfg, record_dir=record_dir, presenter=presenter)
    win.session = session
    pipeline.on_eeg(win.push_eeg)
    pipeline.on_markers(lambda marks: [win.push_marker(sid or m, t) for m, sid, t in marks])
    pipeline.on_result(win.push_result)
    win.displayed.connect(pipeline.report.add_display)  # the display time reaches report.json
    pipeline.on_error(lambda exc, trial: win.push_error(f"inference: {type(exc).__name__}: {exc}"))

    timer = QTimer(win)
    timer.timeout.connect(session.tick)
    timer.start(100)
    win.startRequested.connect(session.start)
    win.stopRequested.connect(session.stop)
    win.recordToggled.connect(session.record)
    win.refinerChanged.connect(session.refiner)
    win.bundleChanged.connect(session.bundle)
    win.set_running(True)
    win.set_recording(pipeline.acquisition.recorder is not None)
    win.show()
    if not exec_loop:
        return win
    # Ctrl-C in the terminal closes the window cleanly (Python handles signals only when
    # the interpreter runs, which the timer above makes happen)
    # a local event loop, not app.exec()/app.quit(): quitting the application leaves Qt's
    # "quit now" flag set, which ends every later event loop of the process at once
    loop = QEventLoop()
    old_sigint = signal.signal(signal.SIGINT, lambda *_: loop.quit())
    win.closed.connect(loop.quit)  # the live window is the session: closing it ends the loop
    try:
        loop.exec()
    finally:
        signal.signal(signal.SIGINT, old_sigint)
        timer.stop()
        if not session.finished.is_set():  # closed before the end: the files of the trials so far
            session.stop_and_write()
        if on_close is not None:
            on_close()
    return win
