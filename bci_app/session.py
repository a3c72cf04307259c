"""Wiring of a live session (``bci-app demo | live | replay``): threads, lifecycle, shutdown.

    EEG source + marker source --> Acquisition thread (epocher) --on_trial--> InferenceWorker
        --results--> SessionReport (files) and LiveWindow (Qt, GUI thread)

:class:`Pipeline` owns the acquisition thread, the inference worker and the report;
the ``run_*`` functions build sources for each command, add the window (or run
headless and write ``report.json``, ``trials.jsonl`` and ``grid.png``), and shut
everything down in ``finally`` (Ctrl-C, window closed, error).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bci_app.config import InferenceConfig, load_config
from bci_app.inference import InferenceResult, InferenceWorker, configure_cpu_threads
from bci_app.report import SessionReport
from bci_app.stimuli import DemoStimulusSet, MarkerMapper

log = logging.getLogger(__name__)

DEFAULT_DEMO_RATE = 2.0
DEFAULT_HEADLESS_TRIALS = 60


class _Tap:
    """Proxy of a source that hands every chunk (or marker list) to listeners too."""

    def __init__(self, inner: Any, method: str) -> None:
        self._inner = inner
        self._method = method
        self.listeners: list[Callable[..., None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self):
        data, ts = self._inner.read()
        if ts.size:
            for cb in self.listeners:
                cb(data, ts)
        return data, ts

    def pull(self):
        marks = self._inner.pull()
        if marks:
            for cb in self.listeners:
                cb(marks)
        return marks


class Pipeline:
    """Acquisition thread -> bounded queue -> inference thread, with a report.

    Parameters
    ----------
    source : EEG source (LSLSource, BrainFlowSource...)
    markers : marker source (LSLMarkerSource), the source itself (BrainFlow) or None
    reconstructor : Reconstructor
    mapper : MarkerMapper, optional
    inference : InferenceConfig, optional
    report : SessionReport, optional
    recorder : Recorder, optional
    buffer_seconds : float
        Epocher ring buffer length.
    max_batch : int
        Trials reconstructed together when several wait.
    """

    def __init__(
        self,
        source: Any,
        markers: Any,
        reconstructor: Any,
        *,
        mapper: MarkerMapper | None = None,
        inference: InferenceConfig | None = None,
        report: SessionReport | None = None,
        recorder: Any = None,
        buffer_seconds: float = 10.0,
        max_batch: int = 1,
    ) -> None:
        from bci_app.acquisition.acquisition import Acquisition
        from bci_app.acquisition.epocher import Epocher

        cfg = inference or InferenceConfig()
        self.reconstructor = reconstructor
        self.source = _Tap(source, "read")
        self.markers = markers if markers is None or markers is source else _Tap(markers, "pull")
        if markers is source:
            self.markers = self.source
        self.mapper = mapper or MarkerMapper()
        self.epocher = Epocher(reconstructor.spec, self.mapper, buffer_seconds=buffer_seconds)
        self.report = report or SessionReport()
        self.worker = InferenceWorker(
            reconstructor, queue_size=cfg.queue_size, policy=cfg.policy, warmup=cfg.warmup,
            max_batch=max_batch, on_result=self._on_result,
        )
        self.acquisition = Acquisition(self.source, self.markers, self.epocher,
                                       on_trial=self._on_trial, recorder=recorder)
        self.paused = False
        self._n_results = 0
        self._results_cond = threading.Condition()
        self._result_listeners: list[Callable[[InferenceResult], None]] = []
        self.started = False

    # ------------------------------------------------------------------ listeners
    def on_eeg(self, cb: Callable[[np.ndarray, np.ndarray], None]) -> None:
        self.source.listeners.append(cb)

    def on_markers(self, cb: Callable[[list[tuple[str, float]]], None]) -> None:
        if isinstance(self.markers, _Tap) and self.markers is not self.source:
            self.markers.listeners.append(cb)

    def on_result(self, cb: Callable[[InferenceResult], None]) -> None:
        self._result_listeners.append(cb)

    def on_error(self, cb: Callable[[BaseException, Any], None]) -> None:
        self.worker.add_error_callback(cb)

    # ------------------------------------------------------------------ flow
    def _on_trial(self, trial) -> None:  # acquisition thread: never blocks (default policy)
        if self.paused:
            return
        self.worker.submit(trial)

    def _on_result(self, result: InferenceResult) -> None:
        self.report.add(result)
        for cb in list(self._result_listeners):
            try:
                cb(result)
            except Exception:
                log.exception("result listener failed")
        with self._results_cond:
            self._n_results += 1
            self._results_cond.notify_all()

    @property
    def n_results(self) -> int:
        return self._n_results

    def wait_results(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` trials have an outcome (reconstructed, dropped or rejected)."""
        deadline = time.monotonic() + timeout
        with self._results_cond:
            while self._n_results < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._results_cond.wait(min(left, 0.25))
        return True

    def start(self, check: bool = True) -> Pipeline:
        """Warm the model up, connect the source (checking it against the bundle), start."""
        from bci_app.acquisition.realtime import limit_blas_threads

        limit_blas_threads(1)  # see limit_blas_threads: spinning BLAS workers steal a core
        # The inference thread gives the GIL up and takes it back at every torch op; with the
        # acquisition threads busy, each take-back waited up to the 5 ms switch interval.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self.worker.start(wait=True)
        src = self.source._inner
        if getattr(src, "state", "disconnected") == "disconnected":
            src.connect()
        if check and hasattr(self.reconstructor, "check_compatible"):
            self.reconstructor.check_compatible(list(src.ch_names), float(src.sfreq),
                                                self.reconstructor.spec.n_times)
        self.acquisition.start()
        self.started = True
        return self

    def stop(self) -> None:
        """Stop acquisition first (no new trials), then inference; every trial keeps an outcome."""
        if self.started:
            try:
                self.acquisition.stop()
            except Exception:
                log.exception("stopping acquisition failed")
        self.worker.stop(drain=True, timeout=10.0)
        self.report.samples_lost = int(self.acquisition.stats.get("samples_lost", 0))
        self.started = False

    def set_recorder(self, recorder: Any) -> Any:
        """Swap the recorder (None to stop recording); returns the previous one, closed."""
        old, self.acquisition.recorder = self.acquisition.recorder, recorder
        if old is not None:
            old.close()
        return old

    def stats(self) -> dict[str, Any]:
        a = self.acquisition.stats
        w = self.worker.stats()
        return {
            "state": a.get("state", "?"),
            "samples_lost": a.get("samples_lost", 0),
            "queue_depth": w["queue_depth"],
            "dropped": w["dropped"],
            "rejected": sum(w["rejected"].values()) + w["errors"],
            "reconstructed": w["reconstructed"],
            "trials": a.get("trials", 0),
            "device": str(getattr(self.reconstructor, "device", "?")),
            "recording": self.acquisition.recorder is not None,
            "last_error": w["last_error"],
        }


