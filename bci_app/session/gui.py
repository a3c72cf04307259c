"""The live window wired to a running :class:`~bci_app.session.pipeline.Pipeline`
(``demo``/``live``/``replay`` with a display): listeners feed the window's queues, the
window's controls call back into the pipeline. Only the GUI thread touches widgets."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bci_app.config import InferenceConfig
from bci_app.session.pipeline import Pipeline
from bci_app.session.sources import load_reconstructor


def run_gui(pipeline: Pipeline, *, stimuli: Any = None, bundle: str = "demo",
            cfg: InferenceConfig | None = None, record_dir: str | None = None,
            presenter: Any = None, on_close: Callable[[], None] | None = None,
            app: Any = None, exec_loop: bool = True):
    """Open the live window on ``pipeline`` and run the Qt loop until it is closed."""
    from PySide6.QtCore import QTimer

    from bci_app.ui.qt import ensure_app
    from bci_app.ui.window import LiveWindow

    app = app or ensure_app()
    rec = pipeline.reconstructor
    spec = rec.spec

    def seen(sid: str):
        return stimuli.image(sid) if stimuli is not None and sid in stimuli else None

    win = LiveWindow(spec.ch_names, spec.sfreq, seen_image=seen, bundles=[bundle],
                     steps=int(getattr(rec, "steps", None) or 1),
                     strength=float(getattr(rec, "strength", None) or 0.5),
                     device=str(getattr(rec, "device", "")))
    pipeline.on_eeg(win.push_eeg)
    pipeline.on_markers(lambda marks: [win.push_marker(m, t) for m, t in marks])
    pipeline.on_result(win.push_result)
    pipeline.on_error(lambda exc, trial: win.push_error(f"inference: {type(exc).__name__}: {exc}"))

    def _status() -> None:
        st = pipeline.stats()
        win.push_status(st)
        err = pipeline.acquisition.error
        if err is not None:
            win.push_error(f"acquisition: {err}")
    status_timer = QTimer(win)
    status_timer.timeout.connect(_status)
    status_timer.start(250)

    def _start() -> None:
        pipeline.paused = False
        if presenter is not None and hasattr(presenter, "start") and not getattr(presenter, "running", True):
            presenter.start()

    def _stop() -> None:
        pipeline.paused = True
        if presenter is not None and hasattr(presenter, "stop"):
            presenter.stop()

    def _record(on: bool) -> None:
        try:
            if on:
                from bci_app.acquisition.recorder import Recorder

                base = Path(record_dir or "recordings")
                d = base / time.strftime("session-%Y%m%d-%H%M%S")
                src = pipeline.raw_source
                pipeline.set_recorder(Recorder(d, list(src.ch_names), float(src.sfreq)))
                win.statusBar().showMessage(f"recording to {d}", 5000)
            else:
                pipeline.set_recorder(None)
        except Exception as exc:
            win.push_error(f"recording: {exc}")

    def _refiner(steps: int, strength: float) -> None:
        rec_now = pipeline.worker.reconstructor
        rec_now.steps, rec_now.strength = steps, strength

    def _bundle(path: str) -> None:
        def load() -> None:
            try:
                new = load_reconstructor(path, cfg or InferenceConfig())
                new.check_compatible(list(spec.ch_names), spec.sfreq, spec.n_times)
                new.warmup(1)
                pipeline.worker.reconstructor = new  # swapped between trials
                win.push_status({"device": str(new.device)})
            except Exception as exc:
                win.push_error(f"bundle {path!r}: {exc}")
        threading.Thread(target=load, name="bundle-loader", daemon=True).start()

    win.startRequested.connect(_start)
    win.stopRequested.connect(_stop)
    win.recordToggled.connect(_record)
    win.refinerChanged.connect(_refiner)
    win.bundleChanged.connect(_bundle)
    win.set_running(True)
    if pipeline.acquisition.recorder is not None:
        win.record_box.blockSignals(True)
        win.record_box.setChecked(True)
        win.record_box.blockSignals(False)
    win.show()
    if not exec_loop:
        return win
    # Ctrl-C in the terminal closes the window cleanly (Python handles signals only when
    # the interpreter runs, hence the idle timer).
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    tick = QTimer(win)
    tick.timeout.connect(lambda: None)
    tick.start(200)
    try:
        app.exec()
    finally:
        status_timer.stop()
        if on_close is not None:
            on_close()
    return win