# ---------------------------------------------------------------------- helpers
def _inference_config(args: Any) -> InferenceConfig:
    cfg = load_config(getattr(args, "config", None)).inference
    if getattr(args, "device", None):
        cfg.device = args.device
    if getattr(args, "steps", None) is not None:
        cfg.steps = args.steps
    if getattr(args, "strength", None) is not None:
        cfg.strength = args.strength
    return cfg


def load_reconstructor(bundle: str, cfg: InferenceConfig):
    """The bundle on the configured device (fp16 on GPU), with torch threads set on CPU."""
    from bci_app.models.reconstructor import Reconstructor

    rec = Reconstructor.from_bundle(bundle, device=cfg.device, dtype=cfg.dtype,
                                    steps=cfg.steps, strength=cfg.strength)
    if getattr(rec.device, "type", str(rec.device)) == "cpu":
        configure_cpu_threads(cfg.cpu_threads)
    return rec


def _report_for(stimuli: Any, reconstructor: Any) -> SessionReport:
    def seen(sid: str):
        return stimuli.image(sid) if stimuli is not None and sid in stimuli else None

    def label(sid: str):
        return stimuli.label(sid) if stimuli is not None and sid in stimuli else None

    n_classes = len(getattr(reconstructor, "classes", []) or []) or getattr(stimuli, "n_classes", None)
    return SessionReport(seen_image=seen, seen_label=label, n_classes=n_classes,
                         classify=getattr(reconstructor, "classify_images", None))


def _headless_requested(args: Any) -> bool:
    if getattr(args, "headless", False):
        return True
    from bci_app.ui.qt import has_display

    if not has_display():
        print("bci-app: no display found (no DISPLAY/WAYLAND_DISPLAY, or QT_QPA_PLATFORM=offscreen): "
              "running headless; report files go to --out")
        return True
    return False


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    lat = summary["latency_ms"]["end_to_end"]
    q = summary["quality"]
    print(
        f"trials {summary['trials']}: reconstructed {summary['reconstructed']}, dropped "
        f"{summary['dropped']}, rejected {sum(summary['rejected'].values())}; end-to-end p50 "
        f"{lat['p50']} ms p95 {lat['p95']} ms; top-1 {q['top1']} ({q['ways']}-way, n={q['n']}), "
        f"SSIM {q['ssim']}\nwrote {out / 'report.json'}, {out / 'trials.jsonl'}, {out / 'grid.png'}"
    )


def run_headless(pipeline: Pipeline, n_trials: int | None, out: str | Path, *,
                 timeout: float | None = None, done: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Run until ``n_trials`` trials have an outcome (or ``done()``), then write the files.

    Ctrl-C stops early; the files are written either way."""
    out = Path(out)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            if n_trials is not None and pipeline.n_results >= n_trials:
                break
            if done is not None and done():
                # the source has finished: give the last windows time to complete
                pipeline.wait_results(n_trials or 0, 2.0)
                break
            if deadline is not None and time.monotonic() > deadline:
                log.warning("stopping: %s of %s trials after %.0f s", pipeline.n_results, n_trials, timeout)
                break
            pipeline.wait_results(n_trials if n_trials is not None else 1 << 60, 0.2)
    except KeyboardInterrupt:
        print("bci-app: interrupted; writing the report of the trials so far")
    finally:
        pipeline.stop()
    summary = pipeline.report.write(out)
    _print_summary(summary, out)
    return summary


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
                src = pipeline.source._inner
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


# ---------------------------------------------------------------------- commands
def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def build_demo(args: Any, *, headless: bool, n_trials: int | None):
    """Virtual subject + marker schedule + pipeline for ``bci-app demo`` (not started)."""
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.sources import LSLSource
    from bci_app.acquisition.virtual_subject import VirtualSubject
    from bci_app.ui.presenter import make_marker_outlet, schedule_for

    rate = float(args.rate if getattr(args, "rate", None) is not None else DEFAULT_DEMO_RATE)
    if rate <= 0:
        raise ValueError(f"--rate must be > 0 stimuli per second, got {rate}")
    cfg = _inference_config(args)
    rec = load_reconstructor(args.bundle, cfg)
    stimuli = DemoStimulusSet()
    eeg_name, mk_name = _unique("bci-app-demo-eeg"), _unique("bci-app-demo-markers")
    outlet = make_marker_outlet(mk_name, mk_name)
    snr = args.snr if getattr(args, "snr", None) is not None else 1.0
    subject = VirtualSubject(stimuli, snr=snr, seed=args.seed, name=eeg_name, source_id=eeg_name,
                             markers_name=mk_name)
    n_sched = n_trials if n_trials is not None else 100_000
    schedule = schedule_for(stimuli, n_sched, on=1.0 / rate, off=0.0, order="random",
                            seed=args.seed, start=1.0)
    source = LSLSource(name=eeg_name, source_id=eeg_name, n_channels=len(rec.spec.ch_names),
                       sfreq=rec.spec.sfreq)
    markers = LSLMarkerSource(name=mk_name)
    report = _report_for(stimuli, rec)
    pipeline = Pipeline(source, markers, rec, mapper=MarkerMapper(getattr(args, "marker_pattern", None)
                                                                  or r"^stim/(?P<id>.+)$"),
                        inference=cfg, report=report)
    return pipeline, subject, schedule, outlet, stimuli, cfg


def run_demo(args: Any) -> int:
    """``bci-app demo``: virtual subject + marker schedule + live pipeline (+ window)."""
    if getattr(args, "rate", None) is not None and args.rate <= 0:
        raise ValueError(f"--rate must be > 0 stimuli per second, got {args.rate}")
    headless = _headless_requested(args)
    n_trials = args.trials
    if headless and n_trials is None:
        n_trials = DEFAULT_HEADLESS_TRIALS
        print(f"bci-app demo: --trials not given; running {n_trials} trials")
    pipeline, subject, schedule, outlet, stimuli, cfg = build_demo(args, headless=headless, n_trials=n_trials)
    publisher = None
    presenter = None
    try:
        subject.start()
        pipeline.start()
        if args.record:
            from bci_app.acquisition.recorder import Recorder

            src = pipeline.source._inner
            pipeline.set_recorder(Recorder(args.record, list(src.ch_names), float(src.sfreq)))
        if headless:
            from bci_app.ui.presenter import MarkerSchedulePublisher

            publisher = MarkerSchedulePublisher(schedule, outlet=outlet, wait_for_consumers=5.0).start()
            timeout = float(schedule.onsets[-1]) + 30.0
            summary = run_headless(pipeline, n_trials, args.out, timeout=timeout)
            total = summary["reconstructed"] + summary["dropped"] + sum(summary["rejected"].values())
            return 0 if total == summary["trials"] == n_trials else 1
        from bci_app.ui.presenter_window import PresenterWindow
        from bci_app.ui.qt import ensure_app

        app = ensure_app()
        presenter = PresenterWindow(stimuli, schedule, outlet=outlet)
        presenter.setWindowTitle("bci-app demo: presenter")
        presenter.resize(400, 400)
        presenter.show()
        presenter.start()
        run_gui(pipeline, stimuli=stimuli, bundle=args.bundle, cfg=cfg, record_dir=args.record,
                presenter=presenter, app=app)
        return 0
    finally:
        if publisher is not None:
            publisher.stop()
        if presenter is not None:
            presenter.stop()
            presenter.close()
        if pipeline.started:
            pipeline.stop()
        subject.stop()


def _live_sources(spec: str, markers_name: str | None, reconstructor: Any):
    from bci_app.acquisition.markers import LSLMarkerSource

    kind, _, rest = spec.partition(":")
    if kind == "lsl":
        from bci_app.acquisition.sources import LSLSource

        source = LSLSource(name=rest or None, n_channels=len(reconstructor.spec.ch_names),
                           sfreq=reconstructor.spec.sfreq)
        return source, LSLMarkerSource(name=markers_name)
    if kind == "brainflow":
        from bci_app.acquisition.brainflow_source import BrainFlowSource

        if not rest:
            raise ValueError("--source brainflow needs a board, e.g. brainflow:SYNTHETIC_BOARD or brainflow:-1")
        source = BrainFlowSource(rest)
        markers = LSLMarkerSource(name=markers_name) if markers_name else source
        return source, markers
    raise ValueError(f"--source must be 'lsl[:NAME]' or 'brainflow:BOARD', got {spec!r}")


def _run_pipeline(args: Any, source: Any, markers: Any, rec: Any, cfg: InferenceConfig,
                  stimuli: Any, done: Callable[[], bool] | None = None) -> int:
    report = _report_for(stimuli, rec)
    pipeline = Pipeline(source, markers, rec, mapper=MarkerMapper(args.marker_pattern or r"^stim/(?P<id>.+)$"),
                        inference=cfg, report=report)
    headless = _headless_requested(args)
    try:
        pipeline.start()
        if args.record:
            from bci_app.acquisition.recorder import Recorder

            src = pipeline.source._inner
            pipeline.set_recorder(Recorder(args.record, list(src.ch_names), float(src.sfreq)))
        if headless:
            run_headless(pipeline, args.trials, args.out, done=done)
            return 0
        run_gui(pipeline, stimuli=stimuli, bundle=args.bundle, cfg=cfg, record_dir=args.record)
        return 0
    finally:
        if pipeline.started:
            pipeline.stop()


def _stimuli_for(args: Any) -> Any:
    if getattr(args, "images", None):
        from bci_app.ui.presenter import ImageFolderSet

        return ImageFolderSet(args.images)
    return DemoStimulusSet()


def run_live(args: Any) -> int:
    """``bci-app live --source lsl[:NAME] | brainflow:BOARD``."""
    cfg = _inference_config(args)
    rec = load_reconstructor(args.bundle, cfg)
    source, markers = _live_sources(args.source, args.markers, rec)
    return _run_pipeline(args, source, markers, rec, cfg, _stimuli_for(args))


def run_replay(args: Any) -> int:
    """``bci-app replay SESSION``: stream a recorded session over LSL and run the pipeline on it."""
    from bci_app.acquisition.markers import LSLMarkerSource
    from bci_app.acquisition.player import SessionPlayer
    from bci_app.acquisition.sources import LSLSource

    cfg = _inference_config(args)
    rec = load_reconstructor(args.bundle, cfg)
    name = _unique("bci-app-replay")
    player = SessionPlayer(args.session, speed=args.speed, name=name, source_id=name)
    source = LSLSource(name=name, source_id=name, n_channels=len(rec.spec.ch_names), sfreq=rec.spec.sfreq)
    markers = LSLMarkerSource(name=f"{name}-markers")
    if args.trials is None:
        args.trials = len(player.marker_strings)
    player_started = threading.Event()

    def start_player() -> None:
        player.start(wait_for_consumers=10.0)
        player_started.set()
    threading.Thread(target=start_player, name="replay-start", daemon=True).start()
    try:
        return _run_pipeline(args, source, markers, rec, cfg, _stimuli_for(args),
                             done=lambda: player.done.is_set())
    finally:
        player.stop()
